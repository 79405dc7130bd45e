"""The ExecuTorch backend: one `.pte` with XNNPACK delegates (exporter/lower/executorch.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from exporter.lower.backend import Backend
from exporter.lower.settings import ATTENTIONS
from runtimes.contract import PTE_FILE, TOKENIZER_FILE
from runtimes.errors import EdgeAsrError


def bundle_tokenizer(bundle) -> Path:
    """The model's tokenizer.json, which ships beside the .pte (the runner and the app decode with it)."""
    if bundle.folder is None or not (bundle.folder / TOKENIZER_FILE).is_file():
        raise EdgeAsrError(f"model {bundle.model_id} has no tokenizer.json to ship with the artifact")
    return bundle.folder / TOKENIZER_FILE


def lower(bundle, plan, folder: Path, n_frames: int, attention: str) -> None:
    from exporter.lower.executorch import lower_executorch

    lower_executorch(bundle, plan, folder / PTE_FILE, n_frames, attention)
    shutil.copyfile(bundle_tokenizer(bundle), folder / TOKENIZER_FILE)


def lower_lora(lora_bundle, nf4_plan, folder: Path, lora_info: dict, pte_mode: str):
    from exporter.lower.executorch_lora import lower_executorch_lora

    stored = lower_executorch_lora(lora_bundle, nf4_plan, pte_mode, folder / PTE_FILE, lora_info)
    shutil.copyfile(bundle_tokenizer(lora_bundle), folder / TOKENIZER_FILE)
    return stored


BACKEND = Backend(
    format="pte",
    target="android",
    description="ExecuTorch .pte (XNNPACK)",
    lower=lower,
    lower_lora=lower_lora,
    attentions=ATTENTIONS,
    memory_host="android",  # ExecuTorch's C++ Module on the phone plans an arena per method
)
