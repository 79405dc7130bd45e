"""The choices lowering takes, in a module light enough for the CLI and the options to import (no torch)."""

from __future__ import annotations

# How the ExecuTorch encoder's attention is captured (exporter/lower/whisper_modules.py); the default first.
# chunked: eager's arithmetic over slices of the queries (QUERY_CHUNKS), so no whole attention map is held.
# It is the default: on the same tiny.en 45 MB plan (benchmarks/results/pte_memory_*.md, 80 clips) it ran in
# 102 MB above the runtime's baseline against eager's 239 (with its delegates in program order,
# exporter/lower/program_order.py; 145 in ExecuTorch's breadth-first order), the same 80 transcripts, no
# slower (353 vs 387 ms median through ExecuTorch's C++ runtime). eager (HF's own) and sdpa stay as options.
ATTENTIONS = ("chunked", "eager", "sdpa")
# The encoder's queries in this many slices under "chunked": XNNPACK concatenates at most 5 tensors in one op,
# so 5 keeps the concatenation inside the delegate. (10 slices, concatenated in two steps: tiny.en's worker
# peak only 105 -> 102 MB, by hand; the FFN's two [T, 4d] tensors are as large as a slice's two maps.)
QUERY_CHUNKS = 5
DEFAULT_ATTENTION = ATTENTIONS[0]
# How a .pte carries an NF4 + LoRA model, which XNNPACK cannot run as NF4 (exporter/lower/executorch_lora.py).
PTE_MODES = ("branch-int8", "branch-int4", "merged-int8", "merged-int4")
DEFAULT_PTE_MODE = PTE_MODES[0]
