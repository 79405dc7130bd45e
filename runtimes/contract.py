"""The artifact contract, spelled once: file names, metadata keys and program methods of an edgeasr artifact.

The lowering (`exporter.lower`) writes these names and the runners read them, so both import them from
here, below either of them (as gguf-py keeps its keys below both writer and reader). This module imports
nothing but the error type.

An export folder holds its first format's files at the top and any other format in a subfolder named
after that format (`edgeasr export --formats pte,onnx` puts the ONNX pair in `onnx/`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtimes.errors import EdgeAsrError

# Files.
PTE_FILE = "model.pte"
# The ASR-runner layout ships ExecuTorch's own log-mel front end beside the program: samples -> [chunks, n_mels,
# 3000] features, as the runner's --processor_path expects (exporter/lower/pte_runner_backend.py)
PTE_PREPROCESSOR_FILE = "preprocessor.pte"
PTE_ADAPTER_FILE = "adapter.ptd"  # one user's LoRA tensors for a base .pte that keeps its adapter apart
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
TOKENIZER_FILE = "tokenizer.json"  # the runners decode with it; the budget does not count it
PLAN_FILE = "plan.json"  # the plan the artifact was lowered from (the artifact carries it too)
MEMORY_FILE = "memory.json"  # predicted runtime memory (exporter.memory)
SUMMARY_FILE = "export.json"  # what `edgeasr export` did, per artifact
REPORT_FILE = "report.md"
ENCODER_ADAPTER_FILE = "encoder.onnx_adapter"  # one user's LoRA parameters for an NF4 + LoRA ONNX pair
DECODER_ADAPTER_FILE = "decoder.onnx_adapter"
CHECKSUM_FILE = "checksums.json"  # sha256 of each file the export wrote in the folder (runtimes.integrity)
SHERPA_TOKENS_FILE = "tokens.txt"  # sherpa-onnx's vocabulary, beside a sherpa-layout ONNX pair
TFLITE_ENCODER_FILE = "encoder.tflite"  # the LiteRT pair (exporter/lower/litert.py)
TFLITE_DECODER_FILE = "decoder.tflite"
# The flatbuffer metadata entry of both LiteRT graphs: JSON with the plan, special tokens and shapes.
LITERT_METADATA = "edgeasr"

# ONNX metadata_props keys (on both graphs of the pair).
META_PLAN = "edgeasr.plan"
META_SPECIAL = "edgeasr.special_tokens"
META_N_MELS = "edgeasr.n_mels"
META_MODEL_ID = "edgeasr.model_id"
META_GRAPH = "edgeasr.graph"
META_N_FRAMES = "edgeasr.n_frames"  # the encoder's input frames (3000 unless a shorter audio context)
META_LORA = "edgeasr.lora"
META_LAYOUT = "edgeasr.layout"  # "sherpa" for the pair sherpa-onnx loads; absent on edgeasr's own layout

# ExecuTorch program methods: the two the runner executes, and constant methods (a list of one value).
PTE_ENCODER = "encoder"
PTE_TEXT_DECODER = "text_decoder"
PTE_PLAN = "edgeasr_plan"
PTE_SPECIAL = "edgeasr_special_tokens"
PTE_ATTENTION = "edgeasr_attention"
PTE_N_MELS = "get_n_mels"
PTE_N_FRAMES = "get_n_frames"
PTE_MAX_SEQ_LEN = "get_max_seq_len"
PTE_LAYOUT = "edgeasr_layout"  # "runner" for ExecuTorch's ASR-runner layout; absent on edgeasr's own
PTE_EOS_IDS = "get_eos_ids"  # the ASR runner's end-of-sequence ids (runner layout)
PTE_ADAPTER = "edgeasr_adapter"  # the adapter files a base program takes (runtimes/pte_adapter.py); absent if none


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of artifact a runtime runs: its export format, its files, where an export folder keeps it."""

    runtime: str  # the runner's name (`edgeasr bench --runtime`)
    format: str  # the export format (`edgeasr export --formats`)
    entry_file: str  # the file whose presence marks a folder as holding this kind
    files: tuple[str, ...]  # what the runner loads
    subfolders: tuple[str, ...]  # where to look below an export folder ("" is the folder itself)
    also_formats: tuple[str, ...] = ()  # other export formats whose files this runtime runs (other layouts)

    def find(self, root: str | Path) -> Path | None:
        """The folder under `root` that holds this kind, or None."""
        root = Path(root)
        for name in self.subfolders:
            candidate = root / name if name else root
            if (candidate / self.entry_file).is_file():
                return candidate
        return None


