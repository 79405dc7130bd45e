"""The sherpa-onnx backend: the ONNX pair sherpa-onnx's Whisper recognizer loads, plus its tokens.txt
(exporter/lower/onnx_sherpa.py). Planned on the onnx ladder: the same ONNX Runtime kernels run it."""

from __future__ import annotations

from pathlib import Path

from exporter.lower.backend import Backend


def lower(bundle, plan, folder: Path, n_frames: int, attention: str) -> None:
    from exporter.lower.onnx_sherpa import lower_onnx_sherpa

    lower_onnx_sherpa(bundle, plan, folder, n_frames)  # attention is written out in the graph


def lower_lora(lora_bundle, nf4_plan, folder: Path, lora_info: dict, pte_mode: str):
    from exporter.lower.onnx_sherpa import lower_onnx_sherpa_lora

    lower_onnx_sherpa_lora(lora_bundle, nf4_plan, folder, lora_info)  # NF4 as MatMulBnb4: stored as planned
    return nf4_plan


BACKEND = Backend(
    format="sherpa",
    target="onnx",
    description="ONNX pair in sherpa-onnx's layout, with tokens.txt (sherpa-onnx, ONNX Runtime)",
    lower=lower,
    lower_lora=lower_lora,
    attentions=("explicit",),
    memory_host="python",
    # sherpa-onnx runs the pair in ONNX Runtime: the same weights and activations; its fixed 448-token
    # self-attention cache is the growing cache's largest size.
    memory_model="onnx",
    clients=("sherpa-onnx",),
    framing="client",
    short_contexts=False,
)
