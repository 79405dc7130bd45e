"""Reader for CTranslate2 `model.bin` files.

Layout (little-endian), as written by CTranslate2's converters:
    u32 binary_version            (we read versions 5 and 6)
    str spec_name                 (e.g. "WhisperSpec")
    u32 spec_revision
    u32 n_variables
    n_variables x { str name; u8 rank; u32 dims[rank]; u8 dtype; u32 n_bytes; bytes data }
    u32 n_aliases
    n_aliases  x { str alias; str target }
where `str` is a u16 length (including a trailing NUL) followed by the bytes.

Only what Whisper needs is supported; anything else raises `EdgeAsrError` naming the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from runtimes.errors import EdgeAsrError

# CTranslate2's DataType enum.
_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
_BFLOAT16 = 5
_SUPPORTED_VERSIONS = (5, 6)


@dataclass
class CT2Model:
    """The variables of a CTranslate2 model, aliases resolved."""

    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]

    def __contains__(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables


class _Reader:
    def __init__(self, stream: BinaryIO, source: str):
        self.stream = stream
        self.source = source

    def take(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise EdgeAsrError(f"{self.source}: truncated CTranslate2 model file (wanted {n} more bytes)")
        return data

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        raw = self.take(self.u16())
        return raw.rstrip(b"\0").decode("utf-8")


def _read_variable(reader: _Reader) -> tuple[str, np.ndarray]:
    name = reader.string()
    shape = tuple(reader.u32() for _ in range(reader.u8()))
    code = reader.u8()
    n_bytes = reader.u32()
    data = reader.take(n_bytes)
    if code == _BFLOAT16:
        # No numpy bfloat16: widen to float32 by placing the 16 bits in the high half.
        raw = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
        array = raw.view(np.float32)
    elif code in _DTYPES:
        array = np.frombuffer(data, dtype=_DTYPES[code])
    else:
        raise EdgeAsrError(f"{reader.source}: variable {name!r} has unknown dtype code {code}")
    expected = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if array.size != expected:
        raise EdgeAsrError(f"{reader.source}: variable {name!r} holds {array.size} values, shape says {shape}")
    return name, array.reshape(shape)


def read_ct2_model(path: Path | str) -> CT2Model:
    """Read a CTranslate2 `model.bin`."""
    return read_ct2_stream([Path(path)])


def read_ct2_stream(parts: Iterable[Path]) -> CT2Model:
    """Read a `model.bin` stored as consecutive parts (concatenated in the given order)."""
    parts = list(parts)
    source = " + ".join(str(p) for p in parts)
    for part in parts:
        if not part.is_file():
            raise EdgeAsrError(f"model file not found: {part}")
    with _ConcatStream(parts) as stream:
        reader = _Reader(stream, source)
        version = reader.u32()
        if version not in _SUPPORTED_VERSIONS:
            raise EdgeAsrError(
                f"{source}: CTranslate2 binary version {version} is not supported "
                f"(supported: {', '.join(map(str, _SUPPORTED_VERSIONS))})"
            )
        spec_name = reader.string()
        spec_revision = reader.u32()
        variables = dict(_read_variable(reader) for _ in range(reader.u32()))
        aliases = {}
        for _ in range(reader.u32()):
            alias = reader.string()
            aliases[alias] = reader.string()
        if stream.read(1):
            raise EdgeAsrError(f"{source}: unexpected bytes after the alias table (corrupt file?)")
    for alias, target in aliases.items():
        if target not in variables:
            raise EdgeAsrError(f"{source}: alias {alias!r} points to missing variable {target!r}")
    return CT2Model(spec_name, spec_revision, variables, aliases)


class _ConcatStream:
    """A read-only stream over several files back to back (the split base model)."""

    def __init__(self, parts: list[Path]):
        self.parts = parts
        self.files: list[BinaryIO] = []
        self.index = 0

    def __enter__(self) -> _ConcatStream:
        self.files = [open(p, "rb") for p in self.parts]
        return self

    def __exit__(self, *exc) -> None:
        for f in self.files:
            f.close()

    def read(self, n: int) -> bytes:
        chunks = []
        while n > 0 and self.index < len(self.files):
            chunk = self.files[self.index].read(n)
            if not chunk:
                self.index += 1
                continue
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)
