"""Peers: edgeasr against whisper.cpp and CTranslate2 at the sizes whisper.cpp offers, on the same clips.

For one model, whisper.cpp's q4_0, q5_0 and q8_0 files and a CTranslate2 int8 folder are written from the
same Hugging Face weights edgeasr exports (benchmarks/peer_formats.py). edgeasr then exports at each
whisper.cpp file's exact byte count as its budget: the ONNX pair (target onnx), the .pte (target
android), the LiteRT pair (target litert) and the pair for tflite-runtime (target tflite-runtime, run in its
own environment: make install-tflite), both exported by .venv-litert's edgeasr, myQASR + fill, calibrated on the english_misc clips (unlabelled, not tested). A budget a target
cannot meet is a row with the export's own error. Every system runs in its own process on the same 80
clips (40 AN4 test, 40 speechocean762), one thread, greedy, scored by edgeasr's scorer; edgeasr's rows come
from `edgeasr bench`, the peers' from benchmarks/peer_worker.py. Each edgeasr row is also compared with
whisper.cpp at the same size: a paired bootstrap of the WER difference, resampled by speaker.

A run keeps every row as soon as it is measured (rows-...partial.json under the work folder), so a run that is
stopped resumes where it stopped when started again with the same options; --fresh measures everything again.

    pip install -e '.[peers]'
    python benchmarks/peers.py --model base
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from allocation_groups import capped
from bench_common import RESULTS, ROOT, STAMP_FILE, WORK, is_current, lowering_stamp, say
from clients import CALIB, SPEECHOCEAN, test_clips
from peer_formats import GGML_QUANTS, artifact_bytes, write_ct2_int8, write_ggml

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.data import Dataset
from exporter.export import ExportOptions, export
from exporter.io import read_json, write_json, write_text
from exporter.models import load_whisper
from exporter.scoring import aggregate, count_errors, paired_bootstrap
from runtimes.errors import EdgeAsrError

# target, format, runtime
TARGETS = (
    ("onnx", "onnx", "onnx"),
    ("android", "pte", "executorch"),
    ("litert", "tflite", "litert"),
    ("tflite-runtime", "tflite-runtime", "tflite-runtime"),
)
TARGET_NAMES = [target for target, _, _ in TARGETS]
# The default clip set (speechocean762 speakers, clips per speaker): 40 clips, beside 40 of AN4's; another
# set's results go to their own files
DEFAULT_CLIP_SET = (20, 2)
# Every edgeasr export here: the fill allocation, calibrated on 32 of the english_misc clips (CALIB).
ALLOCATION, N_CALIB = "fill", 32
# The LiteRT converter lives in its own environment (Makefile: make install-litert); its exports run there.
LITERT_PYTHON = ROOT / ".venv-litert" / "bin" / "python"
LITERT_TARGETS = ("litert", "tflite-runtime")  # both lowered by the LiteRT converter
TFLITE_VENV = ROOT / ".venv-tflite"  # tflite-runtime's own environment (make install-tflite), for its rows


@dataclasses.dataclass
class Row:
    system: str
    fmt: str
    bytes: int | None
    texts: dict[str, str] | None  # utt_id -> hypothesis
    latencies: list[float]  # seconds per clip
    audio_seconds: float
    run_peak: int | None
    note: str = ""
    baseline: int | None = None  # the process's resident set before the model loads (peer_worker.py)
    raw_texts: dict[str, str] | None = None  # a peer's own output, before edgeasr's loop guard (peer_worker.py)


class RowCheckpoint:
    """The rows an unfinished run has measured, kept after each one so that a stopped run resumes.

    Valid only for the same `identity` (model, clips, threads, lowering source, edgeasr version): a file from
    another run is set aside with a message and everything is measured again. `finish` removes it."""

    def __init__(self, path: Path, identity: dict, fresh: bool = False):
        self.path, self.identity, self.rows = path, identity, {}
        if fresh or not path.is_file():
            return
        try:
            stored = json.loads(path.read_text())
            rows = {key: Row(**row) for key, row in stored["rows"].items()} if stored["identity"] == identity else None
        except (ValueError, KeyError, TypeError) as exc:
            say(f"{path.name} is unreadable ({type(exc).__name__}): measuring every row again")
            return
        if rows is None:
            say(f"{path.name} is from a run with other clips, threads or lowering: measuring every row again")
            return
        self.rows = rows
        say(f"resuming from {path.name}: {len(rows)} row(s) measured before")

    def row(self, key: str, measure: Callable[[], Row]) -> Row:
        """The row stored under `key`, or `measure()`'s, stored before it is returned."""
        if key not in self.rows:
            self.rows[key] = measure()
            rows = {name: dataclasses.asdict(row) for name, row in self.rows.items()}
            write_json(self.path, {"identity": self.identity, "rows": rows})
        return self.rows[key]

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def ggml_path(model: str, quant: str) -> Path:
    """Where the whisper.cpp file of `model` at `quant` is written (peer_artifacts) and read."""
    return WORK / f"peers-{model}" / f"ggml-{model}-{quant}.bin"


