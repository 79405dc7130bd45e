"""ONNX Runtime session memory: edgeasr's runner settings (arena and memory patterns off, glibc's mmap threshold
fixed) against the arena off alone and ORT's defaults.

One sherpa-layout ONNX pair (target onnx, fill, calibrated on the english_misc clips: the peers benchmark's
export at whisper.cpp q4_0's bytes) is run by `edgeasr bench` under each setting, in alternating rounds, each
run in its own process, on the english_misc clips (up to 30 s, so the encoder sees its longest inputs) and the
peers benchmark's 80 AN4 + speechocean762 clips. Recorded per run: load and run peak (resident set above
the process's baseline), the memory model's prediction, latency median, RTF, WER.

The memory model predicts the worst case, a 30 s window (3000 frames) and 448 decoded tokens, which the clips
above do not reach (the runner frames a clip as sherpa-onnx does: its own frames plus 1000 zero frames). So the
phases the model adds up are also measured one at a time, each in a fresh process at the model's own sizes:
the log-mel of 30 s of audio, the encoder session on a full 3000-frame window, and the decoder's step at the
last of 448 positions with the runner's caches (each above its loaded session).

    python benchmarks/onnx_memory.py --model base
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench_common import DATA, RESULTS, say
from clients import SPEECHOCEAN, test_clips
from make_readme import onnx_memory_table
from peers import exported

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.data import load_dataset
from exporter.io import read_json, write_json, write_text
from exporter.memory import MAX_POSITIONS
from runtimes.audio import FULL_FRAMES, SAMPLE_RATE, load_audio
from runtimes.onnx_runner import client_frame_counts

# whisper.cpp q4_0's file bytes per model (benchmarks/results/peers_*.json): the budgets of the peers exports
Q4_0_BYTES = {"base": 46_471_049, "tiny.en": 25_335_354}
# name -> (onnx_memory_arena: ORT's arena and memory patterns, onnx_return_freed_memory: glibc's mmap threshold fixed)
SETTINGS = {"edgeasr": (False, True), "arena off": (False, False), "ORT defaults": (True, False)}
MISC = DATA / "english_misc" / "manifest.jsonl"


def run(folder, setting: str, clip_set: str, clips: tuple, round_: int) -> dict:
    """One `edgeasr bench` of the onnx runtime on `clips` (source manifest, dataset) under `setting`."""
    source, dataset = clips
    say(f"{setting}, {clip_set}, round {round_}")
    result = bench(
        BenchOptions(
            artifact=folder,
            data=source,
            runtimes=("onnx",),
            onnx_memory_arena=SETTINGS[setting][0],
            onnx_return_freed_memory=SETTINGS[setting][1],
        ),
        dataset=dataset,
    )
    metric = {r["metric"]["name"]: r for r in result.records if r["group"] == "all"}  # as peers.run_edgeasr reads it
    value = {name: record["metric"]["value"] for name, record in metric.items()}
    return {
        "setting": setting,
        "clips": clip_set,
        "round": round_,
        "n_clips": len(dataset),
        "artifact_bytes": value["artifact_bytes"],
        "load_peak_bytes": value["memory_load_peak"],
        "run_peak_bytes": value["memory_run_peak"],
        "predicted_run_peak_bytes": value["predicted_memory_run_peak"],
        "latency_median_ms": value["latency_median"],
        "rtf": value["real_time_factor"],
        "wer": value["wer"],
        "n_words": metric["wer"]["extra"]["n_words"],
    }


def probe(phase: str, folder: Path) -> dict:
    """In this (fresh) process: the resident bytes one phase of a run adds, at the memory model's sizes. The
    encoder and decoder phases are measured above the runner's loaded sessions."""
    import numpy as np

    from runtimes.audio import log_mel_frames
    from runtimes.onnx_runner import OnnxRunner
    from runtimes.procmem import peak_rss_bytes, reset_peak_rss, rss_bytes

    runner = OnnxRunner(folder, threads=1)  # its sessions, and glibc's mmap threshold fixed, as in every run
    loaded = rss_bytes()
    reset_peak_rss()
    if phase == "features":
        audio = np.random.default_rng(0).standard_normal(30 * SAMPLE_RATE).astype(np.float32) * 0.1
        log_mel_frames(audio, runner.n_mels, FULL_FRAMES)
    elif phase == "encoder":
        runner.encode(np.zeros((runner.n_mels, FULL_FRAMES), dtype=np.float32))  # a full window, 3000 frames
    else:
        decode_last_position(runner)
    return {"phase": phase, "measured_bytes": peak_rss_bytes() - loaded}


