"""Decoder loops under int4 weights, and what the loop guard does about them.

A quantised Whisper sometimes falls into a greedy loop (one span of tokens repeated to the 224-token limit),
so plain WER on short clips mostly counts loops. This measures, on speechocean762 test clips of the
allocation benchmark's split (children and adults, speakers never used for calibration), FP and the uniform
int4 plan of the android target (every Linear 8da4w in groups of 32, simulated in PyTorch), each decoded with
and without the loop guard (runtimes/decoding.py), plus two variants of the int4 plan without the guard that
change its numerics slightly (float activations instead of dynamic int8; float32 instead of bfloat16 scales):
if the loops were a defect of one of those, that variant would stop looping. WER with n words, capped WER
(each clip's errors capped at its reference words), and how many clips each row hit the guard on.

    python benchmarks/loop_guard.py --model tiny.en [--per-group 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from allocation_groups import split_speakers
from bench_common import RESULTS, say, wer_summary

from exporter import __version__
from exporter.data import Dataset
from exporter.evaluate import evaluate
from exporter.io import write_json, write_text
from exporter.models import load_whisper
from exporter.quant.pipeline import PlanOptions, make_plan
from exporter.quant.simulate import simulate
from runtimes.torch_runner import TorchRunner

INT4_BUDGETS = {"tiny.en": "40MB", "base": "70MB"}


def _with_linear_format(plan, **changes):
    """`plan` with every quantised Linear's format changed (e.g. activation="float")."""
    layers = [
        dataclasses.replace(layer, format=dataclasses.replace(layer.format, **changes))
        if layer.kind == "linear" and not layer.format.is_float
        else layer
        for layer in plan.layers
    ]
    return dataclasses.replace(plan, layers=layers)


def test_clips(per_group: int) -> Dataset:
    _, test = split_speakers(8, 32, 60, 0)  # the allocation benchmark's split, seed 0
    chosen = []
    for group in ("child", "adult"):
        chosen += [u for u in test if u.extra["age_group"] == group][:per_group]
    return Dataset(test.source, chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", choices=sorted(INT4_BUDGETS))
    parser.add_argument("--per-group", type=int, default=30, help="test clips per age group")
    args = parser.parse_args()
    bundle = load_whisper(args.model)
    clips = test_clips(args.per_group)
    # Between uniform int4 and uniform int8, the uniform order puts every Linear on 8da4w in groups of 32.
    options = PlanOptions(target="android", budget=INT4_BUDGETS[args.model], order="uniform", calibration="minmax")
    uniform = make_plan(bundle, None, options, progress=False)
    linear = {layer.format.name for layer in uniform.layers if layer.kind == "linear"}
    if linear != {"8da4_g32"}:
        raise SystemExit(f"expected every Linear on 8da4_g32 at {INT4_BUDGETS[args.model]}, got {sorted(linear)}")
    int4 = simulate(bundle, uniform)
    rows = [
        ("FP", bundle, True),
        ("FP, no guard", bundle, False),
        ("uniform int4", int4, True),
        ("uniform int4, no guard", int4, False),
        (
            "uniform int4, float activations, no guard",
            simulate(bundle, _with_linear_format(uniform, activation="float")),
            False,
        ),
        (
            "uniform int4, float32 scales, no guard",
            simulate(bundle, _with_linear_format(uniform, scale_dtype="float32")),
            False,
        ),
    ]
    results = []
    for name, model, guard in rows:
        started = time.perf_counter()
        out = evaluate(TorchRunner(model), clips, model_id=name, progress=False, loop_guard=guard)
        counts = out.counts()
        row = {"row": name, "loop_guard": guard, "seconds": round(time.perf_counter() - started, 1)}
        for group in ("all", "child", "adult"):
            kept = [c for c, u in zip(counts, clips) if group == "all" or u.extra["age_group"] == group]
            row[group] = wer_summary(kept)
        results.append(row)
        say(f"{name}: {100 * row['all']['wer']:.1f} % (capped {100 * row['all']['capped_wer']:.1f})")
    formats = ", ".join(f"{n} x{c}" for n, c in sorted(uniform.format_counts().items()))
    notes = [
        f"{len(clips)} speechocean762 test clips ({args.per_group} children, {args.per_group} adults; the allocation "
        "benchmark's split, seed 0), greedy. uniform int4: the android target's uniform plan at "
        f"{INT4_BUDGETS[args.model]}, min/max scales ({formats}; {uniform.total_bytes / 1e6:.1f} MB), simulated in PyTorch. "
        "WER % with n words; capped: each clip's errors capped at its reference words.",
        f"Produced by `python benchmarks/loop_guard.py --model {args.model} --per-group {args.per_group}` "
        f"(edgeasr {__version__}).",
    ]
    lines = [f"# Loop guard: {args.model}", "", *notes, ""]
    lines += ["| row | WER all % (n) | capped | children (n) | capped | adults (n) | capped |"]
    lines += ["|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        cells = [
            f"{100 * r[g]['wer']:.1f} ({r[g]['n_words']}) | {100 * r[g]['capped_wer']:.1f}"
            for g in ("all", "child", "adult")
        ]
        lines.append(f"| {r['row']} | {' | '.join(cells)} |")
    stem = RESULTS / f"loop_guard_{args.model.replace('.', '_')}"
    write_json(stem.with_suffix(".json"), {"notes": notes, "rows": results})
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
