"""The ExecuTorch ASR-runner backend: a `.pte` whose methods follow the contract of ExecuTorch's own ASR runner
(`Seq2SeqRunner`, Android `AsrModule`): `encoder` with one output, `text_decoder(ids, encoder_output,
cache_position)`, `get_eos_ids` (exporter/lower/executorch.py, PTE_LAYOUTS). Same ladder and kernels as `pte`."""

from __future__ import annotations

import shutil
from pathlib import Path

from exporter.lower.backend import Backend
from exporter.lower.pte_backend import bundle_tokenizer
from exporter.lower.settings import ATTENTIONS
from runtimes.contract import PTE_FILE, TOKENIZER_FILE
from runtimes.errors import EdgeAsrError


def lower(bundle, plan, folder: Path, n_frames: int, attention: str) -> None:
    from exporter.lower.executorch import lower_executorch

    lower_executorch(bundle, plan, folder / PTE_FILE, n_frames, attention, layout="runner")
    shutil.copyfile(bundle_tokenizer(bundle), folder / TOKENIZER_FILE)


def lower_lora(lora_bundle, nf4_plan, folder: Path, lora_info: dict, pte_mode: str):
    raise EdgeAsrError("NF4 + LoRA .pte files are not built in the ASR-runner layout yet; use --pte-layout edgeasr")


BACKEND = Backend(
    format="pte-runner",
    target="android",
    description="ExecuTorch .pte (XNNPACK) with the methods ExecuTorch's ASR runner calls",
    lower=lower,
    lower_lora=lower_lora,
    attentions=ATTENTIONS,
    memory_host="android",
)
