"""Scale rules for the onnx target's block formats: half_range (torchao's) against signed_max (ggml's q4_0).

Both rules store the same bytes (codes in [-2^(b-1), 2^(b-1) - 1], one float32 scale per block). half_range
maps each block's absmax to 2^(b-1) - 0.5 codes, so half a step at each end holds no weight; signed_max maps
the block's largest-magnitude weight exactly onto the lowest code (exporter/quant/formats.py). This measures,
for one model:

* weight error: sum of squared dequantisation error over every Linear, relative to the weights' sum of
  squares, per rule and block size (deterministic, no audio);
* WER in simulation of uniform 4-bit plans (every Linear and the tied embedding on 4 bits in blocks of G,
  min/max scales, convolutions fp16), per rule, on speechocean762 test clips of the allocation benchmark's
  split (children and adults), with a paired bootstrap interval of signed_max - half_range resampled by speaker.

    python benchmarks/scale_rules.py --model base [--per-group 60] [--groups 32 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from bench_common import RESULTS, points_interval, say, wer_summary
from loop_guard import test_clips

from exporter import __version__
from exporter.evaluate import evaluate
from exporter.io import write_json, write_text
from exporter.models import load_whisper
from exporter.quant.pipeline import PlanOptions, make_plan
from exporter.quant.primitives import fake_quantize_weight
from exporter.quant.simulate import simulate
from exporter.quant.targets import get_target
from exporter.scoring import paired_bootstrap
from runtimes.torch_runner import TorchRunner

RULES = ("half_range", "signed_max")
START_BUDGETS = {"tiny.en": "40MB", "base": "70MB"}  # any onnx plan; every quantised layer is set below


def _format(kind: str, group: int, rule: str):
    prefix = "gbq" if kind == "embedding" else "mnb"
    fmt = get_target("onnx").format_by_name(f"{prefix}4_g{group}")
    # float32 scales, as when the results were measured: the comparison is of the rules alone
    return dataclasses.replace(fmt, scale_rule=rule, scale_dtype="float32")


def uniform_plan(start, group: int, rule: str):
    """`start` with every Linear and the embedding on 4 bits in blocks of `group` under `rule`, clip 1."""
    layers = []
    for layer in start.layers:
        if layer.kind in ("linear", "embedding"):
            fmt = _format(layer.kind, group, rule)
            size = 0 if layer.tied_to else fmt.weight_bytes(tuple(layer.shape))
            layer = dataclasses.replace(layer, format=fmt, clip=1.0, bytes=size)
        layers.append(layer)
    return dataclasses.replace(start, layers=layers, notes=[f"uniform 4-bit g{group}, {rule}"])


@torch.no_grad()
def weight_error(bundle, group: int, rule: str) -> float:
    error = total = 0.0
    fmt = _format("linear", group, rule)
    for name, module in bundle.model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "proj_out":  # proj_out is the embedding's matrix
            weight = module.weight.detach().float()
            error += float(((fake_quantize_weight(weight, fmt) - weight) ** 2).sum())
            total += float((weight**2).sum())
    return error / total


def _scores(counts, clips, group: str | None) -> dict:
    return wer_summary([c for c, u in zip(counts, clips) if group is None or u.extra["age_group"] == group])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", choices=sorted(START_BUDGETS))
    parser.add_argument("--per-group", type=int, default=60, help="test clips per age group")
    parser.add_argument("--groups", type=int, nargs="+", default=[32, 128], help="block sizes (32, 64, 128)")
    args = parser.parse_args()
    bundle = load_whisper(args.model)
    clips = test_clips(args.per_group)
    start = make_plan(
        bundle,
        None,
        PlanOptions(target="onnx", budget=START_BUDGETS[args.model], order="uniform", calibration="minmax"),
        progress=False,
    )
    errors = {f"g{g}": {rule: weight_error(bundle, g, rule) for rule in RULES} for g in (32, 64, 128)}
    say(f"weight error: {errors}")
    speakers = [u.speaker for u in clips]
    rows, counts = [], {}
    variants = [("FP", None, None)] + [(f"g{g} {rule}", g, rule) for g in args.groups for rule in RULES]
    for name, group, rule in variants:
        started = time.perf_counter()
        plan = uniform_plan(start, group, rule) if group else None
        model = simulate(bundle, plan) if plan else bundle
        counts[name] = evaluate(TorchRunner(model), clips, model_id=name, progress=False).counts()
        row = {"row": name, "bytes": plan.total_bytes if plan else None, "seconds": 0.0}
        row.update({g or "all": _scores(counts[name], clips, g) for g in (None, "child", "adult")})
        if rule == "signed_max":
            row["vs_half_range"] = paired_bootstrap(
                counts[f"g{group} half_range"], counts[name], clusters=speakers
            ).to_dict()
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        say(f"{name}: {100 * row['all']['wer']:.1f} % of {row['all']['n_words']} words")
    notes = [
        f"{len(clips)} speechocean762 test clips ({args.per_group} children, {args.per_group} adults; the allocation "
        "benchmark's split, seed 0), greedy with the loop guard, simulated in PyTorch (the onnx lowering stores the "
        "same codes and scales; tests/test_onnx_lowering.py). Uniform plans: every Linear and the tied embedding on "
        "4 bits in blocks of G with float32 scales and min/max ranges, convolutions and other floats fp16. WER % "
        "with n words; capped: each clip's errors capped at its reference words; interval: 95 % paired bootstrap "
        "of signed_max - half_range over speakers (2000 resamples). Weight error: sum of squared dequantisation "
        "error over every Linear / sum of squared weights.",
        f"Produced by `python benchmarks/scale_rules.py --model {args.model} --per-group {args.per_group} "
        f"--groups {' '.join(map(str, args.groups))}` (edgeasr {__version__}).",
    ]
    lines = [f"# Scale rules: {args.model}, onnx block formats", "", *notes, ""]
    lines += ["| block | weight error half_range | signed_max | ratio |", "|---|---:|---:|---:|"]
    for block, e in errors.items():
        lines.append(
            f"| {block} | {e['half_range']:.5f} | {e['signed_max']:.5f} | {e['signed_max'] / e['half_range']:.2f} |"
        )
    lines += ["", "| row | MB | WER all % (n) | capped | children (n) | adults (n) | vs half_range, points [95 % CI] |"]
    lines += ["|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f}" if r["bytes"] else "-"
        cells = [f"{100 * r[g]['wer']:.1f} ({r[g]['n_words']})" for g in ("child", "adult")]
        versus = points_interval(r.get("vs_half_range"))
        lines.append(
            f"| {r['row']} | {size} | {100 * r['all']['wer']:.1f} ({r['all']['n_words']}) | "
            f"{100 * r['all']['capped_wer']:.1f} | {' | '.join(cells)} | {versus} |"
        )
    stem = RESULTS / f"scale_rules_{args.model.replace('.', '_')}"
    write_json(stem.with_suffix(".json"), {"notes": notes, "weight_error": errors, "rows": rows})
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
