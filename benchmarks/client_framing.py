"""How a sherpa-layout ONNX pair frames a clip: sherpa-onnx's default tail (1000 zero frames) vs the full 30 s window.

sherpa-onnx feeds the encoder a clip's own frames plus `tail_paddings` zero frames (1000 by default, at most
3000 in all); edgeasr's ONNX runner frames the sherpa layout the same way, so that it and the client agree.
Whisper was trained on 30 s windows, and whisper.cpp (like PyTorch and the simulation) always uses one, so a
short clip sees a much shorter context on the pair than on those systems: less encoder work, and another
transcript. This benchmark measures both framings on the same pairs and clips: per model and size, the peers
benchmark's export (target onnx, fill, english_misc calibration, at a whisper.cpp file's bytes) run by
edgeasr's ONNX runner with tail 1000 and with tail 3000 (`OnnxRunner(tail_frames=...)`, which an app sets as
sherpa-onnx's `tailPaddings`), and PyTorch FP (full window) as the reference. In-process, one thread, greedy
with the loop guard, language en; clips: 40 AN4 test and `--per-speaker` of each of the 64 speechocean762
speakers. WER with n words per data set; paired differences with 95 % intervals resampled by speaker; RTF.

    python benchmarks/client_framing.py --model base --quants q4_0 q8_0
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from bench_common import RESULTS, points_interval, say
from clients import test_clips
from peers import exported

from exporter import __version__
from exporter.io import read_json, write_json, write_text
from exporter.models import load_whisper
from exporter.scoring import aggregate, count_errors, paired_bootstrap
from runtimes.audio import FULL_FRAMES, load_audio
from runtimes.decoding import DecodingOptions
from runtimes.onnx_runner import CLIENT_TAIL_FRAMES, OnnxRunner
from runtimes.torch_runner import TorchRunner

# whisper.cpp's file bytes per model and quantisation (benchmarks/results/peers_*_so64x4.json)
GGML_BYTES = {
    "tiny.en": {"q4_0": 25_335_354, "q5_0": 29_889_210, "q8_0": 43_550_778},
    "base": {"q4_0": 46_471_049, "q5_0": 55_295_433, "q8_0": 81_768_585},
}
TAILS = (CLIENT_TAIL_FRAMES, FULL_FRAMES)


def transcribe_all(runner, clips) -> tuple[list, float]:
    """Per-clip error counts and the RTF (decode seconds / audio seconds) of `runner` on `clips`."""
    counts, seconds, audio = [], 0.0, 0.0
    for index, clip in enumerate(clips, 1):
        samples = load_audio(clip.audio_path)
        start = time.perf_counter()
        text = runner.transcribe(samples, DecodingOptions(language="en", loop_guard=True)).text
        seconds += time.perf_counter() - start
        audio += len(samples) / 16000
        counts.append(count_errors(clip.transcript, text))
        if index % 40 == 0:
            say(f"  {index}/{len(clips)} clips")
    return counts, seconds / audio


def row(system: str, counts: list, rtf: float, clips, reference: list | None) -> dict:
    data = {"system": system, "rtf": rtf}
    for group in ("all", "an4", "speechocean762"):
        score = aggregate([c for c, u in zip(counts, clips, strict=True) if group == "all" or u.split == group])
        data[group] = {"wer": score.wer, "n_words": score.n_tokens}
    if reference is not None:
        data["vs_tail_1000"] = paired_bootstrap(reference, counts, clusters=[u.speaker for u in clips]).to_dict()
    return data


def markdown(model: str, rows: list[dict], notes: list[str]) -> str:
    lines = [
        f"# Client framing: {model}, sherpa-onnx's tail of 1000 frames vs the full 30 s window",
        "",
        *notes,
        "",
        "| system | WER all (n) | WER AN4 (n) | WER speechocean762 (n) | tail 3000 - tail 1000, points [95 % CI] | RTF |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        cells = [f"{100 * r[g]['wer']:.1f} ({r[g]['n_words']})" for g in ("all", "an4", "speechocean762")]
        versus = points_interval(r.get("vs_tail_1000"))
        lines.append(f"| {r['system']} | {' | '.join(cells)} | {versus} | {r['rtf']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", choices=sorted(GGML_BYTES))
    parser.add_argument("--quants", nargs="+", default=["q4_0", "q8_0"], choices=["q4_0", "q5_0", "q8_0"])
    parser.add_argument("--per-speaker", type=int, default=2, help="speechocean762 clips per speaker (of 20)")
    parser.add_argument("--note", action="append", default=[], help="a line to add to the results' notes")
    parser.add_argument("--report-only", action="store_true", help="re-make the table from the results file")
    args = parser.parse_args()
    stem = RESULTS / f"client_framing_{args.model.replace('.', '_')}"
    if args.report_only:
        data = read_json(stem.with_suffix(".json"), "a client_framing results file")
        write_text(stem.with_suffix(".md"), markdown(args.model, data["rows"], data["notes"]))
        return
    torch.set_num_threads(1)
    clips = list(test_clips(speakers=64, per_speaker=args.per_speaker))
    rows = []
    for quant in args.quants:
        folder = exported(args.model, "onnx", "onnx", GGML_BYTES[args.model][quant])
        if isinstance(folder, str):
            sys.exit(f"the {args.model} export at {quant}'s bytes failed: {folder}")
        size = sum(p.stat().st_size for p in folder.glob("*.onnx")) / 1e6
        reference = None
        for tail in TAILS:
            say(f"{args.model} onnx {size:.1f} MB, tail {tail}")
            counts, rtf = transcribe_all(OnnxRunner(folder, threads=1, tail_frames=tail), clips)
            rows.append(row(f"edgeasr onnx {size:.1f} MB, tail {tail}", counts, rtf, clips, reference))
            reference = reference or counts
    say(f"{args.model} FP (PyTorch, full window)")
    counts, rtf = transcribe_all(TorchRunner(load_whisper(args.model)), clips)
    rows.append(row("Whisper FP (PyTorch, 30 s window)", counts, rtf, clips, None))
    notes = [
        f"{len(clips)} clips: 40 AN4 test (20 per gender) and {len(clips) - 40} speechocean762 ({args.per_speaker} "
        "per speaker, 64 speakers), seed 0. Each pair is the peers benchmark's sherpa-layout export at a whisper.cpp "
        "file's bytes, run by edgeasr's ONNX runner with sherpa-onnx's tail of 1000 zero frames (its default, "
        "and the runner's) and with 3000 (every clip in a full 30 s window). In-process, 1 thread, greedy, loop "
        "guard, language en; collapsed WER, n = reference words; intervals: paired bootstrap over speakers (2000 "
        "resamples), the tail-3000 row against the same pair's tail-1000 row. RTF = decode seconds / audio seconds "
        "on the shared 2-core host.",
        *args.note,
        f"Produced by `python benchmarks/client_framing.py --model {args.model} --quants {' '.join(args.quants)}"
        + (f" --per-speaker {args.per_speaker}" if args.per_speaker != 2 else "")
        + f"` (edgeasr {__version__}).",
    ]
    write_json(stem.with_suffix(".json"), {"notes": notes, "rows": rows})
    write_text(stem.with_suffix(".md"), markdown(args.model, rows, notes))
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
