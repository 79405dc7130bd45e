"""tflite-runtime in its own environment and process: the message channel, the environment's setup and its
errors, and the ladder the runner accepts (cheap, main suite). The artifacts themselves are exported and run
through tflite-runtime in tests/test_litert.py (marked litert)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from exporter.choices import ARTIFACT_RUNTIMES, PLAN_TARGETS
from exporter.cli import main
from exporter.quant.targets import get_target
from runtimes.contract import RUNTIMES, kind_for_runtime
from runtimes.errors import EdgeAsrError
from runtimes.framing import read_message, write_message
from runtimes.tflite_process import TFLITE_RUNTIME_FORMATS, install, tflite_engine, worker_python


def test_messages_carry_arrays_of_any_dtype_and_shape():
    stream = io.BytesIO()
    logits = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    write_message(stream, {"op": "step", "token": 7}, logits)
    write_message(stream, {"ok": True})
    write_message(stream, {"op": "ids"}, np.arange(5, dtype=np.int64))
    stream.seek(0)
    header, array = read_message(stream)
    assert header["op"] == "step" and header["token"] == 7 and np.array_equal(array, logits)
    assert read_message(stream) == ({"ok": True}, None)
    header, array = read_message(stream)
    assert array.dtype == np.int64 and array.tolist() == [0, 1, 2, 3, 4]
    assert read_message(stream) is None  # the end of the stream
    cut = io.BytesIO()
    write_message(cut, {"op": "encode"}, np.zeros((80, 30), np.float32))
    assert read_message(io.BytesIO(cut.getvalue()[:-10])) is None  # the sender died mid-message


def test_the_runtimes_are_named_once():
    assert set(ARTIFACT_RUNTIMES) == set(RUNTIMES)
    assert kind_for_runtime("tflite-runtime").runtime == "litert"  # it runs the LiteRT pair
    with pytest.raises(EdgeAsrError, match="unknown artifact runtime"):
        kind_for_runtime("tflite")


def test_the_tflite_runtime_ladder_is_what_its_runner_accepts():
    assert "tflite-runtime" in PLAN_TARGETS
    target = get_target("tflite-runtime")
    formats = {fmt.name for ladder in target.ladders.values() for fmt in ladder}
    assert formats == set(TFLITE_RUNTIME_FORMATS)
    assert {"lrt8_pc", "lrt4_g32"}.isdisjoint(formats)  # computed wrongly / refused by tflite-runtime 2.14


def test_a_missing_environment_says_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEASR_TFLITE_VENV", str(tmp_path / "absent"))
    with pytest.raises(EdgeAsrError, match="edgeasr runtimes install tflite-runtime"):
        worker_python()
    with pytest.raises(EdgeAsrError, match=r"--venv .*elsewhere"):
        worker_python(tmp_path / "elsewhere")


def test_a_failed_install_leaves_nothing_behind(tmp_path, capsys):
    venv = tmp_path / "tflite"
    with pytest.raises(EdgeAsrError, match="creating a virtual environment .* failed|No such file"):
        install(venv, python=str(tmp_path / "no-python"))
    assert list(tmp_path.iterdir()) == []  # neither the environment nor its staging folder
    assert main(["runtimes", "install", "tflite-runtime", "--venv", str(venv), "--python", str(tmp_path / "x")]) == 2
    assert "edgeasr: error:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_engine_process_that_cannot_start_is_a_clear_error():
    # this environment has no tflite-runtime (numpy 2): the worker dies on import, and says why
    with pytest.raises(EdgeAsrError, match="tflite-runtime's process ended unexpectedly.*tflite_runtime"):
        tflite_engine(sys.executable)


def test_runtime_goes_with_an_artifact(capsys):
    assert main(["transcribe", "--runtime", "tflite-runtime", "clip.wav"]) == 2
    assert "--runtime goes with --artifact" in capsys.readouterr().err
