"""`edgeasr fleet` on a local Ray: users' exports equal the single-user CLI's, failures stay per user, re-runs resume.

The users file and the store are tested without Ray (milliseconds); one slow test runs the real command on
real speechocean762 speakers and a folder with a corrupt clip, then the single-user export of one good user,
then the fleet again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.export.options import ExportOptions
from exporter.fleet.store import FleetStore, content_hash
from exporter.fleet.users import read_users
from runtimes.errors import EdgeAsrError
from runtimes.integrity import sha256_file

DEFAULTS = ExportOptions(model="tiny.en", target="onnx", budget="40MB", n_calib=4)
SPEECHOCEAN = ("speechocean762", "manifest.jsonl")


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _described(summary: dict) -> dict:
    """export.json without what measures the run (seconds, memory peaks)."""
    measures = ("seconds", "stages", "stage_peak_rss_mb")
    kept = {k: v for k, v in summary.items() if k not in measures}
    kept["artifacts"] = [{k: v for k, v in a.items() if k not in measures} for a in summary["artifacts"]]
    for artifact in kept["artifacts"]:
        artifact["parity"] = {k: v for k, v in artifact["parity"].items() if k != "seconds"}
    return kept


def _users(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "users.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_users_file_rows_fail_alone_and_file_errors_refuse_the_run(tmp_path, shared_data):
    manifest = str(shared_data.joinpath(*SPEECHOCEAN))
    jobs = read_users(
        _users(
            tmp_path,
            [
                {"user": "a", "clips": manifest, "speaker": "0001"},
                {"user": "b", "clips": manifest, "speaker": "no-such-speaker"},
                {"user": "c", "clips": "missing/folder"},
                {"user": "d", "clips": manifest, "budget": "lots"},
                {"user": "e", "clips": manifest, "target": "ios"},
                {"user": "f", "clips": manifest, "colour": "blue"},
                {"user": 7, "clips": manifest, "target": "android", "budget": "45MB"},
            ],
        ),
        DEFAULTS,
    )
    by_user = {job.user: job for job in jobs}
    assert by_user["a"].error is None and by_user["a"].options.speaker == "0001"
    assert by_user["a"].options.calib == Path(manifest) and by_user["a"].options.target == "onnx"
    assert by_user["7"].error is None and by_user["7"].options.resolved_formats() == ("pte",)
    expected = {"b": "no clip of speaker", "c": "not found", "d": "cannot read budget", "e": "ios", "f": "colour"}
    for user, words in expected.items():
        assert words in by_user[user].error and "line" in by_user[user].error, by_user[user].error
    # a changed row (or changed defaults) is another job: a completed user is redone
    assert by_user["a"].key != read_users(_users(tmp_path, [{"user": "a", "clips": manifest}]), DEFAULTS)[0].key

    for rows, words in (
        (["not json"], "not JSON"),
        ([[1, 2]], "not an object"),
        ([{"clips": manifest}], "'user' must be"),
        ([{"user": "../x", "clips": manifest}], "'user' must be"),
        ([{"user": "a", "clips": manifest}, {"user": "a", "clips": manifest}], "already on line 1"),
        ([""], "no rows"),
    ):
        with pytest.raises(EdgeAsrError, match=words):
            read_users(_users(tmp_path, rows), DEFAULTS)


def test_fleet_flags_give_every_user_the_export_flags_defaults(tmp_path):
    """The fleet's flags are the single export's, layouts included: a fleet of ONNX users in edgeasr's
    layout (per-user adapter files) or of runner-layout .pte files is one command."""
    from exporter.cli import _export_options, build_parser

    args = ["fleet", "--users", "u.jsonl", "--out", tmp_path, "--budget", "40MB", "--onnx-layout", "edgeasr"]
    options = _export_options(build_parser().parse_args([*map(str, args), "--pte-layout", "runner"]))
    assert (options.onnx_layout, options.pte_layout, options.budget.bytes) == ("edgeasr", "runner", 40_000_000)
    plain = _export_options(build_parser().parse_args(list(map(str, args[:-2]))))
    assert (plain.onnx_layout, plain.pte_layout) == (ExportOptions.onnx_layout, ExportOptions.pte_layout)


def _fake_export(folder: Path, weights: bytes, plan_note: str) -> Path:
    """An export folder's shape (export.json naming one artifact) with the given weight bytes."""
    from exporter.quant.plan import LayerPlan, QuantPlan
    from exporter.quant.targets import get_target

    folder.mkdir(parents=True)
    (folder / "model.pte").write_bytes(weights)
    fmt = get_target("android").ladder("linear")[0]
    layer = LayerPlan("l", "linear", "decoder_linear", [2, 2], fmt, sensitivity=0.5, bytes=16)
    plan = QuantPlan("m", "android", 1, "myqasr", "minmax", "median", 1, plan_note, True, [layer], 0)
    plan.save(folder / "plan.json")
    (folder / "export.json").write_text(
        json.dumps(
            {
                "artifacts": [
                    {
                        "format": "pte",
                        "folder": ".",
                        "files": {"model.pte": len(weights)},
                        "artifact_bytes": len(weights),
                    }
                ]
            }
        )
    )
    return folder


