"""The runner process's allocator setting (runtimes/allocator.py): with glibc's mmap threshold fixed, large
freed blocks leave the resident set; under glibc's dynamic threshold they stay in the heap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtimes.allocator import _glibc

ROOT = Path(__file__).resolve().parents[1]

# In a fresh process: free one 16 MB block (glibc's dynamic threshold rises to 16 MB), then malloc four 8 MB
# blocks, each followed by a small block that pins the heap above it, touch them, free the big ones and
# print how much of them is still resident.
_PROBE = """
import ctypes, sys
from runtimes.allocator import fix_mmap_threshold
from runtimes.procmem import rss_bytes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
MB = 1 << 20
first = libc.malloc(16 * MB)
ctypes.memset(first, 1, 16 * MB)
libc.free(first)
before = rss_bytes()
big, pins = [], []
for _ in range(4):
    block = libc.malloc(8 * MB)
    ctypes.memset(block, 1, 8 * MB)
    big.append(block)
    pins.append(libc.malloc(100 * 1024))  # above every free chunk: carved from the heap's top
for block in big:
    libc.free(block)
print(rss_bytes() - before)
"""


def _retained_bytes(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(_glibc() is None, reason="the setting is glibc's (Linux)")
def test_fixed_mmap_threshold_returns_freed_blocks_to_the_os():
    assert _retained_bytes("dynamic") > 24 << 20  # freed, but still resident: the heap below the pins
    assert _retained_bytes("fixed") < 4 << 20
