"""The measured process of `edgeasr bench`: one runtime, one artifact, one set of clips.

`edgeasr bench` starts this module in a fresh Python process per runtime, so that each runtime's memory is
the resident set of a process that holds nothing else:

    python -m exporter.bench_worker SPEC.json RESULT.json

Phases, with the resident set read from /proc/self/status at each boundary:

  baseline   the runtime library imported, the clips decoded and the feature extractor warmed up: what the
             process holds before the artifact exists in it;
  load       the runner built (program / sessions / model loaded). The peak (VmHWM) over this phase is the
             load peak: XNNPACK packs weights while the packed copy and the file data coexist;
  run        VmHWM is reset (writing 5 to /proc/self/clear_refs) after loading, then the warm-up and every
             clip run; VmHWM at the end is the steady run peak.

Where /proc/self/clear_refs cannot be written, a thread samples VmRSS every millisecond instead and the
result says so (`peak_method`: "sampled"), since a sampler can miss a short spike that VmHWM would catch.
Memory values are bytes; the parent reports them as deltas over the baseline.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

RUNTIME_IMPORTS = {  # runtime -> (module to import, what to install when it is missing)
    "torch": ("torch", "pip install torch==2.13.0"),
    "torch-fp": ("torch", "pip install torch==2.13.0"),
    "onnx": ("onnxruntime", "pip install onnxruntime==1.31.1"),
    "executorch": ("executorch.runtime", "pip install executorch==1.5.1"),
    "sherpa-onnx": ("sherpa_onnx", "pip install sherpa-onnx==2.0.1"),
    "litert": ("ai_edge_litert.interpreter", "pip install ai-edge-litert==2.3.0"),
    # the interpreter runs in its own environment and process; this one only talks to it
    "tflite-runtime": ("runtimes.tflite_process", "edgeasr runtimes install tflite-runtime"),
    # ExecuTorch's C++ runtime in a worker compiled against the executorch wheel (a C++ compiler is needed)
    "executorch-native": ("runtimes.pte_native", "pip install executorch==1.5.1 and a C++ compiler"),
}
_STATUS = Path("/proc/self/status")


def read_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    text = _STATUS.read_text()
    values = {}
    for key in ("VmRSS", "VmHWM"):
        match = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"{_STATUS} has no {key} line")
        values[key] = int(match.group(1)) * 1024
    return values


class PeakTracker:
    """Peak resident set since the last `reset()`: VmHWM after clear_refs, else a 1 ms sampler."""

    def __init__(self) -> None:
        self.method = "vmhwm" if self._can_reset() else "sampled"
        self._sampled_peak = 0
        self._stop = threading.Event()
        if self.method == "sampled":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    @staticmethod
    def _can_reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled_peak = max(self._sampled_peak, read_status()["VmRSS"])
            time.sleep(0.001)

    def reset(self) -> None:
        if self.method == "vmhwm":
            Path("/proc/self/clear_refs").write_text("5")
        else:
            self._sampled_peak = read_status()["VmRSS"]

    def peak(self) -> int:
        status = read_status()
        if self.method == "vmhwm":
            return status["VmHWM"]
        return max(self._sampled_peak, status["VmRSS"])

    def close(self) -> None:
        self._stop.set()


@dataclass
class WorkerSpec:
    runtime: str
    artifact: str  # the folder holding model.pte / encoder.onnx, or plan.json for the torch runtimes
    clips: list[dict]  # utt_id, audio_path, sample_rate, language
    model_id: str | None = None  # for the torch runtimes
    plan: str | None = None  # plan.json for the simulated torch runtime
    n_frames: int = 3000
    warmup: int = 1
    threads: int = 1
    onnx_memory_arena: bool = False
    onnx_return_freed_memory: bool = True
    adapter: str | None = None  # one user's adapter file(s) for an NF4 + LoRA artifact
    loop_guard: bool = True

    @classmethod
    def load(cls, path: Path) -> WorkerSpec:
        return cls(**json.loads(Path(path).read_text()))


@dataclass
class WorkerResult:
    runtime: str
    runtime_version: str
    peak_method: str
    threads: int
    baseline_rss: int = 0
    load_peak_rss: int = 0
    after_load_rss: int = 0
    run_peak_rss: int = 0
    load_seconds: float = 0.0
    clips: list[dict] = field(default_factory=list)


def _set_threads(runtime: str, threads: int) -> None:
    if runtime in ("onnx", "sherpa-onnx", "tflite-runtime", "executorch-native"):
        return  # their sessions take `threads` when opened; importing torch here would be measured as theirs
    import torch

    torch.set_num_threads(threads)
    if runtime == "executorch":
        from runtimes.executorch_runner import set_threads

        set_threads(threads)  # XNNPACK's threadpool


def _runtime_version(runtime: str) -> str:
    from importlib.metadata import version

    if runtime == "tflite-runtime":
        from runtimes.tflite_process import installed_version

        return f"tflite-runtime {installed_version()}"
    package = {
        "onnx": "onnxruntime",
        "executorch": "executorch",
        "executorch-native": "executorch",
        "sherpa-onnx": "sherpa-onnx",
        "litert": "ai-edge-litert",
    }.get(runtime, "torch")
    return f"{package} {version(package)}"


def _import_runtime(runtime: str) -> None:
    """Import the runtime and everything the runner needs before the baseline is read, so that library
    code does not count as the artifact's memory or load time."""
    module, install = RUNTIME_IMPORTS[runtime]
    try:
        __import__(module)
        if runtime == "executorch":
            from executorch.kernels import quantized  # noqa: F401  the quantised embedding kernels
    except ImportError as exc:
        from runtimes.errors import EdgeAsrError

        raise EdgeAsrError(f"runtime {runtime!r} needs {module.split('.')[0]} ({exc}); {install}") from exc
    if runtime == "executorch":
        import runtimes.executorch_runner  # noqa: F401
    elif runtime == "onnx":
        import runtimes.onnx_runner  # noqa: F401
    elif runtime == "sherpa-onnx":
        import runtimes.sherpa_runner  # noqa: F401
    elif runtime == "litert":
        import runtimes.litert_runner  # noqa: F401
    elif runtime == "tflite-runtime":
        import runtimes.tflite_process  # noqa: F401
    elif runtime == "executorch-native":
        from runtimes.pte_native import build_worker

        build_worker()  # compiled before the baseline is read (once; kept in the cache after)
    else:
        import exporter.models  # noqa: F401
        import exporter.quant.simulate  # noqa: F401
        import runtimes.torch_runner  # noqa: F401