def peer_artifacts(model: str, bundle, quants=GGML_QUANTS, ct2: bool = True) -> dict[str, Path]:
    """whisper.cpp files per quant type and the CT2 int8 folder, written once under WORK."""
    folder = WORK / f"peers-{model}"
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for quant in quants:
        path = ggml_path(model, quant)
        if not path.is_file():
            say(f"writing {path.name}")
            write_ggml(bundle, path, quant)
        made[f"whisper.cpp {quant}"] = path
    if not ct2:
        return made
    ct2_folder = folder / "ct2-int8"
    if not (ct2_folder / "model.bin").is_file():
        say("writing the CTranslate2 int8 folder")
        write_ct2_int8(bundle, ct2_folder)
    made["ct2 int8"] = ct2_folder
    return made


def exported(model: str, target: str, fmt: str, budget: int) -> Path | str:
    """The edgeasr export at `budget` bytes, or the export's error message when the target cannot meet it."""
    out = WORK / f"peers-{model}" / f"edgeasr-{target}-{budget}"
    if (out / "export.json").is_file() and is_current(out):
        return out
    shutil.rmtree(out, ignore_errors=True)
    if target in LITERT_TARGETS and importlib.util.find_spec("litert_torch") is None:
        return _export_in_litert_env(model, target, fmt, budget, out)
    options = ExportOptions(
        model=model,
        target=target,
        budget=str(budget),
        formats=(fmt,),
        allocation=ALLOCATION,
        calib=CALIB,
        n_calib=N_CALIB,
    )
    try:
        export(options, out, progress=False)
    except EdgeAsrError as exc:
        return str(exc).splitlines()[0]
    (out / STAMP_FILE).write_text(lowering_stamp() + "\n")
    return out


def _export_in_litert_env(model: str, target: str, fmt: str, budget: int, out: Path) -> Path | str:
    """The same export as `exported`, run by .venv-litert's edgeasr (the converter is not importable here)."""
    if not LITERT_PYTHON.is_file():
        sys.exit(f"the {target} rows need {LITERT_PYTHON}: run `make install-litert` first")
    command = [str(LITERT_PYTHON), "-m", "exporter.cli", "export", "--model", model, "--target", target]
    command += ["--budget", str(budget), "--formats", fmt, "--allocation", ALLOCATION, "--calib", str(CALIB)]
    command += ["--n-calib", str(N_CALIB), "--no-progress", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("edgeasr: error:")]
        if not errors:
            sys.exit(f"the {target} export failed unexpectedly:\n{done.stderr[-3000:]}")
        return errors[-1].removeprefix("edgeasr: error:").strip()
    (out / STAMP_FILE).write_text(lowering_stamp() + "\n")
    return out


def _clips_file(clips: Dataset, path: Path) -> Path:
    write_json(path, [{"path": str(u.audio_path), "utt_id": u.utt_id} for u in clips])
    return path


def decoder_prompt(special) -> list[int]:
    """What edgeasr's runners feed the decoder: start, then language and task on a multilingual model."""
    task = [special.languages["en"], special.transcribe] if special.is_multilingual else []
    return [special.sot, *task, special.no_timestamps]


