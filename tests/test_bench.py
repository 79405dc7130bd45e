"""`edgeasr bench`: the results schema, and clear behaviour for corrupt artifacts, missing runtimes and
manifests without transcripts."""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time

import pytest

from exporter.bench import BenchOptions, bench, check_runtime_available, resolve_targets
from exporter.bench_report import format_markdown
from exporter.bench_schema import load_schema, schema_errors, validate_results
from runtimes.errors import EdgeAsrError

AN4_CLIPS = ("wav/test/fcaw/an406-fcaw-b.wav", "wav/test/mmxg/an441-mmxg-b.wav")


def _record() -> dict:
    return {
        "schema_version": 1,
        "timestamp": "2026-11-22T06:00:00Z",
        "run_id": "r1",
        "model": {
            "name": "tiny.en",
            "plan_target": "android",
            "order": "myqasr",
            "calibration": "cosine",
            "personalised": True,
        },
        "runtime": {"name": "executorch-android", "version": "executorch 1.5.1", "backend": "xnnpack", "threads": 4},
        "artifact": {
            "name": "tiny-45MB/model.pte",
            "format": "pte",
            "sha256": "a" * 64,
            "bytes": 38_503_872,
            "budget_bytes": 45_000_000,
            "n_frames": 3000,
            "attention": "sdpa",
        },
        "device": {
            "kind": "phone",
            "name": "Google Pixel 8",
            "os": "Android 15",
            "machine": "arm64-v8a",
            "cores": 9,
            "memory_bytes": 8_000_000_000,
        },
        "data": {"name": "an4", "split": "test", "n_clips": 40, "audio_seconds": 110.2},
        "metric": {"name": "memory_run_peak", "value": 301_000_000, "unit": "bytes"},
        "group": "all",
        "n": 40,
    }


def test_schema_accepts_a_phone_record_and_rejects_invalid_ones():
    assert schema_errors({"schema_version": 1, "records": [_record()]}) == []
    broken = []
    for path, value in [
        (("metric", "unit"), "megabytes"),
        (("artifact", "sha256"), "xyz"),
        (("n",), True),
        (("timestamp",), "yesterday"),
        (("runtime", "name"), "Executorch Android"),
        (("device", "kind"), "laptop"),
    ]:
        record = copy.deepcopy(_record())
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        broken.append(record)
    missing = copy.deepcopy(_record())
    del missing["metric"]["value"]
    extra = copy.deepcopy(_record())
    extra["surprise"] = 1
    for record in broken + [missing, extra]:
        errors = schema_errors({"schema_version": 1, "records": [record]})
        assert errors, record
    with pytest.raises(EdgeAsrError, match="does not follow the bench result schema"):
        validate_results({"schema_version": 2, "records": []})


def test_validator_refuses_keywords_it_does_not_implement():
    schema = load_schema()
    schema["$defs"]["metric"]["properties"]["value"]["maximum"] = 1
    with pytest.raises(EdgeAsrError, match="does not implement"):
        schema_errors({"schema_version": 1, "records": [_record()]}, schema)


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory, tiny_en):
    """A small ONNX export of tiny.en (uniform 4-bit plan, no calibration): lowering takes seconds."""
    from exporter.lower.onnx import lower_onnx
    from exporter.quant.pipeline import PlanOptions, make_plan

    plan = make_plan(
        tiny_en, None, PlanOptions(target="onnx", budget="45MB", order="uniform", calibration="minmax"), progress=False
    )
    folder = tmp_path_factory.mktemp("bench") / "tiny-onnx"
    lower_onnx(tiny_en, plan, folder)
    plan.save(folder / "plan.json")
    return folder


@pytest.fixture()
def untranscribed(tmp_path, shared_data):
    """A manifest of two AN4 clips without transcripts (the clips copied beside it)."""
    rows = []
    for index, relative in enumerate(AN4_CLIPS):
        target = tmp_path / "clips" / f"clip{index}.wav"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(shared_data / "an4" / relative, target)
        rows.append(
            {
                "audio_path": f"clips/{target.name}",
                "utt_id": f"clip{index}",
                "gender": "female" if index == 0 else "male",
            }
        )
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_manifest_without_transcripts_skips_wer_and_measures_latency(onnx_artifact, untranscribed, tmp_path, run_cli):
    out = tmp_path / "bench.json"
    status, text, err = run_cli(
        "bench",
        "--artifact",
        onnx_artifact,
        "--runtime",
        "onnx",
        "--data",
        untranscribed,
        "--group-by",
        "gender",
        "--json",
        out,
        "--md",
        tmp_path / "bench.md",
    )
    assert status == 0, err
    data = json.loads(out.read_text())
    validate_results(data)
    metrics = {r["metric"]["name"]: r for r in data["records"]}
    assert "wer" not in metrics
    assert any("WER skipped" in note for note in data["notes"]) and "WER skipped" in text
    assert metrics["latency_median"]["metric"]["value"] > 0 and metrics["latency_median"]["n"] == 2
    assert metrics["latency_p90"]["metric"]["value"] >= metrics["latency_median"]["metric"]["value"]
    run_peak = metrics["memory_run_peak"]["metric"]["value"]
    predicted = metrics["predicted_memory_run_peak"]["metric"]["value"]
    assert run_peak > 30e6 and 0.5 < predicted / run_peak < 2  # the model is in the right range
    assert metrics["artifact_bytes"]["metric"]["value"] == metrics["artifact_bytes"]["artifact"]["bytes"] < 45e6
    assert metrics["artifact_bytes"]["artifact"]["budget_bytes"] == 45_000_000
    assert "No WER" in (tmp_path / "bench.md").read_text()


