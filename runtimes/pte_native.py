"""executorch-native: an edgeasr .pte run by ExecuTorch's C++ runtime, in a process of its own, as an app runs it.

ExecuTorch's Python bindings link libtorch, so a .pte run through them (runtimes/executorch_runner.py) shares
its process with torch: hundreds of MB of resident memory that no app holds. The executorch wheel also ships
the C++ runtime itself (libexecutorch, the XNNPACK backend, the optimised and quantised kernels) with its
headers; `build_worker` compiles runtimes/native/pte_worker.cpp against them once (a C++17 compiler is
needed), and `NativePteRunner` talks to that worker (runtimes/engine_process.py). Its memory is then what an
app's runtime holds: the program (memory-mapped by default, as ExecuTorch's Android module does), XNNPACK's
packed weights, the planned activations and the KV cache. Features, decoding and the tokenizer stay in the
calling process, as they would in an app's own code; nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from runtimes.audio import FULL_FRAMES
from runtimes.base import Runner
from runtimes.contract import (
    PTE_LAYOUT,
    PTE_MAX_SEQ_LEN,
    PTE_N_FRAMES,
    PTE_N_MELS,
    PTE_SPECIAL,
    pte_tokenizer_path,
)
from runtimes.engine_process import EngineProcess
from runtimes.errors import EdgeAsrError
from runtimes.litert_engine import PositionSession
from runtimes.pte_adapter import adapter_path, check_adapter_use
from runtimes.tokenizer import SpecialTokens, load_tokenizer

SOURCE = Path(__file__).resolve().parent / "native" / "pte_worker.cpp"
# The libraries the worker links: the runtime, XNNPACK, and the kernels of the ops left outside XNNPACK (the
# quantised embedding among them). Linked with --no-as-needed: the kernels and the backend register
# themselves when their library loads, and the worker names none of their symbols.
LIBRARIES = (
    "executorch",
    "executorch_backend_xnnpack",
    "executorch_kernels_optimized",
    "executorch_kernels_quantized",
    "executorch_threadpool",
)
# What the shipped libraries were compiled with (the wheel's executorch-config.cmake says the same).
DEFINES = ("C10_USING_CUSTOM_GENERATED_MACROS", "ET_EVENT_TRACER_ENABLED")
LOAD_MODES = ("mmap", "file")
# Where built workers are kept: this variable, else the user's cache folder.
CACHE_VARIABLE = "EDGEASR_NATIVE_CACHE"


def executorch_root() -> Path:
    """The installed executorch package's folder, found without importing it (importing it loads torch)."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise EdgeAsrError("runtime executorch-native needs the executorch package: pip install executorch==1.5.1")
    root = Path(next(iter(spec.submodule_search_locations)))
    if not (root / "include" / "executorch").is_dir() or not (root / "lib" / "libexecutorch.so").is_file():
        raise EdgeAsrError(
            f"{root} has no C++ runtime (include/ and lib/libexecutorch.so): the executorch-native runtime needs "
            "executorch 1.5.1's Linux wheel"
        )
    return root


def _compiler() -> str:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not compiler:
        raise EdgeAsrError(
            "runtime executorch-native compiles a small C++ worker once and found no C++ compiler: install one "
            "(e.g. apt install g++) or set CXX"
        )
    return compiler


def _cache_folder() -> Path:
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeasr" / "native"


def build_command(compiler: str, root: Path, output: Path) -> list[str]:
    lib = root / "lib"
    return [
        compiler,
        "-std=c++17",
        "-O2",
        *(f"-D{define}" for define in DEFINES),
        f"-I{root / 'include'}",
        f"-I{root / 'include' / 'executorch' / 'runtime' / 'core' / 'portable_type' / 'c10'}",
        str(SOURCE),
        "-o",
        str(output),
        f"-L{lib}",
        "-Wl,--no-as-needed",
        *(f"-l{name}" for name in LIBRARIES),
        f"-Wl,-rpath,{lib}",
    ]


def build_worker() -> Path:
    """The worker's executable, compiled on first use and kept, named after what it was built from (the
    source, the executorch install, the compiler), so a new source or install builds anew. Compiled under a
    temporary name and renamed: an interrupted build leaves no half-written worker."""
    root = executorch_root()
    compiler = _compiler()
    version = importlib.metadata.version("executorch")
    stamp = hashlib.sha256(SOURCE.read_bytes() + f"{root}|{version}|{compiler}".encode()).hexdigest()[:16]
    folder = _cache_folder()
    worker = folder / f"pte_worker-{version}-{stamp}"
    if worker.is_file():
        return worker
    folder.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=worker.name + ".", suffix=".partial", dir=folder)
    os.close(handle)
    try:
        try:
            done = subprocess.run(build_command(compiler, root, Path(partial)), capture_output=True, text=True)
        except OSError as exc:  # the compiler named by CXX does not exist or cannot run
            done = subprocess.CompletedProcess([compiler], 1, "", f"{compiler}: {exc.strerror or exc}")
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.splitlines()
            raise EdgeAsrError(
                f"compiling the executorch-native worker with {compiler} failed: "
                f"{errors[0] if errors else f'exit code {done.returncode}'}"
            )
        os.replace(partial, worker)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return worker