def decode_last_position(runner) -> None:
    """The decoding phase at its largest: the sherpa-layout decoder's step at the last of 448 positions, with
    the runner's caches (self-attention at 448 positions, cross-attention over 1500) allocated and written."""
    import numpy as np

    if runner.layout != "sherpa":
        raise SystemExit("the decoder probe needs the sherpa layout (export --onnx-layout sherpa, the default)")
    cross = next(i for i in runner.decoder.get_inputs() if i.name == "cross_k")
    layers, _, heads, _, head_size = cross.shape
    dtype = np.float16 if cross.type == "tensor(float16)" else np.float32  # the encoder's output type
    keys = np.ones((layers, 1, heads, FULL_FRAMES // 2, head_size), dtype=dtype)  # written, as the encoder's
    decoder = runner.start_decoder((keys, keys.copy()))
    decoder.self_k.fill(0.5)
    decoder.self_v.fill(0.5)
    decoder.offset = MAX_POSITIONS - 1
    decoder.step([runner.special.sot])


def measure_phases(model: str, folder: Path) -> list[dict]:
    """Each probed phase in its own process, beside the memory model's prediction of it."""
    from exporter.memory import estimate_artifact, model_config

    predicted = estimate_artifact(folder, "onnx", model_config(model)).run_phases
    rows = []
    for phase in ("features", "encoder", "decoder"):
        say(f"phase {phase}, measured alone")
        command = [sys.executable, __file__, "--probe", phase, "--artifact", str(folder)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        rows.append({**json.loads(done.stdout.splitlines()[-1]), "predicted_bytes": predicted[phase]})
    return rows


def phases_table(phases: list[dict]) -> list[str]:
    lines = ["| phase | measured MB (alone) | predicted MB |", "|---|---:|---:|"]
    for r in phases:
        lines.append(f"| {r['phase']} | {r['measured_bytes'] / 1e6:,.1f} | {r['predicted_bytes'] / 1e6:,.1f} |")
    return lines


def medians(rows: list[dict]) -> list[dict]:
    """Per setting and clip set: the median run peak and RTF over the rounds."""
    out = []
    for setting in SETTINGS:
        for clip_set in dict.fromkeys(r["clips"] for r in rows):
            mine = [r for r in rows if r["setting"] == setting and r["clips"] == clip_set]
            out.append(
                {
                    "setting": setting,
                    "clips": clip_set,
                    "rounds": len(mine),
                    "run_peak_bytes": statistics.median(r["run_peak_bytes"] for r in mine),
                    "rtf": statistics.median(r["rtf"] for r in mine),
                }
            )
    return out


def markdown(model: str, rows: list[dict], notes: list[str], phases: list[dict] | None = None) -> str:
    lines = [
        f"# ONNX Runtime session memory: {model}",
        "",
        *notes,
        "",
        "| setting | clips | round | load peak MB | run peak MB (predicted) | latency median ms | RTF | WER % (n words) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['clips']} ({r['n_clips']}) | {r['round']} | {r['load_peak_bytes'] / 1e6:,.0f} | "
            f"{r['run_peak_bytes'] / 1e6:,.0f} ({r['predicted_run_peak_bytes'] / 1e6:,.0f}) | "
            f"{r['latency_median_ms']:,.0f} | {r['rtf']:.3f} | {100 * r['wer']:.1f} ({r['n_words']}) |"
        )
    lines += ["", "Median over rounds:", "", *onnx_memory_table(medians(rows))]
    if phases:
        lines += ["", "The run's phases one at a time (above the weights; the model's run peak adds the largest):"]
        lines += ["", *phases_table(phases)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", choices=sorted(Q4_0_BYTES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--note", action="append", default=[], help="a line to add to the results' notes")
    parser.add_argument("--report-only", action="store_true", help="re-make the tables from the results file")
    parser.add_argument(
        "--probe", choices=("features", "encoder", "decoder"), help=argparse.SUPPRESS
    )  # one phase, in-process
    parser.add_argument("--artifact", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        if args.artifact is None or not args.artifact.is_dir():
            parser.error("--probe needs --artifact, the folder of an exported ONNX pair")
        print(json.dumps(probe(args.probe, args.artifact)))
        return
    stem = RESULTS / f"onnx_memory_{args.model.replace('.', '_')}"
    if args.report_only:
        data = read_json(stem.with_suffix(".json"), "an onnx_memory results file")
        write_text(stem.with_suffix(".md"), markdown(args.model, data["rows"], data["notes"], data.get("phases")))
        return
    folder = exported(args.model, "onnx", "onnx", Q4_0_BYTES[args.model])
    if isinstance(folder, str):
        raise SystemExit(f"the export failed: {folder}")
    clip_sets = {"english_misc": (MISC, load_dataset(MISC)), "peers": (SPEECHOCEAN, test_clips())}
    longest = max(len(load_audio(u.audio_path)) for u in clip_sets["english_misc"][1])  # samples
    phases = measure_phases(args.model, folder)
    rows = [
        run(folder, setting, name, clips, round_)
        for round_ in range(1, args.rounds + 1)
        for name, clips in clip_sets.items()
        for setting in SETTINGS
    ]
    notes = [
        f"Artifact: {folder.name} (sherpa layout, {rows[0]['artifact_bytes'] / 1e6:.1f} MB), target onnx at "
        "whisper.cpp q4_0's bytes. edgeasr: the ONNX runner's defaults, ORT's CPU memory arena and memory "
        "patterns off and glibc's mmap threshold fixed at 128 KiB (runtimes/allocator.py); arena off: the same "
        "sessions under glibc's dynamic mmap threshold (the runner before the allocator setting); ORT defaults: "
        "arena and patterns on, glibc's dynamic threshold. Each run is `edgeasr bench` in its own process, one "
        "thread, one warm-up clip; peaks are resident set above the process's baseline (runtime imported); "
        "predicted = exporter.memory's run peak for the artifact. english_misc: 22 LibriSpeech-style clips up to "
        "30 s; peers: the 80 clips of benchmarks/peers.py. The settings alternate within each round. The "
        "prediction is for a 30 s window and 448 tokens, which these clips do not reach: the longest english_misc "
        f"clip is {longest / SAMPLE_RATE:.1f} s, so the encoder sees {client_frame_counts(longest)[1]:,} frames, not "
        f"{FULL_FRAMES:,}.",
        *args.note,
        f"Produced by `python benchmarks/onnx_memory.py --model {args.model}"
        + (f" --rounds {args.rounds}" if args.rounds != 2 else "")
        + f"` (edgeasr {__version__}).",
    ]
    write_json(stem.with_suffix(".json"), {"notes": notes, "rows": rows, "summary": medians(rows), "phases": phases})
    write_text(stem.with_suffix(".md"), markdown(args.model, rows, notes, phases))
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
