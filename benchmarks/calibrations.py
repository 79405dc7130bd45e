"""Scale calibration methods at one budget: which clip ratios make the better model for the user group.

For each age group of speechocean762 (the allocation benchmark's split, seed 0), the group's 32 unlabelled
calibration clips plan the model (myQASR order, fill allocation, `--budget` on `--target`) once per
calibration method (exporter/quant/calibrate.py): minmax (clip 1), cosine (myQASR's search), hessian (the
Hessian-guided search, label-free). The formats do not depend on the method, only the clip ratios do, so the
rows differ in calibration alone (checked). Each plan is simulated in PyTorch and tested on 60 clips of the
group's other speakers; the interval is a paired bootstrap against minmax, resampled by speaker.

    python benchmarks/calibrations.py --model base --target onnx --budget 46.5MB [--calibrations minmax cosine]
"""

from __future__ import annotations

import argparse
import time

from allocation_groups import GROUPS, split_speakers
from bench_common import RESULTS, say, versus_table, wer_summary

from exporter import __version__
from exporter.choices import CALIBRATIONS
from exporter.data import Dataset
from exporter.evaluate import evaluate
from exporter.io import write_json, write_text
from exporter.models import load_whisper
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user
from exporter.quant.simulate import simulate
from exporter.scoring import aggregate, paired_bootstrap
from runtimes.torch_runner import TorchRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--target", default="onnx")
    parser.add_argument("--budget", default="46.5MB")
    parser.add_argument("--per-group", type=int, default=60, help="test clips per age group")
    parser.add_argument("--calibrations", nargs="+", default=list(CALIBRATIONS), choices=CALIBRATIONS)
    args = parser.parse_args()
    args.calibrations = ["minmax"] + [c for c in args.calibrations if c != "minmax"]  # the reference comes first
    bundle = load_whisper(args.model)
    calib, test = split_speakers(8, 32, args.per_group, 0)
    counts: dict[str, dict[str, list]] = {"FP": {}}
    sizes, formats, seconds = {}, {}, {}
    for group in GROUPS:
        clips = Dataset(test.source, [u for u in test if u.extra["age_group"] == group])
        counts["FP"][group] = evaluate(TorchRunner(bundle), clips, model_id="FP", progress=False).counts()
        user = observe_user(bundle, calib[group], 32, 0, progress=False)
        for method in args.calibrations:
            started = time.perf_counter()
            options = PlanOptions(target=args.target, budget=args.budget, allocation="fill", calibration=method)
            plan = make_plan(bundle, user, options, progress=False)
            seconds.setdefault(method, {})[group] = round(time.perf_counter() - started, 1)
            layout = [layer.format.name for layer in plan.layers]
            if formats.setdefault(group, layout) != layout:
                raise SystemExit(f"{method} changed the formats of the {group} plan; the rows would not compare")
            sizes[group] = plan.total_bytes
            runner = TorchRunner(simulate(bundle, plan))
            counts.setdefault(method, {})[group] = evaluate(runner, clips, model_id=method, progress=False).counts()
            say(f"{group} {method}: {100 * aggregate(counts[method][group]).wer:.1f} %")
    speakers = {g: [u.speaker for u in test if u.extra["age_group"] == g] for g in GROUPS}
    rows = []
    for name, by_group in counts.items():
        row = {"row": name, "plan_seconds": seconds.get(name)}
        for group in GROUPS:
            row[group] = wer_summary(by_group[group])
            if name not in ("FP", "minmax"):
                row[group]["vs_minmax"] = paired_bootstrap(
                    counts["minmax"][group], by_group[group], clusters=speakers[group]
                ).to_dict()
        rows.append(row)
    notes = [
        f"speechocean762, the allocation benchmark's split (seed 0): per age group, 32 unlabelled clips of 8 "
        f"calibration speakers plan the model, {args.per_group} clips of the group's other speakers test it. "
        f"{args.model}, target {args.target}, budget {args.budget}, myQASR order + fill allocation; plan bytes "
        + ", ".join(f"{g} {sizes[g] / 1e6:.2f} MB" for g in GROUPS)
        + "; the formats are the same for every method, only the clip ratios differ. Simulated in PyTorch, greedy "
        "with the loop guard. WER % with n words; capped: each clip's errors capped at its reference words; "
        "interval: 95 % paired bootstrap against minmax over speakers (2000 resamples). plan s: observation "
        "excluded, planning + calibration on this 2-core machine.",
        f"Produced by `python benchmarks/calibrations.py --model {args.model} --target {args.target} --budget "
        f"{args.budget} --per-group {args.per_group} --calibrations {' '.join(args.calibrations)}` "
        f"(edgeasr {__version__}).",
    ]
    lines = [f"# Calibration methods: {args.model}, {args.target} {args.budget}", "", *notes, ""]

    def plan_s(row: dict) -> str:
        return "/".join(str(s) for s in row["plan_seconds"].values()) if row["plan_seconds"] else "-"

    lines += versus_table(rows, list(GROUPS), "minmax", ("plan s", plan_s))
    stem = RESULTS / f"calibrations_{args.model.replace('.', '_')}_{args.target}"
    write_json(stem.with_suffix(".json"), {"notes": notes, "rows": rows})
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
