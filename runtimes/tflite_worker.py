"""tflite-runtime's process: runs a LiteRT pair for `TfliteRuntimeRunner` (runtimes/tflite_process.py).

Started by the runner with the Python of tflite-runtime's own environment (`edgeasr runtimes install
tflite-runtime`), with this package's folder appended to its path, and `main()` called. It imports numpy,
tflite-runtime and a few modules of this package that need nothing but numpy and the standard library, never
the rest of edgeasr (which needs numpy 2). Requests and replies are runtimes/framing.py messages on stdin /
stdout; anything the interpreter prints goes to stderr.

Requests (header "op"): open {folder, files, layers, threads}; encode + features array; reset (the last
encoding, empty cache); step {token, position} -> logits array; memory -> {rss, hwm}; reset_peak. Every
reply carries "ok", or "error" with a message for the user.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def serve(requests, replies) -> None:
    from tflite_runtime import __version__ as version
    from tflite_runtime.interpreter import Interpreter

    from runtimes.errors import EdgeAsrError
    from runtimes.framing import read_message, write_message
    from runtimes.litert_engine import LiteRTPair
    from runtimes.procmem import peak_rss_bytes, reset_peak_rss, rss_bytes

    def memory() -> dict[str, int]:
        return {"rss": rss_bytes(), "hwm": peak_rss_bytes()}

    write_message(replies, {"ok": True, "version": version, **memory()})  # ready: the baseline, nothing loaded
    pair, encoded = None, None
    while (message := read_message(requests)) is not None:
        header, array = message
        op = header.get("op")
        try:
            if op == "open":
                files = tuple(header["files"])
                pair = LiteRTPair(Interpreter, Path(header["folder"]), files, header["layers"], header["threads"])
                write_message(replies, {"ok": True})
            elif op == "encode":
                encoded = pair.encode(array)
                write_message(replies, {"ok": True})
            elif op == "reset":
                pair.reset(encoded)
                write_message(replies, {"ok": True})
            elif op == "step":
                write_message(replies, {"ok": True}, pair.step(header["token"], header["position"]))
            elif op == "memory":
                write_message(replies, {"ok": True, **memory()})
            elif op == "reset_peak":
                write_message(replies, {"ok": reset_peak_rss()})
            else:
                write_message(replies, {"error": f"unknown request {op!r}"})
        except EdgeAsrError as exc:
            write_message(replies, {"error": str(exc)})
        except RuntimeError as exc:  # the interpreter could not run a node: the artifact needs a newer runtime
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            write_message(replies, {"error": f"tflite-runtime {version} cannot run this artifact: {first_line}"})


def main() -> int:
    # Replies go to a copy of stdout; the interpreter's own prints (fd 1) are sent to stderr instead, so that
    # nothing else ever lands between two messages.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
