"""The choices lowering takes, in a module light enough for the CLI and the options to import (no torch)."""

from __future__ import annotations

# How the ExecuTorch encoder's attention is captured (exporter/lower/whisper_modules.py); the default first.
ATTENTIONS = ("eager", "sdpa")
DEFAULT_ATTENTION = ATTENTIONS[0]
# How a .pte carries an NF4 + LoRA model, which XNNPACK cannot run as NF4 (exporter/lower/executorch_lora.py).
PTE_MODES = ("branch-int8", "branch-int4", "merged-int8", "merged-int4")
DEFAULT_PTE_MODE = PTE_MODES[0]
