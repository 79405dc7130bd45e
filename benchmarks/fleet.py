"""Fleet throughput: `edgeasr fleet` on local Ray against a sequential loop of `edgeasr export`, one user a speaker.

Users are the speechocean762 speakers (each exported from their own clips: the manifest with a speaker filter).
Measured, on this machine, each in its own process:
- the fleet over all users (`--workers` Ray actors of `--threads` each, each loading the model once): wall time,
  users per hour, each user's seconds per export stage, each worker's peak resident memory, distinct artifacts
  and plans against users, bytes on disk against the users' folders as separate copies;
- the same fleet run again (every user complete: what a resumed run costs);
- `edgeasr export` for the first `--sequential` users one after another (default threads), as a user would
  loop it: seconds per user, so users per hour.
A projection of 10,000 users on N machines from the measured per-user cost follows, stated as a projection.

    python benchmarks/fleet.py --users 64 --target android --formats pte,onnx --budget 45MB --n-calib 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import DATA, RESULTS, ROOT, WORK, say

from exporter import __version__
from exporter.io import write_json, write_text

MANIFEST = DATA / "speechocean762" / "manifest.jsonl"


def speakers(limit: int) -> list[str]:
    seen: dict[str, None] = {}
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        if line.strip():
            seen.setdefault(json.loads(line)["speaker"], None)
    return sorted(seen)[:limit]


def export_args(args) -> list[str]:
    return (
        ["--model", args.model, "--target", args.target, "--budget", args.budget, "--n-calib", str(args.n_calib)]
        + (["--formats", args.formats] if args.formats else [])
        + ["--calibration", args.calibration]
    )


def run(argv: list[str], log: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", *argv], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, check=False
        )
    return time.perf_counter() - started, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--target", default="android")
    parser.add_argument("--formats", default="pte,onnx")
    parser.add_argument("--budget", default="45MB")
    parser.add_argument("--n-calib", type=int, default=8)
    parser.add_argument("--calibration", default="cosine")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sequential", type=int, default=3, help="users exported one by one with edgeasr export")
    args = parser.parse_args()

    tag = f"{args.model.replace('.', '_')}_{args.target}_{args.budget}_{args.calibration}"
    work = WORK / f"fleet_{tag}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    chosen = speakers(args.users)
    users = work / "users.jsonl"
    users.write_text(
        "".join(json.dumps({"user": f"so-{s}", "clips": str(MANIFEST), "speaker": s}) + "\n" for s in chosen),
        encoding="utf-8",
    )
    fleet_argv = ["fleet", "--users", str(users), "--out", str(work / "fleet"), *export_args(args)]
    fleet_argv += ["--workers", str(args.workers), "--threads", str(args.threads), "--no-progress"]
    load_before = os.getloadavg()[0]
    say(f"fleet: {len(chosen)} users, {args.workers} workers x {args.threads} thread(s)")
    fleet_wall, rc = run(fleet_argv, work / "fleet.log")
    fleet = json.loads((work / "fleet" / "fleet.json").read_text())
    say(f"fleet done in {fleet_wall:.0f} s (exit {rc}); again, every user complete")
    resume_wall, _ = run(fleet_argv, work / "fleet_again.log")
    again = json.loads((work / "fleet" / "fleet.json").read_text())

    sequential = []
    for speaker in chosen[: args.sequential]:
        say(f"sequential edgeasr export of speaker {speaker}")
        argv = ["export", *export_args(args), "--calib", str(MANIFEST), "--speaker", speaker]
        argv += ["--out", str(work / f"single-{speaker}"), "--no-progress"]
        seconds, code = run(argv, work / f"single-{speaker}.log")
        if code != 0:
            raise SystemExit(f"edgeasr export failed for speaker {speaker}: see {work / f'single-{speaker}.log'}")
        sequential.append(round(seconds, 1))

    result = summarise(args, chosen, fleet, fleet_wall, again, resume_wall, sequential, load_before)
    stem = RESULTS / f"fleet_{tag}"
    write_json(stem.with_suffix(".json"), result)
    write_text(stem.with_suffix(".md"), markdown(result))
    say(f"wrote {stem}.json/.md")


def summarise(args, chosen, fleet, fleet_wall, again, resume_wall, sequential, load_before) -> dict:
    users = [u for u in fleet["users"] if u["status"] == "ok"]
    stages: dict[str, list[float]] = {}
    for user in users:
        for name, seconds in user["stages"].items():
            stages.setdefault(name, []).append(seconds)
    per_user_fleet = fleet_wall / max(1, len(users))  # wall seconds per user with all workers busy
    per_user_sequential = statistics.mean(sequential) if sequential else None
    worker_seconds = fleet_wall * args.workers * args.threads / max(1, len(users))  # core-seconds per user
    return {
        "settings": {
            "model": args.model,
            "target": args.target,
            "formats": args.formats,
            "budget": args.budget,
            "n_calib": args.n_calib,
            "calibration": args.calibration,
            "workers": args.workers,
            "threads_per_worker": args.threads,
            "users": len(chosen),
            "cpus": os.cpu_count(),
            "load_average_before": round(load_before, 2),
        },
        "fleet": {
            "wall_seconds": round(fleet_wall, 1),
            "users_ok": len(users),
            "users_failed": fleet["totals"]["failed"],
            "users_per_hour": round(3600 / per_user_fleet, 1),
            "user_seconds_median": statistics.median(u["seconds"] for u in users),
            "stage_seconds_median": {k: round(statistics.median(v), 1) for k, v in stages.items()},
            "workers": fleet["workers"],
            "user_peak_rss_mb_max": max(u["peak_rss_mb"] for u in users),
            "artifacts": fleet["totals"]["artifacts"],
            "distinct_artifacts": fleet["totals"]["distinct_artifacts"],
            "distinct_plans": fleet["totals"]["distinct_plans"],
            "bytes_on_disk": fleet["totals"]["bytes_on_disk"],
            "bytes_as_copies": fleet["totals"]["bytes_as_copies"],
        },
        "resume": {"wall_seconds": round(resume_wall, 1), "skipped": again["totals"]["skipped"]},
        "sequential": {
            "users": len(sequential),
            "seconds": sequential,
            "users_per_hour": round(3600 / per_user_sequential, 1) if per_user_sequential else None,
        },
        "projection": {
            "core_seconds_per_user": round(worker_seconds, 1),
            "users": 10_000,
            "hours_on": {
                f"{machines} machines of {args.workers} cores": round(10_000 * per_user_fleet / machines / 3600, 1)
                for machines in (1, 10, 100)
            },
        },
        "notes": [
            f"speechocean762 speakers (first {len(chosen)} by id), each user exported from {args.n_calib} of their own "
            "20 clips (unlabelled use), with the same options in the fleet and in the sequential loop.",
            "Sequential: `edgeasr export` in its own process per user, PyTorch's default threads (all cores), "
            "model loaded each time; fleet: one Ray actor per worker, the model loaded once per actor.",
            "Projection (not measured): the measured fleet wall seconds per user on this 2-core machine, divided "
            "over N such machines, assuming no coordination cost beyond what one machine showed and the output "
            "folder on storage every machine shares.",
            f"Produced by `python benchmarks/fleet.py --users {args.users} --target {args.target} --formats "
            f"{args.formats} --budget {args.budget} --n-calib {args.n_calib} --calibration {args.calibration}` "
            f"(edgeasr {__version__}).",
        ],
    }


def markdown(r: dict) -> str:
    s, f, q, p = r["settings"], r["fleet"], r["sequential"], r["projection"]
    lines = [
        f"# Fleet: {s['users']} users, {s['model']} {s['target']} ({s['formats']}) at {s['budget']}",
        "",
        *r["notes"],
        "",
        "| run | users | wall s | s per user | users per hour |",
        "|---|---:|---:|---:|---:|",
        f"| fleet, {s['workers']} workers x {s['threads_per_worker']} thread | {f['users_ok']} | {f['wall_seconds']:,.0f} | "
        f"{f['wall_seconds'] / max(1, f['users_ok']):.1f} | {f['users_per_hour']:,.1f} |",
    ]
    if q["users"]:
        total = sum(q["seconds"])
        lines.append(
            f"| sequential `edgeasr export` | {q['users']} | {total:,.0f} | {total / q['users']:.1f} | "
            f"{q['users_per_hour']:,.1f} |"
        )
    lines.append(
        f"| fleet again (all complete) | {r['resume']['skipped']} skipped | {r['resume']['wall_seconds']:,.0f} | - | - |"
    )
    lines += [
        "",
        f"Failed users: {f['users_failed']}. Median seconds per user on one worker: {f['user_seconds_median']:.0f}; "
        "per stage (median): " + ", ".join(f"{k} {v:.1f}" for k, v in f["stage_seconds_median"].items()) + ".",
        "",
        f"Artifacts: {f['artifacts']} for {f['users_ok']} users, {f['distinct_artifacts']} distinct contents from "
        f"{f['distinct_plans']} distinct plans; {f['bytes_on_disk'] / 1e6:,.0f} MB on disk against "
        f"{f['bytes_as_copies'] / 1e6:,.0f} MB as separate copies.",
        "",
        "| worker | users | model load s | peak RSS MB |",
        "|---|---:|---:|---:|",
        *[
            f"| {w['worker']} | {w['users']} | {w['load_seconds']:.1f} | {w['peak_rss_mb']:,.0f} |"
            for w in f["workers"]
        ],
        "",
        f"Projection for {p['users']:,} users (core-seconds per user measured: {p['core_seconds_per_user']:.0f}): "
        + "; ".join(f"{k}: {v:,.1f} h" for k, v in p["hours_on"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
