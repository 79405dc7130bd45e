"""The ExecuTorch ASR-runner backend: a `.pte` whose methods follow the contract of ExecuTorch's own ASR runner
(`Seq2SeqRunner`, Android `AsrModule`): `encoder` with one output, `text_decoder(ids, encoder_output,
cache_position)`, `get_eos_ids` (exporter/lower/executorch.py, PTE_LAYOUTS). Same ladder and kernels as `pte`.
Beside it: the model's tokenizer.json and the preprocessor program the runner computes features with."""

from __future__ import annotations

import shutil
from pathlib import Path

from exporter.io import atomic_path
from exporter.lower.backend import Backend
from exporter.lower.pte_backend import bundle_tokenizer
from exporter.lower.settings import ATTENTIONS
from runtimes.contract import PTE_FILE, PTE_PREPROCESSOR_FILE, TOKENIZER_FILE


def lower(bundle, plan, folder: Path, n_frames: int, attention: str) -> None:
    from exporter.lower.executorch import lower_executorch

    lower_executorch(bundle, plan, folder / PTE_FILE, n_frames, attention, layout="runner")
    shutil.copyfile(bundle_tokenizer(bundle), folder / TOKENIZER_FILE)
    write_preprocessor(bundle.n_mels, folder / PTE_PREPROCESSOR_FILE)


# The longest audio the preprocessor takes, in seconds: ten 30 s windows, stacked on the output's first axis.
PREPROCESSOR_MAX_SECONDS = 300


def write_preprocessor(n_mels: int, path: Path) -> None:
    """ExecuTorch's own Whisper front end (executorch.extension.audio.mel_spectrogram, XNNPACK) as a program:
    `forward(samples [N] float32 at 16 kHz)` -> log-mel `[ceil(N / 30 s), n_mels, 3000]`, each 30 s window
    as Whisper's feature extractor computes it (within 1e-4 of runtimes.audio.log_mel; tested). The runner's
    `--processor_path` (and the Android AsrModule) takes it; its 80 kB are counted in the budget."""
    import contextlib
    import io
    import warnings

    from executorch.extension.audio.mel_spectrogram import export_processor

    with atomic_path(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        export_processor(str(tmp), feature_size=n_mels, stack_output=True, max_audio_len=PREPROCESSOR_MAX_SECONDS)


def lower_lora(lora_bundle, nf4_plan, folder: Path, lora_info: dict, pte_mode: str):
    """As the edgeasr layout's (branch modes: the user's adapter in adapter.ptd, which Android's AsrModule
    takes as its `dataPath`), plus the tokenizer and the preprocessor program."""
    from exporter.lower.executorch_lora import lower_executorch_lora

    stored = lower_executorch_lora(lora_bundle, nf4_plan, pte_mode, folder / PTE_FILE, lora_info, layout="runner")
    shutil.copyfile(bundle_tokenizer(lora_bundle), folder / TOKENIZER_FILE)
    write_preprocessor(lora_bundle.n_mels, folder / PTE_PREPROCESSOR_FILE)
    return stored


BACKEND = Backend(
    format="pte-runner",
    target="android",
    description="ExecuTorch .pte (XNNPACK) with the methods ExecuTorch's ASR runner calls",
    lower=lower,
    lower_lora=lower_lora,
    attentions=ATTENTIONS,
    memory_host="android",
)
