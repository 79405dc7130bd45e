"""Data sets of utterances: a folder of audio files, or a JSONL / CSV manifest.

Manifest rows need `audio_path` (relative to the manifest's folder, and inside it); `transcript`, `speaker`,
`gender`, `language`, `utt_id`, `split` and `sample_rate` are optional. This is the layout of
`../shared/data/*/manifest.jsonl`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtimes.errors import EdgeAsrError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"}


@dataclass(frozen=True)
class Utterance:
    audio_path: Path
    utt_id: str
    transcript: str | None = None
    speaker: str | None = None
    gender: str | None = None
    language: str | None = None
    split: str | None = None
    sample_rate: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def group(self, key: str) -> str:
        value = getattr(self, key, None)
        if value is None:
            raise EdgeAsrError(f"utterance {self.utt_id} has no {key!r}; cannot group by {key}")
        return str(value)


@dataclass
class Dataset:
    source: Path
    utterances: list[Utterance]

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def has_transcripts(self) -> bool:
        return all(u.transcript is not None for u in self.utterances)

    def filter(self, **equals: str | None) -> Dataset:
        """Keep utterances whose fields equal the given values (None values are ignored)."""
        wanted = {k: v for k, v in equals.items() if v is not None}
        kept = [u for u in self.utterances if all(getattr(u, k) == v for k, v in wanted.items())]
        if not kept:
            raise EdgeAsrError(f"no utterance in {self.source} matches {wanted}")
        return Dataset(self.source, kept)

    def head(self, n: int | None) -> Dataset:
        return self if n is None else Dataset(self.source, self.utterances[:n])


def load_dataset(path: str | Path) -> Dataset:
    """A folder of audio files (recursively, sorted) or a `.jsonl` / `.csv` manifest."""
    path = Path(path)
    if path.is_dir():
        return _from_folder(path)
    if not path.exists():
        raise EdgeAsrError(f"data not found: {path} (give a folder of audio or a .jsonl/.csv manifest)")
    if path.suffix == ".jsonl":
        return _from_rows(path, _jsonl_rows(path))
    if path.suffix == ".csv":
        return _from_rows(path, _csv_rows(path))
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return Dataset(path.parent, [Utterance(path, path.stem)])
    raise EdgeAsrError(f"{path}: unsupported data file; use a folder of audio, a .jsonl or a .csv manifest")


def _from_folder(folder: Path) -> Dataset:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise EdgeAsrError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in folder {folder}")
    return Dataset(folder, [Utterance(p, str(p.relative_to(folder).with_suffix(""))) for p in files])


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EdgeAsrError(f"{path} line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise EdgeAsrError(f"{path} line {number}: expected a JSON object")
            yield number, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "audio_path" not in reader.fieldnames:
            raise EdgeAsrError(
                f"{path}: CSV header must include an 'audio_path' column "
                f"(found: {', '.join(reader.fieldnames or []) or 'none'})"
            )
        for number, row in enumerate(reader, 2):
            yield number, {k: v for k, v in row.items() if v not in (None, "")}


def _resolve_inside(root: Path, relative: str, where: str) -> Path:
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise EdgeAsrError(f"{where}: audio_path {relative!r} points outside the manifest's folder {root}")
    return candidate


def _text(row: dict, key: str) -> str | None:
    value = row.get(key)
    return None if value is None else str(value)


def _from_rows(path: Path, rows: Iterator[tuple[int, dict]]) -> Dataset:
    root = path.parent
    utterances = []
    for number, row in rows:
        where = f"{path} line {number}"
        if not row.get("audio_path"):
            raise EdgeAsrError(f"{where}: missing column 'audio_path'")
        audio = _resolve_inside(root, str(row["audio_path"]), where)
        if not audio.is_file():
            raise EdgeAsrError(f"{where}: audio file not found: {audio}")
        rate = row.get("sample_rate")
        known = {"audio_path", "utt_id", "transcript", "speaker", "gender", "language", "split", "sample_rate"}
        utterances.append(
            Utterance(
                audio_path=audio,
                utt_id=_text(row, "utt_id") or Path(str(row["audio_path"])).stem,
                transcript=_text(row, "transcript"),
                speaker=_text(row, "speaker"),
                gender=_text(row, "gender"),
                language=_text(row, "language"),
                split=_text(row, "split"),
                sample_rate=int(rate) if rate not in (None, "") else None,
                extra={k: v for k, v in row.items() if k not in known},
            )
        )
    if not utterances:
        raise EdgeAsrError(f"{path}: manifest has no rows")
    return Dataset(root, utterances)
