"""Reading and checking a per-user adapter file (`adapter.ptd`) for a base ExecuTorch program.

The file is ExecuTorch's named-data format (.ptd): one entry per LoRA tensor under a key made from the tensor's
name (exporter/lower/pte_adapter.py explains why), plus one entry, `edgeasr.adapter`, recording the sha256 of
the program it was written for and of each tensor. A file is checked whole before ExecuTorch loads it: a file
for another program (another base, rank or targets), or one whose bytes changed, is refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from runtimes.contract import PTE_ADAPTER, PTE_ADAPTER_FILE
from runtimes.errors import EdgeAsrError
from runtimes.integrity import sha256_file
from runtimes.ptd import read_ptd

ADAPTER_FORMAT = "edgeasr-pte-adapter/1"
ADAPTER_META_KEY = "edgeasr.adapter"


def adapter_key(name: str) -> str:
    """The data-file key of the LoRA tensor `name`: 64 hex digits like the content hashes XNNPACK uses, so it
    takes their place in the program byte for byte, but the same for every user."""
    return hashlib.sha256(f"edgeasr-adapter:{name}".encode()).hexdigest()


def _entries(path: Path) -> dict[str, bytes]:
    try:
        return read_ptd(path.read_bytes())  # torch-free: a native runner checks files too (runtimes/ptd.py)
    except Exception as exc:  # the flatbuffer reader raises many kinds on a damaged file
        raise EdgeAsrError(
            f"{path} is not a readable adapter file ({type(exc).__name__}: {exc}); copy it again or re-write it "
            "with `edgeasr adapter`"
        ) from exc


def read_adapter_file(path: str | Path, pte_path: str | Path) -> dict:
    """The adapter file's record after checking it belongs to the program at `pte_path` and is intact."""
    path, pte_path = Path(path), Path(pte_path)
    if not path.is_file():
        raise EdgeAsrError(f"adapter file not found: {path} (written by `edgeasr export --lora` or `edgeasr adapter`)")
    entries = _entries(path)
    if ADAPTER_META_KEY not in entries:
        raise EdgeAsrError(f"{path} is a data file but not an edgeasr adapter file (no {ADAPTER_META_KEY!r} entry)")
    try:
        record = json.loads(entries.pop(ADAPTER_META_KEY))
        digests = dict(record["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeAsrError(f"{path}: its {ADAPTER_META_KEY!r} record is damaged ({exc}); re-write the file") from exc
    if record.get("format") != ADAPTER_FORMAT:
        raise EdgeAsrError(f"{path} is adapter format {record.get('format')!r}; this edgeasr reads {ADAPTER_FORMAT}")
    program = sha256_file(pte_path)  # in pieces: a runner's load peak holds no second copy of its program
    if record.get("program_sha256") != program:
        raise EdgeAsrError(
            f"{path} was written for another base program (model {record.get('model_id')!r}, LoRA "
            f"{json.dumps(record.get('lora'), sort_keys=True)}), not {pte_path}: write this user's file for it "
            "with `edgeasr adapter --artifact <base> --lora <adapter folder>`"
        )
    if set(entries) != set(digests):
        raise EdgeAsrError(f"{path}: its tensors do not match its own record; the file is damaged, re-write it")
    damaged = [key for key, data in entries.items() if hashlib.sha256(data).hexdigest() != digests[key]]
    if damaged:
        raise EdgeAsrError(f"{path}: {len(damaged)} adapter tensor(s) fail their checksum; the file is damaged")
    return record


def adapter_path(pte_path: Path, adapter: str | Path | None) -> Path | None:
    """The adapter file to load with the program: `adapter` (a file, or a folder holding adapter.ptd), else the
    adapter.ptd the export left beside the program, else None. A given file is checked whole here
    (`read_adapter_file`), before a runtime sees it."""
    if adapter is not None:
        adapter = Path(adapter)
        path = adapter / PTE_ADAPTER_FILE if adapter.is_dir() else adapter
    else:
        beside = Path(pte_path).parent / PTE_ADAPTER_FILE
        path = beside if beside.is_file() else None
    if path is not None:
        read_adapter_file(path, pte_path)
    return path


def check_adapter_use(pte_path: Path, methods, adapter: Path | None) -> None:
    """Refuse a base program run without its user's adapter file, and a file given to a program that takes
    none (`methods`: the program's method names)."""
    takes_adapter = PTE_ADAPTER in methods
    if takes_adapter and adapter is None:
        raise EdgeAsrError(
            f"{pte_path} is a base program whose LoRA adapter is a separate file ({PTE_ADAPTER_FILE}): give "
            "the user's file with --adapter"
        )
    if adapter is not None and not takes_adapter:
        raise EdgeAsrError(f"{pte_path} takes no adapter file (any adapter it has is inside the program)")
