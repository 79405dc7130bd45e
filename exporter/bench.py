"""`edgeasr bench`: what an exported artifact costs and how well it transcribes, per runtime and user group.

For every runtime asked for, a fresh Python process (`exporter.bench_worker`) loads the artifact and
transcribes the clips, so that its resident set holds that runtime and artifact only. From it come load
time, per-clip latency (after a warm-up; median and 90th percentile), real-time factor, and peak memory
while loading and while running (deltas over the process's baseline). This process then scores the
transcripts (collapsed WER, `exporter.scoring`) per group with n, adds the artifact's bytes against its
budget and the memory model's prediction (`exporter.memory`), and returns one record per metric in the
schema of `schemas/bench_result.schema.json`.

Runtimes: `torch-fp` (the PyTorch model in float32), `torch` (PyTorch simulating the artifact's plan),
`onnx` (ONNX Runtime on encoder.onnx/decoder.onnx), `executorch` (the ExecuTorch Python runtime on
model.pte, XNNPACK).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path

import numpy as np

from exporter.bench_schema import SCHEMA_VERSION
from exporter.bench_worker import RUNTIME_IMPORTS
from exporter.choices import BENCH_RUNTIMES
from exporter.data import Dataset, check_audio, load_dataset
from exporter.scoring import aggregate, count_errors
from runtimes.artifact import artifact_runtimes
from runtimes.audio import FULL_FRAMES
from runtimes.contract import (
    DECODER_FILE,
    ENCODER_FILE,
    KINDS,
    META_N_FRAMES,
    PLAN_FILE,
    PTE_FILE,
    RUNTIMES,
    TFLITE_DECODER_FILE,
    TFLITE_ENCODER_FILE,
    TOKENIZER_FILE,
)
from runtimes.errors import EdgeAsrError

BACKENDS = {
    "torch-fp": "eager",
    "torch": "eager, simulated plan",
    "onnx": "cpu",
    "executorch": "xnnpack",
    "sherpa-onnx": "OfflineRecognizer (ONNX Runtime cpu), its own features and greedy search",
    "litert": "ai-edge-litert interpreter, XNNPACK delegate",
    "tflite-runtime": "tflite-runtime interpreter, XNNPACK delegate, in its own process (memory: both processes)",
    "executorch-native": "ExecuTorch's C++ runtime, XNNPACK, in its own process without torch (memory: both processes)",
}
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


WORKER_BASE_SECONDS = 300.0  # start-up: imports and loading the artifact
WORKER_SECONDS_PER_CLIP = 60.0


@dataclass(frozen=True)
class BenchOptions:
    artifact: Path
    data: Path
    runtimes: tuple[str, ...] = ()  # default: every runtime the artifact folder has files for
    group_by: str | None = None
    split: str | None = None
    limit: int | None = None
    warmup: int = 1
    threads: int = 1
    # ONNX Runtime's CPU memory arena and memory patterns (ORT's defaults): on is about as fast and holds
    # more memory (runtimes/onnx_runner.py), so edgeasr's runner leaves them off
    onnx_memory_arena: bool = False
    # glibc's mmap threshold fixed in the ONNX worker, so freed tensors leave the resident set
    # (runtimes/allocator.py); False keeps glibc's dynamic threshold, which holds them in the heap
    onnx_return_freed_memory: bool = True
    # One user's LoRA adapter for an NF4 + LoRA artifact: adapter.ptd for a .pte, a folder of .onnx_adapter
    # files for ONNX (None: the adapter the export left in the folder).
    adapter: Path | None = None
    loop_guard: bool = True  # runtimes/decoding.py: stop a decoder loop at its first repeat
    # A worker that hangs (a deadlocked runtime, a swapping machine) is killed after this many seconds
    # (None: WORKER_BASE_SECONDS plus WORKER_SECONDS_PER_CLIP for each clip, generous on a loaded phone-class CPU).
    worker_timeout: float | None = None

    def worker_limit(self, n_clips: int) -> float:
        if self.worker_timeout is not None:
            return self.worker_timeout
        return WORKER_BASE_SECONDS + WORKER_SECONDS_PER_CLIP * (n_clips + self.warmup)

    def check(self) -> None:
        unknown = [r for r in self.runtimes if r not in BENCH_RUNTIMES]
        if unknown:
            raise EdgeAsrError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(BENCH_RUNTIMES)}")
        if self.warmup < 0 or self.threads < 1:
            raise EdgeAsrError("--warmup must be >= 0 and --threads >= 1")
        if self.limit is not None and self.limit < 1:
            raise EdgeAsrError("--limit must be at least 1")
        if self.adapter is not None and set(self.runtimes) & {"torch", "torch-fp", "sherpa-onnx"}:
            raise EdgeAsrError(
                "--adapter applies to the executorch, executorch-native and onnx runtimes only; run them alone with it"
            )
        if self.worker_timeout is not None and not self.worker_timeout > 0:
            raise EdgeAsrError(f"--worker-timeout must be a positive number of seconds, not {self.worker_timeout}")


@dataclass
class Target:
    """One runtime's side of the benchmark: what it loads and how the records describe it."""

    runtime: str
    folder: Path
    plan: dict
    artifact: dict  # the record's "artifact" object
    model_id: str
    n_frames: int = FULL_FRAMES


