"""The Android demo's host-side tools: bundling benchmark clips, and checking/collecting the phone's records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import soundfile as sf

from exporter.errors import EdgeAsrError

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


def _record(**changes):
    record = {"schema_version": 1, "model": "tiny.en", "runtime": "executorch-android",
              "artifact": {"file": "model.pte", "sha256": "0" * 64}, "device": "Pixel", "metric": "rtf",
              "value": 0.2, "unit": "ratio", "group": "all", "n": 3, "timestamp": "2026-01-01T00:00:00Z"}
    record.update(changes)
    return record


def test_records_are_validated(tmp_path):
    collect = _tool("collect_results")
    good = tmp_path / "good.json"
    good.write_text(json.dumps([_record()]))
    assert collect.load_records(good)[0]["metric"] == "rtf"
    bad_cases = {"lacks 'device'": {"device": None}, "wrong type": {"value": "fast"},
                 "sha256": {"artifact": {"file": "model.pte", "sha256": "abc"}},
                 "schema_version": {"schema_version": 2}}
    for message, change in bad_cases.items():
        record = {k: v for k, v in _record(**change).items() if v is not None}
        path = tmp_path / "bad.json"
        path.write_text(json.dumps([record]))
        with pytest.raises(EdgeAsrError, match=message):
            collect.load_records(path)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(EdgeAsrError, match="non-empty JSON list"):
        collect.load_records(empty)


def test_collect_adds_wer_and_keeps_every_record(tmp_path):
    collect = _tool("collect_results")
    per_clip = [_record(metric="latency_ms", value=900.0, unit="ms", group="female", n=3,
                        extra={"clip": "x", "hypothesis": "Please call Stella.", "audio_s": 2.0}),
                _record(metric="latency_ms", value=800.0, unit="ms", group="male", n=3,
                        extra={"clip": "y", "hypothesis": "Please call Bella.", "audio_s": 2.0})]
    records = tmp_path / "records.json"
    records.write_text(json.dumps([_record()] + per_clip))
    clips = tmp_path / "manifest.jsonl"
    clips.write_text('{"id": "x", "file": "x.wav", "group": "female", "text": "PLEASE CALL STELLA"}\n'
                     '{"id": "y", "file": "y.wav", "group": "male", "text": "please call stella"}\n')
    out = tmp_path / "combined.json"
    assert collect.main([str(records), "--clips", str(clips), "--out", str(out)]) == 0
    combined = json.loads(out.read_text())
    wer = {r["group"]: r["value"] for r in combined if r["metric"] == "wer"}
    assert wer == {"all": pytest.approx(1 / 6, abs=1e-6), "female": 0.0, "male": pytest.approx(1 / 3, abs=1e-6)}
    assert len(combined) == 3 + 3
