"""What `edgeasr export` costs: wall time and peak memory, per stage, for the issue's two base exports.

Each export runs as its own process, the way a user runs it (`python -m exporter export ... --calib DIR`,
calibration: every AN4 train clip in one folder, of which the export samples its 32). Recorded per row: wall
time and peak RSS of that process, the stage times and per-stage peaks from its export.json, the artifact
bytes, and the machine's load average before and after (a loaded machine makes every stage slower). The
parity of those artifacts on real speech is benchmarks/export_parity.py's job; this script only measures cost,
so it can be rerun in minutes.

A rerun replaces the rows it measures and keeps the others.

    python benchmarks/export_cost.py                                  # base android 80MB, base onnx 50MB
    python benchmarks/export_cost.py --runs base:android:80MB         # one row
    python benchmarks/export_cost.py --runs base:onnx:50MB:knapsack:output   # with --allocation, --layer-cost
    python benchmarks/export_cost.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench_common import RESULTS, ROOT, calibration_folder, say

from exporter import __version__
from exporter.choices import ALLOCATIONS, DEFAULT_ALLOCATION, DEFAULT_LAYER_COST, LAYER_COSTS
from exporter.export import describe_stages, stage_values
from exporter.io import write_json, write_text

RUNS = ("base:android:80MB", "base:onnx:50MB")
GOAL_SECONDS, GOAL_RSS_MB = 180, 4000  # the lowering issue's goal for base on 2 cores
STEM = RESULTS / "export_cost"


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "")


def parse_run(spec: str) -> dict:
    """MODEL:TARGET:BUDGET[:ALLOCATION[:LAYER_COST]]; the last two default to the export's defaults."""
    parts = spec.split(":")
    if not 3 <= len(parts) <= 5:
        raise SystemExit(f"--runs {spec!r}: expected MODEL:TARGET:BUDGET[:ALLOCATION[:LAYER_COST]]")
    parts += [DEFAULT_ALLOCATION, DEFAULT_LAYER_COST][len(parts) - 3 :]
    run = dict(zip(("model", "target", "budget", "allocation", "layer_cost"), parts))
    if run["allocation"] not in ALLOCATIONS or run["layer_cost"] not in LAYER_COSTS:
        raise SystemExit(f"--runs {spec!r}: allocation is one of {ALLOCATIONS}, layer cost one of {LAYER_COSTS}")
    return run


def _key(row: dict) -> tuple:
    # rows measured before the allocation was recorded ran the default of their commit
    return tuple(row.get(k, "not recorded") for k in ("model", "target", "budget", "allocation", "layer_cost"))


def measure(model: str, target: str, budget: str, allocation: str, layer_cost: str) -> dict:
    """One export in a child process; its cost, read from the outside (wall, peak RSS) and the inside."""
    work = tempfile.mkdtemp(prefix="edgeasr-export-cost-")
    out = os.path.join(work, "artifact")
    load_before = os.getloadavg()
    started = time.perf_counter()
    try:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "export",
                "--model",
                model,
                "--target",
                target,
                "--budget",
                budget,
                "--allocation",
                allocation,
                "--layer-cost",
                layer_cost,
                "--calib",
                str(calibration_folder()),
                "--out",
                out,
                "--no-progress",
            ],
            cwd=ROOT,
        )
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS, not the largest yet
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if child.returncode:
            raise SystemExit(f"the export failed (exit {child.returncode}); nothing recorded")
        peak_mb = usage.ru_maxrss * 1024 / 1e6  # Linux reports KiB; MB here are 10^6 bytes, as per stage
        with open(os.path.join(out, "export.json"), encoding="utf-8") as f:
            summary = json.load(f)
        ran = {}  # what the export's auto choices resolved to, per artifact: the plans record it
        for folder, _, files in sorted(os.walk(out)):
            if "plan.json" in files:
                with open(os.path.join(folder, "plan.json"), encoding="utf-8") as f:
                    plan = json.load(f)
                ran[plan["target"]] = {"allocation": plan["allocation"], "rounding": plan["rounding"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stages, peaks = stage_values(summary), stage_values(summary, "stage_peak_rss_mb")
    return {
        "model": model,
        "target": target,
        "budget": budget,
        "allocation": allocation,
        "layer_cost": layer_cost,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "peak_rss_mb_largest_stage": round(max(peaks.values()), 1),
        "stages_s": stages,
        "stage_peak_rss_mb": peaks,
        "artifact_bytes": {a["format"]: a["artifact_bytes"] for a in summary["artifacts"]},
        "ran": ran,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "commit": _commit(),
    }


def _allocation(row: dict) -> str:
    if "allocation" not in row:
        return "not recorded (its commit's default)"
    text = row["allocation"] + (f" ({row['layer_cost']})" if row["allocation"] == "knapsack" else "")
    for target, ran in row.get("ran", {}).items():  # rows measured before this was recorded show none
        text += f"; {target} ran {ran['allocation']}, {ran['rounding']} rounding"
    return text


def write_report(data: dict) -> None:
    lines = [
        "# Export cost: wall time and peak memory of `edgeasr export`",
        "",
        f"Each export in its own process on this {data['rows'][0]['cpu_count'] if data['rows'] else '?'}-core "
        "machine, calibrated on a folder of the AN4 train clips (32 sampled). Peak RSS: the export "
        "process's, from its own rusage; per stage: the export's reading after resetting the kernel's "
        "high-water mark at the stage's start. Goal for base: "
        f"<= {GOAL_SECONDS} s and <= {GOAL_RSS_MB / 1000:g} GB.",
        "",
        "| model | target | budget | allocation (layer cost); what ran | wall s | peak RSS MB | stages: seconds / peak | "
        "load avg before / after (1 min) | commit |",
        "|---|---|---|---|---:|---:|---|---|---|",
    ]
    for row in data["rows"]:
        stages = describe_stages(row["stages_s"], row["stage_peak_rss_mb"])
        lines.append(
            f"| {row['model']} | {row['target']} | {row['budget']} | {_allocation(row)} | {row['wall_s']:.0f} | "
            f"{row['peak_rss_mb']:,.0f} | {stages} | {row['load_average_before'][0]:.1f} / "
            f"{row['load_average_after'][0]:.1f} | {row['commit']} |"
        )
    lines += [""] + [f"- {note}" for note in data.get("notes", [])]
    lines += ["", "Produced by `python benchmarks/export_cost.py`; records in `export_cost.json`."]
    write_text(STEM.with_suffix(".md"), "\n".join(lines) + "\n")
    print(STEM.with_suffix(".md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), metavar="MODEL:TARGET:BUDGET[:ALLOC[:COST]]")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    path = STEM.with_suffix(".json")
    data = (
        json.loads(path.read_text())
        if path.is_file()
        else {"schema_version": 1, "generated_by": f"edgeasr {__version__} benchmarks/export_cost.py", "rows": []}
    )
    if not args.report_only:
        runs = [parse_run(spec) for spec in args.runs]  # all checked before the first export
        for run in runs:
            say("export " + " ".join(run.values()))
            row = measure(**run)
            data["rows"] = [r for r in data["rows"] if _key(r) != _key(row)] + [row]
            write_json(path, data)
    write_report(data)


if __name__ == "__main__":
    main()
