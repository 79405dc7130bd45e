"""tflite-runtime: the LiteRT pair run by the older `tflite-runtime` package, in its own environment and process.

tflite-runtime 2.14.0 (its last release) fails to import beside numpy 2, which edgeasr needs, so it gets an
environment of its own (`edgeasr runtimes install tflite-runtime`, or `make install-tflite`) and runs there in
a process that `TfliteRuntimeRunner` starts and talks to (runtimes/tflite_worker.py). Features, decoding and
the tokenizer stay in this process, so both LiteRT runners share everything but the interpreter; each token
costs one request to the other process, which the timings include.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from runtimes.base import Runner
from runtimes.contract import TFLITE_DECODER_FILE, TFLITE_ENCODER_FILE, TOKENIZER_FILE
from runtimes.engine_process import EngineProcess
from runtimes.errors import EdgeAsrError
from runtimes.litert_engine import PositionSession
from runtimes.litert_runner import read_litert_info
from runtimes.tokenizer import load_tokenizer

TFLITE_RUNTIME_VERSION = "2.14.0"
# Where its environment is: this variable, else the user's cache folder.
VENV_VARIABLE = "EDGEASR_TFLITE_VENV"
_INSTALL = "edgeasr runtimes install tflite-runtime"
# The layer formats tflite-runtime 2.14.0 computes as ai-edge-litert 2.3.0 does, of those ai-edge-quantizer 0.10
# writes (checked on whole tiny.en pairs; docs/design.md, "LiteRT"): float32, and int8 dynamic-range with one
# scale per tensor (the `tflite-runtime` planning target). It computes the int8 per-channel dynamic-range
# FULLY_CONNECTED without any error but wrongly (the first encoder FC: max error 1.19 on outputs of at most
# 1.25; all-zero logits through the tied int8 embedding), and refuses the int4 embedding lookup.
TFLITE_RUNTIME_FORMATS = frozenset({"fp32", "lrt8_pt"})


def default_venv() -> Path:
    if os.environ.get(VENV_VARIABLE):
        return Path(os.environ[VENV_VARIABLE])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "edgeasr" / f"tflite-runtime-{TFLITE_RUNTIME_VERSION}"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def worker_python(venv: Path | None = None) -> Path:
    """The Python of tflite-runtime's environment; a clear error saying how to create it when there is none."""
    venv = Path(venv) if venv else default_venv()
    python = _python(venv)
    if not python.exists():
        where = "" if venv == default_venv() else f" --venv {venv}"
        raise EdgeAsrError(
            f"tflite-runtime runs in an environment of its own (it needs numpy < 2) and there is none at {venv}: "
            f"create it with `{_INSTALL}{where}`"
        )
    return python


def installed_version(venv: Path | None = None) -> str:
    """tflite-runtime's version in its environment, read from the package metadata without starting it."""
    venv = Path(venv) if venv else default_venv()
    found = sorted(venv.glob("lib/python*/site-packages/tflite_runtime-*.dist-info"))
    if not found:
        raise EdgeAsrError(f"no tflite-runtime installed in {venv}; run `{_INSTALL}`")
    return found[0].name.removeprefix("tflite_runtime-").removesuffix(".dist-info")


def install(venv: Path | None = None, python: str | None = None) -> Path:
    """Create tflite-runtime's environment at `venv` (default: `default_venv()`) with `python` (default: this
    one), built apart and moved into place, so that a failed install never leaves a half-made environment."""
    venv = (Path(venv) if venv else default_venv()).absolute()
    staging = venv.with_name(venv.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    base = python or sys.executable
    steps = [
        ([base, "-m", "venv", str(staging)], f"creating a virtual environment with {base}"),
        (
            [str(_python(staging)), "-m", "pip", "install", "--quiet", f"tflite-runtime=={TFLITE_RUNTIME_VERSION}"]
            + ["numpy<2"],
            f"installing tflite-runtime {TFLITE_RUNTIME_VERSION} and numpy < 2",
        ),
        ([str(_python(staging)), "-c", "import tflite_runtime.interpreter"], "checking that it imports"),
    ]
    for command, doing in steps:
        print(f"[tflite-runtime] {doing}", file=sys.stderr, flush=True)
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as exc:  # the Python to build with does not exist or cannot run
            done = subprocess.CompletedProcess(command, 1, "", f"{command[0]}: {exc.strerror or exc}")
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise EdgeAsrError(
                f"{doing} failed: {detail[-1] if detail else f'exit code {done.returncode}'} (tflite-runtime "
                f"{TFLITE_RUNTIME_VERSION} has wheels for CPython 3.9-3.11 on Linux; choose one with --python)"
            )
    shutil.rmtree(venv, ignore_errors=True)
    staging.rename(venv)
    print(f"[tflite-runtime] ready in {venv}", file=sys.stderr, flush=True)
    return venv


def tflite_engine(python: Path) -> EngineProcess:
    """tflite-runtime's worker process, started with the Python of its environment."""
    package_root = Path(__file__).resolve().parent.parent
    # appended, not prepended: the environment's own numpy (< 2) must win over whatever sits beside this
    # package (a site-packages folder holds numpy 2)
    launch = f"import sys; sys.path.append({str(package_root)!r}); from runtimes.tflite_worker import main; main()"
    return EngineProcess([str(python), "-c", launch], "tflite-runtime")


class TfliteRuntimeRunner(Runner):
    """The LiteRT pair through tflite-runtime, in its own process; `engine` is that process."""

    name = "tflite-runtime"

    def __init__(self, artifact_dir: str | Path, threads: int | None = None, venv: Path | None = None):
        folder = Path(artifact_dir)
        if not folder.is_dir():
            raise EdgeAsrError(f"LiteRT artifact folder not found: {folder}")
        info = read_litert_info(folder)
        unsupported = sorted(info.formats - TFLITE_RUNTIME_FORMATS)
        if unsupported:
            raise EdgeAsrError(
                f"tflite-runtime {TFLITE_RUNTIME_VERSION} does not compute {', '.join(unsupported)} layers correctly "
                f"(it runs {', '.join(sorted(TFLITE_RUNTIME_FORMATS))}); run {folder} with the litert runtime "
                "(ai-edge-litert), or export for it with --target tflite-runtime"
            )
        python = worker_python(venv)  # before anything starts: a missing environment is the user's to fix
        super().__init__(load_tokenizer(folder / TOKENIZER_FILE), info.special, info.n_mels, info.n_frames)
        self.max_seq_len = info.max_seq_len
        self.engine = tflite_engine(python)
        files = [TFLITE_ENCODER_FILE, TFLITE_DECODER_FILE]
        request = {"op": "open", "folder": str(folder.resolve()), "files": files, "layers": info.layers}
        self.engine.request({**request, "threads": threads or 1})
        self._encodings = 0  # the worker keeps the last encoding only

    def encode(self, features: np.ndarray) -> int:
        self.engine.request({"op": "encode"}, features.astype(np.float32))
        self._encodings += 1
        return self._encodings

    def start_decoder(self, encoded: int) -> PositionSession:
        if encoded != self._encodings:
            raise EdgeAsrError("tflite-runtime's process keeps only the last encoded window; decode it first")
        self.engine.request({"op": "reset"})
        return PositionSession(self._step, self.max_seq_len)

    def _step(self, token: int, position: int) -> np.ndarray:
        return self.engine.request({"op": "step", "token": int(token), "position": position})[1]

    def close(self) -> None:
        self.engine.close()


__all__ = ["TfliteRuntimeRunner", "default_venv", "install", "installed_version", "tflite_engine", "worker_python"]
