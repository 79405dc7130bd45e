"""A fleet worker: loads the base model once, then exports user after user with it.

`FleetWorker` is a plain class; exporter/fleet/run.py makes it a Ray actor. Each user's export is
`exporter.export.export` with the loaded model handed in, so it writes the files a fresh `edgeasr export`
writes (the export copies the model before quantising it and leaves it as it was). A user's failure comes
back as a result, never as an exception: an input error (`EdgeAsrError`: a corrupt clip, an impossible
budget) is final; anything else may be retried by the driver on a fresh attempt.
"""

from __future__ import annotations

import os
import time
import traceback

from exporter.fleet.store import FleetStore
from exporter.fleet.users import UserJob
from runtimes.errors import EdgeAsrError
from runtimes.procmem import peak_rss_bytes, reset_peak_rss, rss_bytes


class FleetWorker:
    def __init__(self, model: str, out: str, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        self.model_name = model
        self.store = FleetStore(out)
        self.threads = threads
        self.bundle = None
        self.load_seconds = 0.0
        self.users_done = 0
        self.peak_bytes = 0

    def _model(self):
        if self.bundle is None:
            from exporter.models import load_whisper

            started = time.perf_counter()
            self.bundle = load_whisper(self.model_name)
            self.load_seconds = round(time.perf_counter() - started, 1)
        return self.bundle

    def export_user(self, job: UserJob) -> dict:
        """Export `job`'s user into the store; a dict for the user's record (status ok / failed / error)."""
        from exporter.export.run import export

        started = time.perf_counter()
        result = {"user": job.user, "worker": os.getpid(), "key": job.key}
        reset_peak_rss()
        stage_peak = 0.0
        try:
            bundle = self._model()
            staged = self.store.staging(job.user)
            summary = export(job.options, staged, progress=False, model=bundle)
            published = self.store.publish(job.user, staged)
            result.update(status="ok", stages=_stages(summary), **published)
            # the export resets the kernel's high-water mark at each stage: its own peak is the stages' max
            stage_peak = max(_stages(summary, "stage_peak_rss_mb").values(), default=0.0) * 1e6
        except EdgeAsrError as exc:
            result.update(status="failed", error=str(exc), retryable=False)
        except Exception as exc:  # noqa: BLE001 - reported per user, the fleet goes on
            result.update(
                status="error",
                error=f"{type(exc).__name__}: {exc}",
                retryable=True,
                traceback=traceback.format_exc(limit=8),
            )
        peak = max(peak_rss_bytes(), int(stage_peak))
        self.peak_bytes = max(self.peak_bytes, peak)
        self.users_done += 1
        result.update(seconds=round(time.perf_counter() - started, 1), peak_rss_mb=round(peak / 1e6, 1))
        return result

    def stats(self) -> dict:
        """This worker's process: model load seconds, users served, peak and current resident memory."""
        return {
            "worker": os.getpid(),
            "threads": self.threads,
            "load_seconds": self.load_seconds,
            "users": self.users_done,
            "peak_rss_mb": round(max(self.peak_bytes, peak_rss_bytes()) / 1e6, 1),
            "rss_mb": round(rss_bytes() / 1e6, 1),
        }


def _stages(summary: dict, key: str = "stages") -> dict[str, float]:
    from exporter.export.stages import stage_values

    return stage_values(summary, key)
