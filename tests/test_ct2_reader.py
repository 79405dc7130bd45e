"""The CTranslate2 reader on small files written here in the documented layout."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from exporter.models.ct2 import read_ct2_model, read_ct2_stream
from runtimes.errors import EdgeAsrError


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _variable(name: str, array: np.ndarray, code: int) -> bytes:
    out = _string(name) + struct.pack("<B", array.ndim)
    out += b"".join(struct.pack("<I", d) for d in array.shape)
    data = array.tobytes()
    return out + struct.pack("<B", code) + struct.pack("<I", len(data)) + data


def _model_bytes(version: int = 6) -> bytes:
    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    heads = np.array(6, dtype=np.int16)
    # bfloat16 1.0 and -2.0 are the high halves of the float32 bit patterns.
    bf16 = (np.array([1.0, -2.0], dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    body = struct.pack("<I", version) + _string("WhisperSpec") + struct.pack("<I", 3)
    body += struct.pack("<I", 3)
    body += _variable("decoder/embeddings/weight", weight, 4)
    body += _variable("encoder/num_heads", heads, 2)
    body += _variable("x/bf16", bf16, 5)
    body += struct.pack("<I", 1) + _string("decoder/projection/weight") + _string("decoder/embeddings/weight")
    return body


def test_reads_variables_dtypes_and_aliases(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(_model_bytes())
    model = read_ct2_model(path)
    assert model.spec_name == "WhisperSpec" and model.spec_revision == 3
    np.testing.assert_array_equal(model["decoder/embeddings/weight"], np.arange(6).reshape(2, 3))
    assert model["decoder/embeddings/weight"].dtype == np.float16
    assert int(model["encoder/num_heads"]) == 6
    np.testing.assert_array_equal(model["x/bf16"], np.array([1.0, -2.0], dtype=np.float32))
    assert model["decoder/projection/weight"] is model["decoder/embeddings/weight"]


def test_split_file_reads_like_one(tmp_path):
    data = _model_bytes()
    cut = len(data) // 3  # split inside a variable's data on purpose
    (tmp_path / "p1").write_bytes(data[:cut])
    (tmp_path / "p2").write_bytes(data[cut:])
    joined = read_ct2_stream([tmp_path / "p1", tmp_path / "p2"])
    whole_path = tmp_path / "whole.bin"
    whole_path.write_bytes(data)
    whole = read_ct2_model(whole_path)
    assert joined.variables.keys() == whole.variables.keys()
    for name in whole.variables:
        np.testing.assert_array_equal(joined[name], whole[name])


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(_model_bytes()[:-40])
    with pytest.raises(EdgeAsrError, match="truncated"):
        read_ct2_model(path)


def test_unsupported_version_and_missing_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(_model_bytes(version=2))
    with pytest.raises(EdgeAsrError, match="version 2"):
        read_ct2_model(path)
    with pytest.raises(EdgeAsrError, match="not found"):
        read_ct2_model(tmp_path / "absent.bin")
