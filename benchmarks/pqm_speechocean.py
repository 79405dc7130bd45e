"""PQM on speechocean762 speakers (Mandarin-L1 English, children and adults): which label-free target lets an
NF4 + LoRA model beat full precision on a speaker's own held-out clips, and what labels would add.

Protocol (our choices, fixed before the run):
* Test speakers: the first `--per-group` speakers (sorted ids) of each group girls, boys, women, men.
  Pool speakers: every other speaker of the corpus (never a test speaker); the first `--pool-clips` clips of each.
* Per test speaker, 4 folds over its 20 clips (manifest order, clip i in fold i mod 4): adapt on 15, test on 5,
  so every clip is tested exactly once per system.
* Label sources for adaptation (the student is `--model`):
    labels         the manifest transcripts (lower-cased): the supervised reference point
    self           the student's own full-precision greedy transcripts (label-free)
    self-conf      those passing the confidence filter (below)
    teacher        `--teacher`'s full-precision transcripts, re-tokenised for the student (label-free)
    teacher-conf   teacher transcripts passing the confidence filter (mean token log-probability >= -1.0,
                   compression ratio <= 2.4: the fallback thresholds of Whisper's transcribe); dropped clips
                   are not trained on
    either-conf    per clip the surer of the student's and the teacher's label (higher mean log-probability),
                   then the confidence filter (`edgeasr personalize --teacher tiny.en,base`)
* Systems, scored on the test clips only:
    fp, teacher-fp       the student and the teacher at full precision (the teacher as a reference, not a product)
    nf4                  the student's NF4 base (every Linear NF4 blocks of 64, embedding int4)
    scratch/<source>     NF4 + LoRA trained from zero on the speaker's 15 clips
    pool/<source>        NF4 + the adapter pre-trained on the pool speakers alone (no speaker step)
    pool+spk/<source>    that adapter trained further on the speaker's 15 clips
* Cost: wall seconds per adaptation at `--threads`, and the process's peak RSS during it.

Aggregates per group (children, adults, all): collapsed-token WER with n words; 'capped' counts each clip's
errors at most at its reference length (a decoder loop is one wrong clip, not a quarter of the corpus);
relative change vs FP; per-speaker median and inter-quartile range; 95 % paired bootstrap intervals resampled
by speaker then clip. Resumable (labels, pool adapters and rows are cached); the JSON and tables are rewritten
after every row.

    python benchmarks/pqm_speechocean.py --model tiny.en --teacher base --per-group 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.logs import quiet_libraries  # noqa: E402

quiet_libraries()

import torch  # noqa: E402

from exporter.data import Dataset, Utterance, load_dataset  # noqa: E402
from exporter.evaluate import evaluate  # noqa: E402
from exporter.io import write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.personalize.base import Nf4Options, nf4_bundle  # noqa: E402
from exporter.personalize.labels import (  # noqa: E402
    ConfidenceFilter,
    PseudoLabel,
    example_from_label,
    labelling_language,
    most_confident,
    pseudo_label,
)
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
from exporter.scoring import UtteranceCounts, aggregate, capped, count_errors, paired_bootstrap  # noqa: E402
from runtimes.audio import load_audio  # noqa: E402
from runtimes.errors import EdgeAsrError  # noqa: E402
from runtimes.procmem import peak_rss_bytes, reset_peak_rss  # noqa: E402
from runtimes.torch_runner import TorchRunner  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "speechocean762" / "manifest.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
GROUPS = (("child", "female"), ("child", "male"), ("adult", "female"), ("adult", "male"))
GROUP_NAMES = {("child", "female"): "girls", ("child", "male"): "boys", ("adult", "female"): "women"}
GROUP_NAMES[("adult", "male")] = "men"
SOURCES = ("labels", "self", "self-conf", "teacher", "teacher-conf", "either-conf")
DEFAULT_POOL_SOURCES = ("labels", "either-conf")
CONFIDENCE = ConfidenceFilter()


def say(message: str) -> None:
    print(f"[pqm-so] {message}", flush=True)


def group_of(u: Utterance) -> tuple[str, str]:
    return u.extra["age_group"], u.gender


def choose_speakers(data: Dataset, per_group: int) -> tuple[list[str], list[str]]:
    """(test speakers interleaved girls, boys, women, men; pool speakers = all others)."""
    by_group = {g: sorted({u.speaker for u in data if group_of(u) == g}) for g in GROUPS}
    test = [by_group[g][i] for i in range(per_group) for g in GROUPS if i < len(by_group[g])]
    pool = sorted({u.speaker for u in data} - set(test))
    return test, pool


class LabelCache:
    """Pseudo-labels of one labeller per clip, on disk (labelling is the slow part of the label-free rows)."""

    def __init__(self, path: Path, labeller, student):
        self.path, self.labeller, self.student = path, labeller, student
        self.runner = TorchRunner(labeller)
        self.data = json.loads(path.read_text()) if path.exists() else {}
        self.fresh = 0

    def get(self, u: Utterance) -> PseudoLabel:
        if u.utt_id not in self.data:
            samples = load_audio(u.audio_path, expected_rate=u.sample_rate)
            language = labelling_language(self.student, u.language)
            label = pseudo_label(self.labeller, u.utt_id, samples, language, self.runner)
            self.data[u.utt_id] = label.to_dict()
            self.fresh += 1
            if self.fresh % 20 == 0:
                self.save()
        return PseudoLabel(**self.data[u.utt_id])

    def save(self) -> None:
        write_json(self.path, self.data)


class ExampleStore:
    """The student's examples per clip and label source, each clip's features and frozen-encoder prefix
    computed once and shared by every training."""

    def __init__(self, student, nf4, lora: LoraConfig, labels: dict[str, LabelCache]):
        self.student, self.labels = student, labels
        self.probe = adapted_model(nf4, lora, 0).model  # shares the NF4 encoder: the prefix is the same for all
        self.examples: dict[tuple[str, str], object] = {}

    def label(self, u: Utterance, kind: str) -> PseudoLabel:
        if kind == "either":
            return most_confident([self.labels["self"].get(u), self.labels["teacher"].get(u)])
        return self.labels[kind].get(u)

    def get(self, utts: list[Utterance], source: str) -> tuple[list, list[dict]]:
        """(examples, dropped clips) for `source`."""
        kind = source.removesuffix("-conf")
        missing = [u for u in utts if (u.utt_id, kind) not in self.examples]
        fresh = []
        for u in missing:
            if kind == "labels":
                example = labelled_examples(self.student, [u])[0]
            else:
                samples = load_audio(u.audio_path, expected_rate=u.sample_rate)
                example = example_from_label(self.student, samples, self.label(u, kind))
            self.examples[(u.utt_id, kind)] = example
            fresh.append(example)
        if fresh:
            cache_frozen_encoder(self.probe, fresh)
        out, dropped = [], []
        for u in utts:
            example = self.examples[(u.utt_id, kind)]
            if source.endswith("-conf"):
                reason = CONFIDENCE.reason_to_drop(self.label(u, kind))
                if reason is not None:
                    dropped.append({"utt_id": u.utt_id, "reason": reason})
                    continue
            out.append(example)
        return out, dropped


def folds_of(utts: list[Utterance], n_folds: int) -> list[tuple[list[Utterance], list[Utterance]]]:
    return [
        ([u for i, u in enumerate(utts) if i % n_folds != f], [u for i, u in enumerate(utts) if i % n_folds == f])
        for f in range(n_folds)
    ]


# --- report -------------------------------------------------------------------------------------------------


def clip_rows(data: dict) -> dict[str, dict[str, dict]]:
    """system -> utt_id -> {counts, speaker, group, hypothesis}."""
    out: dict[str, dict[str, dict]] = {}
    for row in data["rows"]:
        for clip in row["clips"]:
            out.setdefault(row["system"], {})[clip["utt_id"]] = {**clip, "speaker": row["speaker"]}
    return out


def summarise(data: dict) -> dict:
    systems = data["config"]["systems"]
    by = clip_rows(data)
    ref = by.get("fp", {})
    # only clips every system has scored, so all systems are compared on the same clips
    common = sorted(set(ref).intersection(*[set(by.get(s, {})) for s in systems]))
    summary = {"groups": {}, "n_speakers": len({ref[c]["speaker"] for c in common})}
    for group in ("child", "adult", "all"):
        clips = [c for c in common if group == "all" or ref[c]["group"] == group]
        if not clips:
            continue
        speakers = sorted({ref[c]["speaker"] for c in clips})
        clusters = [ref[c]["speaker"] for c in clips]
        counts = {s: [UtteranceCounts(**by[s][c]["counts"]) for c in clips] for s in systems}
        fp = aggregate(counts["fp"]).wer
        entries = {}
        for s in systems:
            score = aggregate(counts[s])
            per = [
                aggregate([UtteranceCounts(**by[s][c]["counts"]) for c in clips if ref[c]["speaker"] == spk]).wer
                for spk in speakers
            ]
            q = statistics.quantiles(per, n=4, method="inclusive") if len(per) >= 2 else [per[0]] * 3
            entry = {
                "wer": score.wer,
                "wer_capped": aggregate([capped(c) for c in counts[s]]).wer,
                "n_clips": len(clips),
                "n_words": sum(c.ref_tokens for c in counts[s]),
                "relative_vs_fp": None if not fp else (score.wer - fp) / fp,
                "per_speaker_median": statistics.median(per),
                "per_speaker_q1": q[0],
                "per_speaker_q3": q[2],
            }
            for base in ("fp", "nf4"):
                if s != base:
                    for cap in (False, True):
                        a = [capped(c) for c in counts[base]] if cap else counts[base]
                        b = [capped(c) for c in counts[s]] if cap else counts[s]
                        cmp = paired_bootstrap(a, b, clusters=clusters, n_resamples=2000, seed=0)
                        entry[f"vs_{base}{'_capped' if cap else ''}"] = {
                            "delta": cmp.delta,
                            "ci_low": cmp.ci_low,
                            "ci_high": cmp.ci_high,
                        }
            entries[s] = entry
        summary["groups"][group] = {"speakers": speakers, "systems": entries}
    costs = {}
    for s in systems:
        trained = [r for r in data["rows"] if r["system"] == s and r.get("train_seconds") is not None]
        if trained:
            costs[s] = {
                "n": len(trained),
                "train_seconds_median": statistics.median(r["train_seconds"] for r in trained),
                "train_seconds_max": max(r["train_seconds"] for r in trained),
                "peak_rss_mb_max": max(r["peak_rss_bytes"] for r in trained) / 1e6,
                "clips_median": statistics.median(r["train_clips"] for r in trained),
            }
    summary["costs"] = costs
    stats = {}
    for s in (name for name in ("fp", "teacher-fp") if name in by):  # a run may leave the teacher's row out
        for kept in (True, False):
            clips = [by[s][c] for c in common if by[s][c].get("kept_by_filter") is kept]
            if clips:
                score = aggregate([UtteranceCounts(**c["counts"]) for c in clips])
                stats[f"{s} {'kept' if kept else 'dropped'}"] = {
                    "n_clips": len(clips),
                    "n_words": score.n_tokens,
                    "wer": score.wer,
                }
    summary["label_stats"] = stats
    return summary


def _lora_flags(lora: dict) -> str:
    """The command-line flags that give a run's LoRA layout (none for the default, decoder only)."""
    flags = "" if list(lora["scope"]) == ["decoder"] else f" --scope {','.join(lora['scope'])}"
    return flags + (f" --encoder-layers {lora['encoder_layers']}" if lora.get("encoder_layers") else "")


