"""Fitting an export into a runtime memory budget (`edgeasr export --memory-budget`).

Weight bits cannot shrink activations, and on a 30 s window the encoder's attention maps dominate. The
controls that do shrink them, cheapest first:

  attention  ExecuTorch exports use chunked attention by default (exporter/lower/whisper_modules.py): no
             attention map is planned and XNNPACK holds a fifth of one at a time (tiny.en: 37 MB of planned
             activations against eager's 117 and sdpa's 171). The others stay available with --attention,
             never chosen here;
  context    a shorter audio context: the encoder takes F < 3000 frames (F / 100 s of audio) and attends
             over F / 2 positions, so attention maps shrink with (F / 3000)^2. Clips longer than the context
             are transcribed window by window, and Whisper was trained on 30 s windows, so this can cost
             accuracy (measured in benchmarks/results/memory_controls_*.md).

fp16 activations are not offered: the targets run XNNPACK's int8-dynamic-activation kernels with float32
inputs (ExecuTorch) and ONNX Runtime's float32 MatMulNBits on this CPU; an fp16 path is unverified.

`choose_settings` predicts each candidate before lowering (structural estimate, `exporter.memory`) and keeps
the longest context that fits. After lowering, `check_artifact` re-estimates from the
artifact itself (its memory plan / graph) and fails if that is over the budget.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from exporter.lower.registry import get_backend
from exporter.lower.settings import DEFAULT_ATTENTION
from exporter.memory import MemoryEstimate, estimate_artifact, predict_before_lowering
from exporter.quant.budget import format_bytes
from runtimes.audio import FRAMES_PER_SECOND, FULL_FRAMES
from runtimes.errors import EdgeAsrError

CONTEXT_LADDER = (3000, 2000, 1500, 1000, 500)  # encoder frames tried, longest first (30, 20, 15, 10, 5 s)


@dataclass(frozen=True)
class MemorySettings:
    n_frames: int = FULL_FRAMES
    attention: str = DEFAULT_ATTENTION
    chosen_by: str = "default"  # default | user | memory budget

    @property
    def audio_seconds(self) -> float:
        return self.n_frames / FRAMES_PER_SECOND

    def describe(self) -> str:
        return f"{self.audio_seconds:g} s audio context ({self.n_frames} frames), {self.attention} attention"

    def to_dict(self) -> dict:
        return {**asdict(self), "audio_seconds": self.audio_seconds}


def frames_for_seconds(seconds: float) -> int:
    """Encoder frames for an audio context of `seconds` (even, at most 3000)."""
    frames = int(round(seconds * FRAMES_PER_SECOND / 2)) * 2 if math.isfinite(seconds) else 0
    if not 2 <= frames <= FULL_FRAMES:
        raise EdgeAsrError(f"--max-audio-seconds {seconds:g} is outside (0, 30]: Whisper's window is 30 s")
    return frames


def candidates(fmt: str, max_audio_seconds: float | None, attention: str | None) -> list[MemorySettings]:
    """Settings to try, in order of preference; options the user fixed are not varied."""
    allowed = get_backend(fmt).attentions
    if attention is not None and fmt == "pte" and attention not in allowed:
        raise EdgeAsrError(f"--attention {attention!r}: choose one of {', '.join(allowed)}")
    # Left open, the attention is the default: the others plan more memory, so they never fit first.
    attentions = (attention,) if attention is not None and fmt == "pte" else allowed[:1]
    if max_audio_seconds is not None:
        frames = (frames_for_seconds(max_audio_seconds),)
        by = "user"
    else:
        frames, by = (CONTEXT_LADDER if get_backend(fmt).short_contexts else (FULL_FRAMES,)), "memory budget"
    return [
        MemorySettings(f, a, by if (f, a) != (FULL_FRAMES, allowed[0]) else "default")
        for f in frames
        for a in attentions
    ]


def fixed_settings(fmt: str, max_audio_seconds: float | None, attention: str | None) -> MemorySettings:
    """The settings when no memory budget is given: the user's, else the 30 s window with the default attention."""
    first = candidates(fmt, max_audio_seconds, attention)[0]
    user = max_audio_seconds is not None or (attention is not None and fmt == "pte")
    return MemorySettings(first.n_frames, first.attention, "user" if user else "default")


def choose_settings(
    config,
    fmt: str,
    weight_bytes: int,
    largest_layer_bytes: int,
    memory_budget: int,
    max_audio_seconds: float | None = None,
    attention: str | None = None,
) -> tuple[MemorySettings, MemoryEstimate]:
    """The first candidate whose predicted peak fits `memory_budget`; a clear error if none does."""
    tried = []
    for settings in candidates(fmt, max_audio_seconds, attention):
        estimate = predict_before_lowering(
            config,
            weight_bytes,
            largest_layer_bytes,
            get_backend(fmt).memory_runtime,
            settings.n_frames,
            settings.attention,
            get_backend(fmt).memory_host,
        )
        if estimate.peak_bytes <= memory_budget:
            return settings, estimate
        tried.append((settings, estimate))
    smallest_settings, smallest = min(tried, key=lambda t: t[1].peak_bytes)
    raise EdgeAsrError(
        f"the {fmt} artifact cannot fit the memory budget of {format_bytes(memory_budget)}: the smallest "
        f"predicted peak is {format_bytes(smallest.peak_bytes)} (with {smallest_settings.describe()}; weights "
        f"{format_bytes(smallest.weights_bytes)}, activations {format_bytes(smallest.activation_bytes)}). "
        "Raise --memory-budget, lower --budget (smaller weights), or allow a shorter --max-audio-seconds"
        + ("" if get_backend(fmt).short_contexts else f" (not in the {fmt} layout: use --onnx-layout edgeasr)")
    )


def check_artifact(folder, fmt: str, config, memory_budget: int | None) -> dict[str, MemoryEstimate]:
    """Estimates from the lowered artifact for both hosts; raises if the target host's is over budget."""
    runtime = get_backend(fmt).memory_runtime
    estimates = {host: estimate_artifact(folder, runtime, config, host) for host in ("python", "android")}
    target = estimates[get_backend(fmt).memory_host]
    if memory_budget is not None and target.peak_bytes > memory_budget:
        raise EdgeAsrError(
            f"the lowered {fmt} artifact needs {format_bytes(target.peak_bytes)} at its predicted peak "
            f"({get_backend(fmt).memory_host}), over the memory budget of {format_bytes(memory_budget)}, although the "
            "estimate before lowering fitted; give a shorter --max-audio-seconds or a larger --memory-budget"
        )
    return estimates


__all__ = [
    "CONTEXT_LADDER",
    "MemorySettings",
    "check_artifact",
    "choose_settings",
    "fixed_settings",
    "frames_for_seconds",
]
