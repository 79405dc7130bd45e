"""Messages between a runner and an engine in another process: a JSON header line, then an array's raw bytes.

Arrays cross as dtype, shape and bytes rather than pickles, because the two sides may run different numpy
major versions (tflite-runtime's process has numpy < 2). Imports numpy and the standard library only.
"""

from __future__ import annotations

import json
from typing import BinaryIO

import numpy as np


def write_message(stream: BinaryIO, header: dict, array: np.ndarray | None = None) -> None:
    if array is not None:
        array = np.ascontiguousarray(array)
        header = {**header, "dtype": array.dtype.str, "shape": list(array.shape), "nbytes": array.nbytes}
    stream.write(json.dumps(header).encode() + b"\n")
    if array is not None:
        stream.write(array.tobytes())
    stream.flush()


def read_message(stream: BinaryIO) -> tuple[dict, np.ndarray | None] | None:
    """(header, array or None), or None at the end of the stream."""
    line = stream.readline()
    if not line:
        return None
    header = json.loads(line)
    if "nbytes" not in header:
        return header, None
    data = stream.read(header["nbytes"])
    if len(data) != header["nbytes"]:
        return None  # the other side ended mid-message
    return header, np.frombuffer(data, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
