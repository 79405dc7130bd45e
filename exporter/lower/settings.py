"""The choices lowering takes, in a module light enough for the CLI and the options to import (no torch)."""

from __future__ import annotations

# How the ExecuTorch encoder's attention is captured (exporter/lower/whisper_modules.py); the default first.
# chunked: eager's arithmetic over slices of the queries (QUERY_CHUNKS), so a fifth of each attention map is
# alive at a time instead of all of it.
ATTENTIONS = ("eager", "sdpa", "chunked")
# The encoder's queries in this many slices under "chunked": XNNPACK concatenates at most 5 tensors in one op,
# so 5 keeps the concatenation inside the delegate.
QUERY_CHUNKS = 5
DEFAULT_ATTENTION = ATTENTIONS[0]
# How a .pte carries an NF4 + LoRA model, which XNNPACK cannot run as NF4 (exporter/lower/executorch_lora.py).
PTE_MODES = ("branch-int8", "branch-int4", "merged-int8", "merged-int4")
DEFAULT_PTE_MODE = PTE_MODES[0]
