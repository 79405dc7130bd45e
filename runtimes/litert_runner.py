"""LiteRT runner: the encoder.tflite / decoder.tflite pair written by `exporter.lower.litert`, run in this
process by ai-edge-litert's interpreter (XNNPACK delegate). The computation itself is runtimes/litert_engine.py,
shared with tflite-runtime's runner (runtimes/tflite_process.py); the artifact's metadata is read here.
"""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtimes.base import Runner
from runtimes.contract import LITERT_METADATA, TFLITE_DECODER_FILE, TFLITE_ENCODER_FILE, TOKENIZER_FILE
from runtimes.errors import EdgeAsrError
from runtimes.litert_engine import LiteRTPair, PositionSession
from runtimes.tokenizer import SpecialTokens, load_tokenizer

_INSTALL = "pip install ai-edge-litert==2.3.0 (or 'edgeasr[litert]')"


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # an optional runtime: say how to get it rather than a traceback
        raise EdgeAsrError(f"the litert runner needs ai-edge-litert ({_INSTALL})") from exc
    return Interpreter


def read_litert_metadata(path: str | Path) -> dict:
    """The `edgeasr` metadata (plan, special tokens, shapes) of a .tflite file, without building an interpreter."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAsrError(f"LiteRT model not found: {path}")
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:
        raise EdgeAsrError(f"reading LiteRT metadata needs ai-edge-litert ({_INSTALL})") from exc
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found = _metadata_json(data, schema)
    except Exception as exc:  # flatbuffers raise IndexError/struct errors on a truncated or foreign file
        raise EdgeAsrError(f"{path} is not a readable LiteRT model ({type(exc).__name__}: {exc})") from exc
    if found is not None:
        return json.loads(found)
    raise EdgeAsrError(f"{path} carries no edgeasr metadata (was it written by edgeasr's LiteRT lowering?)")


def _metadata_json(data, schema) -> bytes | None:
    """The edgeasr metadata entry of a mapped .tflite file, or None; read in place (only the entry is copied)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("no TFL3 file identifier")
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == LITERT_METADATA.encode():
            buffer = model.Buffers(entry.Buffer())
            if buffer.DataLength():
                return buffer.DataAsNumpy().tobytes()
            # large models keep buffers after the flatbuffer, addressed by offset and size
            return bytes(data[buffer.Offset() : buffer.Offset() + buffer.Size()])
    return None


def read_plan_from_tflite(path: str | Path) -> dict:
    return read_litert_metadata(path)["plan"]


@dataclass(frozen=True)
class LiteRTInfo:
    """What a LiteRT pair's metadata says about running it."""

    special: SpecialTokens
    n_mels: int
    n_frames: int
    layers: int
    max_seq_len: int
    formats: frozenset[str]  # the plan's layer formats


def read_litert_info(folder: Path) -> LiteRTInfo:
    meta = read_litert_metadata(folder / TFLITE_ENCODER_FILE)
    try:
        return LiteRTInfo(
            SpecialTokens.from_dict(meta["special_tokens"]),
            int(meta["n_mels"]),
            int(meta["n_frames"]),
            int(meta["decoder_layers"]),
            int(meta["max_seq_len"]),
            frozenset(layer["format"]["name"] for layer in meta["plan"]["layers"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeAsrError(f"{folder / TFLITE_ENCODER_FILE} has malformed edgeasr metadata ({exc})") from exc


class LiteRTRunner(Runner):
    name = "litert"

    def __init__(self, artifact_dir: str | Path, threads: int | None = None):
        folder = Path(artifact_dir)
        if not folder.is_dir():
            raise EdgeAsrError(f"LiteRT artifact folder not found: {folder}")
        info = read_litert_info(folder)
        super().__init__(load_tokenizer(folder / TOKENIZER_FILE), info.special, info.n_mels, info.n_frames)
        self.folder = folder
        self.max_seq_len = info.max_seq_len
        files = (TFLITE_ENCODER_FILE, TFLITE_DECODER_FILE)
        self.pair = LiteRTPair(_interpreter_class(), folder, files, info.layers, threads)

    def encode(self, features: np.ndarray) -> list[np.ndarray]:
        return self.pair.encode(features)

    def start_decoder(self, encoded: list[np.ndarray]) -> PositionSession:
        self.pair.reset(encoded)
        return PositionSession(self.pair.step, self.max_seq_len)


__all__ = ["LiteRTInfo", "LiteRTRunner", "read_litert_info", "read_litert_metadata", "read_plan_from_tflite"]
