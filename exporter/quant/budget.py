"""Byte budgets as people write them: 80MB (10^6 bytes), 76MiB (2^20 bytes), or plain bytes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

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


# No Whisper comes near this; a larger number is a typo (or 400 pasted digits), not a budget.
MAX_BUDGET = 10**13  # 10 TB


def parse_budget(text: str | int) -> int:
    """Bytes for '80MB', '76MiB', '1.5GB', '80000000'. Units are case-insensitive; MB is decimal."""
    shown = repr(text) if len(str(text)) <= 40 else repr(f"{str(text)[:20]}...{str(text)[-8:]}")
    if isinstance(text, bool):
        raise EdgeAsrError(f"budget {shown} is not a size")
    if isinstance(text, int):
        value = Decimal(text)
    else:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
        if not match or match.group(2).lower() not in _UNITS:
            raise EdgeAsrError(f"cannot read budget {shown}: write e.g. 80MB (10^6 bytes), 76MiB (2^20) or bytes")
        value = Decimal(match.group(1)) * _UNITS[match.group(2).lower()]  # exact: no float overflow or rounding
    if value < 1:
        raise EdgeAsrError(f"budget {shown} is not a positive size")
    if value > MAX_BUDGET:
        raise EdgeAsrError(f"budget {shown} is larger than {MAX_BUDGET // 10**12} TB; write e.g. 80MB")
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
