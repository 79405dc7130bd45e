"""PQM on real speakers (AN4 train split): FP vs NF4 vs NF4 + LoRA, per speaker, with and without labels.

Protocol (our choices; the paper's were not found, see ../shared/research/papers.md section 2):
* Speakers: AN4 train-split speakers (the test-split speakers were used by pqm_pilot.py to choose the
  settings). `--n-speakers N` takes the first N of the speakers interleaved female/male in sorted id order.
* Per speaker: adapt on the first 8 clips (manifest order), test on the rest (1 to 6 clips).
* Systems per speaker (test clips only):
    fp                    full-precision Whisper
    nf4                   the NF4 base (every Linear NF4 blocks of 64, embedding int4 g32)
    scratch/<labels>      NF4 + LoRA trained from zero-initialised B on the speaker's 8 clips
    pool/<labels>         NF4 + the multi-speaker pre-trained LoRA alone (no speaker adaptation)
    pretrained/<labels>   NF4 + LoRA trained on the speaker's 8 clips starting from the pool adapter
  with <labels> = labels (manifest transcripts, lower-cased) or pseudo (the FP model's greedy transcripts).
* Pre-training, leave-speakers-out by k-fold: every train speaker is assigned to one of k folds (interleaved by
  gender); a target speaker in fold f starts from the adapter pre-trained on all clips of the speakers of the
  other folds (never on its own), with the same label mode as its adaptation (pseudo: a label-free pipeline).
* CPU cost per speaker adaptation: wall seconds at the given torch thread count, and the process's peak RSS
  during training (VmHWM reset before each training; the process also holds the FP and NF4 models).

Aggregates: pooled WER over all test clips of the chosen speakers (n speakers, clips, reference tokens), the
relative change versus FP, the per-speaker median and inter-quartile range, and paired bootstrap intervals
resampling speakers then clips. Resumable: rows and pre-trained adapters are cached; the JSON and the table are
rewritten after every row.

    python benchmarks/pqm_speakers.py --model tiny.en --n-speakers 8 --folds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.logs import quiet_libraries  # noqa: E402

quiet_libraries()

import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402

from exporter.data import Dataset, load_dataset  # noqa: E402
from exporter.evaluate import evaluate  # noqa: E402
from exporter.io import write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.personalize.base import Nf4Options, nf4_bundle  # noqa: E402
from exporter.personalize.lora import (  # noqa: E402
    AdapterInfo,
    LoraConfig,
    load_adapter,
    lora_state,
    parse_targets,
    save_adapter,
)
from exporter.personalize.run import adapted_model, labelled_examples  # noqa: E402
from exporter.personalize.train import TrainOptions, cache_frozen_encoder, train_lora  # noqa: E402
from exporter.scoring import UtteranceCounts, aggregate, paired_bootstrap  # noqa: E402
from runtimes.audio import load_audio  # noqa: E402
from runtimes.procmem import peak_rss_bytes, reset_peak_rss  # noqa: E402
from runtimes.torch_runner import TorchRunner  # noqa: E402

AN4 = ROOT.parent / "shared" / "data" / "an4" / "manifest.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
N_ADAPT = 8
LABELS = ("labels", "pseudo")
SYSTEMS = ["fp", "nf4"] + [f"{kind}/{labels}" for kind in ("scratch", "pool", "pretrained") for labels in LABELS]
SCRATCH_ONLY = ["fp", "nf4"] + [f"scratch/{labels}" for labels in LABELS]


def say(message: str) -> None:
    print(f"[pqm] {message}", flush=True)


def interleaved_speakers(an4: Dataset) -> list[str]:
    speakers = sorted({u.speaker for u in an4 if u.split == "train"})
    female = [s for s in speakers if s.startswith("f")]
    male = [s for s in speakers if not s.startswith("f")]
    order = []
    for i in range(max(len(female), len(male))):
        order += [g[i] for g in (female, male) if i < len(g)]
    return order


class PseudoLabels:
    """FP greedy tokens per clip, cached on disk (decoding the pool is the expensive part of label-free)."""

    def __init__(self, path: Path, fp):
        self.path, self.fp = path, fp
        self.runner = TorchRunner(fp)
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def get(self, utt) -> dict:
        if utt.utt_id not in self.data:
            result = self.runner.transcribe(load_audio(utt.audio_path, expected_rate=utt.sample_rate))
            self.data[utt.utt_id] = {"tokens": result.tokens, "text": result.text, "language": result.language}
            write_json(self.path, self.data)
        return self.data[utt.utt_id]


class ExampleStore:
    """One example per clip, its features and frozen-encoder prefix computed once and shared by every
    training (scratch, pool, pre-trained; both label modes): with decoder-only adapters no training runs the
    encoder again."""

    def __init__(self, fp, nf4, lora: LoraConfig, pseudo: PseudoLabels):
        self.fp, self.pseudo = fp, pseudo
        self.probe = adapted_model(nf4, lora, 0).model  # shares the NF4 encoder when the encoder is frozen
        self.labelled: dict = {}

    def get(self, utts, labels: str) -> list:
        missing = [u for u in utts if u.utt_id not in self.labelled]
        if missing:
            fresh = labelled_examples(self.fp, missing)
            cache_frozen_encoder(self.probe, fresh)
            self.labelled.update({e.utt_id: e for e in fresh})
        base = [self.labelled[u.utt_id] for u in utts]
        if labels == "labels":
            return base
        out = []
        for u, example in zip(utts, base):
            p = self.pseudo.get(u)
            prompt = example.tokens[: example.prompt_length]
            out.append(
                dataclasses.replace(example, tokens=prompt + p["tokens"] + [self.fp.special.eot], text=p["text"])
            )
        return out


def counts_of(result) -> list[dict]:
    return [c.__dict__ for c in result.counts()]


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def systems_of(data: dict) -> list[str]:
    return data.get("config", {}).get("systems", SYSTEMS)


def summarise(data: dict) -> dict:
    systems = systems_of(data)
    rows = data["rows"]
    speakers = sorted({r["speaker"] for r in rows if r["system"] == "fp"})
    # only speakers with every system, so all systems are compared on the same clips
    complete = [
        s for s in speakers if all(any(r["speaker"] == s and r["system"] == sys_ for r in rows) for sys_ in systems)
    ]
    by = {(r["speaker"], r["system"]): r for r in rows}
    summary = {"speakers": complete, "systems": {}}
    if not complete:
        return summary
    counts = {s: [UtteranceCounts(**c) for spk in complete for c in by[(spk, s)]["counts"]] for s in systems}
    clusters = [spk for spk in complete for _ in by[(spk, "fp")]["counts"]]
    fp_wer = aggregate(counts["fp"]).wer
    for s in systems:
        score = aggregate(counts[s])
        per = [aggregate([UtteranceCounts(**c) for c in by[(spk, s)]["counts"]]).wer for spk in complete]
        per = [w for w in per if w is not None]
        q = statistics.quantiles(per, n=4, method="inclusive") if len(per) >= 2 else [per[0]] * 3
        entry = {
            "wer": score.wer,
            "cer": score.cer,
            "wer_plain": score.wer_plain,
            "n_clips": score.n_clips,
            "n_tokens": sum(c.ref_tokens for c in counts[s]),
            "relative_vs_fp": None if not fp_wer else (score.wer - fp_wer) / fp_wer,
            "per_speaker_median": statistics.median(per),
            "per_speaker_q1": q[0],
            "per_speaker_q3": q[2],
            "per_speaker_min": min(per),
            "per_speaker_max": max(per),
        }
        for ref in ("fp", "nf4"):
            if s != ref:
                cmp = paired_bootstrap(counts[ref], counts[s], clusters=clusters, n_resamples=2000, seed=0)
                entry[f"vs_{ref}"] = {"delta": cmp.delta, "ci_low": cmp.ci_low, "ci_high": cmp.ci_high}
        trained = [by[(spk, s)] for spk in complete if by[(spk, s)].get("train_seconds") is not None]
        if trained:
            entry["train_seconds_median"] = statistics.median(r["train_seconds"] for r in trained)
            entry["train_seconds_max"] = max(r["train_seconds"] for r in trained)
            entry["peak_rss_mb_max"] = max(r["peak_rss_bytes"] for r in trained) / 1e6
            entry["train_extra_rss_mb_max"] = max(r["train_extra_rss_bytes"] for r in trained) / 1e6
        summary["systems"][s] = entry
    return summary


def write_report(path: Path, data: dict, write_data: bool = True) -> None:
    data["summary"] = summarise(data)
    if write_data:
        write_json(path, data)
    summary = data["summary"]
    cfg = data["config"]
    lines = [
        f"# PQM per-speaker personalisation on AN4 ({data['model']})",
        "",
        "Produced by `python benchmarks/pqm_speakers.py` (protocol in its docstring). Per AN4 train speaker: "
        f"adapt on the first {N_ADAPT} clips, test on the rest; pooled collapsed-token WER over the speakers "
        "that have every system. Intervals: 95 % paired bootstrap over speakers then clips.",
        "",
        f"Speakers: {len(summary['speakers'])} of the 24 AN4 train speakers ({', '.join(summary['speakers'])}).",
        f"LoRA: rank {cfg['lora']['rank']}, alpha {cfg['lora']['alpha']}, dropout {cfg['lora']['dropout']}, "
        f"targets {','.join(cfg['lora']['targets'])} in {','.join(cfg['lora']['scope'])}; speaker adaptation "
        f"{cfg['adapt']['steps']} steps, batch {cfg['adapt']['batch_size']}, lr {cfg['adapt']['lr']} (from the "
        f"pool adapter: lr {cfg['adapt_pretrained']['lr']}); pool pre-training {cfg['pretrain']['steps']} steps, "
        f"batch {cfg['pretrain']['batch_size']}, lr {cfg['pretrain']['lr']}, {cfg['folds']}-fold leave-speakers-"
        f"out pools. NF4 base: {cfg['base']}.",
        "",
    ]
    if summary["systems"]:
        lines += [
            "| system | n clips | n tokens | WER % | CER % | rel. vs FP | vs FP (pts, 95% CI) | vs NF4 (pts, 95% CI) | "
            "per-speaker median [IQR] | train s (median / max) | peak RSS MB (max) | RSS added by training MB (max) |",
            "|---|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|",
        ]
        for s in systems_of(data):
            e = summary["systems"][s]

            def ci(key):
                c = e.get(key)
                return (
                    "-" if not c else (f"{100 * c['delta']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]")
                )

            rel = "-" if e["relative_vs_fp"] is None or s == "fp" else f"{100 * e['relative_vs_fp']:+.1f} %"
            train = (
                f"{e['train_seconds_median']:.0f} / {e['train_seconds_max']:.0f}"
                if "train_seconds_median" in e
                else "-"
            )
            rss = f"{e['peak_rss_mb_max']:.0f}" if "peak_rss_mb_max" in e else "-"
            extra = f"{e['train_extra_rss_mb_max']:.0f}" if "train_extra_rss_mb_max" in e else "-"
            lines.append(
                f"| {s} | {e['n_clips']} | {e['n_tokens']} | {_pct(e['wer'])} | {_pct(e['cer'])} | {rel} | {ci('vs_fp')} | "
                f"{ci('vs_nf4')} | {_pct(e['per_speaker_median'])} [{_pct(e['per_speaker_q1'])}, "
                f"{_pct(e['per_speaker_q3'])}] | {train} | {rss} | {extra} |"
            )
    if summary["speakers"]:
        by = {(r["speaker"], r["system"]): r for r in data["rows"]}
        lines += [
            "",
            "Per speaker (WER %; train seconds and peak RSS MB of the labelled scratch adaptation):",
            "",
            "| speaker | test clips | " + " | ".join(systems_of(data)) + " | train s | peak RSS MB |",
            "|---|---:|" + "---:|" * (len(systems_of(data)) + 2),
        ]
        for spk in summary["speakers"]:
            wers = [
                _pct(aggregate([UtteranceCounts(**c) for c in by[(spk, s_)]["counts"]]).wer) for s_ in systems_of(data)
            ]
            scratch = by[(spk, "scratch/labels")]
            lines.append(
                f"| {spk} | {len(by[(spk, 'fp')]['counts'])} | "
                + " | ".join(wers)
                + f" | {scratch['train_seconds']:.0f} | {scratch['peak_rss_bytes'] / 1e6:.0f} |"
            )
    pre = data.get("pretrain", {})
    if pre:
        lines += ["", "Pool pre-training (per fold and label mode): pool clips, seconds, loss first -> last", ""]
        for key, p in sorted(pre.items()):
            lines.append(
                f"- {key}: {p['clips']} clips of {len(p['speakers'])} speakers, {p['seconds']:.0f} s, "
                f"loss {p['loss_first']:.3f} -> {p['loss_last']:.3f}"
            )
    lines += [
        "",
        f"Machine: {data['machine']}, shared with other jobs (wall times are noisy). Peak RSS is the "
        "whole benchmark process, which also holds the FP and NF4 models and the cached features and "
        "encoder outputs of every clip; 'RSS added by training' is the peak during one training minus the "
        "RSS before it.",
    ]
    for note in data.get("notes", []):
        lines.append(f"Note: {note}")
    write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--n-speakers", type=int, default=24)
    parser.add_argument("--speakers", nargs="+", help="explicit speaker ids (default: interleaved order)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--targets", default="q,v")
    parser.add_argument("--scope", default="decoder")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--pretrained-lr", type=float, default=3e-4)
    parser.add_argument("--pretrain-steps", type=int, default=150)
    parser.add_argument("--pretrain-batch", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/edgeasr-pqm"))
    parser.add_argument(
        "--scratch-only",
        action="store_true",
        help="only fp, nf4 and scratch adaptation (no pool pre-training): the cheap subset",
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from the JSON and stop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lora = LoraConfig(
        rank=args.rank,
        alpha=2.0 * args.rank,
        dropout=0.05,
        targets=parse_targets(args.targets),
        scope=parse_targets(args.scope),
    )
    adapt = TrainOptions(steps=args.steps, batch_size=4, lr=args.lr)
    adapt_pre = TrainOptions(steps=args.steps, batch_size=4, lr=args.pretrained_lr)
    pretrain = TrainOptions(steps=args.pretrain_steps, batch_size=args.pretrain_batch, lr=args.lr)
    base_options = Nf4Options()
    config = {
        "lora": lora.to_dict(),
        "adapt": adapt.to_dict(),
        "adapt_pretrained": adapt_pre.to_dict(),
        "pretrain": pretrain.to_dict(),
        "folds": args.folds,
        "base": base_options.to_dict(),
        "n_adapt": N_ADAPT,
    }
    if args.scratch_only:
        config["systems"] = SCRATCH_ONLY
    out = RESULTS / f"pqm_{args.model}.json"
    data = json.loads(out.read_text()) if out.exists() else {"model": args.model, "rows": [], "pretrain": {}}
    if args.report_only:  # the table only: the JSON may belong to a run still going
        write_report(out, data, write_data=False)
        return
    config = json.loads(json.dumps(config))  # as stored: tuples become lists, so a resume compares equal
    if data.get("config") not in (None, config):
        raise SystemExit(f"{out} was made with other settings; move it away to start over\n{data['config']}")
    data["config"] = config
    data["machine"] = f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}, {os.cpu_count()} CPUs"
    cache = args.cache / args.model
    cache.mkdir(parents=True, exist_ok=True)

    an4 = load_dataset(AN4)
    order = interleaved_speakers(an4)
    fold_of = {s: i % args.folds for i, s in enumerate(order)}
    speakers = args.speakers or order[: args.n_speakers]
    say(f"loading {args.model}; speakers {speakers}")
    fp = load_whisper(args.model)
    nf4, _ = nf4_bundle(fp, base_options)
    pseudo = PseudoLabels(cache / "pseudo_labels.json", fp)
    store = ExampleStore(fp, nf4, lora, pseudo)
    done = {(r["speaker"], r["system"]) for r in data["rows"]}

    def pool_adapter(fold: int, labels: str) -> dict:
        key = f"fold{fold}/{labels}"
        folder = cache / f"pool_fold{fold}_{labels}"
        if key in data["pretrain"] and folder.is_dir():
            return load_adapter(folder)[0]
        pool_speakers = [s for s in order if fold_of[s] != fold]
        utts = [u for u in an4 if u.split == "train" and u.speaker in pool_speakers]
        say(f"pre-training {key} on {len(utts)} clips of {len(pool_speakers)} speakers")
        examples = store.get(utts, labels)
        bundle = adapted_model(nf4, lora, pretrain.seed)
        started = time.perf_counter()
        result = train_lora(
            bundle.model,
            examples,
            nf4.special.eot,
            pretrain,
            lambda r: r["step"] % 25 == 0 and say(f"  {key} step {r['step']} loss {r['loss']:.4f}"),
        )
        state = lora_state(bundle.model)
        save_adapter(
            folder,
            state,
            AdapterInfo(
                args.model, lora, base_options.to_dict(), {"pool_speakers": pool_speakers, "curve": result.curve}
            ),
        )
        data["pretrain"][key] = {
            "speakers": pool_speakers,
            "clips": len(utts),
            "labels": labels,
            "seconds": time.perf_counter() - started,
            "loss_first": result.first_loss,
            "loss_last": result.last_loss,
        }
        write_report(out, data)
        return state

    def add_row(speaker: str, system: str, bundle, test: Dataset, extra: dict | None = None) -> None:
        result = evaluate(TorchRunner(bundle), test, system, progress=False)
        row = {
            "speaker": speaker,
            "system": system,
            "counts": counts_of(result),
            "hypotheses": result.hypotheses(),
            **(extra or {}),
        }
        data["rows"].append(row)
        write_report(out, data)
        wer = aggregate(result.counts()).wer
        say(
            f"{speaker} {system}: WER {_pct(wer)} on {len(test)} clips"
            + (f", trained {extra['train_seconds']:.0f} s" if extra and "train_seconds" in extra else "")
        )

    def train_row(speaker, system, start, examples, options, test):
        bundle = adapted_model(nf4, lora, options.seed, start)
        rss_before = peak_rss_bytes() if reset_peak_rss() else None
        started = time.perf_counter()
        result = train_lora(bundle.model, examples, nf4.special.eot, options)
        seconds = time.perf_counter() - started
        peak = peak_rss_bytes()
        add_row(
            speaker,
            system,
            bundle,
            test,
            {
                "train_seconds": seconds,
                "peak_rss_bytes": peak,
                "train_extra_rss_bytes": None if rss_before is None else peak - rss_before,
                "loss_first": result.first_loss,
                "loss_last": result.last_loss,
                "curve": result.curve,
            },
        )

    for speaker in speakers:
        utts = [u for u in an4 if u.speaker == speaker and u.split == "train"]
        adapt_utts, test = utts[:N_ADAPT], Dataset(an4.source, utts[N_ADAPT:])
        if not len(test):
            say(f"{speaker}: no test clips, skipped")
            continue
        for system, bundle in (("fp", fp), ("nf4", nf4)):
            if (speaker, system) not in done:
                add_row(speaker, system, bundle, test)
        for labels in LABELS:
            if all((speaker, s_) in done for s_ in systems_of(data) if s_.endswith(f"/{labels}")):
                continue
            examples = store.get(adapt_utts, labels)
            if (speaker, f"scratch/{labels}") not in done:
                train_row(speaker, f"scratch/{labels}", None, examples, adapt, test)
            if args.scratch_only:
                continue
            start = pool_adapter(fold_of[speaker], labels)
            if (speaker, f"pool/{labels}") not in done:
                add_row(speaker, f"pool/{labels}", adapted_model(nf4, lora, 0, start), test)
            if (speaker, f"pretrained/{labels}") not in done:
                train_row(speaker, f"pretrained/{labels}", start, examples, adapt_pre, test)
    say(f"done: {out}")


if __name__ == "__main__":
    main()
