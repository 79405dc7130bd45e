"""The command line: real runs on real clips, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import soundfile as sf

from tests.conftest import ROOT


def _clip(shared_data):
    return shared_data / "an4" / "wav" / "test" / "fcaw" / "an406-fcaw-b.wav"


@pytest.mark.slow
def test_transcribe_real_clip(run_cli, shared_data, tiny_en):
    status, out, err = run_cli("transcribe", _clip(shared_data), "--model", "tiny.en")
    assert status == 0, err
    assert "rub out" in out.lower()


@pytest.mark.slow
def test_eval_groups_and_json(run_cli, shared_data, tiny_en, tmp_path):
    out_json = tmp_path / "res" / "eval.json"
    status, out, err = run_cli(
        "eval",
        "--model",
        "tiny.en",
        "--data",
        shared_data / "an4" / "manifest.jsonl",
        "--split",
        "test",
        "--limit",
        "12",
        "--group-by",
        "gender",
        "--json",
        out_json,
        "--no-progress",
    )
    assert status == 0, err
    result = json.loads(out_json.read_text())
    assert result["schema_version"] == 1 and result["group_by"] == "gender"
    assert sum(g["n_clips"] for g in result["groups"].values()) == 12 == result["overall"]["n_clips"]
    assert len(result["utterances"]) == 12
    assert "female" in out and "WER%" in out
    assert not list(out_json.parent.glob(".*.tmp"))


@pytest.mark.slow
def test_eval_without_transcripts_still_runs(run_cli, shared_data, tiny_en, tmp_path):
    sf.write(tmp_path / "a.wav", sf.read(_clip(shared_data))[0], 16000)
    status, out, err = run_cli("eval", "--data", tmp_path, "--no-progress")
    assert status == 0, err
    assert "WER not computed" in out


def test_console_entry_point_unknown_model_has_no_traceback(shared_data):
    """End to end through `python -m exporter`, hub unreachable (offline mode): exit 2, one line."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "transcribe", str(_clip(shared_data)), "--model", "nobody/unknown-whisper"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("edgeasr: error: cannot load model 'nobody/unknown-whisper'")
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
