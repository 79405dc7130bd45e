"""The LiteRT backend: encoder.tflite + decoder.tflite for ai-edge-litert (exporter/lower/litert.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from exporter.lower.backend import Backend
from exporter.lower.pte_backend import bundle_tokenizer
from runtimes.contract import TOKENIZER_FILE
from runtimes.errors import EdgeAsrError


def preflight() -> None:
    """The converter stack is an extra: say so before any model is loaded or planned."""
    from exporter.lower.litert import converter_missing

    missing = converter_missing()
    if missing:
        raise EdgeAsrError(missing)


def lower(bundle, plan, folder: Path, n_frames: int, attention: str) -> None:
    from exporter.lower.litert import lower_litert

    lower_litert(bundle, plan, folder, n_frames)  # attention is written out in the graph: nothing to choose
    shutil.copyfile(bundle_tokenizer(bundle), folder / TOKENIZER_FILE)


def lower_lora(lora_bundle, nf4_plan, folder: Path, lora_info: dict, pte_mode: str):
    raise EdgeAsrError(
        "LiteRT has no NF4 + LoRA lowering (its quantiser has no NF4 format); export --lora with --formats onnx or pte"
    )


BACKEND = Backend(
    format="tflite",
    target="litert",
    description="LiteRT pair (.tflite, ai-edge-litert / XNNPACK)",
    lower=lower,
    lower_lora=lower_lora,
    attentions=("explicit",),  # written out in the graph
    memory_host="python",  # the interpreter and its XNNPACK delegate behave the same on host and device
    preflight=preflight,
)
