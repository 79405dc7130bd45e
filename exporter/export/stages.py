"""Progress lines and per-stage cost (wall seconds, peak memory) of an export."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from runtimes.procmem import peak_rss_bytes, reset_peak_rss


def say(message: str) -> None:
    """One progress line on stderr (stdout stays for results)."""
    print(f"[export] {message}", file=sys.stderr, flush=True)


class StageTimes:
    """Wall seconds and peak resident memory per export stage, in the order the stages first ran (seconds
    summed, peaks maxed over repeats, such as a re-plan after an over-budget attempt); export.json keeps
    them so a slow or memory-hungry export says which stage it was. Peaks are per stage where the OS can
    reset its high-water mark (Linux), else the process's peak so far."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        reset_peak_rss()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - started, 1)
            self.peak_rss_mb[stage] = max(self.peak_rss_mb.get(stage, 0.0), round(peak_rss_bytes() / 1e6, 1))


def stage_values(summary: dict, key: str = "stages") -> dict[str, float]:
    """One export.json's per-stage `key` ("stages" or "stage_peak_rss_mb") as one mapping: the shared stages,
    then each artifact's, named `format.stage` (e.g. `pte.lower`); empty for an export that predates them."""
    values = dict(summary.get(key, {}))
    for artifact in summary.get("artifacts", []):
        values.update({f"{artifact['format']}.{name}": v for name, v in artifact.get(key, {}).items()})
    return values


def describe_stages(seconds: dict[str, float], peaks: dict[str, float] | None = None) -> str:
    peaks = peaks or {}
    return ", ".join(
        f"{name} {value:.0f} s" + (f" / {peaks[name]:,.0f} MB peak" if name in peaks else "")
        for name, value in seconds.items()
    )
