"""Where a .pte's run memory goes, measured as an app holds it: ExecuTorch's C++ runtime without torch
(runtime executorch-native) beside the Python bindings (runtime executorch), eager vs chunked attention.

One android export per model (fill, english_misc calibration, which is not tested) is lowered three times:
with the encoder's attention `eager` and `chunked` (exporter/lower/whisper_modules.chunked_attention, the
default), and chunked again with ExecuTorch's own breadth-first re-sort of delegated subgraphs instead of
program order (exporter/lower/program_order.py; row "chunked, bfs order"); the plan, and so the weights,
are the same. `edgeasr bench` runs each artifact in each runtime in its own
process, in rounds that alternate the order, on the same clips (40 AN4 test + 1 clip of each of 40
speechocean762 speakers by default). Per row: the bytes the artifact adds to its process (load and run peak
minus the baseline with the runtime imported, and the memory model's prediction), the baseline itself and the
process's whole peak (both processes for executorch-native: the Python side holds features and decoding),
latency, RTF, WER, and the transcripts that differ from eager's in the same runtime.

    python benchmarks/pte_memory.py --model tiny.en [--budget 45MB] [--rounds 2] [--report-only]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

from bench_common import RESULTS, STAMP_FILE, WORK, is_current, lowering_stamp, produced_by, say, write_results
from clients import CALIB, SPEECHOCEAN, test_clips

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.bench_schema import load_results
from exporter.export import ExportOptions, export
from exporter.export.result import seal_artifact
from exporter.io import write_text
from exporter.lower.executorch import lower_executorch
from exporter.models import load_whisper
from exporter.quant.plan import QuantPlan

BUDGETS = {"tiny.en": "45MB", "base": "80MB"}
# row name -> (attention, delegates in program order)
LOWERINGS = {"eager": ("eager", True), "chunked": ("chunked", True), "chunked, bfs order": ("chunked", False)}
RUNTIMES = ("executorch-native", "executorch")
MB = 1e6


def exported(model: str, budget: str, attention: str) -> Path:
    out = WORK / f"pte-memory-{model}-{budget}-{attention}"
    if (out / "export.json").is_file() and is_current(out):
        say(f"reusing {out}")
        return out
    options = ExportOptions(
        model=model, target="android", budget=budget, formats=("pte",), calib=CALIB, n_calib=32, attention=attention
    )
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # a run stopped mid-export
    export(options, staging, progress=False)
    (staging / STAMP_FILE).write_text(lowering_stamp() + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def relowered_in_bfs_order(model: str, source: Path, attention: str) -> Path:
    """`source`'s export with its .pte lowered again from the same plan, ExecuTorch's re-sort left in place."""
    out = source.with_name(source.name + "-bfs")
    if is_current(out):
        say(f"reusing {out}")
        return out
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    plan = QuantPlan.load(staging / "plan.json")
    lower_executorch(load_whisper(model), plan, staging / "model.pte", attention=attention, program_order=False)
    seal_artifact(staging)  # the export's record, with the new program's digest
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def lowered(model: str, budget: str) -> dict[str, Path]:
    folders = {attention: exported(model, budget, attention) for attention in ("eager", "chunked")}
    return {
        row: folders[attention] if in_order else relowered_in_bfs_order(model, folders[attention], attention)
        for row, (attention, in_order) in LOWERINGS.items()
    }


def measure(args, clips) -> dict:
    folders = lowered(args.model, args.budget)
    records, notes = [], []
    settings = [(row, runtime) for row in LOWERINGS for runtime in RUNTIMES]
    for round_index in range(args.rounds):
        for attention, runtime in settings if round_index % 2 == 0 else reversed(settings):
            say(f"round {round_index + 1}: {attention} through {runtime}")
            result = bench(
                BenchOptions(artifact=folders[attention], data=SPEECHOCEAN, runtimes=(runtime,), threads=1),
                dataset=clips,
            )
            texts = {clip["utt_id"]: clip["text"] for clip in result.transcripts[runtime]}
            for record in result.records:
                record.setdefault("extra", {}).update({"attention": attention, "round": round_index + 1})
                if record["metric"]["name"] == "wer" and record["group"] == "all":
                    record["extra"]["texts"] = texts
            records += result.records
            notes = sorted(set(notes) | set(result.notes))
    notes.append(
        f"{len(clips)} clips (40 AN4 test, 1 clip of each of 40 speechocean762 speakers, seed 0); 1 thread; "
        f"{args.rounds} rounds alternating the order; one android export per attention ({args.budget}, fill, "
        "english_misc calibration), the same plan; `chunked, bfs order`: the chunked export's plan lowered again "
        "without exporter/lower/program_order.py"
    )
    notes.append(
        produced_by("pte_memory.py", {"--model": args.model, "--budget": args.budget, "--rounds": args.rounds})
    )
    return {
        "schema_version": 1,
        "generated_by": f"edgeasr {__version__} benchmarks/pte_memory.py",
        "notes": notes,
        "records": records,
    }


def _metric(records: list[dict], name: str) -> list[float]:
    return [r["metric"]["value"] for r in records if r["metric"]["name"] == name]


def _texts(records: list[dict]) -> dict[str, str]:
    """The first round's transcripts of a row, by clip."""
    return next(r["extra"]["texts"] for r in records if r["metric"]["name"] == "wer" and r["group"] == "all")


