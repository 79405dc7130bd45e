"""Pilot for the PQM defaults: which LoRA targets / steps / learning rate, measured on speakers that the main
benchmark (pqm_speakers.py, AN4 *train* speakers) never uses: the AN4 *test* split speakers.

Per pilot speaker: adapt on the first 8 clips (manifest order), test on the other 5; WER of FP, the NF4 base,
and NF4 + LoRA (scratch, labels) for each configuration, with CPU training seconds. Resumable (rows keyed by
configuration and speaker); rewrites benchmarks/results/pqm_pilot_<model>.json|md after every row.

    python benchmarks/pqm_pilot.py --model tiny.en --speakers fcaw marh --configs dec_qv dec_all encdec_qv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.logs import quiet_libraries  # noqa: E402

quiet_libraries()

import json  # noqa: E402

import torch  # noqa: E402

from exporter.data import Dataset, load_dataset  # noqa: E402
from exporter.evaluate import evaluate  # noqa: E402
from exporter.io import write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.personalize.base import nf4_bundle  # noqa: E402
from exporter.personalize.lora import LoraConfig  # noqa: E402
from exporter.personalize.run import adapted_model, labelled_examples, pseudo_labels  # noqa: E402
from exporter.personalize.train import TrainOptions, train_lora  # noqa: E402
from exporter.scoring import UtteranceCounts, aggregate  # noqa: E402
from runtimes.torch_runner import TorchRunner  # noqa: E402

AN4 = ROOT.parent / "shared" / "data" / "an4" / "manifest.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
N_ADAPT = 8

ALL = ("q", "k", "v", "out", "fc1", "fc2")


def _config(
    targets=("q", "v"), scope=("decoder",), rank=8, steps=30, lr=1e-3, labels="transcripts", style="lower"
) -> dict:
    return {
        "lora": LoraConfig(rank=rank, alpha=2.0 * rank, targets=targets, scope=scope),
        "train": TrainOptions(steps=steps, lr=lr),
        "labels": labels,
        "style": style,
    }


CONFIGS = {
    "dec_qv": _config(),
    "dec_qv_keepcase": _config(style="keep"),
    "dec_qv_norm": _config(style="normalized"),
    "dec_all_norm": _config(targets=ALL, style="normalized"),
    "dec_qv_s15": _config(steps=15),
    "dec_qv_lr3e-4": _config(lr=3e-4),
    "dec_qkvo": _config(targets=("q", "k", "v", "out")),
    "dec_all": _config(targets=ALL),
    "dec_all_s15": _config(targets=ALL, steps=15),
    "dec_all_lr3e-4": _config(targets=ALL, lr=3e-4),
    "dec_qv_r4": _config(rank=4),
    "encdec_qv_s15": _config(scope=("encoder", "decoder"), steps=15),
    "dec_qv_pseudo": _config(labels="pseudo"),
    "dec_all_pseudo": _config(targets=ALL, labels="pseudo"),
}


def counts_of(result) -> list[dict]:
    return [c.__dict__ for c in result.counts()]


def wer_of(rows: list[dict]) -> float | None:
    counts = [UtteranceCounts(**c) for r in rows for c in r["counts"]]
    return aggregate(counts).wer if counts else None


def write_report(path_json: Path, data: dict) -> None:
    write_json(path_json, data)
    rows = data["rows"]
    systems = sorted({r["system"] for r in rows}, key=lambda s: (s not in ("fp", "nf4"), s))
    lines = [
        f"# PQM pilot ({data['model']}): LoRA settings on AN4 test-split speakers",
        "",
        "Produced by `python benchmarks/pqm_pilot.py`. Per speaker: adapt on the first 8 clips, test on "
        "the other 5 (collapsed-token WER, pooled over speakers). These speakers are not used by "
        "`pqm_speakers.py`.",
        "",
        "| system | speakers | test clips | WER % | FP WER % (same clips) | NF4 WER % (same clips) | "
        "mean train s | settings |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    for system in systems:
        chosen = [r for r in rows if r["system"] == system]
        speakers = {r["speaker"] for r in chosen}
        fp = wer_of([r for r in rows if r["system"] == "fp" and r["speaker"] in speakers])
        nf4 = wer_of([r for r in rows if r["system"] == "nf4" and r["speaker"] in speakers])
        secs = [r["train_seconds"] for r in chosen if r.get("train_seconds") is not None]
        lines.append(
            f"| {system} | {len(chosen)} | {sum(len(r['counts']) for r in chosen)} | "
            f"{pct(wer_of(chosen))} | {pct(fp)} | {pct(nf4)} | "
            f"{'-' if not secs else f'{sum(secs) / len(secs):.0f}'} | {chosen[0].get('settings', '')} |"
        )
    lines += ["", f"Machine: {data['machine']}"]
    write_text(path_json.with_suffix(".md"), "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--speakers", nargs="+", required=True)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = RESULTS / f"pqm_pilot_{args.model}.json"
    data = json.loads(out.read_text()) if out.exists() else {"model": args.model, "rows": []}
    data["machine"] = f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
    done = {(r["system"], r["speaker"]) for r in data["rows"]}
    an4 = load_dataset(AN4)
    fp = load_whisper(args.model)
    nf4, _ = nf4_bundle(fp)
    for speaker in args.speakers:
        utts = [u for u in an4 if u.speaker == speaker]
        if len(utts) <= N_ADAPT:
            raise SystemExit(f"speaker {speaker} has only {len(utts)} clips")
        adapt, test = utts[:N_ADAPT], Dataset(an4.source, utts[N_ADAPT:])
        examples = {}
        for system, bundle in (("fp", fp), ("nf4", nf4)):
            if (system, speaker) not in done:
                result = evaluate(TorchRunner(bundle), test, system, progress=False)
                data["rows"].append({"system": system, "speaker": speaker, "counts": counts_of(result)})
                write_report(out, data)
        for name in args.configs:
            if (name, speaker) in done:
                continue
            config = CONFIGS[name]
            lora, train, labels = config["lora"], config["train"], config["labels"]
            key = (labels, config["style"])
            if key not in examples:
                examples[key] = (
                    labelled_examples(fp, adapt, config["style"])
                    if labels == "transcripts"
                    else [example for _, example in pseudo_labels(fp, fp, adapt)]
                )
            bundle = adapted_model(nf4, lora, train.seed)
            started = time.perf_counter()
            curve = train_lora(bundle.model, examples[key], bundle.special.eot, train).curve
            seconds = time.perf_counter() - started
            result = evaluate(TorchRunner(bundle), test, name, progress=False)
            row = {
                "system": name,
                "speaker": speaker,
                "counts": counts_of(result),
                "train_seconds": seconds,
                "loss_first": curve[0]["loss"],
                "loss_last": curve[-1]["loss"],
                "settings": f"rank {lora.rank} alpha {lora.alpha} {','.join(lora.targets)} in "
                f"{','.join(lora.scope)}; {train.steps} steps lr {train.lr}; labels {labels}"
                + ("" if config["style"] == "lower" else f" ({config['style']} text)"),
                "hypotheses": result.hypotheses(),
            }
            data["rows"].append(row)
            write_report(out, data)
            print(
                f"{speaker} {name}: WER {wer_of([row]):.3f} loss {curve[0]['loss']:.3f}->{curve[-1]['loss']:.3f} "
                f"{seconds:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
