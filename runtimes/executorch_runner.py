"""ExecuTorch runner: the .pte's `encoder` and KV-cache `text_decoder` methods through the Python runtime.

Special tokens and the mel size are read from the program's constant methods, not from file names, the same
way the Android app reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from exporter.audio import FULL_FRAMES
from exporter.errors import EdgeAsrError
from exporter.tokenizer import SpecialTokens
from runtimes.base import Runner


def _runtime():
    try:
        from executorch.kernels import quantized  # noqa: F401  registers the quantised embedding kernels
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise EdgeAsrError(f"the ExecuTorch runtime is not installed ({exc}); pip install executorch==1.5.1") from exc
    return Runtime.get()


def load_program(path: Path):
    if not path.is_file():
        raise EdgeAsrError(f"ExecuTorch program not found: {path}")
    try:
        return _runtime().load_program(str(path))
    except EdgeAsrError:
        raise
    except Exception as exc:  # the runtime raises RuntimeError/ValueError with status codes
        raise EdgeAsrError(f"cannot load ExecuTorch program {path}: {exc} (corrupt or not a .pte?)") from exc


def constant(program, name: str):
    """Value of a constant method (a list with one element)."""
    if name not in program.method_names:
        raise EdgeAsrError(f"the program has no {name!r} method; was it exported by edgeasr?")
    return program.load_method(name).execute(())[0]


def read_plan_from_pte(path: Path) -> dict:
    return json.loads(constant(load_program(Path(path)), "edgeasr_plan"))


class _ExecutorchDecoderSession:
    def __init__(self, method, encoded: tuple):
        self.method = method
        # The encoder's outputs exactly as the decoder takes them, between the token and the position:
        # each layer's cross-attention keys and values (older programs: the encoder's hidden states).
        self.encoded = encoded
        self.position = 0

    def step(self, tokens: list[int]) -> np.ndarray:
        logits = None
        for token in tokens:  # the exported decoder takes one token per call
            logits = self.method.execute((torch.tensor([[token]], dtype=torch.long), *self.encoded,
                                          torch.tensor([self.position], dtype=torch.long)))[0]
            self.position += 1
        return logits[0, -1].numpy()


class ExecutorchRunner(Runner):
    name = "executorch"

    def __init__(self, pte_path: Path, tokenizer):
        self.program = load_program(Path(pte_path))
        special = SpecialTokens.from_dict(json.loads(constant(self.program, "edgeasr_special_tokens")))
        # Programs exported before the audio context became an option take the full 30 s window.
        n_frames = int(constant(self.program, "get_n_frames")) if "get_n_frames" in self.program.method_names \
            else FULL_FRAMES
        super().__init__(tokenizer, special, int(constant(self.program, "get_n_mels")), n_frames)
        self.encoder = self.program.load_method("encoder")
        self.decoder = self.program.load_method("text_decoder")
        self.max_seq_len = int(constant(self.program, "get_max_seq_len"))

    def encode(self, features: np.ndarray) -> tuple:
        return tuple(self.encoder.execute((torch.from_numpy(features)[None],)))

    def start_decoder(self, encoded: tuple) -> _ExecutorchDecoderSession:
        return _ExecutorchDecoderSession(self.decoder, encoded)
