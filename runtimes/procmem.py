"""Resident memory of this process, per phase: what export, personalize and the runtimes' own processes report
about themselves.

Linux keeps a high-water mark (VmHWM) that can be reset, so a phase's own peak is read by resetting it at
the phase's start; elsewhere only the peak since process start is available (getrusage).
"""

from __future__ import annotations

import resource
import sys


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark so the next reading covers only what follows; False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int | None:
    """A memory line of /proc/self/status (Linux) in bytes, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident set since the last reset (Linux), else since the process started."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def rss_bytes() -> int:
    """The resident set now (Linux); 0 where the OS does not say."""
    return _status_bytes("VmRSS") or 0
