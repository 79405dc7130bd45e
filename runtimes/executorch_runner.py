"""ExecuTorch runner: the .pte's `encoder` and KV-cache `text_decoder` methods through the Python runtime.

Special tokens and the mel size are read from the program's constant methods, not from file names, the same
way the Android app reads them.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtimes.audio import FULL_FRAMES
from runtimes.base import Runner
from runtimes.contract import (
    PTE_ADAPTER,
    PTE_ATTENTION,
    PTE_ENCODER,
    PTE_MAX_SEQ_LEN,
    PTE_N_FRAMES,
    PTE_N_MELS,
    PTE_PLAN,
    PTE_SPECIAL,
    PTE_TEXT_DECODER,
    pte_tokenizer_path,
)
from runtimes.errors import EdgeAsrError
from runtimes.pte_adapter import adapter_path, check_adapter_use
from runtimes.tokenizer import SpecialTokens, load_tokenizer


def executorch_runtime():
    try:
        from executorch.kernels import quantized  # noqa: F401  registers the quantised embedding kernels
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise EdgeAsrError(f"the ExecuTorch runtime is not installed ({exc}); pip install executorch==1.5.1") from exc
    return Runtime.get()


def load_program(path: Path, data_path: Path | None = None):
    """The program at `path`; `data_path`: the separate data file its tagged constants live in (a per-user
    adapter file, checked by runtimes/pte_adapter.py before it gets here)."""
    if not path.is_file():
        raise EdgeAsrError(f"ExecuTorch program not found: {path}")
    runtime = executorch_runtime()
    log = io.StringIO()  # the runtime's own log of why it refused: folded into the one-line error
    try:
        with contextlib.redirect_stderr(log):
            if data_path is not None:
                return runtime.load_program(str(path), data_path=str(data_path))
            return runtime.load_program(str(path))
    except Exception as exc:  # the runtime raises RuntimeError/ValueError with status codes
        said = "; ".join(line.split("] ", 1)[-1] for line in log.getvalue().splitlines() if line.strip())
        raise EdgeAsrError(
            f"cannot load ExecuTorch program {path}: {exc}{f' ({said})' if said else ''}; the file is "
            "damaged or not a .pte: copy it again or re-export"
        ) from exc


def constant(program, name: str):
    """Value of a constant method (a list with one element)."""
    if name not in program.method_names:
        raise EdgeAsrError(f"the program has no {name!r} method; was it exported by edgeasr?")
    return program.load_method(name).execute(())[0]


def read_plan_from_pte(path: Path) -> dict:
    return json.loads(constant(load_program(Path(path)), PTE_PLAN))


def read_adapter_contract(path: Path) -> dict | None:
    """The adapter files a base program takes (exporter/lower/pte_adapter.py), or None for a program that
    holds all its weights. Constant methods load without the program's data file."""
    program = load_program(Path(path))
    return json.loads(constant(program, PTE_ADAPTER)) if PTE_ADAPTER in program.method_names else None


@dataclass(frozen=True)
class PteInfo:
    """What a .pte says of itself in its constant methods."""

    plan: dict
    n_frames: int  # the encoder's input frames
    attention: str  # how the encoder's attention was captured


def read_pte_info(path: Path) -> PteInfo:
    """The plan, audio context and attention stored in the program (a corrupt file fails here, clearly)."""
    program = load_program(Path(path))
    methods = program.method_names
    # Programs exported before the audio context / attention became options: 30 s window, sdpa.
    n_frames = int(constant(program, PTE_N_FRAMES)) if PTE_N_FRAMES in methods else FULL_FRAMES
    attention = str(constant(program, PTE_ATTENTION)) if PTE_ATTENTION in methods else "sdpa"
    return PteInfo(json.loads(constant(program, PTE_PLAN)), n_frames, attention)


_pool_threads: int | None = None  # what set_threads last sized the pool to (None: ExecuTorch's default)


def set_threads(threads: int) -> None:
    """Size XNNPACK's threadpool (process-wide in the Python runtime). Resetting the pool tears its threads
    down and starts new ones, so a request for the size it already has is a no-op."""
    global _pool_threads
    if threads == _pool_threads:
        return
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(threads)
    _pool_threads = threads


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
            logits = self.method.execute(
                (
                    torch.tensor([[token]], dtype=torch.long),
                    *self.encoded,
                    torch.tensor([self.position], dtype=torch.long),
                )
            )[0]
            self.position += 1
        return logits[0, -1].numpy()


class ExecutorchRunner(Runner):
    name = "executorch"

    def __init__(self, pte_path: Path, tokenizer, adapter: str | Path | None = None):
        """`adapter`: a user's adapter file for a base program that keeps its LoRA adapter apart (default: the
        adapter.ptd beside the program). The file is checked whole before the runtime sees it."""
        adapter = adapter_path(pte_path, adapter)
        self.program = load_program(Path(pte_path), adapter)
        check_adapter_use(pte_path, self.program.method_names, adapter)
        self.adapter = adapter
        special = SpecialTokens.from_dict(json.loads(constant(self.program, PTE_SPECIAL)))
        # Programs exported before the audio context became an option take the full 30 s window.
        n_frames = (
            int(constant(self.program, PTE_N_FRAMES)) if PTE_N_FRAMES in self.program.method_names else FULL_FRAMES
        )
        super().__init__(tokenizer, special, int(constant(self.program, PTE_N_MELS)), n_frames)
        self.encoder = self.program.load_method(PTE_ENCODER)
        self.decoder = self.program.load_method(PTE_TEXT_DECODER)
        self.max_seq_len = int(constant(self.program, PTE_MAX_SEQ_LEN))

    @classmethod
    def open(cls, pte_path: Path, threads: int | None = None, adapter: str | Path | None = None) -> ExecutorchRunner:
        """The program at `pte_path` with the tokenizer.json beside it; `threads` sizes XNNPACK's pool."""
        pte_path = Path(pte_path)
        tokenizer_path = pte_tokenizer_path(pte_path)
        # Sized before the program loads: XNNPACK's delegates keep the pool they were created with, and
        # resizing it afterwards (it is torn down and rebuilt) leaves them a dangling pool (an abort mid-run).
        if threads:
            set_threads(threads)
        return cls(pte_path, load_tokenizer(tokenizer_path), adapter)

    def encode(self, features: np.ndarray) -> tuple:
        return tuple(self.encoder.execute((torch.from_numpy(features)[None],)))

    def start_decoder(self, encoded: tuple) -> _ExecutorchDecoderSession:
        return _ExecutorchDecoderSession(self.decoder, encoded)
