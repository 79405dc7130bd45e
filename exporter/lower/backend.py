"""What a lowering backend is: one artifact format, the ladder it is planned on, and how it is lowered.

Each backend is one module in this package that defines a `Backend` (`pte_backend.py`, `onnx_backend.py`);
`registry.py` lists them. A new backend adds:
  - its lowering module (e.g. `exporter/lower/litert.py`) and a `<name>_backend.py` defining `BACKEND`;
  - its planning ladder in `exporter/quant/targets.py` (the formats the runtime really executes);
  - its runner in `runtimes/` and one `ArtifactKind` in `runtimes/artifact.py` (files, where they sit);
  - one line in `registry.py`.
Export, parity, inspect and bench then find it through the registry and the artifact contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtimes.contract import SHERPA_TOKENS_FILE, TOKENIZER_FILE, ArtifactKind, kind_for_format


@dataclass(frozen=True)
class Backend:
    format: str  # `edgeasr export --formats` value, and the subfolder of a second format in an export
    target: str  # the planning ladder (exporter.quant.targets) its plans are made on
    description: str
    # lower(bundle, plan, folder, n_frames, attention): write the artifact's files into folder
    lower: Callable[..., None]
    # lower_lora(lora_bundle, nf4_plan, folder, lora_info, pte_mode) -> the plan actually stored
    lower_lora: Callable[..., object]
    attentions: tuple[str, ...]  # how its encoder attention can be captured, the default first
    # The host whose predicted memory a --memory-budget is checked against (exporter.memory_budget): the
    # device the artifact is for where its runtime's memory differs there.
    memory_host: str
    memory_model: str | None = None  # the runtime whose memory model (exporter.memory) fits it; None: its own
    # Client runtimes (runtimes.contract.KINDS) that also run this artifact, with their own features and
    # decoding: the export checks that they transcribe the parity clips as edgeasr's runner does.
    clients: tuple[str, ...] = ()
    # How its runners frame a clip for the encoder: "window", a 30 s window (or the audio context); "client",
    # the clip's frames plus sherpa-onnx's tail of zero frames. The export's simulated reference frames the
    # same way, so parity compares one computation, not two inputs.
    framing: str = "window"
    # Whether it can be exported with a shorter audio context (encoder frames < 3000), the memory budget's
    # second control (exporter/memory_budget.py); sherpa-onnx feeds its encoder up to 3000 frames.
    short_contexts: bool = True
    # Checked before the model is loaded: raises a clear error when the lowering's own packages are missing.
    preflight: Callable[[], None] | None = None

    @property
    def memory_runtime(self) -> str:
        return self.memory_model or self.runtime

    @property
    def kind(self) -> ArtifactKind:
        """The artifact contract (files, runtime) this backend writes."""
        return kind_for_format(self.format)

    @property
    def runtime(self) -> str:
        return self.kind.runtime

    @staticmethod
    def budget_bytes(files: dict[str, int]) -> int:
        """What the budget counts: every artifact file except the vocabulary (tokenizer.json, sherpa's
        tokens.txt): the same for every budget and model size, and the app has it anyway."""
        return sum(size for name, size in files.items() if Path(name).name not in (TOKENIZER_FILE, SHERPA_TOKENS_FILE))
