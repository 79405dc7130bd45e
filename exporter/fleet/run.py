"""`edgeasr fleet`: one base model, many users' exports, on Ray (local by default, a cluster with an address).

1. read     the users file (exporter/fleet/users.py); rows with a problem of their own fail alone;
2. skip     users whose record says done for this very job and whose folder is still whole (resumable);
3. start    Ray (`ray.init()`: an embedded local cluster, nothing to start by hand; or `address`) and `workers`
            actors, each loading the base model once (exporter/fleet/worker.py);
4. export   users on whichever actor is free; an input error fails that user, anything else (a crashed
            worker included: it is replaced) is retried up to `retries` times; each result is recorded;
5. report   fleet.json and fleet.md (exporter/fleet/report.py): per user status, bytes, seconds, plan and
            artifact ids; totals, throughput, distinct artifacts, bytes stored against bytes as copies,
            each worker's peak memory.

On a cluster, the output folder must be one file system every node sees at the same path (the workers write
the users' folders), and every node needs edgeasr installed as on the driver.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from exporter.export.options import ExportOptions
from exporter.fleet.report import fleet_summary, render_markdown
from exporter.fleet.store import FleetStore
from exporter.fleet.users import UserJob, read_users
from exporter.io import write_json, write_text
from runtimes.errors import EdgeAsrError

# Reserved per worker when Ray schedules it (Ray's `memory` resource): above the peak a worker measured while
# exporting (fleet.json reports it: tiny.en 1.9 GB on onnx, 2.9 GB on android, benchmarks/results/fleet_*;
# base 3.1 GB in one export, export_cost.md), so a node never takes more workers than its memory holds.
WORKER_MEMORY_BYTES = {"tiny": 4 * 2**30, "tiny.en": 4 * 2**30, "base": 5 * 2**30, "base.en": 5 * 2**30}
DEFAULT_WORKER_MEMORY = 8 * 2**30


@dataclass(frozen=True)
class FleetOptions:
    users: Path
    out: Path
    defaults: ExportOptions
    address: str | None = None  # None: a local Ray cluster started for this run
    workers: int | None = None  # None: one per CPU Ray sees (at most one per user to do)
    threads: int = 1  # compute threads per worker
    retries: int = 1  # further attempts for a user whose export failed other than by an input error
    worker_memory: int | None = None  # bytes reserved per worker (None: by model, WORKER_MEMORY_BYTES)

    def __post_init__(self) -> None:
        for name, low in (("workers", 1), ("threads", 1), ("retries", 0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise EdgeAsrError(f"--{name} must be a whole number >= {low}, not {value!r}")
        if self.defaults.lora is not None:
            raise EdgeAsrError("the fleet makes myQASR exports from each user's clips; --lora is not a fleet option")

    @property
    def reserved_memory(self) -> int:
        if self.worker_memory is not None:
            return self.worker_memory
        return WORKER_MEMORY_BYTES.get(self.defaults.model, DEFAULT_WORKER_MEMORY)


def run_fleet(options: FleetOptions, progress: bool = True) -> dict:
    started = time.perf_counter()
    jobs = read_users(options.users, options.defaults)
    store = FleetStore(options.out).open()
    records: dict[str, dict] = {}
    todo: list[UserJob] = []
    for job in jobs:
        if job.error is not None:
            records[job.user] = {"user": job.user, "status": "failed", "error": job.error, "attempts": 0}
            store.write_record(job.user, {**records[job.user], "key": job.key})
        elif (done := store.completed(job.user, job.key)) is not None:
            records[job.user] = {**done, "status": "ok", "skipped": True}
        else:
            todo.append(job)
    skipped = sum(1 for r in records.values() if r.get("skipped"))
    _say(f"{len(jobs)} users: {skipped} already done, {len(todo)} to export, {len(jobs) - skipped - len(todo)} invalid")
    workers: list[dict] = []

    def record(job: UserJob, result: dict) -> None:  # as each user finishes: a run cut short keeps them
        records[job.user] = result
        store.write_record(job.user, {**result, "key": job.key})

    if todo:
        workers = _export_on_ray(options, todo, store, record, progress)
    wall = time.perf_counter() - started
    on_disk, as_copies = store.stored_bytes()
    summary = fleet_summary(options, jobs, records, workers, wall, on_disk, as_copies)
    write_json(store.root / "fleet.json", summary)
    write_text(store.root / "fleet.md", render_markdown(summary))
    return summary


def _export_on_ray(options: FleetOptions, todo: list[UserJob], store: FleetStore, record, progress: bool) -> list[dict]:
    """Export `todo` on Ray actors, calling `record(job, result)` as each user is done; returns the workers'
    stats."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report: the run needs no network
    try:
        import ray
    except ImportError as exc:
        raise EdgeAsrError("the fleet runs on Ray: install it with pip install 'edgeasr[fleet]'") from exc
    from tqdm import tqdm

    from exporter.fleet.worker import FleetWorker

    where = "start a local Ray" if options.address is None else f"join the Ray cluster at {options.address}"
    try:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        raise EdgeAsrError(f"cannot {where}: {exc}") from exc
    try:
        count = _worker_count(options, ray.cluster_resources(), len(todo))
        actor = ray.remote(FleetWorker).options(num_cpus=options.threads, memory=options.reserved_memory)
        out = str(store.root.resolve())

        def new_worker():
            return actor.remote(options.defaults.model, out, options.threads)

        idle = [new_worker() for _ in range(count)]
        _say(
            f"{count} worker(s), {options.threads} thread(s) each, {options.reserved_memory / 2**30:.1f} GiB reserved each"
        )
        pending = deque((job, 1) for job in todo)
        running: dict = {}
        done = ok = 0
        bar = tqdm(total=len(todo), unit="user", desc="fleet", disable=not progress, file=sys.stderr)
        while pending or running:
            while pending and idle:
                job, attempt = pending.popleft()
                worker = idle.pop()
                running[worker.export_user.remote(job)] = (job, worker, attempt)
            ready, _ = ray.wait(list(running), num_returns=1)
            job, worker, attempt = running.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:  # the worker process died (e.g. killed for memory)
                result = {"user": job.user, "status": "error", "error": f"worker died: {exc}", "retryable": True}
                worker = new_worker()
            idle.append(worker)
            result["attempts"] = attempt
            if result["status"] == "error" and result.get("retryable") and attempt <= options.retries:
                pending.append((job, attempt + 1))
                continue
            record(job, result)
            done, ok = done + 1, ok + (result["status"] == "ok")
            bar.update(1)
            bar.set_postfix(ok=ok, failed=done - ok)
        bar.close()
        return ray.get([w.stats.remote() for w in idle])
    finally:
        ray.shutdown()


def _worker_count(options: FleetOptions, resources: dict, users: int) -> int:
    """Workers to start: as asked (or one per `threads` CPUs), never more than users to do, and never more than
    the cluster's memory can hold at the reserved size: an actor Ray cannot place would wait for ever."""
    by_cpu = max(1, int(resources.get("CPU", 1)) // options.threads)
    by_memory = int(resources.get("memory", 0) // options.reserved_memory)
    if by_memory < 1:
        raise EdgeAsrError(
            f"Ray has {resources.get('memory', 0) / 2**30:.1f} GiB of memory to schedule on, less than one worker's "
            f"{options.reserved_memory / 2**30:.1f} GiB; give a smaller --worker-memory or a bigger machine"
        )
    return min(options.workers or by_cpu, by_memory, users)


def _say(message: str) -> None:
    print(f"[fleet] {message}", file=sys.stderr, flush=True)
