"""Client runtimes: sherpa-onnx itself against edgeasr's ONNX runner and ExecuTorch, on the same clips.

One `edgeasr export --formats pte,onnx --onnx-layout sherpa` at one budget (myQASR + fill, calibrated on the
english_misc clips, which are not tested) gives a `.pte` and a sherpa-layout ONNX pair. The pair is run by
sherpa-onnx's OfflineRecognizer (its own features, framing and greedy search: what an app linking sherpa-onnx
gets) and by edgeasr's ONNX runner; the `.pte` by ExecuTorch. Each runtime in its own measured process.
Clips: 40 AN4 test (20 per gender) and 40 speechocean762 (2 per speaker from 20 speakers), grouped by data set.

    python benchmarks/clients.py --model tiny.en --budget 45MB
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil

from bench_common import DATA, RESULTS, STAMP_FILE, WORK, an4_test_clips, is_current, lowering_stamp, say
from bench_common import write_results as write_bench_results

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.bench_report import format_markdown, plot
from exporter.bench_schema import load_results
from exporter.data import Dataset, load_dataset
from exporter.export import ExportOptions, export
from exporter.io import write_text

SPEECHOCEAN = DATA / "speechocean762" / "manifest.jsonl"
CALIB = DATA / "english_misc" / "manifest.jsonl"


def test_clips(seed: int = 0, speakers: int = 20, per_speaker: int = 2) -> Dataset:
    """40 AN4 test clips and `per_speaker` clips of `speakers` speechocean762 speakers (40 by default), each
    tagged with its data set as `split`."""
    an4 = [dataclasses.replace(u, split="an4") for u in an4_test_clips(20, seed)]
    ocean = load_dataset(SPEECHOCEAN)
    rng = random.Random(seed)
    chosen = []
    for speaker in sorted(rng.sample(sorted({u.speaker for u in ocean}), speakers)):
        own = sorted((u for u in ocean if u.speaker == speaker), key=lambda u: u.utt_id)
        chosen += [dataclasses.replace(u, split="speechocean762") for u in rng.sample(own, per_speaker)]
    return Dataset(ocean.source, an4 + chosen)


def exported(model: str, budget: str):
    out = WORK / f"{model}-{budget}-pte-sherpa-fill"
    if (out / "export.json").is_file() and is_current(out):
        say(f"reusing {out}")
        return out
    shutil.rmtree(out, ignore_errors=True)
    options = ExportOptions(
        model=model,
        target="android",
        budget=budget,
        formats=("pte", "onnx"),
        onnx_layout="sherpa",
        allocation="fill",
        calib=CALIB,
        n_calib=32,
    )
    export(options, out, progress=False)
    (out / STAMP_FILE).write_text(lowering_stamp() + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--budget", default="45MB")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    stem = RESULTS / f"clients_{args.model.replace('.', '_')}_{args.budget}"
    title = f"Clients: sherpa-onnx vs edgeasr's runners, {args.model}, {args.budget} budget"
    if args.report_only:
        data = load_results(stem.with_suffix(".json"))
    else:
        root = exported(args.model, args.budget)
        clips = test_clips()
        records, notes = (
            [],
            [
                f"{len(clips)} clips: 40 AN4 test (20 per gender) and 40 speechocean762 (2 per speaker, 20 speakers), "
                f"seed 0; {args.threads} thread(s) per runtime, 1 warm-up run; 2-core shared host"
            ],
        )
        for folder, runtimes in ((root, ("executorch",)), (root / "sherpa", ("onnx", "sherpa-onnx"))):
            say(f"{folder}: {', '.join(runtimes)}")
            result = bench(
                BenchOptions(
                    artifact=folder, data=SPEECHOCEAN, runtimes=runtimes, group_by="split", threads=args.threads
                ),
                dataset=clips,
            )
            records += result.records
            notes += result.notes
        notes.append(
            f"Produced by `python benchmarks/clients.py --model {args.model} --budget {args.budget}` from "
            f"`{root.name}` (the .pte at the top, the sherpa-layout pair in `sherpa/`)."
        )
        data = {
            "schema_version": 1,
            "generated_by": f"edgeasr {__version__} benchmarks/clients.py",
            "notes": notes,
            "records": records,
        }
        write_bench_results(stem.with_suffix(".json"), data)
    write_text(stem.with_suffix(".md"), format_markdown(data, title))
    plot(data, stem.with_suffix(".png"), title)
    say(f"wrote {stem}.json/.md/.png")


if __name__ == "__main__":
    main()
