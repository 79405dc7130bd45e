"""Artifact integrity: the sha256 of every file an export wrote, recorded beside them and checked on open.

ExecuTorch verifies a program's flatbuffer structure but not its constant data, and a flipped bit in an
ONNX initializer goes unnoticed too: a damaged weight loads, runs and transcribes wrong without a word.
`edgeasr export` records each artifact folder's files in checksums.json (runtimes.contract.CHECKSUM_FILE);
`open_artifact` checks them before building a runner, so a changed or damaged file is refused by name.
A folder without checksums.json (assembled by hand, or copied without it) is opened unchecked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from runtimes.contract import CHECKSUM_FILE
from runtimes.errors import EdgeAsrError

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_checksums(folder: str | Path) -> dict[str, str]:
    """{file name: sha256} of the files directly in `folder` (not its subfolders, not checksums.json)."""
    folder = Path(folder)
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUM_FILE}


def verify_checksums(folder: str | Path) -> bool:
    """Check every file checksums.json in `folder` lists; False when there is no checksums.json."""
    folder = Path(folder)
    record = folder / CHECKSUM_FILE
    if not record.is_file():
        return False
    try:
        expected = json.loads(record.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgeAsrError(f"{record} is damaged ({exc}); copy the artifact folder again or re-export") from exc
    if not isinstance(expected, dict) or not all(isinstance(v, str) for v in expected.values()):
        raise EdgeAsrError(f"{record} is not a checksum list; copy the artifact folder again or re-export")
    for name, digest in expected.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise EdgeAsrError(f"{folder} lacks {name}, which its {CHECKSUM_FILE} lists; copy the whole folder")
        if sha256_file(path) != digest:
            raise EdgeAsrError(
                f"{path} is not the file the export wrote (its sha256 differs from {CHECKSUM_FILE}): it was "
                "changed or damaged in transit; copy it again or re-export"
            )
    return True