def test_store_keeps_identical_files_once_and_resumes_only_whole_users(tmp_path):
    store = FleetStore(tmp_path / "fleet").open()
    weights = os.urandom(200_000)
    records = {}
    for user, note in (("a", "clips of a"), ("b", "clips of b")):
        staged = _fake_export(store.staging(user), weights, note)
        records[user] = store.publish(user, staged)
        store.write_record(user, {"status": "ok", "key": f"k-{user}", **records[user]})
    pte_a, pte_b = (store.user_folder(u) / "model.pte" for u in "ab")
    assert pte_a.stat().st_ino == pte_b.stat().st_ino and pte_a.read_bytes() == weights
    assert records["a"]["artifacts"][0]["artifact_id"] == records["b"]["artifacts"][0]["artifact_id"]
    # the plans differ only in what was observed on the clips, so they decide the same artifact
    assert records["a"]["artifacts"][0]["plan_id"] == records["b"]["artifacts"][0]["plan_id"]
    on_disk, as_copies = store.stored_bytes()
    assert as_copies - on_disk == len(weights)
    assert not list(store.work.iterdir())

    assert store.completed("a", "k-a") is not None
    assert store.completed("a", "another job") is None
    (store.user_folder("b") / "plan.json").write_text("{}")  # a damaged folder is redone, not trusted
    assert store.completed("b", "k-b") is None
    assert content_hash(store.user_folder("a")) == records["a"]["content_hash"]

    with pytest.raises(EdgeAsrError, match="another edgeasr fleet run"):
        FleetStore(tmp_path / "fleet").open()  # the first store still holds the folder's lock

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    with pytest.raises(EdgeAsrError, match="holds no fleet"):
        FleetStore(tmp_path / "other").open()


def test_worker_count_fits_cpus_memory_and_users(tmp_path):
    from exporter.fleet.run import FleetOptions, _worker_count

    options = FleetOptions(users=tmp_path / "u.jsonl", out=tmp_path / "o", defaults=DEFAULTS)
    gib = 2**30
    assert _worker_count(options, {"CPU": 8, "memory": 100 * gib}, 64) == 8
    assert _worker_count(options, {"CPU": 8, "memory": 9 * gib}, 64) == 2  # 4 GiB reserved per tiny.en worker
    assert _worker_count(options, {"CPU": 8, "memory": 100 * gib}, 3) == 3
    with pytest.raises(EdgeAsrError, match="less than one worker's"):
        _worker_count(options, {"CPU": 8, "memory": 3 * gib}, 64)
    with pytest.raises(EdgeAsrError, match="--workers must be"):
        FleetOptions(users=tmp_path / "u.jsonl", out=tmp_path / "o", defaults=DEFAULTS, workers=0)


def _fleet(users: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    from tests.conftest import ROOT

    args = ["--model", "tiny.en", "--target", "onnx", "--budget", "40MB", "--n-calib", "4"]
    return subprocess.run(
        [sys.executable, "-m", "exporter", "fleet", "--users", str(users), "--out", str(out), *args, *extra]
        + ["--workers", "2", "--threads", "1", "--no-progress"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=900,
    )


@pytest.mark.slow
def test_fleet_on_local_ray_equals_single_exports_isolates_a_corrupt_clip_and_resumes(tmp_path, shared_data):
    from tests.conftest import ROOT

    manifest = shared_data.joinpath(*SPEECHOCEAN)
    broken = tmp_path / "broken_clips"
    broken.mkdir()
    for clip in sorted((shared_data / "english_misc" / "audio").glob("*.wav"))[:3]:
        shutil.copy(clip, broken / clip.name)
    (broken / "zz_corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEthis is not audio" * 4)
    users = _users(
        tmp_path,
        [
            {"user": "child-0001", "clips": str(manifest), "speaker": "0001"},
            {"user": "broken", "clips": str(broken)},
            {"user": "adult-0026", "clips": str(manifest), "speaker": "0026"},
        ],
    )
    out = tmp_path / "fleet"
    first = _fleet(users, out)
    assert first.returncode == 1, first.stderr[-3000:]  # one user failed: the fleet reports it, non-zero
    summary = json.loads((out / "fleet.json").read_text())
    status = {u["user"]: u for u in summary["users"]}
    assert [status[u]["status"] for u in ("child-0001", "broken", "adult-0026")] == ["ok", "failed", "ok"]
    assert "zz_corrupt.wav" in status["broken"]["error"] and status["broken"]["attempts"] == 1  # not retried
    assert "broken: failed: " in first.stdout and "zz_corrupt.wav" in first.stdout
    assert summary["totals"]["exported"] == 2 and len(summary["workers"]) == 2
    assert all(w["peak_rss_mb"] > 0 for w in summary["workers"])
    assert (out / "fleet.md").read_text().count("| ok |") == 2
    assert not (out / "users" / "broken").exists()

    # one user's files against the single-user CLI's (each export costs a minute; the other user's differ only
    # in their calibration speaker)
    user, speaker = "child-0001", "0001"
    single = tmp_path / f"single-{user}"
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "export", "--model", "tiny.en", "--target", "onnx", "--budget", "40MB"]
        + ["--n-calib", "4", "--calib", str(manifest), "--speaker", speaker, "--threads", "1"]
        + ["--out", str(single), "--no-progress"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    fleet_files, single_files = _digests(out / "users" / user), _digests(single)
    measured = {"export.json", "report.md"}  # timings; compared below without them
    assert {k: v for k, v in fleet_files.items() if k not in measured} == {
        k: v for k, v in single_files.items() if k not in measured
    }
    summaries = [json.loads((root / "export.json").read_text()) for root in (out / "users" / user, single)]
    assert _described(summaries[0]) == _described(summaries[1])

    before = {u: (out / "users" / u / "encoder.onnx").stat().st_mtime_ns for u in ("child-0001", "adult-0026")}
    second = _fleet(users, out)
    assert second.returncode == 1, second.stderr[-3000:]
    again = json.loads((out / "fleet.json").read_text())
    assert again["totals"]["skipped"] == 2 and again["totals"]["exported"] == 0 and again["totals"]["failed"] == 1
    assert {u["user"] for u in again["users"] if u["skipped"]} == {"child-0001", "adult-0026"}
    assert before == {u: (out / "users" / u / "encoder.onnx").stat().st_mtime_ns for u in before}