def run_peer(system: str, path: Path, clips: Dataset, threads: int, prompt: list[int]) -> Row:
    kind = "whispercpp" if system.startswith("whisper.cpp") else "ct2"
    work = path.parent
    clips_json = _clips_file(clips, work / "clips.json")
    result_json = work / f"result-{system.replace(' ', '-')}.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "peer_worker.py"), "--system", kind]
    command += ["--model-path", str(path), "--clips", str(clips_json), "--out", str(result_json)]
    command += ["--threads", str(threads), "--prompt", ",".join(map(str, prompt))]
    say(f"{system}: {path.name}")
    subprocess.run(command, check=True)
    result = json.loads(result_json.read_text())
    size = artifact_bytes(path)
    return Row(
        system=system,
        fmt="ggml" if kind == "whispercpp" else "ctranslate2",
        bytes=size,
        texts={c["utt_id"]: c["text"] for c in result["clips"]},
        latencies=[c["seconds"] for c in result["clips"]],
        audio_seconds=sum(c["audio_seconds"] for c in result["clips"]),
        run_peak=result["peak_rss_bytes"],
        raw_texts={c["utt_id"]: c["raw_text"] for c in result["clips"]},
        baseline=result.get("baseline_rss_bytes"),
    )


def run_edgeasr(folder: Path, runtime: str, fmt: str, clips: Dataset, threads: int) -> Row:
    """`runtime` on the export in `folder`; torch-fp is the full-precision model, whatever the folder holds."""
    say(f"edgeasr {runtime}: {folder.name}")
    result = bench(BenchOptions(artifact=folder, data=SPEECHOCEAN, runtimes=(runtime,), threads=threads), dataset=clips)
    per_clip = result.transcripts[runtime]
    metric = {r["metric"]["name"]: r for r in result.records if r["group"] == "all"}
    return Row(
        system=f"edgeasr {fmt}",
        fmt=fmt,
        bytes=int(metric["artifact_bytes"]["metric"]["value"]),
        texts={c["utt_id"]: c["text"] for c in per_clip},
        latencies=[c["timings"]["total"] for c in per_clip],
        audio_seconds=sum(c["audio_seconds"] for c in per_clip),
        # the whole process's peak, as the peers' rows measure it: bench reports the run peak above its baseline
        run_peak=int(metric["memory_baseline"]["metric"]["value"] + metric["memory_run_peak"]["metric"]["value"]),
    )


def _counts(row: Row, clips: Dataset, cap: bool = False, raw: bool = False) -> list:
    texts = row.raw_texts if raw else row.texts
    counts = [count_errors(u.transcript, texts.get(u.utt_id)) for u in clips]
    return [capped(c) for c in counts] if cap else counts


def _group(clips: Dataset, name: str | None) -> list[int]:
    return [i for i, u in enumerate(clips) if name is None or u.split == name]