@dataclass
class BenchResult:
    records: list[dict]
    notes: list[str] = field(default_factory=list)
    transcripts: dict[str, list[dict]] = field(default_factory=dict)  # runtime -> per clip

    def to_dict(self) -> dict:
        from exporter import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "generated_by": f"edgeasr {__version__} bench",
            "notes": self.notes,
            "records": self.records,
        }


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Artifacts


def sha256_of(paths: list[Path]) -> str:
    """sha256 of one file, or of the lines '<sha256>  <name>' (sorted by name) for several."""
    digests = {}
    for path in paths:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digests[path.name] = h.hexdigest()
    if len(paths) == 1:
        return next(iter(digests.values()))
    manifest = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
    return hashlib.sha256(manifest.encode()).hexdigest()


# Where each artifact runtime's main file may sit in an export folder: the folder itself, or the subfolder
# `edgeasr export --formats pte,onnx` writes.
def _plan_json(path: Path) -> dict:
    if not path.is_file():
        raise EdgeAsrError(f"{path.parent} has no plan.json; give a folder written by `edgeasr export`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgeAsrError(f"{path} is not valid JSON ({exc.msg}); the artifact folder is damaged") from exc


def _label(folder: Path, root: Path, files: list[str]) -> str:
    prefix = root.name if folder == root else f"{root.name}/{folder.relative_to(root)}"
    return f"{prefix}/{'+'.join(files)}"


def _fp32_bytes(plan: dict) -> int:
    return plan["unquantised_bytes"] + sum(4 * int(np.prod(layer["shape"])) for layer in plan["layers"])


def _executorch_target(root: Path, runtime: str = "executorch") -> Target:
    folder = KINDS["executorch"].find(root)
    if folder is None:
        raise EdgeAsrError(f"{root} holds no model.pte, so runtime executorch has nothing to run")
    from runtimes.executorch_runner import read_pte_info

    pte = folder / PTE_FILE
    info = read_pte_info(pte)  # a corrupt file fails here, with a clear error
    plan, n_frames, attention = info.plan, info.n_frames, info.attention
    if not (folder / TOKENIZER_FILE).is_file():
        raise EdgeAsrError(f"{folder} has {PTE_FILE} but no {TOKENIZER_FILE}")
    artifact = {
        "name": _label(folder, root, [PTE_FILE]),
        "format": "pte",
        "sha256": sha256_of([pte]),
        "bytes": pte.stat().st_size,
        "budget_bytes": plan.get("budget_bytes"),
        "n_frames": n_frames,
        "attention": attention,
    }
    return Target(runtime, folder, plan, artifact, plan["model_id"], n_frames)


def _pair_artifact(folder: Path, root: Path, files: list[Path], fmt: str, plan: dict, n_frames: int) -> dict:
    """The artifact record of an encoder + decoder pair (ONNX, LiteRT): attention is written out in the graphs."""
    return {
        "name": _label(folder, root, [f.name for f in files]),
        "format": fmt,
        "sha256": sha256_of(files),
        "bytes": sum(p.stat().st_size for p in files),
        "budget_bytes": plan.get("budget_bytes"),
        "n_frames": n_frames,
        "attention": "explicit",
    }


def _onnx_target(root: Path, runtime: str = "onnx") -> Target:
    """edgeasr's ONNX runner, or (runtime sherpa-onnx) the client itself on a sherpa-layout pair."""
    from runtimes.onnx_runner import plan_from_metadata, read_metadata

    kind = KINDS[runtime]
    folder = kind.find(root)
    if folder is None:
        raise EdgeAsrError(f"{root} holds no {kind.entry_file}, so runtime {runtime} has nothing to run")
    files = [folder / ENCODER_FILE, folder / DECODER_FILE]
    # each graph parsed once: a corrupt file fails here, with a clear error
    encoder_metadata = read_metadata(files[0])
    read_metadata(files[1])
    plan = plan_from_metadata(encoder_metadata, files[0])
    n_frames = int(encoder_metadata.get(META_N_FRAMES, FULL_FRAMES))
    return Target(
        runtime,
        folder,
        plan,
        _pair_artifact(folder, root, files, kind.format, plan, n_frames),
        plan["model_id"],
        n_frames,
    )


def _litert_target(root: Path, runtime: str = "litert") -> Target:
    """ai-edge-litert's runner, or (runtime tflite-runtime) the older interpreter in its own process."""
    from runtimes.litert_runner import read_litert_metadata

    kind = KINDS["litert"]
    folder = kind.find(root)
    if folder is None:
        raise EdgeAsrError(f"{root} holds no {kind.entry_file}, so runtime {runtime} has nothing to run")
    files = [folder / TFLITE_ENCODER_FILE, folder / TFLITE_DECODER_FILE]
    metadata = read_litert_metadata(files[0])  # a corrupt file fails here, with a clear error
    read_litert_metadata(files[1])
    plan, n_frames = metadata["plan"], int(metadata["n_frames"])
    artifact = _pair_artifact(folder, root, files, kind.format, plan, n_frames)
    return Target(runtime, folder, plan, artifact, plan["model_id"], n_frames)


def _artifact_target(root: Path, runtime: str) -> Target:
    if runtime in ("executorch", "executorch-native"):
        return _executorch_target(root, runtime)
    if runtime in ("litert", "tflite-runtime"):
        return _litert_target(root, runtime)
    return _onnx_target(root, runtime)


def _torch_target(root: Path, runtime: str, n_frames: int) -> Target:
    plan_path = root / PLAN_FILE
    plan = _plan_json(plan_path)
    if runtime == "torch":
        artifact = {
            "name": _label(root, root, [PLAN_FILE]),
            "format": "plan",
            "sha256": sha256_of([plan_path]),
            "bytes": plan["totals"]["total"],
            "budget_bytes": plan.get("budget_bytes"),
            "n_frames": n_frames,
            "attention": None,
        }
    else:
        artifact = {
            "name": f"{plan['model_id']} float32",
            "format": "fp32",
            "sha256": None,
            "bytes": _fp32_bytes(plan),
            "budget_bytes": None,
            "n_frames": n_frames,
            "attention": None,
        }
    return Target(runtime, root, plan, artifact, plan["model_id"], n_frames)


def default_runtimes(root: Path) -> tuple[str, ...]:
    found = artifact_runtimes(root)
    if not found:
        raise EdgeAsrError(
            f"{root} holds no edgeasr artifact ({', '.join(sorted({k.entry_file for k in KINDS.values()}))}); "
            "give a folder written by `edgeasr export`"
        )
    if "litert" in found and _litert_target(root).plan.get("target") == "tflite-runtime":
        found += ("tflite-runtime",)  # a pair made for tflite-runtime: measured there too, beside ai-edge-litert
    return tuple(found)


def _artifact_context(root: Path) -> int:
    """The audio context (encoder frames) of the artifact in `root`, for torch runtimes benchmarked without
    its own runtime; 3000 where the folder holds only a plan."""
    for runtime in artifact_runtimes(root):
        return _artifact_target(root, runtime).n_frames
    return FULL_FRAMES


def resolve_targets(root: Path, runtimes: tuple[str, ...]) -> list[Target]:
    """The targets for `runtimes`, in the order given; the torch runtimes use the artifact's audio context."""
    root = Path(root)
    if not root.is_dir():
        raise EdgeAsrError(f"artifact folder not found: {root}")
    built = {}
    for runtime in runtimes:
        if runtime in RUNTIMES:
            built[runtime] = _artifact_target(root, runtime)
    primary = next(iter(built.values()), None)
    n_frames = primary.n_frames if primary else _artifact_context(root)
    for runtime in runtimes:
        if runtime in ("torch", "torch-fp"):
            built[runtime] = _torch_target(root, runtime, n_frames)
    return [built[r] for r in runtimes]


def check_runtime_available(runtime: str) -> None:
    """Fail before any measuring when a runtime's package is not importable, naming what to install."""
    if runtime == "tflite-runtime":  # its own environment, not this one's packages
        from runtimes.tflite_process import worker_python

        worker_python()
        return
    if runtime == "executorch-native":  # a C++ worker, compiled here once: a missing compiler fails now
        from runtimes.pte_native import build_worker

        build_worker()
        return
    module, install = RUNTIME_IMPORTS[runtime]
    try:
        import_module(module)
    except ImportError as exc:
        raise EdgeAsrError(
            f"runtime {runtime!r} needs the {module.split('.')[0]} package, which cannot be "
            f"imported ({exc}); install it with: {install}"
        ) from exc


# ---------------------------------------------------------------------------------------------------------
# The measured processes


def _clips(dataset: Dataset) -> list[dict]:
    return [
        {"utt_id": u.utt_id, "audio_path": str(u.audio_path), "sample_rate": u.sample_rate, "language": u.language}
        for u in dataset
    ]


def run_worker(target: Target, clips: list[dict], options: BenchOptions) -> dict:
    """Run one runtime in its own process; returns the worker's result dict."""
    spec = {
        "runtime": target.runtime,
        "artifact": str(target.folder),
        "clips": clips,
        "model_id": target.model_id,
        "plan": str(target.folder / PLAN_FILE),
        "n_frames": target.n_frames,
        "warmup": options.warmup,
        "threads": options.threads,
        "onnx_memory_arena": options.onnx_memory_arena,
        "onnx_return_freed_memory": options.onnx_return_freed_memory,
        "adapter": None if options.adapter is None else str(options.adapter),
        "loop_guard": options.loop_guard,
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = str(options.threads)
    with tempfile.TemporaryDirectory(prefix="edgeasr-bench-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter.bench_worker", str(spec_path), str(result_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        limit = options.worker_limit(len(clips))
        timed_out = threading.Event()

        def stop() -> None:  # the read loop below blocks until the worker's stderr closes: kill it from here
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(limit, stop)
        watchdog.start()
        tail: deque[str] = deque(maxlen=5)
        try:
            for line in proc.stderr:  # the worker's progress lines are shown; runtime chatter only on failure
                if line.startswith("[bench]"):
                    print(line, end="", file=sys.stderr, flush=True)
                else:
                    tail.append(line.rstrip())
            proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:  # interrupted (Ctrl-C): the worker goes too
                proc.kill()
                proc.wait()
        if timed_out.is_set():
            raise EdgeAsrError(
                f"the measured {target.runtime} process ran over its time limit of {limit:g} s on "
                f"{len(clips)} clips and was stopped; raise --worker-timeout or use fewer clips (--limit)"
            )
        if not result_path.is_file():
            raise EdgeAsrError(
                f"the measured {target.runtime} process died (exit {proc.returncode}) "
                f"without a result:\n" + "\n".join(tail)
            )
        outcome = json.loads(result_path.read_text())
    if "error" in outcome:
        raise EdgeAsrError(f"{target.runtime}: {outcome['error']}")
    return outcome["result"]


# ---------------------------------------------------------------------------------------------------------
# Records


def device_info() -> dict:
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    memory = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        first = meminfo.read_text().splitlines()[0].split()
        memory = int(first[1]) * 1024 if first[0] == "MemTotal:" else None
    return {
        "kind": "host",
        "name": name,
        "os": platform.platform(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "memory_bytes": memory,
    }


def _model(target: Target) -> dict:
    if target.runtime == "torch-fp":
        return {"name": target.model_id, "plan_target": None, "order": None, "calibration": None, "personalised": None}
    plan = target.plan
    return {
        "name": target.model_id,
        "plan_target": plan.get("target"),
        "order": plan.get("order"),
        "calibration": plan.get("calibration"),
        "personalised": plan.get("personalised"),
    }


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


def _speed_metrics(result: dict, warmup: int) -> list[tuple[str, float | None, str, dict]]:
    totals = [c["timings"]["total"] for c in result["clips"]]
    encodes = [c["timings"]["encode"] for c in result["clips"]]
    audio = sum(c["audio_seconds"] for c in result["clips"])
    return [
        ("load_time", _ms(result["load_seconds"]), "ms", {}),
        ("latency_median", _ms(statistics.median(totals)), "ms", {"warmup_runs": warmup}),
        ("latency_p90", _ms(float(np.percentile(totals, 90))), "ms", {}),
        ("encode_median", _ms(statistics.median(encodes)), "ms", {}),
        (
            "real_time_factor",
            round(sum(totals) / audio, 5) if audio else None,
            "ratio",
            {"audio_seconds": round(audio, 3), "compute_seconds": round(sum(totals), 3)},
        ),
    ]


def _memory_metrics(result: dict) -> list[tuple[str, float | None, str, dict]]:
    base = result["baseline_rss"]
    how = {"peak_method": result["peak_method"]}
    return [
        ("memory_baseline", base, "bytes", how),
        (
            "memory_load_peak",
            result["load_peak_rss"] - base,
            "bytes",
            {**how, "absolute_bytes": result["load_peak_rss"], "after_load_bytes": result["after_load_rss"] - base},
        ),
        ("memory_run_peak", result["run_peak_rss"] - base, "bytes", {**how, "absolute_bytes": result["run_peak_rss"]}),
    ]


def predicted_memory(target: Target, onnx_memory_arena: bool = False):
    """The memory model's estimate for an artifact runtime (None for the PyTorch runtimes)."""
    # executorch-native runs the .pte in ExecuTorch's C++ Module, as the Android demo does (an arena per
    # method, the file mapped), but reads the encoder's outputs in place where the demo copies them: host
    # "native" (exporter/memory.py)
    native = target.runtime == "executorch-native"
    kind = "executorch" if native else target.runtime
    if kind not in KINDS:  # the torch runtimes run a plan, not an artifact file
        return None
    from exporter.lower.registry import get_backend
    from exporter.memory import estimate_artifact, model_config

    runtime = get_backend(KINDS[kind].format).memory_runtime  # sherpa-onnx: ONNX Runtime's model
    host = "native" if native else "python"
    return estimate_artifact(
        target.folder, runtime, model_config(target.model_id), host, onnx_memory_arena=onnx_memory_arena
    )


def _scores(dataset: Dataset, texts: dict[str, str], group_by: str | None) -> list[tuple[str, object]]:
    """(group, Score) for 'all' and each group value, over the clips that have transcripts."""
    by_group: dict[str, list] = defaultdict(list)
    for utt in dataset:
        if utt.transcript is None:
            continue
        counts = count_errors(utt.transcript, texts[utt.utt_id], utt.language or "en")
        by_group["all"].append(counts)
        if group_by:
            by_group[utt.group(group_by)].append(counts)
    return [(group, aggregate(counts)) for group, counts in sorted(by_group.items(), key=lambda g: g[0] != "all")]


class _RecordMaker:
    def __init__(self, run_id: str, device: dict, data: dict):
        self.run_id, self.device, self.data = run_id, device, data

    def __call__(
        self,
        target: Target,
        runtime_info: dict,
        name: str,
        value,
        unit: str,
        group: str = "all",
        n: int = 0,
        extra: dict | None = None,
    ) -> dict:
        record = {
            "schema_version": SCHEMA_VERSION,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "run_id": self.run_id,
            "model": _model(target),
            "runtime": runtime_info,
            "artifact": target.artifact,
            "device": self.device,
            "data": self.data,
            "metric": {"name": name, "value": value, "unit": unit},
            "group": group,
            "n": n,
        }
        if extra:
            record["extra"] = extra
        return record


def _runtime_records(
    make: _RecordMaker, target: Target, result: dict, dataset: Dataset, options: BenchOptions
) -> list[dict]:
    backend = BACKENDS[target.runtime]
    if target.runtime == "onnx" and options.onnx_memory_arena:
        backend += ", memory arena and patterns"
    if target.runtime == "onnx" and not options.onnx_return_freed_memory:
        backend += ", glibc's dynamic mmap threshold"
    if not options.loop_guard and target.runtime != "sherpa-onnx":  # sherpa-onnx decodes by itself, unguarded
        backend += ", no loop guard"
    info = {
        "name": target.runtime,
        "version": result["runtime_version"],
        "backend": backend,
        "threads": result["threads"],
    }
    n = len(result["clips"])
    records = [
        make(target, info, name, value, unit, n=n, extra=extra)
        for name, value, unit, extra in _speed_metrics(result, options.warmup) + _memory_metrics(result)
    ]
    records.append(
        make(
            target,
            info,
            "artifact_bytes",
            target.artifact["bytes"],
            "bytes",
            extra={"budget_bytes": target.artifact["budget_bytes"]},
        )
    )
    estimate = predicted_memory(target, options.onnx_memory_arena)
    if estimate is not None:
        terms = {
            k: v
            for k, v in estimate.to_dict().items()
            if k.endswith("_bytes") or k in ("source", "detail", "run_phases")
        }
        records.append(make(target, info, "predicted_memory_load_peak", estimate.load_peak_bytes, "bytes", extra=terms))
        records.append(make(target, info, "predicted_memory_run_peak", estimate.run_peak_bytes, "bytes", extra=terms))
    texts = {c["utt_id"]: c["text"] for c in result["clips"]}
    for group, s in _scores(dataset, texts, options.group_by):
        records.append(
            make(
                target,
                info,
                "wer",
                None if s.wer is None else round(s.wer, 5),
                "ratio",
                group,
                s.n_clips,
                {"n_words": s.n_tokens, "errors": s.token_errors, "wer_plain": s.wer_plain, "cer": s.cer},
            )
        )
    return records


def _dataset(options: BenchOptions) -> Dataset:
    dataset = load_dataset(options.data)
    if options.split:
        dataset = dataset.filter(split=options.split)
    return dataset.head(options.limit)


def _check_dataset(dataset: Dataset, group_by: str | None) -> None:
    if group_by:
        for utt in dataset:
            utt.group(group_by)  # every clip needs the group value; fail before measuring
    ids = [u.utt_id for u in dataset]
    if len(set(ids)) != len(ids):
        raise EdgeAsrError(f"{dataset.source}: utterance ids are not unique; give each clip its own utt_id")
    check_audio(dataset)  # a corrupt clip is named here, not as a worker's failure minutes in


def _data_notes(dataset: Dataset) -> list[str]:
    with_text = sum(u.transcript is not None for u in dataset)
    if with_text == 0:
        return [f"no transcripts in {dataset.source}: WER skipped; speed and memory measured on {len(dataset)} clips"]
    if with_text < len(dataset):
        return [f"WER over the {with_text} of {len(dataset)} clips that have transcripts"]
    return []


def bench(options: BenchOptions, dataset: Dataset | None = None) -> BenchResult:
    """Measure every runtime on the same clips; see the module doc. `dataset` (e.g. a balanced sample made
    by a benchmark script) replaces loading `options.data`."""
    options.check()
    root = Path(options.artifact)
    runtimes = options.runtimes or default_runtimes(root)
    dataset = _dataset(options) if dataset is None else dataset
    _check_dataset(dataset, options.group_by)
    for runtime in runtimes:
        check_runtime_available(runtime)
    targets = resolve_targets(root, tuple(dict.fromkeys(runtimes)))
    clips = _clips(dataset)
    # One dict shared by every record of the run; its audio length is filled in from the first measurement.
    data = {"name": dataset.source.name, "split": options.split, "n_clips": len(dataset), "audio_seconds": None}
    make = _RecordMaker(uuid.uuid4().hex[:12], device_info(), data)
    result = BenchResult(records=[], notes=_data_notes(dataset))
    if options.adapter is not None:
        result.notes.append(f"adapter: {options.adapter} (one user's LoRA adapter on the artifact's base)")
    for target in targets:
        _say(
            f"{target.runtime}: {target.artifact['name']}, {len(clips)} clips (+{options.warmup} warm-up) "
            "in a separate process"
        )
        outcome = run_worker(target, clips, options)
        data["audio_seconds"] = round(sum(c["audio_seconds"] for c in outcome["clips"]), 3)
        result.records += _runtime_records(make, target, outcome, dataset, options)
        result.transcripts[target.runtime] = outcome["clips"]
    return result


__all__ = ["BenchOptions", "BenchResult", "bench", "check_runtime_available", "resolve_targets"]