# Runtime name -> kind. A new artifact runtime adds its runner module and one entry here.
KINDS = {
    # "executorch": older export folders named the .pte subfolder after the runtime, not the format
    # (and the ASR-runner layout, format pte-runner, in its own subfolder when it is a second format)
    "executorch": ArtifactKind(
        "executorch",
        "pte",
        PTE_FILE,
        (PTE_FILE, TOKENIZER_FILE),
        ("", "pte", "executorch", "pte-runner"),
        ("pte-runner",),
    ),
    # edgeasr's ONNX runner runs both ONNX layouts (its own, and sherpa's in a `sherpa/` subfolder)
    "onnx": ArtifactKind(
        "onnx", "onnx", ENCODER_FILE, (ENCODER_FILE, DECODER_FILE, TOKENIZER_FILE), ("", "onnx", "sherpa")
    ),
    # format tflite-runtime: the same pair on the ladder tflite-runtime computes correctly
    "litert": ArtifactKind(
        "litert",
        "tflite",
        TFLITE_ENCODER_FILE,
        (TFLITE_ENCODER_FILE, TFLITE_DECODER_FILE, TOKENIZER_FILE),
        ("", "tflite", "tflite-runtime"),
        ("tflite-runtime",),
    ),
    # sherpa-onnx itself, on the sherpa layout only: tokens.txt marks it
    "sherpa-onnx": ArtifactKind(
        "sherpa-onnx", "sherpa", SHERPA_TOKENS_FILE, (ENCODER_FILE, DECODER_FILE, SHERPA_TOKENS_FILE), ("", "sherpa")
    ),
}


# Runtimes that run another runtime's artifact kind with an engine of their own: runtime -> that kind's runtime.
# tflite-runtime (the older TFLite package, in its own environment and process: runtimes/tflite_process.py)
# runs the LiteRT pair, where every layer is in a format it computes correctly (TFLITE_RUNTIME_FORMATS).
# executorch-native runs the .pte with ExecuTorch's C++ runtime in a process without torch, as an app does
# (runtimes/pte_native.py).
ENGINES = {"tflite-runtime": "litert", "executorch-native": "executorch"}
RUNTIMES = (*KINDS, *ENGINES)


def pte_tokenizer_path(pte_path: Path) -> Path:
    """The tokenizer.json beside an ExecuTorch program; a clear error when either is missing."""
    if not pte_path.is_file():
        raise EdgeAsrError(f"ExecuTorch program not found: {pte_path}")
    tokenizer_path = pte_path.parent / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise EdgeAsrError(f"{pte_path.parent} has {pte_path.name} but no {TOKENIZER_FILE}")
    return tokenizer_path


def kind_for_runtime(runtime: str) -> ArtifactKind:
    """The artifact kind a runtime runs (its own, or the kind its engine runs)."""
    if runtime not in RUNTIMES:
        raise EdgeAsrError(f"unknown artifact runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    return KINDS[ENGINES.get(runtime, runtime)]


def kind_for_format(fmt: str) -> ArtifactKind:
    for kind in KINDS.values():
        if kind.format == fmt:
            return kind
    for kind in KINDS.values():
        if fmt in kind.also_formats:
            return kind
    raise EdgeAsrError(f"unknown artifact format {fmt!r}; choose from {', '.join(k.format for k in KINDS.values())}")