class NativePteRunner(Runner):
    """An edgeasr .pte through ExecuTorch's C++ runtime in its own process; `engine` is that process."""

    name = "executorch-native"

    def __init__(
        self,
        pte_path: str | Path,
        threads: int | None = None,
        load_mode: str = "mmap",
        workspace_sharing: int | None = None,
        adapter: str | Path | None = None,
    ):
        """`adapter`: a user's adapter file for a base program that keeps its LoRA adapter apart (default: the
        adapter.ptd beside the program), checked whole before the worker loads it with the program, as an
        app's Module(program, data file) does."""
        pte_path = Path(pte_path)
        if load_mode not in LOAD_MODES:
            raise EdgeAsrError(f"unknown load mode {load_mode!r}; choose from {', '.join(LOAD_MODES)}")
        tokenizer_path = pte_tokenizer_path(pte_path)
        self.adapter = adapter_path(pte_path, adapter)  # checked whole before the worker starts
        worker = build_worker()
        self.engine = EngineProcess([str(worker)], "executorch-native")
        self.engine.version = importlib.metadata.version("executorch")
        try:
            methods = self._open(pte_path, threads or 1, load_mode, workspace_sharing)
        except BaseException:
            self.engine.close()  # a program the worker cannot run leaves no process behind
            raise
        special = SpecialTokens.from_dict(json.loads(self._text("constant", PTE_SPECIAL)))
        # programs exported before the audio context became an option take the full 30 s window
        n_frames = self._int(PTE_N_FRAMES) if PTE_N_FRAMES in methods else FULL_FRAMES
        super().__init__(load_tokenizer(tokenizer_path), special, self._int(PTE_N_MELS), n_frames)
        self.max_seq_len = self._int(PTE_MAX_SEQ_LEN)
        self._encodings = 0  # the worker keeps the last encoding only

    def _open(self, pte_path: Path, threads: int, load_mode: str, workspace_sharing: int | None) -> set[str]:
        """Open the program (with the adapter file, if any), check its methods, then load them; its method names."""
        paths = str(pte_path.resolve()).encode()
        request = {"op": "open", "threads": threads, "load_mode": load_mode}
        if self.adapter is not None:  # its path follows the program's in the same bytes
            adapter_bytes = str(self.adapter.resolve()).encode()
            paths += adapter_bytes
            request["adapter_bytes"] = len(adapter_bytes)
        if workspace_sharing is not None:  # XNNPACK's: 0 none, 1 per model, 2 global (default: ExecuTorch's)
            request["workspace_sharing"] = workspace_sharing
        self.engine.request(request, np.frombuffer(paths, dtype=np.uint8))
        methods = set(self._text("methods").split("\n"))
        if PTE_LAYOUT in methods:
            raise EdgeAsrError(
                f"{pte_path} has the ASR runner's layout ({self._text('constant', PTE_LAYOUT)}), which ExecuTorch's "
                "own ASR runner runs; the executorch-native worker runs edgeasr's layout"
            )
        check_adapter_use(pte_path, methods, self.adapter)
        self.engine.request({"op": "load"})
        return methods

    def _named(self, op: str, name: str | None = None) -> tuple[dict, np.ndarray | None]:
        """A request whose argument is a name (sent as bytes: the worker parses no JSON strings)."""
        argument = None if name is None else np.frombuffer(name.encode(), dtype=np.uint8)
        return self.engine.request({"op": op}, argument)

    def _text(self, op: str, name: str | None = None) -> str:
        return bytes(self._named(op, name)[1]).decode()

    def _int(self, name: str) -> int:
        return int(self._named("constant", name)[0]["int"])

    def encode(self, features: np.ndarray) -> int:
        self.engine.request({"op": "encode"}, np.ascontiguousarray(features, dtype=np.float32))
        self._encodings += 1
        return self._encodings

    def start_decoder(self, encoded: int) -> PositionSession:
        if encoded != self._encodings:
            raise EdgeAsrError("the executorch-native worker keeps only the last encoded window; decode it first")
        return PositionSession(self._step, self.max_seq_len)

    def _step(self, token: int, position: int) -> np.ndarray:
        return self.engine.request({"op": "step", "token": int(token), "position": position})[1]

    def close(self) -> None:
        self.engine.close()


__all__ = ["NativePteRunner", "build_worker", "executorch_root"]
