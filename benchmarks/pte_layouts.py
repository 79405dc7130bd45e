"""Per-token cost of the .pte layouts: edgeasr's (2L encoder outputs passed to every decoder step) against
ExecuTorch's ASR-runner contract (one stacked encoder output, unpacked inside text_decoder at every step).

The same plan (tiny.en, android ladder, myQASR + fill on the english_misc clips) is lowered in both layouts;
each program runs in this process through the ExecuTorch Python runtime, one XNNPACK thread: the encoder on
one clip, then text_decoder for 64 positions (8 warm-up steps not timed). Medians of the per-call wall times.

    python benchmarks/pte_layouts.py --model tiny.en --budget 55MB
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_common import DATA, RESULTS, WORK, say

from exporter import __version__
from exporter.data import load_dataset
from exporter.io import write_json, write_text
from exporter.lower.registry import get_backend
from exporter.models import load_whisper
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user
from runtimes.audio import load_audio, log_mel_frames
from runtimes.contract import PTE_FILE
from runtimes.executorch_runner import load_program, set_threads

CLIP = DATA / "english_misc" / "audio" / "ls_1089-134686-0000.wav"
STEPS, WARMUP = 64, 8


def measure(pte, features) -> dict:
    program = load_program(pte)
    encoder, decoder = program.load_method("encoder"), program.load_method("text_decoder")
    encode_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        encoded = encoder.execute((torch.from_numpy(features)[None],))
        encode_times.append(time.perf_counter() - t0)
    step_times, token = [], 50257
    for position in range(STEPS + WARMUP):
        t0 = time.perf_counter()
        logits = decoder.execute(
            (torch.tensor([[token]], dtype=torch.long), *encoded, torch.tensor([position], dtype=torch.long))
        )
        if position >= WARMUP:
            step_times.append(time.perf_counter() - t0)
        token = int(logits[0].reshape(-1, logits[0].shape[-1])[-1].argmax())
    return {
        "encoder_outputs": len(encoded),
        "encoder_median_ms": round(1000 * statistics.median(encode_times), 2),
        "token_median_ms": round(1000 * statistics.median(step_times), 3),
        "token_p90_ms": round(1000 * sorted(step_times)[int(0.9 * len(step_times))], 3),
        "bytes": pte.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--budget", default="55MB")
    args = parser.parse_args()
    bundle = load_whisper(args.model)
    user = observe_user(bundle, load_dataset(DATA / "english_misc" / "manifest.jsonl"), 32, 0)
    plan = make_plan(bundle, user, PlanOptions(target="android", budget=args.budget, allocation="fill"), False)
    features = log_mel_frames(load_audio(CLIP), bundle.n_mels)
    set_threads(1)
    rows = {}
    for fmt in ("pte", "pte-runner"):
        folder = WORK / f"pte-layouts-{args.model}-{args.budget}-{fmt}"
        folder.mkdir(parents=True, exist_ok=True)
        say(f"lowering {fmt}")
        get_backend(fmt).lower(bundle, plan, folder, 3000, "eager")
        rows[fmt] = measure(folder / PTE_FILE, features)
        say(f"{fmt}: {rows[fmt]}")
    stem = RESULTS / f"pte_layouts_{args.model.replace('.', '_')}_{args.budget}"
    write_json(
        stem.with_suffix(".json"),
        {
            "generated_by": f"edgeasr {__version__} benchmarks/pte_layouts.py",
            "plan": plan.format_counts(),
            "rows": rows,
        },
    )
    lines = [
        f"# .pte layouts: {args.model}, android {args.budget} (myQASR + fill)",
        "",
        f"Produced by `python benchmarks/pte_layouts.py --model {args.model} --budget {args.budget}`. ExecuTorch "
        f"Python runtime, 1 XNNPACK thread, 2-core shared host; encoder: median of 3 runs on one clip; "
        f"text_decoder: median and p90 of {STEPS} steps after {WARMUP} warm-up steps. Plan: {plan.format_counts()}.",
        "",
        "| layout | encoder outputs | encoder ms | ms per token (median) | p90 | bytes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {"pte": "edgeasr (2L outputs)", "pte-runner": "ASR runner (one stacked output)"}
    for fmt, r in rows.items():
        lines.append(
            f"| {names[fmt]} | {r['encoder_outputs']} | {r['encoder_median_ms']} | {r['token_median_ms']} | "
            f"{r['token_p90_ms']} | {r['bytes']:,} |"
        )
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
