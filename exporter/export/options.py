"""What an export is asked to do: one dataclass of options, checked before anything expensive runs."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from exporter.choices import (
    DEFAULT_ALLOCATION,
    DEFAULT_CALIB_CLIPS,
    DEFAULT_CALIBRATION,
    DEFAULT_LAYER_COST,
    DEFAULT_ONNX_LAYOUT,
    DEFAULT_ORDER,
    DEFAULT_PTE_LAYOUT,
    DEFAULT_ROUNDING,
    ONNX_LAYOUTS,
    PTE_LAYOUTS,
    ROUNDINGS,
)
from exporter.lower.registry import get_backend, resolve_formats
from exporter.lower.settings import DEFAULT_PTE_MODE
from exporter.memory_budget import frames_for_seconds
from exporter.quant.budget import Budget
from runtimes.errors import EdgeAsrError


@dataclass(frozen=True)
class ExportOptions:
    model: str = "base"
    target: str = "android"
    budget: Budget | str | int = "80MB"  # parsed into a Budget when the options are made
    formats: tuple[str, ...] = ()
    calib: Path | None = None
    speaker: str | None = None  # only the calibration clips of this speaker (a manifest's speaker column)
    n_calib: int = DEFAULT_CALIB_CLIPS
    order: str = DEFAULT_ORDER
    allocation: str = DEFAULT_ALLOCATION
    layer_cost: str = DEFAULT_LAYER_COST  # knapsack only (choices.LAYER_COSTS)
    calibration: str = DEFAULT_CALIBRATION
    rounding: str = DEFAULT_ROUNDING  # nearest codes, GPTQ's on the user's activations, or auto (choices.ROUNDINGS)
    seed: int = 0
    parity_clips: int = 4
    # Parity tolerances. Each XNNPACK layer equals the simulation to float round-off, but the runtimes sum
    # in different orders and the differences flip a few int8 activation codes per layer, which changes a
    # word now and then on hard clips; a runtime that drops scales or mis-packs weights is off by orders of
    # magnitude and produces unrelated text.
    max_transcript_wer: float = 0.35  # artifact vs simulated transcripts: per-clip error rate (capped), mean
    max_logits_error: float = 0.5  # max |logits_artifact - logits_sim| / max |logits_sim|, first step
    max_plan_disagreement: float = 0.5  # beyond this the simulated plan itself has lost the FP transcripts
    memory_budget: Budget | str | int | None = None  # runtime RAM budget (peak, predicted by exporter.memory)
    max_audio_seconds: float | None = None  # audio context of the encoder (None: 30 s, or the budget's choice)
    attention: str | None = None  # ExecuTorch encoder attention (exporter.lower.settings.ATTENTIONS; None: default)
    # NF4 + LoRA (exporter/export/lora.py): an adapter folder from `edgeasr personalize`, and how the
    # .pte carries it (XNNPACK has no NF4; see exporter/lower/executorch_lora.py)
    lora: Path | None = None
    lora_pte_mode: str = DEFAULT_PTE_MODE
    onnx_layout: str = DEFAULT_ONNX_LAYOUT  # "sherpa": the ONNX pair sherpa-onnx loads (format "sherpa")
    pte_layout: str = DEFAULT_PTE_LAYOUT  # "runner": the methods ExecuTorch's ASR runner calls (format "pte-runner")

    def __post_init__(self) -> None:
        # Parsed and checked once, here: a malformed option is refused before any file is read or model loaded.
        object.__setattr__(self, "budget", Budget.parse(self.budget))
        if self.memory_budget is not None:
            object.__setattr__(self, "memory_budget", Budget.parse(self.memory_budget))
        for name in ("n_calib", "parity_clips"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EdgeAsrError(f"{name.replace('_', '-')} must be a whole number >= 1, not {value!r}")
        if self.speaker is not None and self.calib is None:
            raise EdgeAsrError("--speaker picks one speaker's clips from --calib; give --calib too")
        if self.max_audio_seconds is not None:
            frames_for_seconds(self.max_audio_seconds)  # refuses NaN, infinity and anything outside (0, 30]
        if self.onnx_layout not in ONNX_LAYOUTS:
            raise EdgeAsrError(f"unknown ONNX layout {self.onnx_layout!r}; choose {' or '.join(ONNX_LAYOUTS)}")
        if self.pte_layout not in PTE_LAYOUTS:
            raise EdgeAsrError(f"unknown .pte layout {self.pte_layout!r}; choose {' or '.join(PTE_LAYOUTS)}")
        if "sherpa" in self.resolved_formats():
            self._check_sherpa()
        self._check_rounding()

    def _check_rounding(self) -> None:
        if self.rounding not in ROUNDINGS:
            raise EdgeAsrError(f"unknown rounding {self.rounding!r}; choose one of {', '.join(ROUNDINGS)}")
        if self.rounding != "gptq":  # auto runs nearest wherever gptq would be refused below
            return
        if self.lora is not None:
            raise EdgeAsrError(
                "--rounding gptq rounds a planned model; an NF4 + LoRA export (--lora) keeps the codes its "
                "adapter was trained against: drop --rounding gptq"
            )
        from exporter.quant.gptq import check_gptq_target  # here, not at the top: it loads torch

        for fmt in self.resolved_formats():
            check_gptq_target(get_backend(fmt).target)

    def _check_sherpa(self) -> None:
        # sherpa-onnx feeds the encoder the clip's frames plus its tail padding, up to 3000: an encoder cut
        # to a shorter audio context would be fed more frames than it has positions for.
        if self.max_audio_seconds is not None and self.max_audio_seconds < 30:
            raise EdgeAsrError(
                f"the sherpa layout needs the full 30 s audio context (sherpa-onnx feeds up to 3000 frames); "
                f"drop --max-audio-seconds {self.max_audio_seconds:g} or use --onnx-layout edgeasr"
            )

    def resolved_formats(self) -> tuple[str, ...]:
        formats = resolve_formats(self.target, self.formats)
        # the layouts pick which files "onnx" and "pte" mean
        renamed = {"onnx": "sherpa" if self.onnx_layout == "sherpa" else "onnx"}
        renamed["pte"] = "pte-runner" if self.pte_layout == "runner" else "pte"
        return tuple(dict.fromkeys(renamed.get(f, f) for f in formats))

    @property
    def budget_bytes(self) -> int:
        return self.budget.bytes

    @property
    def memory_budget_bytes(self) -> int | None:
        return None if self.memory_budget is None else self.memory_budget.bytes

    def to_dict(self) -> dict:
        """JSON-ready, as export.json records it: paths and budgets as text (budgets as the user wrote them)."""
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}


def _json_value(value):
    if isinstance(value, Path | Budget):
        return str(value)
    return list(value) if isinstance(value, tuple) else value
