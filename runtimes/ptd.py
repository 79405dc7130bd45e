"""Reading ExecuTorch's named-data files (.ptd) without ExecuTorch's Python package.

ExecuTorch's own reader (executorch.extension.flat_tensor.serialize) imports torch, and decompiles the
flatbuffer with the flatc tool; a runner that checks a per-user adapter file before its C++ runtime loads it
(runtimes/pte_native.py) would hold torch for that alone (about 300 MB). The format is small:

  bytes 0-3    the flatbuffer's root table offset (the FlatTensor table, schema flat_tensor.fbs)
  bytes 4-7    the file identifier, b"FT01"
  bytes 8-47   the extended header: b"FH01", its length (uint32), the flatbuffer's offset and size, the
               segments' base offset and total size (uint64 each, little-endian)
  segments     each entry's bytes at base offset + segment offset, segment size bytes

FlatTensor { version: uint32; segments: [DataSegment { offset: uint64; size: uint64 }];
             named_data: [NamedData { key: string; segment_index: uint32; tensor_layout }] }

Flatbuffers store a table as a signed offset to its vtable (field slot -> offset in the table, 0 when the
field holds its default) followed by its fields; offset fields (tables, vectors, strings) hold an unsigned
offset from their own position. Every read is bounds-checked: a damaged file raises ValueError.
"""

from __future__ import annotations

import struct

FILE_IDENTIFIER = b"FT01"
HEADER_MAGIC = b"FH01"
HEADER_LENGTH = 40
SUPPORTED_VERSION = 0  # flat_tensor.fbs's version this reader was checked against (ExecuTorch 1.5.1)


class _Buffer:
    def __init__(self, data: bytes):
        self.data = data

    def unpack(self, fmt: str, at: int):
        if at < 0 or at + struct.calcsize(fmt) > len(self.data):
            raise ValueError(f"read of {fmt!r} at byte {at} is outside the file ({len(self.data)} bytes)")
        return struct.unpack_from(fmt, self.data, at)[0]

    def table(self, at: int) -> _Table:
        return _Table(self, at, at - self.unpack("<i", at))

    def target(self, at: int) -> int:
        """Where the offset field at `at` points."""
        return at + self.unpack("<I", at)


class _Table:
    def __init__(self, buffer: _Buffer, at: int, vtable: int):
        self.buffer, self.at, self.vtable = buffer, at, vtable
        self.vtable_size = buffer.unpack("<H", vtable)

    def _field(self, slot: int) -> int | None:
        entry = 4 + 2 * slot
        if entry >= self.vtable_size:
            return None
        offset = self.buffer.unpack("<H", self.vtable + entry)
        return self.at + offset if offset else None

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        at = self._field(slot)
        return default if at is None else self.buffer.unpack(fmt, at)

    def tables(self, slot: int) -> list[_Table]:
        at = self._field(slot)
        if at is None:
            return []
        vector = self.buffer.target(at)
        length = self.buffer.unpack("<I", vector)
        return [self.buffer.table(self.buffer.target(vector + 4 + 4 * i)) for i in range(length)]

    def string(self, slot: int) -> str:
        at = self._field(slot)
        if at is None:
            raise ValueError("a named entry has no key")
        start = self.buffer.target(at)
        length = self.buffer.unpack("<I", start)
        if start + 4 + length > len(self.buffer.data):
            raise ValueError("a key runs past the end of the file")
        return self.buffer.data[start + 4 : start + 4 + length].decode("utf-8")


def read_ptd(blob: bytes) -> dict[str, bytes]:
    """{key: bytes} of every named entry of a .ptd file; ValueError for anything else or a damaged one."""
    buffer = _Buffer(blob)
    if blob[4:8] != FILE_IDENTIFIER or blob[8:12] != HEADER_MAGIC:
        raise ValueError("not an ExecuTorch named-data file (no FT01 identifier and FH01 header)")
    if buffer.unpack("<I", 12) < HEADER_LENGTH:
        raise ValueError("its header is shorter than the format's")
    segment_base = buffer.unpack("<Q", 32)
    root = buffer.table(buffer.unpack("<I", 0))
    version = root.scalar(0, "<I")
    if version > SUPPORTED_VERSION:
        raise ValueError(f"format version {version} is newer than this reader's ({SUPPORTED_VERSION})")
    segments = [(table.scalar(0, "<Q"), table.scalar(1, "<Q")) for table in root.tables(1)]
    entries = {}
    for named in root.tables(2):
        index = named.scalar(1, "<I")
        if index >= len(segments):
            raise ValueError(f"an entry points at segment {index} of {len(segments)}")
        offset, size = segments[index]
        start = segment_base + offset
        if start + size > len(blob):
            raise ValueError(f"segment {index} runs past the end of the file")
        entries[named.string(0)] = blob[start : start + size]
    return entries