def _system_flags(systems: list[str]) -> str:
    """The flags that give a run's pool sources and systems, when they are not the defaults."""
    pools = list(dict.fromkeys(s.split("/", 1)[1] for s in systems if s.startswith("pool")))
    flags = "" if pools in ([], list(DEFAULT_POOL_SOURCES)) else f" --pool-sources {','.join(pools)}"
    return flags + ("" if systems == default_systems(pools) else f" --systems {' '.join(systems)}")


def default_systems(pool_sources: list[str]) -> list[str]:
    systems = ["fp", "teacher-fp", "nf4"] + [f"scratch/{s}" for s in SOURCES]
    return systems + [f"{kind}/{s}" for s in pool_sources for kind in ("pool", "pool+spk")]


def _speakers_per_group(summary: dict) -> str:
    groups = summary["groups"]
    return ", ".join(f"{len(groups[g]['speakers'])} {g}" for g in ("child", "adult") if g in groups)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(entry: dict, key: str) -> str:
    c = entry.get(key)
    if not c:
        return "-"
    star = "*" if c["ci_low"] > 0 or c["ci_high"] < 0 else ""
    return f"{100 * c['delta']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]{star}"


def write_report(path: Path, data: dict, write_data: bool = True) -> None:
    data["summary"] = summarise(data)
    if write_data:
        write_json(path, data)
    summary, cfg = data["summary"], data["config"]
    lines = [
        f"# PQM per speaker on speechocean762 ({data['model']}, teacher {cfg['teacher']})",
        "",
        f"Produced by `python benchmarks/pqm_speechocean.py --model {data['model']} --teacher {cfg['teacher']} "
        f"--per-group {cfg['per_group']}{_lora_flags(cfg['lora'])}{_system_flags(cfg['systems'])}` (protocol in its "
        f"docstring). {summary['n_speakers']} test speakers with "
        f"every system ({_speakers_per_group(summary)}; the run takes {cfg['per_group']} each of girls, boys, women, "
        f"men, interleaved), {cfg['folds']} folds of 15 adaptation / 5 test clips "
        f"per speaker; pool: {cfg['pool_clips']} clips of each of the {len(cfg['pool_speakers'])} other speakers. "
        f"LoRA rank {cfg['lora']['rank']} on {','.join(cfg['lora']['targets'])} in {','.join(cfg['lora']['scope'])}"
        + (f" (last {cfg['lora']['encoder_layers']} encoder layers)" if cfg["lora"].get("encoder_layers") else "")
        + "; "
        f"speaker step {cfg['adapt']['steps']} steps batch {cfg['adapt']['batch_size']} lr {cfg['adapt']['lr']} "
        f"(from the pool: lr {cfg['adapt_pool']['lr']}); pool {cfg['pool']['steps']} steps batch "
        f"{cfg['pool']['batch_size']}. WER = collapsed-token WER, n = reference words; capped = each clip's errors "
        "at most its words. Intervals: 95 % paired bootstrap resampled by speaker then clip (B - A in WER "
        "points; * = excludes 0).",
        "",
    ]
    for group, g in summary["groups"].items():
        lines += [
            f"## {group} ({len(g['speakers'])} speakers)",
            "",
            "| system | n clips | n words | WER % | capped % | rel. vs FP | vs FP (pts) | vs FP capped (pts) | "
            "vs NF4 (pts) | per-speaker median [IQR] |",
            "|---|---:|---:|---:|---:|---:|---|---|---|---|",
        ]
        for s in cfg["systems"]:
            e = g["systems"][s]
            rel = "-" if s == "fp" or e["relative_vs_fp"] is None else f"{100 * e['relative_vs_fp']:+.1f} %"
            lines.append(
                f"| {s} | {e['n_clips']} | {e['n_words']} | {_pct(e['wer'])} | {_pct(e['wer_capped'])} | {rel} | "
                f"{_ci(e, 'vs_fp')} | {_ci(e, 'vs_fp_capped')} | {_ci(e, 'vs_nf4')} | "
                f"{_pct(e['per_speaker_median'])} [{_pct(e['per_speaker_q1'])}, {_pct(e['per_speaker_q3'])}] |"
            )
        lines.append("")
    if summary["costs"]:
        lines += [
            "Cost per adaptation (wall seconds at the stated threads; peak RSS of the whole benchmark process):",
            "",
            "| system | adaptations | clips trained (median) | seconds median / max | peak RSS MB (max) |",
            "|---|---:|---:|---|---:|",
        ]
        for s, c in summary["costs"].items():
            lines.append(
                f"| {s} | {c['n']} | {c['clips_median']:.0f} | {c['train_seconds_median']:.1f} / "
                f"{c['train_seconds_max']:.1f} | {c['peak_rss_mb_max']:.0f} |"
            )
        lines.append("")
    for key, p in sorted(data.get("pool", {}).items()):
        lines.append(
            f"- pool {key}: {p['clips']} clips ({p['dropped']} dropped by the filter) of {p['speakers']} speakers, "
            f"{p['seconds']:.0f} s, loss {p['loss_first']:.3f} -> {p['loss_last']:.3f}"
        )
    stats = summary.get("label_stats", {})
    if stats:
        lines += [
            "",
            "The confidence filter on the test speakers' clips: WER of the FP transcripts it keeps and drops "
            "(the student's own and the teacher's):",
            "",
        ]
        for key, st in stats.items():
            lines.append(f"- {key}: {st['n_clips']} clips, WER {_pct(st['wer'])} %")
    lines += ["", f"Machine: {data['machine']}."]
    write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


