"""The Android demo's host-side tools: bundling benchmark clips, and checking/collecting the phone's records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import soundfile as sf

from exporter.bench_schema import load_results
from runtimes.errors import EdgeAsrError

TOOLS = Path(__file__).resolve().parents[1] / "android_demo" / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_clips_writes_16k_pcm16_wavs_and_a_manifest(tmp_path, shared_data):
    bundle = _tool("bundle_clips")
    out = tmp_path / "assets" / "clips"
    rows = bundle.bundle_clips(shared_data / "english_misc" / "manifest.jsonl", out, group_by="gender")
    assert len(rows) == 22 and {r["group"] for r in rows} == {"female", "male"}
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert manifest == rows and all(r["text"] for r in rows)
    for row in rows:  # 44.1 and 48 kHz sources are resampled: the app does not resample
        info = sf.info(out / row["file"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    bundle.bundle_clips(shared_data / "english_misc" / "manifest.jsonl", out, limit=2)  # replaces the set
    assert len(list(out.glob("*.wav"))) == 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["clips"]  # no staging folders left


def _record(metric="real_time_factor", value=0.2, unit="ratio", group="all", n=3, extra=None, **changes):
    """A phone record in the harness schema v1 (what core/Bench.kt writes)."""
    record = {
        "schema_version": 1,
        "timestamp": "2026-01-01T00:00:00Z",
        "run_id": "run1",
        "model": {
            "name": "tiny.en",
            "plan_target": "android",
            "order": "myqasr",
            "calibration": "cosine",
            "personalised": True,
        },
        "runtime": {
            "name": "executorch-android",
            "version": "executorch-android 1.5.1",
            "backend": "xnnpack",
            "threads": None,
        },
        "artifact": {
            "name": "model.pte",
            "format": "pte",
            "sha256": "0" * 64,
            "bytes": 40_000_000,
            "budget_bytes": 45_000_000,
            "n_frames": None,
            "attention": None,
        },
        "device": {
            "kind": "phone",
            "name": "Google Pixel 8",
            "os": "Android 14",
            "machine": "arm64-v8a",
            "cores": 9,
            "memory_bytes": 8_000_000_000,
        },
        "data": {"name": "bundled clips", "split": None, "n_clips": 2, "audio_seconds": 4.0},
        "metric": {"name": metric, "value": value, "unit": unit},
        "group": group,
        "n": n,
    }
    if extra is not None:
        record["extra"] = extra
    record.update(changes)
    return record


def _results(records):
    return {"schema_version": 1, "generated_by": "test", "records": records}


def test_records_are_validated(tmp_path):
    collect = _tool("collect_results")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_results([_record()])))
    assert collect.load_records(good)[0]["metric"]["name"] == "real_time_factor"
    bad_cases = {
        "run_id": _record(run_id=None),
        "expected number": _record(value="fast"),
        "sha256": _record(artifact={"name": "model.pte", "sha256": "abc", "bytes": 1}),
        "schema_version": _record(schema_version=2),
        "unit": _record(unit="MB"),
    }
    for message, bad in bad_cases.items():
        record = {k: v for k, v in bad.items() if v is not None}
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(_results([record])))
        with pytest.raises(EdgeAsrError, match=message):
            collect.load_records(path)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(_results([])))
    with pytest.raises(EdgeAsrError, match="no records"):
        collect.load_records(empty)
    old_list = tmp_path / "list.json"  # the pre-schema layout: a bare list of records
    old_list.write_text(json.dumps([_record()]))
    with pytest.raises(EdgeAsrError, match="bench result schema"):
        collect.load_records(old_list)


def test_collect_adds_wer_and_keeps_every_record(tmp_path):
    collect = _tool("collect_results")
    per_clip = [
        _record(
            "clip_latency", 900.0, "ms", "female", 3, {"clip": "x", "hypothesis": "Please call Stella.", "audio_s": 2.0}
        ),
        _record(
            "clip_latency", 800.0, "ms", "male", 3, {"clip": "y", "hypothesis": "Please call Bella.", "audio_s": 2.0}
        ),
    ]
    records = tmp_path / "records.json"
    records.write_text(json.dumps(_results([_record()] + per_clip)))
    clips = tmp_path / "manifest.jsonl"
    clips.write_text(
        '{"id": "x", "file": "x.wav", "group": "female", "text": "PLEASE CALL STELLA"}\n'
        '{"id": "y", "file": "y.wav", "group": "male", "text": "please call stella"}\n'
    )
    out = tmp_path / "combined.json"
    assert collect.main([str(records), "--clips", str(clips), "--out", str(out)]) == 0
    combined = load_results(out)["records"]  # the output passes the harness schema too
    wer = {r["group"]: r["metric"]["value"] for r in combined if r["metric"]["name"] == "wer"}
    assert wer == {"all": pytest.approx(1 / 6, abs=1e-6), "female": 0.0, "male": pytest.approx(1 / 3, abs=1e-6)}
    assert len(combined) == 3 + 3
    assert all(r["run_id"] == "run1" and r["device"]["name"] == "Google Pixel 8" for r in combined)
