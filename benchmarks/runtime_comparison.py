"""Runtime comparison: the same clips through PyTorch FP, PyTorch simulating each artifact's plan, ExecuTorch
and ONNX Runtime, each in its own measured process, in one run; speed-ups are ratios of those measurements.

The artifact is made by `edgeasr export` (myQASR, cosine calibration on 32 unlabelled AN4 train clips,
formats pte and onnx at one size budget) unless --artifact names an existing export folder. The two formats
have different plans (each runtime's ladder of formats differs), so each artifact is compared with PyTorch
simulating its own plan; PyTorch FP is the common reference. Clips: AN4 test, balanced by gender.

    python benchmarks/runtime_comparison.py --model tiny.en --budget 55MB
    python benchmarks/runtime_comparison.py --model base --budget 80MB --artifact DIR
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from bench_common import (
    AN4,
    RESULTS,
    STAMP_FILE,
    WORK,
    an4_test_clips,
    calibration_folder,
    is_current,
    lowering_stamp,
    say,
    write_results,
)

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.bench_report import format_markdown, plot, systems
from exporter.bench_schema import load_results
from exporter.export import ExportOptions, export
from exporter.io import write_text


def exported(model: str, budget: str, formats: tuple[str, ...]) -> Path:
    out = WORK / f"{model}-{budget}-{'-'.join(formats)}-myqasr"
    if (out / "export.json").is_file() and is_current(out):
        say(f"reusing {out}")
        return out
    if out.exists():
        say(f"{out.name}: exported by other code than this checkout's; exporting again")
        shutil.rmtree(out)
    options = ExportOptions(
        model=model,
        target="android" if formats[0] == "pte" else "onnx",
        budget=budget,
        formats=formats,
        calib=calibration_folder(),
        n_calib=32,
    )
    export(options, out, progress=False)
    (out / STAMP_FILE).write_text(lowering_stamp() + "\n")
    return out


def ratio_table(data: dict) -> list[str]:
    found = list(systems(data["records"]).values())

    def value(entry, metric):
        record = entry["metrics"].get((metric, "all"))
        return None if record is None else record["metric"]["value"]

    fp = next((e for e in found if e["runtime"]["name"] == "torch-fp"), None)
    lines = [
        "## Speed-ups (ratios of this run's measurements; > 1 is faster than PyTorch FP)",
        "",
        "| system | latency median (ms) | speed-up vs torch-fp | encoder speed-up vs torch-fp | RTF |",
        "|---|---:|---:|---:|---:|",
    ]
    for entry in found:
        latency, encode = value(entry, "latency_median"), value(entry, "encode_median")
        lines.append(
            f"| {entry['label']} | {latency:,.0f} | {value(fp, 'latency_median') / latency:.2f} | "
            f"{value(fp, 'encode_median') / encode:.2f} | {value(entry, 'real_time_factor'):.3f} |"
        )
    return lines + [""]


def write_report(data: dict, stem: Path, title: str) -> None:
    text = format_markdown(data, title)
    head, _, rest = text.partition("## Speed and size")
    write_text(stem.with_suffix(".md"), head + "\n".join(ratio_table(data)) + "\n## Speed and size" + rest)
    plot(data, stem.with_suffix(".png"), title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--budget", default="55MB")
    parser.add_argument("--formats", default="pte,onnx")
    parser.add_argument("--artifact", type=Path, help="an existing export folder instead of exporting")
    parser.add_argument("--onnx-artifact", type=Path, help="an existing ONNX export, when --artifact has none")
    parser.add_argument("--per-gender", type=int, default=20, help="AN4 test clips per gender (default 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="re-render .md/.png from the results .json")
    args = parser.parse_args()
    stem = RESULTS / f"runtimes_{args.model.replace('.', '_')}_{args.budget}"
    title = f"Runtime comparison: {args.model}, {args.budget} budget"
    if args.report_only:
        data = load_results(stem.with_suffix(".json"))
        write_report(data, stem, title)
        return

    formats = tuple(args.formats.split(","))
    root = args.artifact or exported(args.model, args.budget, formats)
    onnx = root / "onnx" if (root / "onnx" / "encoder.onnx").is_file() else root
    if not (onnx / "encoder.onnx").is_file() and "onnx" in formats:
        onnx = args.onnx_artifact or exported(args.model, args.budget, ("onnx",))  # a pte-only --artifact
    clips = an4_test_clips(args.per_gender)
    runs = []
    if (root / "model.pte").is_file():
        runs.append((root, ("torch-fp", "torch", "executorch")))
    if (onnx / "encoder.onnx").is_file():
        runs.append((onnx, ("torch", "onnx") if runs else ("torch-fp", "torch", "onnx")))
    records, notes = (
        [],
        [
            f"{len(clips)} AN4 test clips ({args.per_gender} per gender, seed 0), "
            f"{args.threads} thread(s) per runtime, 1 warm-up run; 2-core shared host"
        ],
    )
    for folder, runtimes in runs:
        say(f"{folder}: {', '.join(runtimes)}")
        result = bench(
            BenchOptions(artifact=folder, data=AN4, runtimes=runtimes, group_by="gender", threads=args.threads),
            dataset=clips,
        )
        records += result.records
        notes += result.notes
    produced_by = (
        f"Produced by `python benchmarks/runtime_comparison.py --model {args.model} --budget "
        f"{args.budget}` from `{root.name}`" + (f" and `{onnx.name}`" if onnx != root else "") + "."
    )
    data = {
        "schema_version": 1,
        "generated_by": f"edgeasr {__version__} benchmarks/runtime_comparison.py",
        "notes": notes + [produced_by],
        "records": records,
    }
    write_results(stem.with_suffix(".json"), data)
    write_report(data, stem, title)
    say(f"wrote {stem}.json/.md/.png")


if __name__ == "__main__":
    main()
