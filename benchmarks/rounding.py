"""Rounding at one budget: nearest codes against GPTQ's, chosen on the user group's own activations.

For each age group of speechocean762 (the allocation benchmark's split, seed 0), the group's 32 unlabelled
calibration clips plan the model once (myQASR order, fill allocation or `--allocation`, cosine clip ratios)
on `--target` at `--budget`. The plan's codes are then taken either as the nearest ones or as GPTQ's
(exporter/quant/gptq.py) with each `--dampings` value; formats and scales are the same in every row, only
codes differ. Each row is simulated in PyTorch and tested on `--per-group` clips of the group's other
speakers; intervals are paired bootstraps against nearest rounding, resampled by speaker, per group and over
both groups together.

Matched against mismatched calibration (`--mismatched`, `--other-model`): the group's own GPTQ model against
one rounded on the other age group's clips (the group's plan), or against the other group's whole model (its
plan and its rounding: what a model calibrated for the other group gives this group's users).
`--nearest-other-model` does the same for the export's default rounding: the group's own plan with nearest
codes against the other group's plan with nearest codes (only the allocation and the scales differ).
`--test-groups child` tests one group only (both groups' clips still plan and round their models), so a larger
`--per-group` fits in the time: 480 takes every clip of the group's 24 test speakers.

    python benchmarks/rounding.py --model tiny.en --target android --budget 35MB [--dampings 1.0 0.1]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from allocation_groups import GROUPS, split_speakers
from bench_common import (
    RESULTS,
    WORK,
    lower_artifact,
    points_interval,
    produced_by,
    say,
    versus_table,
    wer_summary,
    write_notes_and_rows,
)

from exporter.data import Dataset
from exporter.evaluate import evaluate
from exporter.models import load_whisper
from exporter.quant.gptq import GptqOptions, gptq_round, input_hessians
from exporter.quant.layers import quantizable_layers
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user
from exporter.quant.simulate import simulate
from exporter.scoring import aggregate, paired_bootstrap
from runtimes.artifact import open_artifact
from runtimes.torch_runner import TorchRunner

ALL = "both"  # the column pooling both groups' clips
OWN, OTHER = "own", "other"  # whose clips round a row, and whose plan it is: the tested group's or the other's
MISMATCHED_CLIPS = "{}, other group's clips"
MISMATCHED_MODEL = "{}, other group's model"
NEAREST = "nearest"
# --runtime: the export format whose real runtime decodes the nearest row and the first GPTQ row again
RUNTIME_FORMATS = {"executorch": "pte", "onnx": "sherpa"}


def _row_name(damping: float | None) -> str:
    return NEAREST if damping is None else f"gptq (damping {damping:g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--target", default="android")
    parser.add_argument("--budget", default="35MB")
    parser.add_argument("--per-group", type=int, default=60, help="test clips per age group")
    parser.add_argument("--allocation", default="fill", choices=["myqasr", "fill", "knapsack"])
    parser.add_argument("--dampings", type=float, nargs="+", default=[GptqOptions().damping])
    parser.add_argument("--runtime", choices=sorted(RUNTIME_FORMATS), help="also decode two rows' artifacts")
    parser.add_argument("--act-order", action="store_true", help="add the first damping with act order")
    parser.add_argument(
        "--mismatched", action="store_true", help="add the first damping on the other group's clips' activations"
    )
    parser.add_argument(
        "--other-model",
        action="store_true",
        help="add the other group's model (its plan, rounded with the first damping on its clips) on this group",
    )
    parser.add_argument(
        "--nearest-other-model",
        action="store_true",
        help="add the other group's plan with nearest codes on this group (the default rounding, matched or not)",
    )
    parser.add_argument("--test-groups", nargs="+", choices=GROUPS, default=list(GROUPS), help="groups to test")
    parser.add_argument("--suffix", default="", help="appended to the results file name (e.g. _variants)")
    args = parser.parse_args()
    bundle = load_whisper(args.model)
    calib, test = split_speakers(8, 32, args.per_group, 0)
    counts: dict[str, dict[str, list]] = {"FP": {}}
    speakers: dict[str, list[str]] = {}
    seconds = {}
    linear = [layer.name for layer in quantizable_layers(bundle.model) if layer.kind == "linear"]
    users, hessians = {}, {}
    for group in GROUPS:
        users[group] = observe_user(bundle, calib[group], 32, 0, progress=False)
        started = time.perf_counter()
        hessians[group] = input_hessians(bundle, linear, users[group].observations, False)
        seconds[("hessians", group)] = round(time.perf_counter() - started, 1)
    first = GptqOptions(damping=args.dampings[0])
    own = _row_name(first.damping)
    # (row, GPTQ options or None for nearest, whose clips round it, whose plan it is)
    variants = [(_row_name(d), GptqOptions(damping=d), OWN, OWN) for d in args.dampings]
    if args.act_order:
        variants.append((f"{own}, act order", replace(first, act_order=True), OWN, OWN))
    if args.mismatched:
        variants.append((MISMATCHED_CLIPS.format(own), first, OTHER, OWN))
    if args.other_model:
        variants.append((MISMATCHED_MODEL.format(own), first, OTHER, OTHER))
    if args.nearest_other_model:
        variants.append((MISMATCHED_MODEL.format(NEAREST), None, OWN, OTHER))
    options = PlanOptions(target=args.target, budget=args.budget, allocation=args.allocation)
    plans = {group: make_plan(bundle, users[group], options, progress=False) for group in GROUPS}
    # (whose plan, whose clips, GPTQ options) -> (model, plan): the other group's model on this group is that
    # group's own GPTQ row, rounded once (minutes on base)
    rounded = {}
    tested = [g for g in GROUPS if g in args.test_groups]
    for group in tested:
        clips = Dataset(test.source, [u for u in test if u.extra["age_group"] == group])
        speakers[group] = [u.speaker for u in clips]
        counts["FP"][group] = evaluate(TorchRunner(bundle), clips, model_id="FP", progress=False).counts()
        other = next(g for g in GROUPS if g != group)
        whose = {OWN: group, OTHER: other}
        for name, gptq, clips_of, plan_of in [(NEAREST, None, OWN, OWN), *variants]:
            started = time.perf_counter()
            if gptq is None:
                model, row_plan = bundle, plans[whose[plan_of]]
            else:
                key = (whose[plan_of], whose[clips_of], gptq)
                if key not in rounded:
                    rounded[key] = gptq_round(bundle, plans[key[0]], hessians[key[1]], gptq, progress=False)
                    seconds[(name, group)] = round(time.perf_counter() - started, 1)
                model, row_plan = rounded[key]
            runner = TorchRunner(simulate(model, row_plan))
            counts.setdefault(name, {})[group] = evaluate(runner, clips, model_id=name, progress=False).counts()
            say(f"{group} {name}: {100 * aggregate(counts[name][group]).wer:.1f} %")
            if args.runtime and name in (NEAREST, _row_name(first.damping)):
                fmt = RUNTIME_FORMATS[args.runtime]
                folder = lower_artifact(model, row_plan, fmt, WORK / f"rounding-{args.model}-{fmt}-{row_plan.plan_id}")
                runner = open_artifact(folder, threads=2, runtime=args.runtime)
                real = f"{name} @{args.runtime}"
                counts.setdefault(real, {})[group] = evaluate(runner, clips, model_id=real, progress=False).counts()
                say(f"{group} {real}: {100 * aggregate(counts[real][group]).wer:.1f} %")
    columns = [*tested, ALL] if len(tested) > 1 else tested
    speakers[ALL] = [s for g in tested for s in speakers[g]]
    rows = []
    for name, by_group in counts.items():
        by_group[ALL] = [c for g in tested for c in by_group[g]]
        row = {"row": name, "seconds": {g: seconds.get((name, g)) for g in tested}}
        for column in columns:
            row[column] = wer_summary(by_group[column])
            reference = f"{NEAREST} @{args.runtime}" if name.endswith(f"@{args.runtime}") else NEAREST
            if name not in ("FP", reference):
                row[column]["vs_nearest"] = paired_bootstrap(
                    counts[reference][column], by_group[column], clusters=speakers[column]
                ).to_dict()
        rows.append(row)
    # Matched against mismatched: the group's own row with the same rounding (A) against each mismatched row
    # (B) on the same clips; B - A > 0 means the group's own calibration transcribes its users better.
    pairs = [
        (NEAREST if gptq is None else own, name)
        for name, gptq, clips_of, plan_of in variants
        if OTHER in (clips_of, plan_of)
    ]
    matched = [
        {
            "row": name,
            "against": mine,
            **{c: paired_bootstrap(counts[mine][c], counts[name][c], clusters=speakers[c]).to_dict() for c in columns},
        }
        for mine, name in pairs
    ]
    hessian_s = "/".join(str(seconds[("hessians", g)]) for g in GROUPS)
    tested_note = (
        ""
        if len(tested) == len(GROUPS)
        else f" Tested: {', '.join(tested)} only (both groups' clips plan and round their models)."
    )
    notes = [
        f"speechocean762, the allocation benchmark's split (seed 0): per age group, 32 unlabelled clips of 8 "
        f"calibration speakers plan the model, {args.per_group} clips of the group's other speakers test it. "
        f"{args.model}, target {args.target}, budget {args.budget}, myQASR order + {args.allocation} allocation + "
        "cosine clip ratios; plan bytes "
        + ", ".join(f"{g} {plans[g].total_bytes / 1e6:.2f} MB" for g in GROUPS)
        + ". Formats and scales are the same in every row; only the codes differ: nearest, or GPTQ's on the "
        "calibration clips' activations (every real input row, teacher-forced on the FP model's pseudo-labels; "
        "damping as a fraction of H's mean diagonal; act order: columns rounded by decreasing H diagonal; other "
        "group's clips: this group's plan, rounded on the other age group's calibration clips; other group's model: "
        "the other age group's plan, rounded on its clips). Simulated in PyTorch (the export checks each artifact "
        "against this simulation), greedy with the loop guard. WER % with n words; capped: each clip's errors "
        "capped at its reference words; interval: 95 % paired bootstrap against nearest (for @runtime rows: "
        "nearest through the same runtime, the artifact lowered from that row's plan) over speakers (2000 "
        f"resamples). s: GPTQ rounding time per group on this 2-core machine (none where a row is another's "
        f"rounding, made once), after input Hessians taking {hessian_s} s (one pass over the 32 clips)."
        + tested_note
        + (
            " nearest, other group's model: the other age group's plan (its allocation and scales) with nearest codes."
            if args.nearest_other_model
            else ""
        ),
        produced_by(
            "rounding.py",
            {
                "--model": args.model,
                "--target": args.target,
                "--budget": args.budget,
                "--per-group": args.per_group,
                "--allocation": args.allocation if args.allocation != "fill" else None,
                "--dampings": args.dampings,
                "--runtime": args.runtime,
                "--act-order": args.act_order or None,
                "--mismatched": args.mismatched or None,
                "--other-model": args.other_model or None,
                "--nearest-other-model": args.nearest_other_model or None,
                "--test-groups": args.test_groups if len(tested) < len(GROUPS) else None,
                "--suffix": args.suffix or None,
            },
        ),
    ]
    lines = [f"# Rounding: {args.model}, {args.target} {args.budget}", "", *notes, ""]

    def spent(row: dict) -> str:
        values = [s for s in row["seconds"].values() if s is not None]
        return "/".join(map(str, values)) if values else "-"

    lines += versus_table(rows, columns, "nearest", ("s", spent))
    if matched:
        lines += [
            "",
            "## Matched against mismatched calibration",
            "",
            "B - A in WER points [95 % CI], paired over the same clips, resampled by speaker; A = the tested group's "
            "own clips and plan with the same rounding as B, B = the row named; positive: the group's own "
            "calibration is better.",
            "",
            "| B | A | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        lines += [
            f"| {m['row']} | {m['against']} | " + " | ".join(points_interval(m[c]) for c in columns) + " |"
            for m in matched
        ]
    stem = RESULTS / f"rounding_{args.model.replace('.', '_')}_{args.target}_{args.budget}{args.suffix}"
    write_notes_and_rows(stem, {"notes": notes, "rows": rows, "matched": matched}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
