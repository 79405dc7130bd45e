"""Finding an artifact in an export folder (runtimes.artifact.locate): no model needed, only the layout."""

from __future__ import annotations

import pytest

from runtimes.artifact import artifact_runtimes, locate
from runtimes.contract import ENCODER_FILE, PTE_FILE
from runtimes.errors import EdgeAsrError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_the_first_format_at_the_top_wins_over_a_subfolder(tmp_path):
    # `export --formats onnx,pte`: the ONNX pair at the top, the .pte in pte/
    _touch(tmp_path / ENCODER_FILE)
    _touch(tmp_path / "pte" / PTE_FILE)
    kind, folder = locate(tmp_path)
    assert (kind.runtime, folder) == ("onnx", tmp_path)
    kind, folder = locate(tmp_path, runtime="executorch")
    assert (kind.runtime, folder) == ("executorch", tmp_path / "pte")
    assert artifact_runtimes(tmp_path) == ("executorch", "onnx")


def test_subfolders_and_entry_files(tmp_path):
    pte = _touch(tmp_path / "executorch" / PTE_FILE)  # older exports named the folder after the runtime
    assert locate(tmp_path)[1] == tmp_path / "executorch"
    assert locate(pte) == (locate(tmp_path)[0], pte.parent)
    onnx = _touch(tmp_path / "onnx" / ENCODER_FILE)
    assert locate(onnx)[0].runtime == "onnx"


def test_nothing_there_is_a_clear_error(tmp_path):
    with pytest.raises(EdgeAsrError, match="holds no edgeasr artifact .model.pte or encoder.onnx."):
        locate(tmp_path)
    with pytest.raises(EdgeAsrError, match="unknown artifact runtime 'tflite'"):
        locate(tmp_path, runtime="tflite")
