"""Writing outputs: every write is atomic, and a path that cannot be written is refused before any work.

A crash or Ctrl-C never leaves a half-written file or output folder behind (`atomic_path`, `staged_dir`);
commands call `check_output_file` / `check_output_folder` on every output path before their first expensive
stage, so a read-only place, a full disk's folder or a path that names a folder is refused in milliseconds,
not after minutes of work. File-system failures during a write become an `EdgeAsrError` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from runtimes.errors import EdgeAsrError


def _cannot_write(path: Path, exc: OSError, what: str = "write") -> EdgeAsrError:
    reason = exc.strerror or type(exc).__name__
    return EdgeAsrError(f"cannot {what} {path}: {reason}; choose a writable place with free space")


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_writable(path: Path) -> None:
    """Prove files can be created where `path` would be, leaving nothing behind: the nearest existing
    ancestor must be a folder in which a temporary file can be made."""
    anchor = _nearest_existing(path.parent)
    if not anchor.is_dir():
        raise EdgeAsrError(f"cannot write {path}: {anchor} is a file, not a folder; choose another path")
    try:
        with tempfile.TemporaryFile(prefix=".edgeasr-probe.", dir=anchor):
            pass
    except OSError as exc:
        raise _cannot_write(path, exc) from exc


def check_output_file(path: str | Path | None, option: str = "the output") -> None:
    """Refuse an output file path that cannot be written (None: nothing asked, nothing to check)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise EdgeAsrError(f"{option} {path} is a folder; give a file path")
    if path.exists() and not path.is_file():
        raise EdgeAsrError(f"{option} {path} exists and is not a regular file; give another path")
    _probe_writable(path)


def check_output_folder(out_dir: str | Path) -> Path:
    """Refuse an output folder that is a file, exists with contents, or cannot be created."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgeAsrError(f"output folder {out_dir} exists and is a file; choose a new folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise EdgeAsrError(f"output folder {out_dir} exists and is not empty; choose a new one or remove it")
    _probe_writable(out_dir)
    return out_dir


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, otherwise removed.

    A file-system error while the temporary file is written or renamed (full disk, read-only place)
    becomes an `EdgeAsrError` naming `path`; other errors pass through unchanged.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # never rename over a folder or a device such as /dev/full
        raise EdgeAsrError(f"cannot write {path}: it exists and is not a regular file; give a file path")
    _make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            if tmp_path.exists():
                tmp_path.chmod(0o666 & ~umask())  # mkstemp creates 0600; outputs get the usual permissions
            os.replace(tmp_path, path)
        except OSError as exc:
            if exc.filename not in (None, str(tmp_path), str(path)):
                raise  # about some other file: not this write's failure
            raise _cannot_write(path, exc) from exc
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield a fresh private folder beside `out_dir`; on success it becomes `out_dir` (which must be absent
    or empty) with normal permissions, otherwise it is removed with everything in it."""
    out_dir = check_output_folder(out_dir)
    _make_parent(out_dir)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    except OSError as exc:
        raise _cannot_write(out_dir, exc) from exc
    try:
        yield staging
        try:
            staging.chmod(0o777 & ~umask())  # mkdtemp makes it private; the output gets the usual permissions
            if out_dir.exists():
                out_dir.rmdir()  # empty: callers refuse a non-empty output folder before any work
            os.replace(staging, out_dir)
        except OSError as exc:
            raise _cannot_write(out_dir, exc, "move the finished output to") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | Path, what: str, hint: str = ""):
    """The JSON value in `path`, or an `EdgeAsrError` that names the file, says what it should have been
    (`what`, e.g. "a plan JSON file") and what to do (`hint`): for a missing file, a folder, bytes that are
    not UTF-8, and text that is not JSON."""
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    if path.is_dir():
        raise EdgeAsrError(f"{path} is a folder, not {what}{tail}")
    if not path.is_file():
        raise EdgeAsrError(f"not found: {path} (expected {what}){tail}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgeAsrError(f"{path} is not {what}: byte {exc.start} is not UTF-8 text{tail}") from exc
    except OSError as exc:
        raise EdgeAsrError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgeAsrError(f"{path} is not {what}: {exc.msg} at line {exc.lineno}{tail}") from exc


def read_json_object(path: str | Path, what: str, hint: str = "") -> dict:
    """`read_json`, which must give a JSON object (not a list, string or number)."""
    data = read_json(path, what, hint)
    if not isinstance(data, dict):
        tail = f"; {hint}" if hint else ""
        raise EdgeAsrError(f"{path} is not {what}: it holds a JSON {json_type(data)}, not an object{tail}")
    return data


def json_type(value) -> str:
    """JSON's name for the type of a parsed value, for messages ("array", not "list")."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
