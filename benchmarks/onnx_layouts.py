"""Should sherpa-onnx's layout be the default ONNX layout? The same plan lowered in both, run by edgeasr's ONNX
runner on the same clips: speed, memory, bytes and WER.

edgeasr's layout: a fixed 3000-frame encoder returning each layer's cross-attention keys and values, and a
KV-cache decoder taking one token per call. sherpa-onnx's (exporter/lower/onnx_sherpa.py): a dynamic-frame
encoder, a decoder with a fixed 448-position self-attention cache written by gather + select, an offset and n
tokens per call; edgeasr's runner frames features for it as sherpa-onnx does (clip frames + 1000 zero frames).
One plan (onnx ladder, myQASR + fill, calibrated on the english_misc clips, which are not tested), lowered in
both layouts; each run in its own measured process (`edgeasr bench`), 1 thread.
Clips: benchmarks/clients.py's 80 (40 AN4 test, 40 speechocean762).

    python benchmarks/onnx_layouts.py --model tiny.en --budget 45MB
"""

from __future__ import annotations

import argparse

from bench_common import DATA, RESULTS, WORK, lower_artifact, say
from bench_common import write_results as write_bench_results
from clients import SPEECHOCEAN, test_clips

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.data import load_dataset
from exporter.io import read_json, write_text
from exporter.models import load_whisper
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user

LAYOUTS = {"onnx": "edgeasr", "sherpa": "sherpa-onnx"}
ROWS = (  # (metric, group, label, scale)
    ("artifact_bytes", "all", "artifact MB", 1e-6),
    ("load_time", "all", "load time ms", 1),
    ("latency_median", "all", "latency median ms", 1),
    ("latency_p90", "all", "latency p90 ms", 1),
    ("encode_median", "all", "encoder median ms", 1),
    ("real_time_factor", "all", "real-time factor", 1),
    ("memory_load_peak", "all", "load peak added MB", 1e-6),
    ("memory_run_peak", "all", "run peak added MB", 1e-6),
    ("wer", "all", "WER % all", 100),
    ("wer", "an4", "WER % AN4", 100),
    ("wer", "speechocean762", "WER % speechocean762", 100),
)


def folder_name(model: str, budget: str, fmt: str) -> str:
    return f"onnx-layouts-{model}-{budget}-{fmt}"


def value(records: list[dict], folder: str, metric: str, group: str):
    """The record of `metric` for `group` measured on the artifact in `folder` (its name leads the record's)."""
    for r in records:
        if r["artifact"]["name"].startswith(folder + "/") and r["metric"]["name"] == metric and r["group"] == group:
            return r["metric"]["value"]
    return None


def write_report(stem, data: dict, model: str, budget: str) -> None:
    records, plan_note = data["records"], data["notes"][0]
    n_clips = {r["group"]: r["n"] for r in records if r["metric"]["name"] == "wer"}
    lines = [
        f"# ONNX layouts: {model}, onnx {budget} (myQASR + fill), edgeasr's ONNX runner",
        "",
        f"Produced by `python benchmarks/onnx_layouts.py --model {model} --budget {budget}`. One plan ({plan_note}; "
        "planned for the budget's bytes of weights, so the files are a little over it: `edgeasr export` plans "
        "below the budget by an allowance for the graph) lowered in edgeasr's layout and in sherpa-onnx's, each "
        "run by edgeasr's ONNX runner in its own process, 1 thread, 1 warm-up run, on 80 clips (40 AN4 test + 40 "
        f"speechocean762; n clips per group: {n_clips}); one run on the shared 2-core host, nothing else "
        "running. Memory: peak resident set added over the process's baseline.",
        "",
        "| metric | " + " | ".join(LAYOUTS.values()) + " |",
        "|---|" + "---:|" * len(LAYOUTS),
    ]
    for metric, group, label, scale in ROWS:
        cells = []
        for fmt in LAYOUTS:
            v = value(records, folder_name(model, budget, fmt), metric, group)
            text = "-" if v is None else f"{v * scale:,.3f}" if metric == "real_time_factor" else f"{v * scale:,.1f}"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--budget", default="45MB")
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from the JSON")
    args = parser.parse_args()
    stem = RESULTS / f"onnx_layouts_{args.model.replace('.', '_')}_{args.budget}"
    if args.report_only:
        write_report(stem, read_json(stem.with_suffix(".json"), "results"), args.model, args.budget)
        return
    bundle = load_whisper(args.model)
    user = observe_user(bundle, load_dataset(DATA / "english_misc" / "manifest.jsonl"), 32, 0)
    plan = make_plan(bundle, user, PlanOptions(target="onnx", budget=args.budget, allocation="fill"), False)
    clips = test_clips()
    records = []
    for fmt, layout in LAYOUTS.items():
        folder = lower_artifact(bundle, plan, fmt, WORK / folder_name(args.model, args.budget, fmt))
        say(f"{layout} layout: {folder}")
        result = bench(
            BenchOptions(artifact=folder, data=SPEECHOCEAN, runtimes=("onnx",), group_by="split", threads=1),
            dataset=clips,
        )
        if not all(r["artifact"]["name"].startswith(folder.name + "/") for r in result.records):
            raise SystemExit(f"bench records of {folder} are not named after it")
        records += result.records
    data = {
        "schema_version": 1,
        "generated_by": f"edgeasr {__version__} benchmarks/onnx_layouts.py",
        "notes": [f"plan: {plan.format_counts()}, {plan.total_bytes:,} bytes of weights"],
        "records": records,
    }
    write_bench_results(stem.with_suffix(".json"), data)
    write_report(stem, data, args.model, args.budget)
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
