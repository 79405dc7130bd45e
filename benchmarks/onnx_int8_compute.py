"""The onnx target's rungs: MatMulNBits with int8 activations (accuracy_level 4) against float ones (0).

ONNX Runtime 1.31.1 computes 8-bit MatMulNBits at accuracy_level 0 by dequantising the whole weight matrix to
float32 on every call (no 8-bit kernel for float inputs on this CPU): for the decoder's one-token steps that
is ~30x slower than the int8 kernel, and the output projection's 8-bit table becomes a transient float copy
(80 MB for tiny.en). The onnx target's 8-bit rung therefore computes with int8 activations per block of 32
(`mnb8_g32_a8`, accuracy_level 4), which the simulation reproduces.

This benchmark measures what that choice costs and buys on the same artifact. Per model, one sherpa-layout
export at whisper.cpp q8_0's bytes (the peers benchmark's export: target onnx, fill, english_misc
calibration), the size where most layers sit on the 8-bit rung; then a copy of it whose 8-bit MatMulNBits
nodes run at accuracy_level 0 (same codes and scales: only the kernel, and so the activations' precision,
differs). `--bits 4` asks the same of the 4-bit rungs, which the target computes with float activations:
the export at q4_0's bytes, where most layers are 4-bit, as exported (level 0) and as a copy whose 4-bit
nodes run at level 4 (results file onnx_int8_compute_w4). `--bits 2`: the 2-bit rung, which computes with
int8 activations like the 8-bit one, at budgets where the plan puts layers on it (onnx_int8_compute_w2).
Both run through `edgeasr bench` (each in its own process, one thread, one warm-up clip) on the same clips,
one after the other: 40 AN4 test clips and `--per-speaker` clips of each of the 64 speechocean762 speakers.
Recorded: WER with n words, the paired difference (level 4 - level 0) with a 95 % interval resampled
by speaker, latency median, RTF, load and run peak (the whole process's resident set, as the peers table
measures it) and the memory model's prediction.

    python benchmarks/onnx_int8_compute.py --models tiny.en base [--bits 4]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import onnx
from bench_common import (
    CLIP_SETS,
    RESULTS,
    WORK,
    points_interval,
    produced_by,
    say,
    scores_by_set,
    wer_cells,
    write_notes_and_rows,
)
from clients import SPEECHOCEAN, test_clips
from onnx import helper
from peers import exported

from exporter.bench import BenchOptions, bench
from exporter.io import read_json, write_text
from exporter.scoring import count_errors, paired_bootstrap
from runtimes.contract import DECODER_FILE, ENCODER_FILE

# The exports' budgets: whisper.cpp's file bytes per model (benchmarks/results/peers_*_so64x4.json), q8_0's
# for the 8-bit rung and q4_0's for the 4-bit ones (the sizes where most layers sit on that rung); for the
# 2-bit rung, budgets below every layer on 4 bits in blocks of 128, where the plan moves layers to 2 bits.
BUDGETS = {
    8: {"tiny.en": 43_550_778, "base": 81_768_585},
    4: {"tiny.en": 25_335_354, "base": 46_471_049},
    2: {"tiny.en": 21_000_000, "base": 40_000_000},
}
BUDGET_NAMES = {8: "whisper.cpp q8_0's bytes", 4: "whisper.cpp q4_0's bytes", 2: "21 MB (tiny.en), 40 MB (base)"}
LEVELS = (4, 0)


def other_level_copy(folder: Path, bits: int) -> tuple[Path, int, int]:
    """A copy of the ONNX pair in `folder` whose `bits`-bit MatMulNBits nodes run at the other accuracy_level
    than the export gave them (4 <-> 0): the copy, the exported level (read off the nodes) and how many nodes
    it changed. Metadata (plan, formats) is left as exported: this copy is a measurement aid."""
    graphs, exported, changed = {}, set(), 0
    for name in (ENCODER_FILE, DECODER_FILE):
        proto = onnx.load(str(folder / name))
        for node in proto.graph.node:
            attrs = {a.name: a for a in node.attribute}
            if node.op_type == "MatMulNBits" and attrs["bits"].i == bits:
                level = attrs["accuracy_level"].i if "accuracy_level" in attrs else 0
                exported.add(level)
                if "accuracy_level" in attrs:
                    node.attribute.remove(attrs["accuracy_level"])
                node.attribute.append(helper.make_attribute("accuracy_level", 4 - level))
                changed += 1
        graphs[name] = proto
    if not exported:
        raise SystemExit(f"{folder.name} has no {bits}-bit MatMulNBits node: nothing to compare")
    if len(exported) > 1:
        raise SystemExit(f"{folder.name}: its {bits}-bit MatMulNBits nodes run at levels {sorted(exported)}, not one")
    level = exported.pop()
    out = WORK / "onnx-int8-compute" / f"{folder.name}-level{4 - level}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for item in folder.iterdir():
        if item.name in graphs:
            onnx.save(graphs[item.name], str(out / item.name))
        elif item.name != "checksums.json":  # the copy's files differ from the recorded digests
            shutil.copy2(item, out / item.name)
    return out, level, changed


def measure(folder: Path, level: int, clips) -> dict:
    say(f"accuracy_level {level}: {folder.name}")
    result = bench(BenchOptions(artifact=folder, data=SPEECHOCEAN, runtimes=("onnx",)), dataset=clips)
    per_clip = result.transcripts["onnx"]
    value = {r["metric"]["name"]: r["metric"]["value"] for r in result.records if r["group"] == "all"}
    baseline = value["memory_baseline"]
    return {
        "level": level,
        "texts": {c["utt_id"]: c["text"] for c in per_clip},
        "latencies": [c["timings"]["total"] for c in per_clip],
        "audio_seconds": sum(c["audio_seconds"] for c in per_clip),
        "artifact_bytes": int(value["artifact_bytes"]),
        "load_peak_bytes": int(baseline + value["memory_load_peak"]),
        "run_peak_bytes": int(baseline + value["memory_run_peak"]),
        "predicted_run_peak_bytes": int(baseline + value["predicted_memory_run_peak"]),
        "latency_median_s": value["latency_median"] / 1000,
    }


def summarise(model: str, runs: list[dict], clips, bits: int, changed: int) -> list[dict]:
    counts = {run["level"]: [count_errors(u.transcript, run["texts"].get(u.utt_id)) for u in clips] for run in runs}
    comparison = paired_bootstrap(counts[0], counts[4], clusters=[u.speaker for u in clips])
    rows = []
    for run in runs:
        scores = scores_by_set(counts[run["level"]], clips)
        rows.append(
            {
                "model": model,
                "bits": bits,
                "accuracy_level": run["level"],
                "nodes_changed": changed,
                "artifact_bytes": run["artifact_bytes"],
                **scores["all"],
                "groups": {name: scores[name] for name in CLIP_SETS},
                "vs_level_0": comparison.to_dict() if run["level"] == 4 else None,
                "latency_median_s": run["latency_median_s"],
                "rtf": sum(run["latencies"]) / run["audio_seconds"],
                "load_peak_bytes": run["load_peak_bytes"],
                "run_peak_bytes": run["run_peak_bytes"],
                "predicted_run_peak_bytes": run["predicted_run_peak_bytes"],
            }
        )
    return rows


def markdown(rows: list[dict], notes: list[str]) -> str:
    bits = rows[0].get("bits", 8)  # results from before --bits hold the 8-bit rung
    lines = [
        f"# ONNX {bits}-bit rung: int8 activations (accuracy_level 4) vs float activations (0), same artifact",
        "",
        *notes,
        "",
        "| model | accuracy level | MB | WER all (n) | WER AN4 (n) | WER speechocean762 (n) | level 4 - level 0, "
        "points [95 % CI] | latency median s | RTF | load peak MB | run peak MB (predicted) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['accuracy_level']} | {r['artifact_bytes'] / 1e6:.1f} | {wer_cells(r)} | "
            f"{points_interval(r['vs_level_0'])} | "
            f"{r['latency_median_s']:.2f} | {r['rtf']:.3f} | {r['load_peak_bytes'] / 1e6:.0f} | "
            f"{r['run_peak_bytes'] / 1e6:.0f} ({r['predicted_run_peak_bytes'] / 1e6:.0f}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"], choices=sorted(BUDGETS[8]))
    parser.add_argument("--bits", type=int, default=8, choices=sorted(BUDGETS), help="the rung compared")
    parser.add_argument("--per-speaker", type=int, default=2, help="speechocean762 clips per speaker (of 20)")
    parser.add_argument("--note", action="append", default=[], help="a line to add to the results' notes")
    parser.add_argument("--report-only", action="store_true", help="re-make the table from the results file")
    args = parser.parse_args()
    stem = RESULTS / ("onnx_int8_compute" if args.bits == 8 else f"onnx_int8_compute_w{args.bits}")
    if args.report_only:
        data = read_json(stem.with_suffix(".json"), "an onnx_int8_compute results file")
        write_text(stem.with_suffix(".md"), markdown(data["rows"], data["notes"]))
        return
    clips = test_clips(speakers=64, per_speaker=args.per_speaker)
    rows = []
    for model in args.models:
        folder = exported(model, "onnx", "onnx", BUDGETS[args.bits][model])
        if isinstance(folder, str):
            sys.exit(f"the {model} export failed: {folder}")
        copy, exported_level, changed = other_level_copy(folder, args.bits)
        paths = {exported_level: folder, 4 - exported_level: copy}
        runs = [measure(paths[level], level, clips) for level in LEVELS]
        rows += summarise(model, runs, clips, args.bits, changed)
    notes = [
        f"{len(clips)} clips: 40 AN4 test (20 per gender) and {len(clips) - 40} speechocean762 "
        f"({args.per_speaker} per speaker, 64 speakers), seed 0. Per model one sherpa-layout export at "
        f"{BUDGET_NAMES[args.bits]} (target onnx, fill, english_misc calibration, as "
        f"benchmarks/peers.py exports), run as exported (its {args.bits}-bit MatMulNBits at accuracy_level "
        f"{exported_level}) and as a copy with those nodes at level {4 - exported_level} (same codes and scales; "
        "other nodes as exported). `edgeasr bench`, its own process per run, 1 thread, greedy with the loop guard; "
        "collapsed WER, n = reference words; interval: paired bootstrap over speakers (2000 resamples); peaks: "
        "the whole process's resident set (baseline with the runtime imported + the bench's peak above it); "
        "predicted: exporter.memory's run peak for a 30 s window and 448 tokens, plus the same baseline.",
        *args.note,
        produced_by(
            "onnx_int8_compute.py",
            {
                "--models": args.models,
                "--per-speaker": args.per_speaker if args.per_speaker != 2 else None,
                "--bits": args.bits if args.bits != 8 else None,
            },
        ),
    ]
    write_notes_and_rows(stem, {"notes": notes, "rows": rows}, markdown(rows, notes))


if __name__ == "__main__":
    main()
