"""The ONNX pair's activation layout against the one before it, on the same plans: run memory, speed and WER.

Every ONNX export now hands the cross-attention keys and values from the encoder to the decoder in half
precision (each decoder layer widens its own as it runs) and runs each encoder layer's feed-forward block over
4 slices of the positions (exporter/lower/onnx.py, `ActivationLayout`). Per model and whisper.cpp size: the
peers benchmark's export at that file's bytes (target onnx, sherpa layout, fill, english_misc calibration),
and the same plan lowered with float32 keys and whole feed-forward blocks (`ActivationLayout(torch.float32,
1)`, the graphs every export wrote before; byte-identical to them on tiny.en's 25.3 MB plan). Each pair runs
through `edgeasr bench` (its own process, edgeasr's ONNX runner, 1 thread) on 40 AN4 test clips and
`--per-speaker` clips of each of the 64 speechocean762 speakers: run peak above the process's baseline, the
memory model's prediction, RTF, WER per data set with n words, and the default layout's WER minus the
before layout's, paired per clip, 95 % interval resampled by speaker.

`--alternate-rounds N` then times both layouts again in this process, alternating, N rounds each on the
peers benchmark's 80 clips (the bench runs above are each one pass, and another benchmark may share the
cores): the median RTF per layout. With `--report-only` it adds that timing to the stored rows.

    python benchmarks/onnx_activations.py [--models tiny.en base] [--quants q4_0 q8_0] [--per-speaker 4]
        [--alternate-rounds 2] [--report-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import time

import torch
from bench_common import RESULTS, WORK, points_interval, produced_by, say
from client_framing import GGML_BYTES
from clients import SPEECHOCEAN, test_clips
from peers import exported

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.io import read_json, write_json, write_text
from exporter.lower.onnx import ActivationLayout
from exporter.lower.onnx_sherpa import lower_onnx_sherpa
from exporter.models import load_whisper
from exporter.quant.plan import QuantPlan
from exporter.scoring import UtteranceCounts, aggregate, count_errors, paired_bootstrap
from runtimes.audio import load_audio
from runtimes.contract import CHECKSUM_FILE
from runtimes.decoding import DecodingOptions
from runtimes.onnx_runner import OnnxRunner

LAYOUTS = {"default": ActivationLayout(), "before": ActivationLayout(torch.float32, 1)}
MB = 1e6


def before_folder(model: str, folder, bundle):
    """The export `folder`'s plan lowered with the layout before (float32 keys, whole blocks), beside its other
    files; without checksums.json, which records the default graphs (a folder without one opens unchecked)."""
    out = WORK / f"onnx-activations-{model}" / f"{folder.name}-before"
    if not (out / "decoder.onnx").is_file():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(folder, out, ignore=shutil.ignore_patterns(CHECKSUM_FILE, "*.onnx"))
        plan = QuantPlan.load(folder / "plan.json")
        if plan.rounding != "nearest":  # lowering the plan again must give the export's codes
            raise SystemExit(f"{folder}: the plan's codes come from {plan.rounding}; this benchmark re-lowers nearest")
        lower_onnx_sherpa(bundle, plan, out, activations=LAYOUTS["before"])
    return out


def measure_pair(folder, clips) -> dict:
    result = bench(BenchOptions(artifact=folder, data=SPEECHOCEAN, runtimes=("onnx",), threads=1), dataset=clips)
    value = {r["metric"]["name"]: r["metric"]["value"] for r in result.records if r["group"] == "all"}
    texts = {c["utt_id"]: c["text"] for c in result.transcripts["onnx"]}
    counts = [count_errors(u.transcript, texts[u.utt_id]) for u in clips]
    sets = {}
    for name in ("all", "an4", "speechocean762"):
        score = aggregate([c for c, u in zip(counts, clips, strict=True) if name == "all" or u.split == name])
        sets[name] = {"wer": score.wer, "n_words": score.n_tokens}
    return {
        "artifact_bytes": int(value["artifact_bytes"]),
        "run_peak_bytes": int(value["memory_run_peak"]),
        "predicted_run_peak_bytes": int(value["predicted_memory_run_peak"]),
        "load_peak_bytes": int(value["memory_load_peak"]),
        "rtf": value["real_time_factor"],
        "sets": sets,
        "counts": [dataclasses.asdict(c) for c in counts],
    }


def alternating_rtf(data: dict, rounds: int) -> None:
    """Each row's median RTF over `rounds` in-process passes on the peers' 80 clips, the two layouts of a
    size alternating, stored as `rtf_alternating` (with the clips' count and the rounds) in `data`'s rows."""
    clips = list(test_clips())
    audio = [load_audio(u.audio_path) for u in clips]
    seconds_of_audio = sum(len(a) for a in audio) / 16000
    options = DecodingOptions(language="en", loop_guard=True)
    by_size = {}
    for row in data["rows"]:
        by_size.setdefault((row["model"], row["quant"]), {})[row["layout"]] = row
    for (model, quant), layouts in by_size.items():
        folder = exported(model, "onnx", "onnx", GGML_BYTES[model][quant])
        paths = {"before": WORK / f"onnx-activations-{model}" / f"{folder.name}-before", "default": folder}
        times = {layout: [] for layout in layouts}
        for round_ in range(rounds):
            for layout in ("before", "default"):
                say(f"{model} {quant}: {layout} layout, timing round {round_ + 1} of {rounds}")
                runner = OnnxRunner(paths[layout], threads=1)
                runner.transcribe(audio[0], options)  # warm-up
                start = time.perf_counter()
                for samples in audio:
                    runner.transcribe(samples, options)
                times[layout].append((time.perf_counter() - start) / seconds_of_audio)
                del runner
        for layout, row in layouts.items():
            row["rtf_alternating"] = {"median": statistics.median(times[layout]), "rounds": rounds, "clips": len(clips)}
    data["notes"].insert(
        1,
        f"RTF alternating: each size's two layouts timed in one process, alternating, {rounds} rounds on the peers "
        f"benchmark's {len(clips)} clips (40 AN4 test, 1 clip of 40 speechocean762 speakers), median per layout.",
    )


def measure(args) -> dict:
    clips = test_clips(speakers=64, per_speaker=args.per_speaker)  # a Dataset, as bench takes it
    speakers = [u.speaker for u in clips]
    rows = []
    for model in args.models:
        bundle = load_whisper(model)
        for quant in args.quants:
            folder = exported(model, "onnx", "onnx", GGML_BYTES[model][quant])
            if isinstance(folder, str):
                raise SystemExit(f"the {model} export at whisper.cpp {quant}'s bytes failed: {folder}")
            pairs = {"before": before_folder(model, folder, bundle), "default": folder}
            measured = {}
            for layout, path in pairs.items():  # before first: the default row compares with it
                say(f"{model} {quant}: {layout} layout")
                measured[layout] = measure_pair(path, clips)
            before = [UtteranceCounts(**c) for c in measured["before"]["counts"]]
            default = [UtteranceCounts(**c) for c in measured["default"]["counts"]]
            versus = paired_bootstrap(before, default, clusters=speakers).to_dict()
            for layout in pairs:
                row = {"model": model, "quant": quant, "layout": layout, **measured[layout]}
                row["vs_before"] = versus if layout == "default" else None
                rows.append(row)
    notes = [
        f"{len(clips)} clips: 40 AN4 test (20 per gender) and {len(clips) - 40} speechocean762 ({args.per_speaker} "
        "per speaker, 64 speakers), seed 0. Each pair: `edgeasr bench --runtime onnx` in its own process, 1 thread, "
        "greedy with the loop guard, sherpa-onnx's framing (clip + 1000 zero frames); run peak = peak resident set "
        "while transcribing minus the process's baseline; predicted = exporter.memory's run peak for the pair (30 s, "
        "448 tokens). WER: collapsed, n = reference words; default - before, paired per clip, 95 % interval from "
        "2000 speaker resamples. RTF on the shared 2-core host.",
        *args.note,
        produced_by(
            "onnx_activations.py",
            {
                "--models": None if args.models == list(GGML_BYTES) else args.models,
                "--quants": None if args.quants == ["q4_0", "q8_0"] else args.quants,
                "--per-speaker": None if args.per_speaker == 4 else args.per_speaker,
            },
        ),
    ]
    return {"generated_by": f"edgeasr {__version__} benchmarks/onnx_activations.py", "notes": notes, "rows": rows}


def markdown(data: dict) -> str:
    lines = [
        "# The ONNX pair's activation layout: half-precision cross keys + sliced feed-forward vs before",
        "",
        *data["notes"],
        "",
        "| model | size | layout | artifact MB | run peak MB (pred.) | load peak MB | RTF | RTF alternating | "
        "WER all (n) | WER AN4 (n) | WER speechocean762 (n) | default - before, points [95 % CI] |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in data["rows"]:
        alternating = f"{r['rtf_alternating']['median']:.3f}" if r.get("rtf_alternating") else "-"
        wer = [f"{100 * r['sets'][s]['wer']:.1f} ({r['sets'][s]['n_words']})" for s in ("all", "an4", "speechocean762")]
        lines.append(
            f"| {r['model']} | whisper.cpp {r['quant']} | {r['layout']} | {r['artifact_bytes'] / MB:.1f} | "
            f"{r['run_peak_bytes'] / MB:.0f} ({r['predicted_run_peak_bytes'] / MB:.0f}) | {r['load_peak_bytes'] / MB:.0f} | "
            f"{r['rtf']:.3f} | {alternating} | {' | '.join(wer)} | {points_interval(r['vs_before']) if r['vs_before'] else '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(GGML_BYTES), choices=sorted(GGML_BYTES))
    parser.add_argument("--quants", nargs="+", default=["q4_0", "q8_0"], choices=["q4_0", "q5_0", "q8_0"])
    parser.add_argument("--per-speaker", type=int, default=4, help="speechocean762 clips per speaker (of 20)")
    parser.add_argument("--note", action="append", default=[], help="a line to add to the results' notes")
    parser.add_argument("--alternate-rounds", type=int, default=0, help="time both layouts again, alternating")
    parser.add_argument("--report-only", action="store_true", help="re-make the table from the results file")
    args = parser.parse_args()
    stem = RESULTS / "onnx_activations"
    data = (
        read_json(stem.with_suffix(".json"), "an onnx_activations results file") if args.report_only else measure(args)
    )
    if args.alternate_rounds:
        alternating_rtf(data, args.alternate_rounds)
    if args.alternate_rounds or not args.report_only:
        write_json(stem.with_suffix(".json"), data)
    write_text(stem.with_suffix(".md"), markdown(data))
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
