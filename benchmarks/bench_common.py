"""Shared pieces of the `edgeasr bench` benchmark suites: the clip selection, the calibration folder, the
observed calibration clips, artifacts lowered from a plan, and writing a results table.

Artifacts live outside the repository (EDGEASR_BENCH_WORK, default /tmp/edgeasr-bench-work), keyed by what
made them, so a rerun reuses them; only result files are committed. Each lowered folder carries a stamp of the
code that lowered it, so an artifact from an older lowering is made again rather than measured by mistake.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.logs import quiet_libraries  # noqa: E402

quiet_libraries()

from exporter import __version__  # noqa: E402
from exporter.bench_schema import validate_results  # noqa: E402
from exporter.data import Dataset, load_dataset  # noqa: E402
from exporter.io import write_json, write_text  # noqa: E402
from exporter.lower.settings import DEFAULT_ATTENTION  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
AN4 = DATA / "an4" / "manifest.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
WORK = Path(os.environ.get("EDGEASR_BENCH_WORK", "/tmp/edgeasr-bench-work"))
GENDERS = ("female", "male")
OVERHEAD_ALLOWANCE = 400_000  # what edgeasr export keeps free for the graph beyond the plan's weights


def say(message: str) -> None:
    print(f"[suite] {message}", file=sys.stderr, flush=True)


def wer_summary(counts: list) -> dict:
    """WER, capped WER (each clip's errors capped at its reference words) and n words of per-clip counts."""
    from exporter.scoring import aggregate, capped

    score = aggregate(counts)
    return {"wer": score.wer, "capped_wer": aggregate([capped(c) for c in counts]).wer, "n_words": score.n_words}


def points_interval(comparison: dict | None) -> str:
    """A paired comparison (`Comparison.to_dict()`) as "+d.d [+l.l, +h.h]" WER points, "-" when absent."""
    if not comparison:
        return "-"
    c = comparison
    return f"{100 * c['delta']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]"


def an4_test_clips(per_gender: int, seed: int = 0) -> Dataset:
    """`per_gender` AN4 test clips of each gender (a seeded sample), sorted by path."""
    an4 = load_dataset(AN4)
    chosen = []
    for gender in GENDERS:
        pool = [u for u in an4 if u.split == "test" and u.gender == gender]
        chosen += random.Random(seed).sample(pool, min(per_gender, len(pool)))
    return Dataset(an4.source, sorted(chosen, key=lambda u: str(u.audio_path)))


def calibration_folder() -> Path:
    """A folder of links to every AN4 train clip (both genders): the user's unlabelled clips."""
    folder = WORK / "calib-an4-train"
    if not folder.is_dir():
        staging = WORK / "calib-an4-train.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for u in load_dataset(AN4):
            if u.split == "train":
                (staging / u.audio_path.name).symlink_to(u.audio_path)
        staging.rename(folder)
    return folder


STAMP_FILE = "lowered_by.txt"


def lowering_stamp() -> str:
    """A digest of the source that decides an artifact's bytes: model loading, planning and lowering, and the
    decoding that writes the calibration clips' pseudo-labels."""
    digest = hashlib.sha256()
    paths = [p for folder in ("models", "quant", "lower") for p in sorted((ROOT / "exporter" / folder).glob("*.py"))]
    for path in paths + [ROOT / "runtimes" / "decoding.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def is_current(folder: Path) -> bool:
    stamp = folder / STAMP_FILE
    return stamp.is_file() and stamp.read_text().strip() == lowering_stamp()


def lower_artifact(
    bundle, plan, fmt: str, folder: Path, n_frames: int = 3000, attention: str = DEFAULT_ATTENTION
) -> Path:
    """`folder` with the plan lowered as `edgeasr export` lays it out (model.pte or the .onnx pair, plan.json,
    tokenizer.json); reused when it is already complete."""
    from exporter.lower.registry import get_backend

    backend = get_backend(fmt)
    complete = all((folder / name).is_file() for name in (*backend.kind.files, "plan.json"))
    if complete and is_current(folder):
        return folder
    if folder.exists():
        say(f"{folder.name}: lowered by other code than this checkout's; lowering again")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    backend.lower(bundle, plan, staging, n_frames, attention)  # the export's own lowering, per format
    plan.save(staging / "plan.json")
    (staging / STAMP_FILE).write_text(lowering_stamp() + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def write_results(path: Path, data: dict) -> None:
    validate_results(data, str(path))
    write_json(path, data)


# The data sets of the peers' clip set (benchmarks/clients.py test_clips), as each clip's `split`
CLIP_SETS = ("an4", "speechocean762")


def scores_by_set(counts: list, clips: Dataset) -> dict[str, dict]:
    """WER and n words of `counts` (one per clip of `clips`) on all clips and on each data set."""
    from exporter.scoring import aggregate

    scores = {"all": aggregate(counts)}
    for name in CLIP_SETS:
        scores[name] = aggregate([c for c, u in zip(counts, clips, strict=True) if u.split == name])
    return {name: {"wer": score.wer, "n_words": score.n_tokens} for name, score in scores.items()}


def wer_cells(row: dict) -> str:
    """A results row's WER as table cells, WER all (n) | WER AN4 (n) | WER speechocean762 (n): the row holds
    `wer` and `n_words` over all clips and `groups`, per data set (`scores_by_set` split so)."""
    scores = {"all": {"wer": row["wer"], "n_words": row["n_words"]}, **row["groups"]}
    return " | ".join(f"{100 * scores[name]['wer']:.1f} ({scores[name]['n_words']})" for name in ("all", *CLIP_SETS))


def produced_by(script: str, options: dict[str, object]) -> str:
    """The notes' last line: the command that made a results file, with the options that differ from their
    defaults (`options`: flag -> value, None for a default, True for a switch given; a list is written
    space-separated)."""
    words = [f"python benchmarks/{script}"]
    for flag, value in options.items():
        if value is True:  # a switch
            words.append(flag)
        elif value is not None:
            words.append(f"{flag} {' '.join(map(str, value)) if isinstance(value, list | tuple) else value}")
    return f"Produced by `{' '.join(words)}` (edgeasr {__version__})."


def versus_table(rows: list[dict], columns: list[str], reference: str, last: tuple[str, object]) -> list[str]:
    """Markdown table of rows holding, per column, a wer_summary with an optional `vs_<reference>` paired
    comparison: WER (n), capped WER and the interval per column; `last` = (title, row -> cell) ends each row."""
    title, cell = last
    header = " | ".join(f"{c} WER % (n) | capped | vs {reference}, points [95 % CI]" for c in columns)
    lines = [f"| row | {header} | {title} |", "|---|" + "---:|---:|---|" * len(columns) + "---:|"]
    for r in rows:
        cells = []
        for c in columns:
            versus = points_interval(r[c].get(f"vs_{reference}"))
            cells.append(f"{100 * r[c]['wer']:.1f} ({r[c]['n_words']}) | {100 * r[c]['capped_wer']:.1f} | {versus}")
        lines.append(f"| {r['row']} | {' | '.join(cells)} | {cell(r)} |")
    return lines


def write_notes_and_rows(stem: Path, data: dict, markdown: str) -> None:
    """A results pair: `stem`.json with `data` (notes and rows) and `stem`.md with `markdown`, the tables."""
    write_json(stem.with_suffix(".json"), data)
    write_text(stem.with_suffix(".md"), markdown)
    say(f"wrote {stem}.json/.md")


__all__ = [
    "AN4",
    "CLIP_SETS",
    "DATA",
    "GENDERS",
    "OVERHEAD_ALLOWANCE",
    "RESULTS",
    "ROOT",
    "WORK",
    "an4_test_clips",
    "STAMP_FILE",
    "calibration_folder",
    "is_current",
    "lower_artifact",
    "lowering_stamp",
    "produced_by",
    "say",
    "scores_by_set",
    "versus_table",
    "wer_cells",
    "write_notes_and_rows",
    "write_results",
]