def _build_runner(spec: WorkerSpec):
    if spec.runtime in ("onnx", "executorch", "sherpa-onnx", "litert", "tflite-runtime", "executorch-native"):
        from runtimes.artifact import open_artifact

        return open_artifact(
            spec.artifact,
            threads=spec.threads,
            runtime=spec.runtime,
            adapters=spec.adapter,
            onnx_memory_arena=spec.onnx_memory_arena,
            onnx_return_freed_memory=spec.onnx_return_freed_memory,
        )
    from exporter.models import load_whisper
    from runtimes.torch_runner import TorchRunner

    bundle = load_whisper(spec.model_id)
    if spec.runtime == "torch":
        from exporter.quant.plan import QuantPlan
        from exporter.quant.simulate import simulate

        bundle = simulate(bundle, QuantPlan.load(spec.plan))
    return TorchRunner(bundle, n_frames=spec.n_frames)


def _decode(runner, samples, clip: dict, loop_guard: bool = True):
    from runtimes.decoding import DecodingOptions

    language = clip.get("language") if runner.special.is_multilingual else None
    return runner.transcribe(samples, DecodingOptions(language=language, loop_guard=loop_guard))


def measure(spec: WorkerSpec) -> WorkerResult:
    from exporter.logs import quiet_libraries

    quiet_libraries()
    _import_runtime(spec.runtime)
    _set_threads(spec.runtime, spec.threads)
    from runtimes.audio import load_audio, log_mel

    audio = [load_audio(c["audio_path"], expected_rate=c.get("sample_rate")) for c in spec.clips]
    log_mel(audio[0][:16000], 80)  # builds the mel filters and window outside the measured phases
    tracker = PeakTracker()
    result = WorkerResult(spec.runtime, _runtime_version(spec.runtime), tracker.method, spec.threads)
    try:
        result.baseline_rss = read_status()["VmRSS"]
        tracker.reset()
        started = time.perf_counter()
        runner = _build_runner(spec)
        result.load_seconds = time.perf_counter() - started
        result.load_peak_rss = tracker.peak()
        result.after_load_rss = read_status()["VmRSS"]
        # A runner whose engine runs in a process of its own (tflite-runtime): that process's memory is the
        # runtime's too. Its phases are added to this one's (the sum of two peaks bounds the joint peak).
        engine = getattr(runner, "engine", None)
        if engine is not None:
            loaded = engine.memory()
            result.baseline_rss += engine.baseline_rss
            result.load_peak_rss += loaded["hwm"]
            result.after_load_rss += loaded["rss"]
            engine.reset_peak()
        tracker.reset()
        for _ in range(spec.warmup):
            _decode(runner, audio[0], spec.clips[0], spec.loop_guard)
        for index, (clip, samples) in enumerate(zip(spec.clips, audio, strict=True), 1):
            out = _decode(runner, samples, clip, spec.loop_guard)
            if index % 10 == 0 or index == len(spec.clips):
                print(f"[bench]   {spec.runtime}: {index}/{len(spec.clips)} clips", file=sys.stderr, flush=True)
            result.clips.append(
                {
                    "utt_id": clip["utt_id"],
                    "text": out.text,
                    "language": out.language,
                    "audio_seconds": out.audio_seconds,
                    "timings": out.timings,
                }
            )
        result.run_peak_rss = tracker.peak() + (engine.memory()["hwm"] if engine is not None else 0)
    finally:
        tracker.close()
    return result


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    from exporter.io import write_json
    from runtimes.errors import EdgeAsrError

    try:
        result = measure(WorkerSpec.load(spec_path))
    except EdgeAsrError as exc:
        write_json(result_path, {"error": str(exc)})
        return 2
    except Exception:  # a bug or a runtime crash: the parent shows the traceback's last lines
        write_json(result_path, {"error": "the measured process failed:\n" + traceback.format_exc(limit=4)})
        return 1
    write_json(result_path, {"result": result.__dict__})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
