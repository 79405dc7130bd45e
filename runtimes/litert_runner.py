"""LiteRT runner: the encoder.tflite / decoder.tflite pair written by `exporter.lower.litert`, run by
ai-edge-litert's interpreter (XNNPACK delegate).

The encoder returns every decoder layer's cross-attention keys and values. The decoder is stateless: each
step takes the self-attention cache and returns the new keys and values, which the session writes into its
cache at the step's position. The cache and the cross-attention tensors live in the interpreter's own input
buffers, written in place, so a step copies one position per layer rather than the whole cache.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from runtimes.base import Runner
from runtimes.contract import LITERT_METADATA, TFLITE_DECODER_FILE, TFLITE_ENCODER_FILE, TOKENIZER_FILE
from runtimes.errors import EdgeAsrError
from runtimes.tokenizer import SpecialTokens, load_tokenizer

_INSTALL = "pip install ai-edge-litert==2.3.0 (or 'edgeasr[litert]')"


def _interpreter(path: Path, threads: int | None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # an optional runtime: say how to get it rather than a traceback
        raise EdgeAsrError(f"the litert runner needs ai-edge-litert ({_INSTALL})") from exc
    if not path.is_file():
        raise EdgeAsrError(f"LiteRT model not found: {path} (export with --target litert first)")
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads or 1)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgeAsrError(f"{path} is not a loadable LiteRT model: {first_line}") from exc
    return interpreter


def read_litert_metadata(path: str | Path) -> dict:
    """The `edgeasr` metadata (plan, special tokens, shapes) of a .tflite file, without building an interpreter."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAsrError(f"LiteRT model not found: {path}")
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:
        raise EdgeAsrError(f"reading LiteRT metadata needs ai-edge-litert ({_INSTALL})") from exc
    data = path.read_bytes()
    try:
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ValueError("no TFL3 file identifier")
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == LITERT_METADATA.encode():
                buffer = model.Buffers(entry.Buffer())
                if buffer.DataLength():
                    return json.loads(buffer.DataAsNumpy().tobytes())
                # large models keep buffers after the flatbuffer, addressed by offset and size
                return json.loads(data[buffer.Offset() : buffer.Offset() + buffer.Size()])
    except Exception as exc:  # flatbuffers raise IndexError/struct errors on a truncated or foreign file
        raise EdgeAsrError(f"{path} is not a readable LiteRT model ({type(exc).__name__}: {exc})") from exc
    raise EdgeAsrError(f"{path} carries no edgeasr metadata (was it written by edgeasr's LiteRT lowering?)")


def read_plan_from_tflite(path: str | Path) -> dict:
    return read_litert_metadata(path)["plan"]


def _by_position(details: dict[str, dict]) -> list[dict]:
    """A signature's inputs or outputs (keyed args_N / output_N by litert-torch) in the order of the
    converted module's arguments / results."""

    def position(name: str) -> int:
        found = re.fullmatch(r"(?:args|output)_(\d+)", name)
        if not found:
            raise EdgeAsrError(f"unexpected LiteRT signature entry {name!r}; re-export with this edgeasr")
        return int(found.group(1))

    return [details[name] for name in sorted(details, key=position)]


def _signature(interpreter) -> tuple[list[dict], list[dict]]:
    runner = interpreter.get_signature_runner()
    return _by_position(runner.get_input_details()), _by_position(runner.get_output_details())


class _LiteRTDecoderSession:
    def __init__(self, runner: LiteRTRunner, cross: list[np.ndarray]):
        self.runner = runner
        self.position = 0
        interpreter = runner.decoder
        for detail, tensor in zip(runner.cross_inputs, cross, strict=True):
            interpreter.set_tensor(detail["index"], tensor)
        # Slots at and after the position are masked by adding the most negative float to their scores, which
        # only works on finite values: the interpreter's input buffers start as whatever memory it was given
        # (NaN patterns included), so the cache is zeroed once per session.
        for detail in runner.cache_inputs:
            interpreter.tensor(detail["index"])().fill(0.0)

    def step(self, tokens: list[int]) -> np.ndarray:
        runner = self.runner
        interpreter = runner.decoder
        logits = None
        for token in tokens:
            if self.position >= runner.max_seq_len:
                raise EdgeAsrError(f"the decoder cache is full ({runner.max_seq_len} positions)")
            interpreter.set_tensor(runner.token_input, np.array([[token]], dtype=np.int32))
            interpreter.set_tensor(runner.position_input, np.array([self.position], dtype=np.int32))
            interpreter.invoke()
            for cache, new in zip(runner.cache_inputs, runner.new_kv_outputs, strict=True):
                # write this position's keys / values into the cache input, in place
                interpreter.tensor(cache["index"])()[:, self.position] = interpreter.get_tensor(new["index"])[:, 0]
            logits = interpreter.get_tensor(runner.logits_output)[0, -1]
            self.position += 1
        return logits


class LiteRTRunner(Runner):
    name = "litert"

    def __init__(self, artifact_dir: str | Path, threads: int | None = None):
        folder = Path(artifact_dir)
        if not folder.is_dir():
            raise EdgeAsrError(f"LiteRT artifact folder not found: {folder}")
        meta = read_litert_metadata(folder / TFLITE_ENCODER_FILE)
        try:
            special = SpecialTokens.from_dict(meta["special_tokens"])
            n_mels, n_frames = int(meta["n_mels"]), int(meta["n_frames"])
            self.layers, self.max_seq_len = int(meta["decoder_layers"]), int(meta["max_seq_len"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgeAsrError(f"{folder / TFLITE_ENCODER_FILE} has malformed edgeasr metadata ({exc})") from exc
        super().__init__(load_tokenizer(folder / TOKENIZER_FILE), special, n_mels, n_frames)
        self.folder = folder
        self.encoder = _interpreter(folder / TFLITE_ENCODER_FILE, threads)
        self.decoder = _interpreter(folder / TFLITE_DECODER_FILE, threads)
        encoder_inputs, self.encoder_outputs = _signature(self.encoder)
        self.encoder_input = encoder_inputs[0]["index"]
        decoder_inputs, decoder_outputs = _signature(self.decoder)
        expected = 2 + 4 * self.layers
        if len(decoder_inputs) != expected or len(self.encoder_outputs) != 2 * self.layers:
            raise EdgeAsrError(
                f"{folder} holds a LiteRT pair of another shape ({len(decoder_inputs)} decoder inputs, "
                f"{expected} expected); re-export it"
            )
        # the decoder's signature (exporter/lower/whisper_modules.py StatelessTextDecoderModule), taken apart once
        self.token_input, self.position_input = decoder_inputs[0]["index"], decoder_inputs[1]["index"]
        self.cache_inputs = decoder_inputs[2 : 2 + 2 * self.layers]
        self.cross_inputs = decoder_inputs[2 + 2 * self.layers :]
        self.logits_output, self.new_kv_outputs = decoder_outputs[0]["index"], decoder_outputs[1:]

    def encode(self, features: np.ndarray) -> list[np.ndarray]:
        self.encoder.set_tensor(self.encoder_input, features[None].astype(np.float32))
        self.encoder.invoke()
        return [self.encoder.get_tensor(d["index"]) for d in self.encoder_outputs]

    def start_decoder(self, encoded: list[np.ndarray]) -> _LiteRTDecoderSession:
        return _LiteRTDecoderSession(self, encoded)


__all__ = ["LiteRTRunner", "read_litert_metadata", "read_plan_from_tflite"]