def markdown(data: dict, model: str) -> str:
    rows = {}
    for record in data["records"]:
        key = (record["extra"]["attention"], record["runtime"]["name"])
        rows.setdefault(key, []).append(record)
    lines = [
        f"# .pte run memory as an app holds it: {model}",
        "",
        *[f"- {note}" for note in data["notes"]],
        "",
        "Peaks are bytes above the process's baseline (the runtime imported, nothing loaded), median over rounds; "
        "process peak = baseline + run peak (executorch-native: the worker and the Python process that feeds it, "
        "summed). Predicted: `exporter.memory` from the .pte's own memory plan.",
        "",
        "| attention | runtime | artifact MB | load peak MB (pred.) | run peak MB (pred.) | baseline MB | "
        "process peak MB | latency median ms | RTF | WER % (n words) | transcripts unlike eager's |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def differ(attention: str, runtime: str) -> str:
        ours, eager = _texts(rows[attention, runtime]), _texts(rows["eager", runtime])
        return f"{sum(ours[k] != eager[k] for k in eager)} of {len(eager)}"

    for (attention, runtime), records in rows.items():

        def median(name: str) -> float:
            values = _metric(records, name)
            return statistics.median(values) if values else float("nan")

        wer = [r for r in records if r["metric"]["name"] == "wer" and r["group"] == "all"]
        baseline, run = median("memory_baseline"), median("memory_run_peak")
        lines.append(
            f"| {attention} | {runtime} | {median('artifact_bytes') / MB:.1f} | {median('memory_load_peak') / MB:.0f} "
            f"({median('predicted_memory_load_peak') / MB:.0f}) | {run / MB:.0f} "
            f"({median('predicted_memory_run_peak') / MB:.0f}) | {baseline / MB:.0f} | {(baseline + run) / MB:.0f} | "
            f"{median('latency_median'):,.0f} | {median('real_time_factor'):.3f} | "
            f"{100 * wer[0]['metric']['value']:.1f} ({wer[0]['extra']['n_words']}) | {differ(attention, runtime)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", choices=sorted(BUDGETS))
    parser.add_argument("--budget", help="the android export's budget (default: 45MB tiny.en, 80MB base)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.budget = args.budget or BUDGETS[args.model]
    stem = RESULTS / f"pte_memory_{args.model.replace('.', '_')}"
    if args.report_only:
        data = load_results(stem.with_suffix(".json"))
    else:
        data = measure(args, test_clips())
        write_results(stem.with_suffix(".json"), data)
    write_text(stem.with_suffix(".md"), markdown(data, args.model))
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