def test_torch_runtimes_alone_run_at_the_artifact_audio_context(tmp_path, tiny_en):
    """PyTorch benchmarked on a 10 s export, with or without the artifact's own runtime, runs at 10 s."""
    from exporter.lower.onnx import lower_onnx
    from exporter.quant.pipeline import PlanOptions, make_plan

    plan = make_plan(
        tiny_en, None, PlanOptions(target="onnx", budget="45MB", order="uniform", calibration="minmax"), progress=False
    )
    folder = tmp_path / "tiny-onnx-10s"
    lower_onnx(tiny_en, plan, folder, 1000)
    plan.save(folder / "plan.json")
    for runtimes in (("torch-fp",), ("torch",), ("onnx", "torch-fp")):
        assert {t.n_frames for t in resolve_targets(folder, runtimes)} == {1000}, runtimes
    (tmp_path / "plan-only").mkdir()
    plan.save(tmp_path / "plan-only" / "plan.json")
    assert resolve_targets(tmp_path / "plan-only", ("torch",))[0].n_frames == 3000


def test_corrupt_artifacts_are_clear_errors(tmp_path, onnx_artifact, untranscribed, tiny_en):
    pte = tmp_path / "pte"
    pte.mkdir()
    (pte / "model.pte").write_bytes(b"\x00not an executorch program" * 100)
    shutil.copyfile(onnx_artifact / "tokenizer.json", pte / "tokenizer.json")
    with pytest.raises(EdgeAsrError, match="cannot load ExecuTorch program"):
        bench(BenchOptions(artifact=pte, data=untranscribed, runtimes=("executorch",)))
    onnx = tmp_path / "onnx"
    shutil.copytree(onnx_artifact, onnx)
    (onnx / "decoder.onnx").write_bytes(b"\x08garbage" * 100)
    with pytest.raises(EdgeAsrError, match="decoder.onnx is not a readable ONNX model"):
        bench(BenchOptions(artifact=onnx, data=untranscribed, runtimes=("onnx",)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeAsrError, match="holds no edgeasr artifact"):
        bench(BenchOptions(artifact=tmp_path / "empty", data=untranscribed))


def test_missing_runtime_package_names_the_install(monkeypatch, onnx_artifact, untranscribed, tmp_path, run_cli):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(EdgeAsrError, match=r"pip install onnxruntime==1\.31\.1"):
        check_runtime_available("onnx")
    status, _, err = run_cli(
        "bench",
        "--artifact",
        onnx_artifact,
        "--runtime",
        "onnx",
        "--data",
        untranscribed,
        "--json",
        tmp_path / "out.json",
    )
    assert status == 2 and "pip install onnxruntime" in err
    assert not (tmp_path / "out.json").exists()
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)
    with pytest.raises(EdgeAsrError, match=r"pip install executorch==1\.5\.1"):
        check_runtime_available("executorch")


def test_markdown_renders_appended_phone_records():
    host = _record()
    host.update(
        runtime={"name": "executorch", "version": "executorch 1.5.1", "backend": "xnnpack", "threads": 1},
        device={"kind": "host", "name": "Xeon"},
        run_id="r0",
    )
    phone_wer = copy.deepcopy(_record())
    phone_wer.update(metric={"name": "wer", "value": 0.25, "unit": "ratio"}, group="female", n=20)
    text = format_markdown({"schema_version": 1, "records": [host, _record(), phone_wer]})
    assert "| executorch | executorch-android |" in text
    assert "25.0 (n=20)" in text and "301.0" in text


def test_a_hung_worker_is_stopped_at_its_time_limit(tiny_export, shared_data):
    """A runtime process that runs past --worker-timeout is killed and reported, not waited on forever
    (here the limit is shorter than the worker's imports, so it cannot finish)."""
    from exporter.bench import BenchOptions, Target, run_worker

    folder, _ = tiny_export
    plan = json.loads((folder / "plan.json").read_text())
    target = Target("executorch", folder, plan, {}, plan["model_id"])
    clip = shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav"
    clips = [{"utt_id": "a", "audio_path": str(clip), "sample_rate": 16000, "language": None}]
    options = BenchOptions(artifact=folder, data=clip, worker_timeout=0.5)
    started = time.perf_counter()
    with pytest.raises(EdgeAsrError, match="ran over its time limit of 0.5 s on 1 clips"):
        run_worker(target, clips, options)
    assert time.perf_counter() - started < 30
