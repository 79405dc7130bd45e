"""A runtime engine in a process of its own, and the request / reply channel to it (runtimes/framing.py).

Runners whose engine cannot live in this process use it: tflite-runtime (its own Python environment,
runtimes/tflite_process.py) and ExecuTorch's C++ runtime (runtimes/pte_native.py). Features, decoding and the
tokenizer stay in the calling process; the engine holds the model and runs it. Imports numpy and the standard
library only.
"""

from __future__ import annotations

import subprocess
import tempfile
import weakref

import numpy as np

from runtimes.errors import EdgeAsrError
from runtimes.framing import read_message, write_message


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.stdin.close()  # the worker ends at the end of its input
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EngineProcess:
    """The engine's process (`command`, started now) and its channel; `name` says whose it is in errors.

    The process answers first with {"ok", "version", "rss"} (its baseline, nothing loaded), then one reply per
    request; every engine answers the requests "memory" ({rss, hwm}) and "reset_peak"."""

    def __init__(self, command: list[str], name: str):
        self.name = name
        self.stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        except OSError as exc:
            raise EdgeAsrError(f"{name}'s process could not start: {exc.strerror or exc}") from None
        self._finalizer = weakref.finalize(self, _stop, self.process)
        ready, _ = self._reply()
        self.version = ready["version"]
        self.baseline_rss = ready["rss"]

    def request(self, header: dict, array: np.ndarray | None = None) -> tuple[dict, np.ndarray | None]:
        try:
            write_message(self.process.stdin, header, array)
        except (BrokenPipeError, ValueError):  # ValueError: the pipe was closed
            raise self._ended() from None
        return self._reply()

    def _reply(self) -> tuple[dict, np.ndarray | None]:
        message = read_message(self.process.stdout)
        if message is None:
            raise self._ended()
        header, array = message
        if "error" in header:
            raise EdgeAsrError(header["error"])
        return header, array

    def _ended(self) -> EdgeAsrError:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self.stderr.seek(0)
        lines = [line for line in self.stderr.read().decode(errors="replace").splitlines() if line.strip()]
        return EdgeAsrError(
            f"{self.name}'s process ended unexpectedly (exit code {code}): "
            f"{lines[-1] if lines else 'it printed nothing'}"
        )

    def memory(self) -> dict[str, int]:
        """{"rss", "hwm"} of the engine's process, in bytes."""
        header, _ = self.request({"op": "memory"})
        return {"rss": header["rss"], "hwm": header["hwm"]}

    def reset_peak(self) -> bool:
        return bool(self.request({"op": "reset_peak"})[0]["ok"])

    def close(self) -> None:
        self._finalizer()
