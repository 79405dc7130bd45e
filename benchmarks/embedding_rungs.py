"""The android target's token-embedding rungs at its smallest plans: what the 2-bit embedding costs.

The android (ExecuTorch) ladder cannot share the tied output projection's weights with the embedding (XNNPACK
repacks the Linear's), so at small budgets the allocator reaches the embedding's lowest rung, 2 bits in
groups of 32 (quantized_decomposed.embedding_2bit). This benchmark isolates that choice: per model, the
smallest android plan (every layer on its lowest rung: Linear 8da4w in groups of 128, embedding int2), and
the same plan with only the embedding moved up (4 bits in groups of 128, then 32, then 8 bits); each plan's
scales calibrated with the export's default (cosine search on the 22 english_misc clips, unlabelled), then
simulated in PyTorch (the .pte equals its simulation, tests/test_executorch_layers.py) on the 168 clips of
benchmarks/onnx_int8_compute.py: 40 AN4 test and 2 per speechocean762 speaker. Recorded: plan bytes, WER
with n words per data set, the paired difference against the 2-bit embedding with a 95 % interval resampled
by speaker, and PyTorch FP on the same clips.

    python benchmarks/embedding_rungs.py --models tiny.en base
"""

from __future__ import annotations

import argparse
import copy

from bench_common import (
    CLIP_SETS,
    RESULTS,
    calibration_folder,
    points_interval,
    produced_by,
    say,
    scores_by_set,
    wer_cells,
    write_notes_and_rows,
)
from clients import test_clips

from exporter.data import load_dataset
from exporter.evaluate import evaluate
from exporter.io import read_json, write_text
from exporter.models import load_whisper
from exporter.quant.allocate import reachable_range
from exporter.quant.calibrate import calibrate
from exporter.quant.layers import quantizable_layers, unquantised_bytes
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user
from exporter.quant.simulate import simulate
from exporter.quant.targets import get_target
from exporter.scoring import count_errors, paired_bootstrap
from runtimes.torch_runner import TorchRunner

EMBEDDINGS = ("int2_g32", "int4_g128", "int4_g32", "int8_g32")  # the lowest rung first: the reference


def floor_plan(bundle):
    """Every layer on its lowest android rung: the smallest plan the target can make (the uniform order at
    the smallest reachable bytes)."""
    target = get_target("android")
    layers = quantizable_layers(bundle.model)
    smallest, _ = reachable_range(layers, target, unquantised_bytes(bundle.model, layers, target.float_bits))
    options = PlanOptions(target="android", budget=smallest, order="uniform", calibration="minmax")
    plan = make_plan(bundle, None, options, progress=False)
    assert all(layer.format == target.ladder(layer.kind)[-1] for layer in plan.layers)
    return plan


def with_embedding(bundle, plan, name: str, user):
    """`plan` with the token embedding on format `name`, every layer's scales calibrated as an export does."""
    variant = copy.deepcopy(plan)
    layer = next(layer for layer in variant.layers if layer.kind == "embedding")
    layer.format = get_target("android").format_by_name(name)
    layer.bytes = layer.format.weight_bytes(tuple(layer.shape))
    variant.calibration = "cosine"
    return calibrate(bundle, variant, user.observations, "cosine", progress=False)


def run(model: str, clips) -> list[dict]:
    bundle = load_whisper(model)
    say(f"{model}: observing the calibration clips")
    user = observe_user(bundle, load_dataset(calibration_folder()), 32, seed=0, progress=False)
    base = floor_plan(bundle)
    systems = {"fp": (TorchRunner(bundle), None)}
    for name in EMBEDDINGS:
        plan = with_embedding(bundle, base, name, user)
        systems[f"embedding {name}"] = (TorchRunner(simulate(bundle, plan)), plan.total_bytes)
    counts, rows = {}, []
    for system, (runner, size) in systems.items():
        say(f"{model}: {system}")
        result = evaluate(runner, clips, model_id=system, progress=False)
        counts[system] = [count_errors(u.transcript, text) for u, text in zip(clips, result.hypotheses(), strict=True)]
        scores = scores_by_set(counts[system], clips)
        groups = {name: scores[name] for name in CLIP_SETS}
        rows.append({"model": model, "system": system, "bytes": size, **scores["all"], "groups": groups})
    reference = counts[f"embedding {EMBEDDINGS[0]}"]
    speakers = [u.speaker for u in clips]
    for row in rows:
        if row["system"] != f"embedding {EMBEDDINGS[0]}":
            row["vs_int2"] = paired_bootstrap(reference, counts[row["system"]], clusters=speakers).to_dict()
    return rows


def markdown(rows: list[dict], notes: list[str]) -> str:
    lines = [
        "# Android token-embedding rungs at the smallest plan",
        "",
        *notes,
        "",
        "| model | system | MB | WER all (n) | WER AN4 (n) | WER speechocean762 (n) | vs int2 embedding, points [95 % CI] |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        size = "-" if r["bytes"] is None else f"{r['bytes'] / 1e6:.1f}"
        lines.append(
            f"| {r['model']} | {r['system']} | {size} | {wer_cells(r)} | {points_interval(r.get('vs_int2'))} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"], choices=["tiny.en", "base"])
    parser.add_argument("--note", action="append", default=[], help="a line to add to the results' notes")
    parser.add_argument("--report-only", action="store_true", help="re-make the table from the results file")
    args = parser.parse_args()
    stem = RESULTS / "embedding_rungs_android"
    if args.report_only:
        data = read_json(stem.with_suffix(".json"), "an embedding_rungs results file")
        write_text(stem.with_suffix(".md"), markdown(data["rows"], data["notes"]))
        return
    clips = test_clips(speakers=64, per_speaker=2)
    rows = [row for model in args.models for row in run(model, clips)]
    notes = [
        f"{len(clips)} clips: 40 AN4 test (20 per gender) and {len(clips) - 40} speechocean762 (2 per speaker, 64 "
        "speakers), seed 0. Per model the smallest android plan (Linear 8da4_g128, embedding int2_g32, convs "
        "fp32) and the same plan with the embedding on each listed rung; scales calibrated by cosine search on "
        "32 unlabelled english_misc clips (as `edgeasr export`); simulated in PyTorch, greedy with the loop "
        "guard; collapsed WER, n = reference words; intervals: paired bootstrap over speakers (2000 resamples). "
        "MB: the plan's bytes (weights and float tensors; a .pte adds its graph).",
        *args.note,
        produced_by("embedding_rungs.py", {"--models": args.models}),
    ]
    write_notes_and_rows(stem, {"notes": notes, "rows": rows}, markdown(rows, notes))


if __name__ == "__main__":
    main()