def plot(data: dict, path: Path) -> None:
    """WER per system for children and adults, with each system's interval against FP as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in ("child", "adult") if g in data["summary"]["groups"]]
    systems = data["config"]["systems"]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / max(1, len(groups))
    for i, group in enumerate(groups):
        entries = data["summary"]["groups"][group]["systems"]
        fp = entries["fp"]["wer"]
        xs = [k + (i - (len(groups) - 1) / 2) * width for k in range(len(systems))]
        wers = [100 * entries[s]["wer"] for s in systems]
        low = [0 if s == "fp" else 100 * (fp + entries[s]["vs_fp"]["ci_low"]) for s in systems]
        high = [0 if s == "fp" else 100 * (fp + entries[s]["vs_fp"]["ci_high"]) for s in systems]
        errors = [
            [max(0, w - lo) if lo else 0 for w, lo in zip(wers, low)],
            [max(0, h - w) if h else 0 for w, h in zip(wers, high)],
        ]
        n = entries["fp"]["n_words"]
        ax.bar(
            xs,
            wers,
            width,
            yerr=errors,
            capsize=2,
            label=f"{group}ren ({n} words)" if group == "child" else f"adults ({n} words)",
        )
        ax.axhline(100 * fp, color=f"C{i}", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(systems)), systems, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("WER % (whiskers: 95 % CI vs FP; dashed: FP)")
    ax.set_title(f"PQM per speaker on speechocean762, Whisper {data['model']} (NF4 + LoRA, 4 folds of 15/5 clips)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- run ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--teacher", default="base")
    parser.add_argument("--per-group", type=int, default=3)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--pool-clips", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--pool-steps", type=int, default=150)
    parser.add_argument("--systems", nargs="+", help="a subset of the systems (default: all)")
    parser.add_argument("--scope", default="decoder", help="LoRA scope, comma list of encoder,decoder")
    parser.add_argument("--encoder-layers", type=int, help="with the encoder in scope: adapt its last N layers only")
    parser.add_argument(
        "--pool-sources",
        default=",".join(DEFAULT_POOL_SOURCES),
        help=f"label sources of pool adapters, from {', '.join(SOURCES)}",
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/edgeasr-pqm-so"))
    parser.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/pqm_speechocean_MODEL.json)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    so = load_dataset(DATA)
    test_speakers, pool_speakers = choose_speakers(so, args.per_group)
    lora = LoraConfig(scope=parse_targets(args.scope), encoder_layers=args.encoder_layers)
    try:  # a bad --scope / --encoder-layers is one line, like the script's other argument errors
        lora.validate()
    except EdgeAsrError as exc:
        raise SystemExit(str(exc)) from exc
    adapt = TrainOptions(steps=args.steps, batch_size=4, lr=1e-3)
    adapt_pool = TrainOptions(steps=args.steps, batch_size=4, lr=3e-4)
    pool_train = TrainOptions(steps=args.pool_steps, batch_size=8, lr=1e-3)
    base_options = Nf4Options()
    pool_sources = parse_targets(args.pool_sources)
    if not pool_sources or not set(pool_sources) <= set(SOURCES):
        raise SystemExit(f"--pool-sources takes names from {', '.join(SOURCES)}")
    systems = args.systems or default_systems(pool_sources)
    config = json.loads(
        json.dumps(
            {
                "teacher": args.teacher,
                "per_group": args.per_group,
                "folds": args.folds,
                "pool_clips": args.pool_clips,
                "pool_speakers": pool_speakers,
                "test_speakers": test_speakers,
                "lora": lora.to_dict(),
                "adapt": adapt.to_dict(),
                "adapt_pool": adapt_pool.to_dict(),
                "pool": pool_train.to_dict(),
                "base": base_options.to_dict(),
                "confidence": CONFIDENCE.to_dict(),
                "systems": systems,
            }
        )
    )
    out = args.out or RESULTS / f"pqm_speechocean_{args.model.replace('.', '_')}.json"
    data = json.loads(out.read_text()) if out.exists() else {"model": args.model, "rows": [], "pool": {}}
    if args.report_only:
        write_report(out, data, write_data=False)
        if data["summary"]["groups"]:
            plot(data, out.with_suffix(".png"))
        return

    def settings(c: dict | None) -> dict | None:  # systems may be added to a run: its rows stay valid
        return None if c is None else {k: v for k, v in c.items() if k != "systems"}

    if settings(data.get("config")) not in (None, settings(config)):
        raise SystemExit(f"{out} was made with other settings; move it away to start over")
    data["config"] = config
    data["machine"] = f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}, {os.cpu_count()} CPUs"
    cache = args.cache / args.model
    cache.mkdir(parents=True, exist_ok=True)

    say(f"loading {args.model} and teacher {args.teacher}; test speakers {test_speakers}")
    student = load_whisper(args.model)
    teacher = load_whisper(args.teacher)
    nf4, _ = nf4_bundle(student, base_options)
    labels = {
        "self": LabelCache(cache / "labels_self.json", student, student),
        "teacher": LabelCache(cache / f"labels_{args.teacher}.json", teacher, student),
    }
    store = ExampleStore(student, nf4, lora, labels)
    done = {(r["speaker"], r["system"], r.get("fold")) for r in data["rows"]}

    def clip_record(u: Utterance, hypothesis: str, label: PseudoLabel | None = None) -> dict:
        counts = count_errors(u.transcript, hypothesis, u.language or "en")
        record = {
            "utt_id": u.utt_id,
            "group": u.extra["age_group"],
            "hypothesis": hypothesis,
            "counts": counts.__dict__,
        }
        if label is not None:  # an FP row: how sure the model was, for the confidence filter's statistics
            record["kept_by_filter"] = CONFIDENCE.reason_to_drop(label) is None
            record["avg_logprob"], record["compression_ratio"] = label.avg_logprob, label.compression_ratio
        return record

    def add_row(speaker, system, fold, clips: list[dict], extra: dict | None = None) -> None:
        data["rows"].append({"speaker": speaker, "system": system, "fold": fold, "clips": clips, **(extra or {})})
        done.add((speaker, system, fold))
        write_report(out, data)
        wer = aggregate([UtteranceCounts(**c["counts"]) for c in clips]).wer
        say(
            f"{speaker} fold {fold} {system}: WER {_pct(wer)} on {len(clips)} clips"
            + (f", trained {extra['train_seconds']:.0f} s on {extra['train_clips']}" if extra else "")
        )

    def decode_rows(bundle, utts) -> list[dict]:
        result = evaluate(TorchRunner(bundle), Dataset(so.source, utts), "x", progress=False)
        return [clip_record(u, h) for u, h in zip(utts, result.hypotheses())]

    def train(start, examples, options):
        bundle = adapted_model(nf4, lora, options.seed, start)
        reset_peak_rss()
        started = time.perf_counter()

        def progress(record: dict) -> None:  # the pool's training runs for minutes: say where it is
            if options.steps >= 100 and record["step"] % 25 == 0:
                say(f"  step {record['step']}/{options.steps}: loss {record['loss']:.3f}, {record['seconds']:.0f} s")

        result = train_lora(bundle.model, examples, nf4.special.eot, options, on_step=progress)
        extra = {
            "train_seconds": time.perf_counter() - started,
            "peak_rss_bytes": peak_rss_bytes(),
            "train_clips": len(examples),
            "loss_first": result.first_loss,
            "loss_last": result.last_loss,
        }
        return bundle, extra

    def pool_adapter(source: str) -> dict:
        # the adapter's LoRA layout is part of its name: runs with another scope keep their own pool adapters
        layout = "+".join(lora.scope) + (f"{lora.encoder_layers}" if lora.encoder_layers else "")
        folder = cache / f"pool_{source}" if layout == "decoder" else cache / f"pool_{source}_{layout}"
        if source in data["pool"] and folder.is_dir():
            return load_adapter(folder)[0]
        utts = [u for s in pool_speakers for u in [v for v in so if v.speaker == s][: args.pool_clips]]
        say(f"pool {source}: labelling and caching {len(utts)} clips of {len(pool_speakers)} speakers")
        examples, dropped = store.get(utts, source)
        labels["teacher"].save()
        say(f"pool {source}: training on {len(examples)} clips ({len(dropped)} dropped)")
        bundle, extra = train(None, examples, pool_train)
        save_adapter(folder, lora_state(bundle.model), AdapterInfo(args.model, lora, base_options.to_dict(), {}))
        data["pool"][source] = {
            "clips": len(examples),
            "dropped": len(dropped),
            "speakers": len(pool_speakers),
            "seconds": extra["train_seconds"],
            "loss_first": extra["loss_first"],
            "loss_last": extra["loss_last"],
        }
        write_report(out, data)
        return lora_state(bundle.model)

    pools = {
        s: pool_adapter(s) for s in pool_sources if any(x.endswith(f"/{s}") and x.startswith("pool") for x in systems)
    }
    for speaker in test_speakers:
        utts = [u for u in so if u.speaker == speaker]
        for system, labeller in (("fp", "self"), ("teacher-fp", "teacher")):
            if system in systems and (speaker, system, None) not in done:
                add_row(
                    speaker,
                    system,
                    None,
                    [clip_record(u, labels[labeller].get(u).text, labels[labeller].get(u)) for u in utts],
                )
                labels[labeller].save()
        if "nf4" in systems and (speaker, "nf4", None) not in done:
            add_row(speaker, "nf4", None, decode_rows(nf4, utts))
        for source, state in pools.items():
            if f"pool/{source}" in systems and (speaker, f"pool/{source}", None) not in done:
                add_row(speaker, f"pool/{source}", None, decode_rows(adapted_model(nf4, lora, 0, state), utts))
        for fold, (adapt_utts, test_utts) in enumerate(folds_of(utts, args.folds)):
            for source in SOURCES:
                system = f"scratch/{source}"
                if system in systems and (speaker, system, fold) not in done:
                    examples, dropped = store.get(adapt_utts, source)
                    bundle, extra = train(None, examples, adapt)
                    add_row(speaker, system, fold, decode_rows(bundle, test_utts), extra | {"dropped": dropped})
            for source, state in pools.items():
                system = f"pool+spk/{source}"
                if system in systems and (speaker, system, fold) not in done:
                    examples, dropped = store.get(adapt_utts, source)
                    bundle, extra = train(state, examples, adapt_pool)
                    add_row(speaker, system, fold, decode_rows(bundle, test_utts), extra | {"dropped": dropped})
    labels["self"].save()
    labels["teacher"].save()
    plot(data, out.with_suffix(".png"))
    say(f"done: {out}")


if __name__ == "__main__":
    main()
