"""Byte budgets as people write them: 80MB (10^6 bytes), 76MiB (2^20 bytes), or plain bytes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtimes.errors import EdgeAsrError

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_budget(text: str | int) -> int:
    """Bytes for '80MB', '76MiB', '1.5GB', '80000000'. Units are case-insensitive; MB is decimal."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise EdgeAsrError(f"cannot read budget {text!r}: write e.g. 80MB (10^6 bytes), 76MiB (2^20) or bytes")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < 1:
        raise EdgeAsrError(f"budget {text!r} is not a positive size")
    return int(value)


@dataclass(frozen=True)
class Budget:
    """A byte budget, parsed once from what the user wrote: `bytes` for the arithmetic, `text` for records
    (str() gives it back, so export.json keeps "80MB" as written)."""

    bytes: int
    text: str

    @classmethod
    def parse(cls, value: str | int | Budget) -> Budget:
        if isinstance(value, Budget):
            return value
        return cls(parse_budget(value), value if isinstance(value, str) else str(value))

    def __str__(self) -> str:
        return self.text


def format_bytes(n: int) -> str:
    """Decimal megabytes with the exact count: '79.83 MB (79,831,552 bytes)'."""
    return f"{n / 1e6:.2f} MB ({n:,} bytes)"
