"""The ONNX backend: encoder.onnx + decoder.onnx for ONNX Runtime's CPU provider (exporter/lower/onnx.py)."""

from __future__ import annotations

from pathlib import Path

from exporter.lower.backend import Backend


def lower(bundle, plan, folder: Path, n_frames: int, attention: str) -> None:
    from exporter.lower.onnx import lower_onnx

    lower_onnx(bundle, plan, folder, n_frames)  # attention is written out in the graph: nothing to choose


def lower_lora(lora_bundle, nf4_plan, folder: Path, lora_info: dict, pte_mode: str):
    from exporter.lower.onnx_lora import lower_onnx_lora

    lower_onnx_lora(lora_bundle, nf4_plan, folder, lora_info)  # NF4 runs as MatMulBnb4: stored as planned
    return nf4_plan


BACKEND = Backend(
    format="onnx",
    target="onnx",
    description="ONNX pair (ONNX Runtime, CPU)",
    lower=lower,
    lower_lora=lower_lora,
    attentions=("explicit",),  # written out in the graph
    memory_host="python",  # ONNX Runtime behaves the same on host and device
)
