"""The fleet's users file: one JSON object a line, each one user's export, read and checked row by row.

A row names the user (`user`, a folder-safe id) and their clips (`clips`: a folder of audio or a manifest,
relative to the users file's folder or absolute; `speaker` picks one speaker's rows of a manifest), and may
override the fleet's defaults for `target`, `budget` and `formats`. A line that is not a JSON object, or
that has no usable `user`, cannot be reported per user, so it refuses the whole file, as do two rows of one
user; everything else wrong with a row (an unknown target, a malformed budget, clips that are not there)
fails that user alone, before any worker starts.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from exporter.data import Dataset, load_dataset
from exporter.export.inputs import user_clips
from exporter.export.options import ExportOptions
from exporter.io import json_type
from runtimes.errors import EdgeAsrError

# Row keys a user may set; the rest of the export's options are the fleet's (command-line) defaults.
ROW_KEYS = ("user", "clips", "speaker", "target", "budget", "formats")
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class UserJob:
    """One user's export: the options `edgeasr export` would be given for them (calib and speaker set)."""

    user: str
    line: int
    options: ExportOptions | None  # None when the row is invalid (then `error` says why)
    error: str | None = None

    @property
    def key(self) -> str:
        """Content id of what is asked: a completed user is redone when their row or the defaults change."""
        asked = {"user": self.user, "options": self.options.to_dict() if self.options else None}
        return hashlib.sha256(json.dumps(asked, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def read_users(path: Path, defaults: ExportOptions) -> list[UserJob]:
    """Every row of `path` as a job; rows with a problem of their own come back with `error` set."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        raise EdgeAsrError(f"users file {path} not found; give a JSON-lines file with one user a line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EdgeAsrError(f"users file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    jobs: list[UserJob] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EdgeAsrError(f"{where}: not JSON ({exc.msg}); write one JSON object a line") from exc
        if not isinstance(row, dict):
            raise EdgeAsrError(f"{where}: a JSON {json_type(row)}, not an object with 'user' and 'clips'")
        user = row.get("user")
        if isinstance(user, int) and not isinstance(user, bool):
            user = str(user)
        if not isinstance(user, str) or not _USER_ID.fullmatch(user):
            raise EdgeAsrError(
                f"{where}: 'user' must be an id of letters, digits, '.', '_' or '-' (at most 128, not starting "
                f"with '.', '_' or '-'), not {row.get('user')!r}; it names the user's output folder"
            )
        if user in seen:
            raise EdgeAsrError(f"{where}: user {user!r} is already on line {seen[user]}; give each user one row")
        seen[user] = number
        jobs.append(_job(row, user, number, where, path.parent, defaults))
    if not jobs:
        raise EdgeAsrError(f"users file {path} has no rows; write one JSON object a line with 'user' and 'clips'")
    return jobs


def _job(row: dict, user: str, line: int, where: str, base: Path, defaults: ExportOptions) -> UserJob:
    try:
        return UserJob(user, line, _options(row, where, base, defaults))
    except EdgeAsrError as exc:
        message = str(exc)
        return UserJob(user, line, None, message if message.startswith(where) else f"{where}: {message}")


def _options(row: dict, where: str, base: Path, defaults: ExportOptions) -> ExportOptions:
    unknown = sorted(set(row) - set(ROW_KEYS))
    if unknown:
        raise EdgeAsrError(f"{where}: unknown key(s) {', '.join(unknown)}; a row may have {', '.join(ROW_KEYS)}")
    clips = row.get("clips")
    if not isinstance(clips, str) or not clips.strip():
        raise EdgeAsrError(f"{where}: 'clips' must be the path of the user's folder of audio or manifest")
    calib = Path(clips) if Path(clips).is_absolute() else (base / clips).resolve()
    if not calib.exists():
        raise EdgeAsrError(f"{where}: clips {calib} not found; give a folder of audio or a manifest")
    speaker = _text(row, "speaker", where)
    _check_clips(calib, speaker)
    changes: dict = {"calib": calib, "speaker": speaker}
    for key in ("target", "budget"):
        if key in row:
            value = row[key]
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise EdgeAsrError(f"{where}: '{key}' must be text such as {'45MB' if key == 'budget' else 'onnx'}")
            changes[key] = value
    if "formats" in row:
        changes["formats"] = _formats(row["formats"], where)
    elif "target" in row:
        changes["formats"] = ()  # the row's target picks its own default formats
    return replace(defaults, **changes)


def _check_clips(calib: Path, speaker: str | None) -> None:
    """The clips are readable and hold the speaker (manifests read once per run, however many rows share one);
    decoding the audio is left to the export, on a worker."""
    clips = _dataset(calib)
    if speaker is not None:
        user_clips(calib, speaker, clips)


@lru_cache(maxsize=64)
def _dataset(calib: Path) -> Dataset:
    return load_dataset(calib)


def _text(row: dict, key: str, where: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise EdgeAsrError(f"{where}: '{key}' must be text, not {value!r}")
    return value


def _formats(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise EdgeAsrError(f'{where}: \'formats\' must be a list such as ["pte", "onnx"] or text "pte,onnx"')
    return tuple(v.strip() for v in value)
