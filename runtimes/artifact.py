"""Opening an artifact: find which kind a path holds (runtimes.contract) and build its runner.

Every caller (transcribe, the bench workers, export's parity check, inspect) opens artifacts here. Nothing here
imports torch or the exporter: an app-side process opens an ONNX artifact with numpy and onnxruntime alone.
"""

from __future__ import annotations

from pathlib import Path

from runtimes.contract import ENCODER_FILE, ENGINES, KINDS, RUNTIMES, ArtifactKind
from runtimes.errors import EdgeAsrError
from runtimes.integrity import verify_checksums


def artifact_runtimes(root: str | Path) -> tuple[str, ...]:
    """The runtimes that have an artifact under `root`, in the order of KINDS."""
    return tuple(name for name, kind in KINDS.items() if kind.find(root) is not None)


def locate(path: str | Path, runtime: str | None = None) -> tuple[ArtifactKind, Path]:
    """(kind, folder) of the artifact at `path`: a folder holding one, an export folder, or the entry file
    itself. `runtime` picks one kind where the folder holds several (default: the first found)."""
    path = Path(path)
    if path.is_file():
        for kind in KINDS.values():
            # a model file by its suffix (any name); sherpa's tokens.txt by its name
            by_suffix = path.suffix in (".pte", ".onnx", ".tflite") and path.suffix == Path(kind.entry_file).suffix
            if (by_suffix or path.name == kind.entry_file) and runtime in (None, kind.runtime):
                return kind, path.parent
    if runtime is not None and runtime not in KINDS:
        raise EdgeAsrError(f"unknown artifact runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if path.is_dir():
        wanted = [kind for name, kind in KINDS.items() if runtime in (None, name)]
        # the export's first format sits at the top of its folder: it wins over a second one in a subfolder
        for kind in wanted:
            if (path / kind.entry_file).is_file():
                return kind, path
        for kind in wanted:
            folder = kind.find(path)
            if folder is not None:
                return kind, folder
    wanted = KINDS[runtime].entry_file if runtime else " or ".join(k.entry_file for k in KINDS.values())
    raise EdgeAsrError(f"{path} holds no edgeasr artifact ({wanted}); give a folder written by `edgeasr export`")


def _entry_file(path: str | Path, kind: ArtifactKind, folder: Path) -> Path:
    """The file `locate` matched: `path` itself when a file was given, else the kind's entry file."""
    return Path(path) if Path(path).is_file() else folder / kind.entry_file


def open_artifact(
    path: str | Path,
    threads: int | None = None,
    runtime: str | None = None,
    adapters: str | Path | None = None,
    onnx_memory_arena: bool = False,
    onnx_return_freed_memory: bool = True,
):
    """The runner for the artifact at `path` (see `locate`), with `threads` intra-op threads where given.

    `runtime` picks the runner where several run the artifact (`runtimes.contract.RUNTIMES`; e.g. litert or
    tflite-runtime for a LiteRT pair); default: the artifact's own.
    `adapters`: one user's LoRA adapter files for an NF4 + LoRA artifact: for ONNX a folder of .onnx_adapter
    files, for a .pte an adapter.ptd (or a folder holding one). The artifact's own files are checked against
    the checksums its export recorded (runtimes.integrity), an adapter file against its own record, before
    anything is loaded.
    """
    kind, folder = locate(path, ENGINES.get(runtime, runtime))
    verify_checksums(folder)
    if runtime == "tflite-runtime":
        if adapters is not None:
            raise EdgeAsrError("a LiteRT artifact takes no per-user adapter files (no LoRA lowering for LiteRT)")
        from runtimes.tflite_process import TfliteRuntimeRunner

        return TfliteRuntimeRunner(folder, threads=threads)
    if runtime == "executorch-native":
        from runtimes.pte_native import NativePteRunner

        return NativePteRunner(_entry_file(path, kind, folder), threads=threads, adapter=adapters)
    if kind.runtime == "onnx":
        from runtimes.onnx_runner import OnnxRunner

        return OnnxRunner(
            folder,
            threads=threads,
            adapters=adapters,
            memory_arena=onnx_memory_arena,
            return_freed_memory=onnx_return_freed_memory,
        )
    if kind.runtime == "litert":
        if adapters is not None:
            raise EdgeAsrError("a LiteRT artifact takes no per-user adapter files (no LoRA lowering for LiteRT)")
        from runtimes.litert_runner import LiteRTRunner

        return LiteRTRunner(folder, threads=threads)
    if kind.runtime == "sherpa-onnx":
        if adapters is not None:
            raise EdgeAsrError("sherpa-onnx takes no per-user adapter files; run the pair with --runtime onnx")
        from runtimes.sherpa_runner import SherpaOnnxRunner

        return SherpaOnnxRunner(folder, threads=threads)
    from runtimes.executorch_runner import ExecutorchRunner

    return ExecutorchRunner.open(_entry_file(path, kind, folder), threads=threads, adapter=adapters)


def read_plan(path: str | Path) -> tuple[Path, dict]:
    """(entry file, plan dict) stored inside the artifact at `path`, for `edgeasr inspect` and the bench."""
    kind, folder = locate(path)
    entry = _entry_file(path, kind, folder)
    if kind.runtime in ("onnx", "sherpa-onnx"):
        from runtimes.onnx_runner import read_plan_from_onnx

        entry = folder / ENCODER_FILE  # both graphs carry the plan; the encoder is the one always there
        return entry, read_plan_from_onnx(entry)
    if kind.runtime == "litert":
        from runtimes.litert_runner import read_plan_from_tflite

        entry = folder / kind.entry_file
        return entry, read_plan_from_tflite(entry)
    from runtimes.executorch_runner import read_plan_from_pte

    return entry, read_plan_from_pte(entry)