def summarise(row: Row, clips: Dataset, reference: Row | None) -> dict:
    data = {"system": row.system, "format": row.fmt, "bytes": row.bytes, "note": row.note}
    if row.texts is None:
        return data
    counts, capped_counts = _counts(row, clips), _counts(row, clips, cap=True)
    for group in (None, "an4", "speechocean762"):
        score = aggregate([counts[i] for i in _group(clips, group)])
        data[f"wer_{group or 'all'}"] = score.wer
        data[f"n_words_{group or 'all'}"] = score.n_tokens
    data["capped_wer_all"] = aggregate(capped_counts).wer
    data["unguarded_wer_all"] = aggregate(_counts(row, clips, raw=True)).wer if row.raw_texts else None
    data["latency_median_s"] = statistics.median(row.latencies)
    data["rtf"] = sum(row.latencies) / row.audio_seconds
    data["run_peak_bytes"] = row.run_peak
    if reference is not None and reference.texts is not None:
        # Every system's loops are cut by the same guard, so plain WER no longer hangs on one looping clip.
        comparison = paired_bootstrap(_counts(reference, clips), counts, clusters=[u.speaker for u in clips])
        data["vs_whispercpp"] = {"reference": reference.system, "basis": "guarded WER", **comparison.to_dict()}
    return data


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(model: str, rows: list[dict], notes: list[str]) -> str:
    lines = [
        f"# Peers: {model}, edgeasr vs whisper.cpp and CTranslate2",
        "",
        *notes,
        "",
        "| system | MB | WER all (n) | capped | unguarded | WER AN4 (n) | WER speechocean762 (n) | WER vs "
        "whisper.cpp same size, points [95 % CI] | latency median s | RTF | run peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        if "wer_all" not in r:
            lines.append(f"| {r['system']} | {r['bytes'] / 1e6:.1f} budget | {r['note']} |||||||||")
            continue
        versus = "-"
        if "vs_whispercpp" in r:
            c = r["vs_whispercpp"]
            versus = (
                f"{100 * c['delta']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] vs {c['reference']}"
            )
        lines.append(
            f"| {r['system']} | {r['bytes'] / 1e6:.1f} | {_pct(r['wer_all'])} ({r['n_words_all']}) | "
            f"{_pct(r['capped_wer_all'])} | {_pct(r.get('unguarded_wer_all'))} | "
            f"{_pct(r['wer_an4'])} ({r['n_words_an4']}) | {_pct(r['wer_speechocean762'])} "
            f"({r['n_words_speechocean762']}) | {versus} | {r['latency_median_s']:.2f} | {r['rtf']:.2f} | "
            f"{r['run_peak_bytes'] / 1e6:.0f} |"
        )
    return "\n".join(lines) + "\n"


def target_row(args, clips: Dataset, target: str, fmt: str, runtime: str, budget: int) -> Row:
    """edgeasr's `target` exported at `budget` bytes and run, or a row with the export's error."""
    folder = exported(args.model, target, fmt, budget)
    if isinstance(folder, str):
        return Row(f"edgeasr {fmt}", fmt, budget, None, [], 0.0, None, folder)
    return run_edgeasr(folder, runtime, fmt, clips, args.threads)


def measure(
    args, clips: Dataset, checkpoint: RowCheckpoint, quants=None, with_fp: bool = True
) -> list[tuple[Row, Row | None]]:
    """Every system on `clips` (whisper.cpp at `quants`, default args.quants): (row, the whisper.cpp row it
    is compared with, if any). Rows already in `checkpoint` are taken from it; every new one is stored there."""
    bundle = load_whisper(args.model)
    prompt = decoder_prompt(bundle.special)
    peers = peer_artifacts(args.model, bundle, quants or args.quants, not args.no_ct2)
    del bundle  # the exports and runs below are separate processes or load their own copy
    rows: list[tuple[Row, Row | None]] = []
    for system, path in peers.items():
        key = f"{system} {artifact_bytes(path)}"
        reference = checkpoint.row(key, lambda: run_peer(system, path, clips, args.threads, prompt))
        rows.append((reference, None))
        if not system.startswith("whisper.cpp"):
            continue
        budget = artifact_bytes(path)
        for target, fmt, runtime in TARGETS:
            if target not in args.targets:
                continue
            row = checkpoint.row(f"{target} {budget}", lambda: target_row(args, clips, target, fmt, runtime, budget))
            rows.append((row, reference if row.texts is not None else None))
            if with_fp and row.texts is not None and not any(r.system == "Whisper FP" for r, _ in rows):
                folder = exported(args.model, target, fmt, budget)
                fp = checkpoint.row("torch-fp", lambda: run_edgeasr(folder, "torch-fp", "fp32", clips, args.threads))
                rows.append((dataclasses.replace(fp, system="Whisper FP", fmt="PyTorch float32"), None))
    return rows


def add_target(args, clips: Dataset, rows: list[tuple[Row, Row | None]]) -> list[tuple[Row, Row | None]]:
    """`rows` of an earlier run with one more target's row after each whisper.cpp size (a target added
    after that run, e.g. litert): the other rows are kept as measured."""
    target, fmt, runtime = next(t for t in TARGETS if t[0] == args.add_target)
    out = []
    for row, reference in rows:
        if row.fmt == fmt:
            continue  # measured again below
        out.append((row, reference))
        if row.system.startswith("whisper.cpp"):
            folder = exported(args.model, target, fmt, row.bytes)
            if isinstance(folder, str):
                out.append((Row(f"edgeasr {fmt}", fmt, row.bytes, None, [], 0.0, None, folder), None))
            else:
                out.append((run_edgeasr(folder, runtime, fmt, clips, args.threads), row))
    return out


def replace_size(stored: list[dict], fresh: list[dict], quant: str) -> list[dict]:
    """`stored` (a results file's rows) with `fresh` in place of whisper.cpp `quant`'s row and of the edgeasr
    rows at its bytes that `fresh` measured again (another target's row there stays); the other sizes, CT2
    and FP stay. A size the file lacked goes last."""
    if not any(row["system"] == f"whisper.cpp {quant}" for row in stored):
        return stored + fresh
    remeasured = {row["system"] for row in fresh}
    out, in_size = [], False
    for row in stored:
        if row["system"].startswith("whisper.cpp"):
            in_size = row["system"] == f"whisper.cpp {quant}"
            if in_size:
                out += fresh
                continue
        elif not row["system"].startswith("edgeasr"):
            in_size = False
        if not (in_size and row["system"] in remeasured):
            out.append(row)
    return out


def remeasure(args, clips: Dataset, checkpoint: RowCheckpoint, stored: list[dict]) -> list[dict]:
    """`stored` with the whisper.cpp size `args.remeasure` measured again (replace_size)."""
    size_only = argparse.Namespace(**{**vars(args), "no_ct2": True})
    measured = measure(size_only, clips, checkpoint, [args.remeasure], with_fp=False)
    return replace_size(stored, [summarise(row, clips, reference) for row, reference in measured], args.remeasure)


def _options(args) -> str:
    """The command-line options of this run that differ from the defaults, as typed."""
    words = [f" --limit {args.limit}"] if args.limit else []
    if (args.speakers, args.per_speaker) != DEFAULT_CLIP_SET:
        words.append(f" --speakers {args.speakers} --per-speaker {args.per_speaker}")
    if list(args.quants) != list(GGML_QUANTS):
        words.append(f" --quants {' '.join(args.quants)}")
    if list(args.targets) != TARGET_NAMES:
        words.append(f" --targets {' '.join(args.targets)}")
    if args.no_ct2:
        words.append(" --no-ct2")
    if args.remeasure:
        words.append(f" --remeasure {args.remeasure}")
    return "".join(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, help="only N of the clips, sampled with seed 0 (results file _nN)")
    parser.add_argument("--note", action="append", default=[], help="a line to add to the results' notes")
    parser.add_argument("--report-only", action="store_true", help="re-make the tables from the last run's rows")
    parser.add_argument(
        "--add-target",
        choices=TARGET_NAMES,
        help="measure only this target's rows and add them to the last run's (say so with --note)",
    )
    speakers, per_speaker = DEFAULT_CLIP_SET
    parser.add_argument("--speakers", type=int, default=speakers, help="speechocean762 speakers sampled (of 64)")
    parser.add_argument("--per-speaker", type=int, default=per_speaker, help="clips per sampled speaker (of 20)")
    parser.add_argument("--quants", nargs="+", choices=GGML_QUANTS, default=list(GGML_QUANTS), help="whisper.cpp sizes")
    parser.add_argument("--targets", nargs="+", choices=TARGET_NAMES, default=TARGET_NAMES, help="edgeasr targets")
    parser.add_argument("--no-ct2", action="store_true", help="leave out the CTranslate2 int8 row")
    parser.add_argument("--fresh", action="store_true", help="measure every row again, not resuming a stopped run")
    parser.add_argument(
        "--remeasure",
        choices=GGML_QUANTS,
        help="measure this whisper.cpp size's rows again (the peer and edgeasr's at its bytes) and put them in place "
        "of the results file's (say why with --note)",
    )
    args = parser.parse_args()
    # the tflite-runtime rows' parity check and runs find its environment through this variable
    os.environ.setdefault("EDGEASR_TFLITE_VENV", str(TFLITE_VENV))
    clips = test_clips(speakers=args.speakers, per_speaker=args.per_speaker)
    if args.limit:
        clips = Dataset(clips.source, random.Random(0).sample(list(clips), args.limit))
    # another clip set gets its own files: e.g. peers_base_so64x4 for 4 clips of every speaker
    wide = "" if (args.speakers, args.per_speaker) == DEFAULT_CLIP_SET else f"_so{args.speakers}x{args.per_speaker}"
    raw = WORK / f"peers-{args.model}" / f"rows-{args.limit or 'all'}{wide}.json"  # kept for re-reports
    stem = RESULTS / f"peers_{args.model.replace('.', '_')}{wide}{f'_n{args.limit}' if args.limit else ''}"
    identity = {  # what a stopped run's checkpoint must share to be resumed
        "model": args.model,
        "clips": [u.utt_id for u in clips],
        "threads": args.threads,
        "lowering": lowering_stamp(),
        "edgeasr": __version__,
    }
    summaries = None
    if args.remeasure:
        stored = read_json(stem.with_suffix(".json"), "a peers results file")["rows"]
        identity["remeasure"] = args.remeasure
        checkpoint = RowCheckpoint(raw.with_name(f"{raw.stem}.{args.remeasure}.partial.json"), identity, args.fresh)
        summaries = remeasure(args, clips, checkpoint, stored)
        checkpoint.finish()
    elif args.report_only or args.add_target:
        rows = [(Row(**a), b and Row(**b)) for a, b in json.loads(raw.read_text())]
        if args.add_target:
            rows = add_target(args, clips, rows)
            write_json(raw, [(dataclasses.asdict(a), b and dataclasses.asdict(b)) for a, b in rows])
    else:
        checkpoint = RowCheckpoint(raw.with_name(raw.stem + ".partial.json"), identity, args.fresh)
        rows = measure(args, clips, checkpoint)
        write_json(raw, [(dataclasses.asdict(a), b and dataclasses.asdict(b)) for a, b in rows])
        checkpoint.finish()
    if summaries is None:
        summaries = [summarise(row, clips, reference) for row, reference in rows]
    # a re-report, an added target or a re-measured size keeps what earlier runs noted (after the generated
    # first line)
    earlier = []
    if (args.report_only or args.add_target or args.remeasure) and stem.with_suffix(".json").is_file():
        stored = read_json(stem.with_suffix(".json"), "a peers results file")["notes"][1:]
        earlier = [note for note in stored if not note.startswith("Produced by")]
    n_ocean = args.speakers * args.per_speaker
    sample = f"{len(clips)} of the {40 + n_ocean} clips (seed 0) of" if args.limit else f"{40 + n_ocean} clips:"
    notes = [
        f"{sample} 40 AN4 test (20 per gender) and {n_ocean} speechocean762 ({args.per_speaker} per speaker, "
        f"{args.speakers} speakers), "
        f"seed 0; {args.threads} thread(s), greedy, no timestamps; collapsed WER % by edgeasr's scorer for "
        "every system, n = reference tokens; capped: each clip's errors capped at its reference tokens, so a "
        "hallucination loop counts as one wrong clip. Every system's output goes through edgeasr's loop guard "
        "(a decoder that repeats one span of tokens is cut after its first copy; edgeasr's runners decode so, "
        "the peers' finished greedy tokens are cut where the guard would have stopped them, which gives the "
        "same text); unguarded: the peer's own output. edgeasr exports at each whisper.cpp file's bytes as the budget "
        f"({', '.join(args.targets)} targets, myQASR + fill, calibrated on the 22 english_misc clips, which are not tested). Intervals: paired "
        "bootstrap over speakers (2000 resamples). Run peak: the whole process's peak RSS while transcribing, for "
        "every system (edgeasr's ONNX runner process holds no torch; its .pte process does, because ExecuTorch's "
        "Python bindings import it, which an app's C++ runtime does not). "
        "One run on the shared 2-core host.",
        *earlier,
        *(note for note in args.note if note not in earlier),
        f"Produced by `python benchmarks/peers.py --model {args.model}{_options(args)}` (edgeasr {__version__}).",
    ]
    write_json(stem.with_suffix(".json"), {"notes": notes, "rows": summaries})
    write_text(stem.with_suffix(".md"), markdown(args.model, summaries, notes))
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
