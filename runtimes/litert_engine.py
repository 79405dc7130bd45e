"""The LiteRT pair's computation on a TFLite interpreter, whichever package provides it.

Two engines run the encoder.tflite / decoder.tflite pair written by `exporter.lower.litert`: ai-edge-litert in
the runner's own process (runtimes/litert_runner.py), and tflite-runtime in a process of its own
(runtimes/tflite_process.py), since tflite-runtime needs numpy < 2 and the rest of edgeasr numpy 2. Both drive
the interpreters through this module, which therefore imports numpy and the standard library only.

The encoder returns every decoder layer's cross-attention keys and values. The decoder is stateless: each
step takes the self-attention cache and returns the new keys and values, which are written into its cache
input at the step's position. The cache and the cross-attention tensors live in the interpreter's own input
buffers, written in place, so a step copies one position per layer rather than the whole cache.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtimes.errors import EdgeAsrError


def open_interpreter(interpreter_class: Callable, path: Path, threads: int | None):
    """`interpreter_class(model_path=..., num_threads=...)` with its tensors allocated; a file the
    interpreter cannot load is a clear error naming it."""
    if not path.is_file():
        raise EdgeAsrError(f"LiteRT model not found: {path} (export with --target litert first)")
    try:
        interpreter = interpreter_class(model_path=str(path), num_threads=threads or 1)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgeAsrError(f"{path} is not a loadable LiteRT model: {first_line}") from exc
    return interpreter


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


class LiteRTPair:
    """The encoder and the stateless decoder of one artifact, in one interpreter each."""

    def __init__(self, interpreter_class: Callable, folder: Path, files: tuple[str, str], layers: int, threads):
        self.layers = layers
        self.encoder = open_interpreter(interpreter_class, folder / files[0], threads)
        self.decoder = open_interpreter(interpreter_class, folder / files[1], threads)
        encoder_inputs, self.encoder_outputs = _signature(self.encoder)
        self.encoder_input = encoder_inputs[0]["index"]
        decoder_inputs, decoder_outputs = _signature(self.decoder)
        expected = 2 + 4 * layers
        if len(decoder_inputs) != expected or len(self.encoder_outputs) != 2 * layers:
            raise EdgeAsrError(
                f"{folder} holds a LiteRT pair of another shape ({len(decoder_inputs)} decoder inputs, "
                f"{expected} expected); re-export it"
            )
        # the decoder's signature (exporter/lower/whisper_modules.py StatelessTextDecoderModule), taken apart once
        self.token_input, self.position_input = decoder_inputs[0]["index"], decoder_inputs[1]["index"]
        self.cache_inputs = decoder_inputs[2 : 2 + 2 * layers]
        self.cross_inputs = decoder_inputs[2 + 2 * layers :]
        self.logits_output, self.new_kv_outputs = decoder_outputs[0]["index"], decoder_outputs[1:]

    def encode(self, features: np.ndarray) -> list[np.ndarray]:
        """Cross-attention keys and values of every decoder layer for (n_mels, n_frames) features."""
        self.encoder.set_tensor(self.encoder_input, features[None].astype(np.float32))
        self.encoder.invoke()
        return [self.encoder.get_tensor(d["index"]) for d in self.encoder_outputs]

    def reset(self, cross: list[np.ndarray]) -> None:
        """Start a sequence attending to `cross` (what `encode` returned), with an empty cache."""
        for detail, tensor in zip(self.cross_inputs, cross, strict=True):
            self.decoder.set_tensor(detail["index"], tensor)
        # Slots at and after the position are masked by adding the most negative float to their scores, which
        # only works on finite values: the interpreter's input buffers start as whatever memory it was given
        # (NaN patterns included), so the cache is zeroed once per sequence.
        for detail in self.cache_inputs:
            self.decoder.tensor(detail["index"])().fill(0.0)

    def step(self, token: int, position: int) -> np.ndarray:
        """Logits (vocab,) after `token` at `position`; its keys and values join the cache."""
        decoder = self.decoder
        decoder.set_tensor(self.token_input, np.array([[token]], dtype=np.int32))
        decoder.set_tensor(self.position_input, np.array([position], dtype=np.int32))
        decoder.invoke()
        for cache, new in zip(self.cache_inputs, self.new_kv_outputs, strict=True):
            # write this position's keys / values into the cache input, in place
            decoder.tensor(cache["index"])()[:, position] = decoder.get_tensor(new["index"])[:, 0]
        return decoder.get_tensor(self.logits_output)[0, -1]


class PositionSession:
    """A decoder session over a one-token `step(token, position)`: counts positions and stops at the cache's end."""

    def __init__(self, step_one: Callable[[int, int], np.ndarray], max_seq_len: int):
        self.step_one = step_one
        self.max_seq_len = max_seq_len
        self.position = 0

    def step(self, tokens: list[int]) -> np.ndarray:
        logits = None
        for token in tokens:
            if self.position >= self.max_seq_len:
                raise EdgeAsrError(f"the decoder cache is full ({self.max_seq_len} positions)")
            logits = self.step_one(token, self.position)
            self.position += 1
        return logits
