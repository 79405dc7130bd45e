"""The C allocator of a runner's process: large freed blocks go back to the OS instead of staying resident.

With ONNX Runtime's arena off (runtimes/onnx_runner.py), every intermediate tensor is a malloc / free. glibc
serves blocks above its mmap threshold (128 KiB at start) with their own mappings, which a free unmaps; but
each free of such a block raises the threshold to that block's size (up to 32 MiB), so after the first
encoder layer the hidden states, feed-forward activations and attention outputs (3-12 MB each for base) are
carved from the heap, and a freed heap block stays resident until the heap's top is free. Fixing the
threshold (mallopt M_MMAP_THRESHOLD) turns the adjustment off for the whole process: freed tensors leave the
resident set, and every large tensor is mapped afresh, so each decoder step pays page faults for the
tensors it allocates. Measured on base's 46 MB sherpa pair: run peak 133-136 MB above the process's
baseline against 196-205 MB (benchmarks/results/onnx_memory_base.md, session 22's runner); CPU time about a
third higher in a hand probe of session 21's runner (22 english_misc clips, 1 thread: 58 -> 76 s). An Android app's allocator (bionic's scudo) has no such adjustment.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's starting value: blocks this large and up get their own mapping


def _glibc():
    """The process's C library when it is glibc (mallopt with M_MMAP_THRESHOLD), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only; musl and macOS's libc have no such symbol
        return libc
    except (OSError, AttributeError):
        return None


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve every block of `threshold` bytes or more with its own mapping, returned to the OS when freed.
    Process-wide and lasting. True when applied (glibc), False where the C library is not glibc."""
    libc = _glibc()
    return libc is not None and libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1
