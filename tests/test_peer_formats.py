"""The peers' model files (benchmarks/peer_formats.py) load in the peers themselves and hear real speech.

whisper.cpp and CTranslate2 are what the peer benchmark compares edgeasr with; a file they misread would
make every peer row in the results wrong, so each file is run by the peer's own runtime here, through the
benchmark's worker process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

CLIP = "ls_1089-134691-0000.wav"  # "He could wait no longer."


def _worker(system: str, model_path, clip, tmp_path, prompt: str = "") -> dict:
    clips = tmp_path / "clips.json"
    clips.write_text(json.dumps([{"path": str(clip), "utt_id": "c0"}]))
    out = tmp_path / f"{system}.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "peer_worker.py"), "--system", system]
    command += ["--model-path", str(model_path), "--clips", str(clips), "--out", str(out), "--prompt", prompt]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["q4_0", "q8_0"])
def test_ggml_file_transcribes_in_whisper_cpp(tiny_en, shared_data, tmp_path, quant):
    from peer_formats import write_ggml

    path = tmp_path / f"ggml-{quant}.bin"
    write_ggml(tiny_en, path, quant)
    assert not [p for p in tmp_path.iterdir() if p != path]  # written atomically, no staging file left
    # 4.5 / 8.5 bits per quantised weight, float16 convs, float32 positions: tiny.en's known sizes
    assert {"q4_0": 25e6, "q8_0": 43e6}[quant] < path.stat().st_size < {"q4_0": 26e6, "q8_0": 44e6}[quant]
    result = _worker("whispercpp", path, shared_data / "english_misc" / "audio" / CLIP, tmp_path)
    assert "wait no longer" in result["clips"][0]["text"].lower()
    # the baseline is read before the model loads (the library imported): the weights are above it
    assert result["peak_rss_bytes"] - result["baseline_rss_bytes"] > path.stat().st_size


def test_unknown_ggml_type_is_refused(tiny_en, tmp_path):
    from peer_formats import write_ggml

    with pytest.raises(ValueError, match="q4_0"):
        write_ggml(tiny_en, tmp_path / "x.bin", "q3_x")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_ct2_int8_folder_transcribes_in_ctranslate2(tiny_en, shared_data, tmp_path):
    from peer_formats import write_ct2_int8
    from peers import decoder_prompt

    folder = tmp_path / "ct2"
    write_ct2_int8(tiny_en, folder)
    prompt = ",".join(map(str, decoder_prompt(tiny_en.special)))
    result = _worker("ct2", folder, shared_data / "english_misc" / "audio" / CLIP, tmp_path, prompt)
    assert "wait no longer" in result["clips"][0]["text"].lower()
