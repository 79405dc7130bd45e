"""Data sets of utterances: a folder of audio files, or a JSONL / CSV manifest.

Manifest rows need `audio_path` (relative to the manifest's folder, and inside it); `transcript`, `speaker`,
`gender`, `language`, `utt_id`, `split` and `sample_rate` are optional. This is the layout of
`../shared/data/*/manifest.jsonl`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exporter.io import json_type
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


def check_audio(utterances: Iterable[Utterance]) -> None:
    """Decode each clip once (each file once), so a corrupt clip or a wrong sample rate is refused, by name,
    before a command loads a model: commands call this on the clips they will use."""
    from runtimes.audio import load_audio

    for utterance in {u.audio_path: u for u in utterances}.values():
        load_audio(utterance.audio_path, expected_rate=utterance.sample_rate)


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


def _read_text(path: Path) -> str:
    """The manifest's text; bytes that are not UTF-8 are refused with the line they are on."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EdgeAsrError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise EdgeAsrError(f"{path} line {line}: bytes that are not UTF-8 text; save the manifest as UTF-8") from exc


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(_read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EdgeAsrError(f"{path} line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise EdgeAsrError(f"{path} line {number}: expected a JSON object, found a JSON {json_type(row)}")
        yield number, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise EdgeAsrError(f"{path}: not a readable CSV manifest ({exc})") from exc
    if not header or "audio_path" not in header:
        raise EdgeAsrError(
            f"{path}: CSV header must include an 'audio_path' column (found: {', '.join(header or []) or 'none'})"
        )
    try:
        for number, row in enumerate(reader, 2):
            yield number, {k: v for k, v in row.items() if v not in (None, "")}
    except csv.Error as exc:
        raise EdgeAsrError(f"{path} line {reader.line_num}: not readable CSV ({exc})") from exc


def _resolve_inside(root: Path, relative: str, where: str) -> Path:
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise EdgeAsrError(f"{where}: audio_path {relative!r} points outside the manifest's folder {root}")
    return candidate


def _text(row: dict, key: str, where: str, numbers: bool = True) -> str | None:
    """A text column; ids may be written as numbers (speaker 12), anything else (a list, an object) is an
    error rather than its Python repr silently becoming a transcript or a speaker."""
    value = row.get(key)
    if value is None or isinstance(value, str):
        return value
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise EdgeAsrError(f"{where}: {key!r} must be text, not a JSON {json_type(value)} ({str(value)[:40]})")


def _sample_rate(row: dict, where: str) -> int | None:
    value = row.get("sample_rate")
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise EdgeAsrError(
            f"{where}: sample_rate must be a whole number of Hz (e.g. 16000), not {value!r}; fix or drop the column"
        )
    return value


def _from_rows(path: Path, rows: Iterator[tuple[int, dict]]) -> Dataset:
    root = path.parent
    utterances = []
    for number, row in rows:
        where = f"{path} line {number}"
        if not row.get("audio_path"):
            raise EdgeAsrError(f"{where}: missing column 'audio_path'")
        relative = _text(row, "audio_path", where, numbers=False)
        audio = _resolve_inside(root, relative, where)
        if not audio.is_file():
            raise EdgeAsrError(f"{where}: audio file not found: {audio}")
        known = {"audio_path", "utt_id", "transcript", "speaker", "gender", "language", "split", "sample_rate"}
        utterances.append(
            Utterance(
                audio_path=audio,
                utt_id=_text(row, "utt_id", where) or Path(relative).stem,
                transcript=_text(row, "transcript", where),
                speaker=_text(row, "speaker", where),
                gender=_text(row, "gender", where),
                language=_text(row, "language", where),
                split=_text(row, "split", where),
                sample_rate=_sample_rate(row, where),
                extra={k: v for k, v in row.items() if k not in known},
            )
        )
    if not utterances:
        raise EdgeAsrError(f"{path}: manifest has no rows")
    return Dataset(root, utterances)
