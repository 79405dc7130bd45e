"""The per-speaker setting of myQASR: calibrate on 5 unlabelled clips of one speaker, test on their other 15.

speechocean762 speakers (Mandarin-L1 English; children and adults), a seeded choice of `--per-group`
speakers per age group, half female. Per speaker, a seeded 5 of their 20 clips are the calibration clips
(transcripts unused) and the other 15 the test clips. Rows, each tested on every speaker's own 15 clips:
  fp           the full-precision model;
  uniform      one plan for everybody, no clips (min/max scales);
  own          the plan calibrated on this speaker's 5 clips (`--allocation`, cosine scales);
  mismatched   the plan calibrated on the paired speaker of the other age group (same gender, same index):
               a child tested with an adult's plan and the other way round.
WER with n words per age group; paired bootstrap intervals resampled by speaker (own vs uniform, own vs
mismatched); per-speaker WERs. Simulated in PyTorch with the target's formats (exporter/quant/simulate.py).

Resumable: measured (row, speaker) pairs are kept in the results JSON, rewritten after each.

    python benchmarks/allocation_speakers.py --model tiny.en --target android --budget 35MB
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from allocation_groups import plan_digest  # noqa: E402  (bench_common, imported there, sets sys.path)
from bench_common import DATA, RESULTS, points_interval, say  # noqa: E402

from exporter.data import Dataset, load_dataset  # noqa: E402
from exporter.evaluate import evaluate  # noqa: E402
from exporter.io import read_json, write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user  # noqa: E402
from exporter.quant.simulate import simulate  # noqa: E402
from exporter.scoring import UtteranceCounts, aggregate, capped, paired_bootstrap  # noqa: E402
from runtimes.torch_runner import TorchRunner  # noqa: E402

SPEECHOCEAN = DATA / "speechocean762" / "manifest.jsonl"
GROUPS = ("child", "adult")
SYSTEMS = ("fp", "uniform", "own", "mismatched")
N_CALIB = 5


def choose_speakers(per_group: int, seed: int) -> dict[str, list[str]]:
    """{age group: speakers}, half of each group female, in a seeded order; index i of both groups is a pair
    of the same gender (the mismatched plan's source)."""
    data = load_dataset(SPEECHOCEAN)
    rng = random.Random(seed)
    chosen = {}
    for group in GROUPS:
        by_gender = {}
        for gender in ("female", "male"):
            speakers = sorted({u.speaker for u in data if u.extra["age_group"] == group and u.gender == gender})
            by_gender[gender] = rng.sample(speakers, per_group // 2)
        chosen[group] = [s for pair in zip(by_gender["female"], by_gender["male"]) for s in pair]
    return chosen


def speaker_split(speaker: str, seed: int) -> tuple[Dataset, Dataset]:
    """(5 calibration clips, the other clips) of one speaker, seeded."""
    data = load_dataset(SPEECHOCEAN)
    clips = sorted((u for u in data if u.speaker == speaker), key=lambda u: u.utt_id)
    calib = sorted(random.Random(f"{seed}/{speaker}").sample(clips, N_CALIB), key=lambda u: u.utt_id)
    test = [u for u in clips if u not in calib]
    return Dataset(data.source, calib), Dataset(data.source, test)


def _counts(cell: dict, cap: bool) -> list[UtteranceCounts]:
    counts = [UtteranceCounts(**u["counts"]) for u in cell["utterances"]]
    return [capped(c) for c in counts] if cap else counts


def _group_counts(done: dict, system: str, speakers: list[str], cap: bool = False):
    counts, clusters = [], []
    for speaker in speakers:
        cell = done.get(f"{system}/{speaker}")
        if cell is None:
            return None, None
        counts += _counts(cell, cap)
        clusters += [speaker] * len(cell["utterances"])
    return counts, clusters


def report(meta: dict, done: dict, speakers: dict[str, list[str]]) -> str:
    lines = [
        f"# Per-speaker allocation: Whisper {meta['model']}, target {meta['target']}, {meta['budget']}, speechocean762",
        "",
        f"Produced by `python benchmarks/allocation_speakers.py --model {meta['model']} --target {meta['target']} "
        f"--budget {meta['budget']} --allocation {meta['allocation']} --per-group {meta['per_group']}`. Per speaker: "
        f"{N_CALIB} unlabelled calibration clips, the other 15 are the test clips. own = the plan calibrated on "
        "the speaker's clips; mismatched = the plan of the paired speaker of the other age group (same gender); "
        "uniform = no clips. WER = collapsed-token WER, n = scored words; capped = each clip's errors at most its "
        "words. Intervals: 95 % paired bootstrap resampled by speaker (B - A in WER points; * = excludes 0). "
        "Simulated in PyTorch with the target's formats.",
        "",
        "| group | system | n speakers | n words | WER % | capped % |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for group in GROUPS:
        for system in SYSTEMS:
            counts, _ = _group_counts(done, system, speakers[group])
            if counts is None:
                continue
            score = aggregate(counts)
            capped_score = aggregate([capped(c) for c in counts])
            lines.append(
                f"| {group} | {system} | {len(speakers[group])} | {score.n_words} | {100 * score.wer:.1f} | "
                f"{100 * capped_score.wer:.1f} |"
            )
    lines += ["", "| group | B vs A | delta WER (B - A) | delta capped WER |", "|---|---|---|---|"]
    for group in GROUPS:
        for a, b in (("uniform", "own"), ("mismatched", "own"), ("fp", "own")):
            cells = []
            for cap in (False, True):
                counts_a, clusters = _group_counts(done, a, speakers[group], cap)
                counts_b, _ = _group_counts(done, b, speakers[group], cap)
                if counts_a is None or counts_b is None:
                    break
                c = paired_bootstrap(counts_a, counts_b, clusters=clusters, n_resamples=2000, seed=0)
                cells.append(points_interval(c.to_dict()) + (" *" if c.significant else ""))
            if len(cells) == 2:
                lines.append(f"| {group} | {b} vs {a} | {cells[0]} | {cells[1]} |")
    lines += ["", "Per speaker (WER % on their 15 test clips; n words):", ""]
    lines += [
        "| group | speaker | n words | " + " | ".join(SYSTEMS) + " | own plan |",
        "|---|---|---:|" + "---:|" * len(SYSTEMS) + "---|",
    ]
    for group in GROUPS:
        for speaker in speakers[group]:
            cells = [done.get(f"{system}/{speaker}") for system in SYSTEMS]
            if cells[0] is None:
                continue
            n_words = aggregate(_counts(cells[0], False)).n_words
            wers = [f"{100 * aggregate(_counts(c, False)).wer:.1f}" if c else "-" for c in cells]
            own = cells[2]["formats"] if cells[2] else "-"
            lines.append(f"| {group} | {speaker} | {n_words} | " + " | ".join(wers) + f" | {own} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--target", default="android", choices=["android", "onnx"])
    parser.add_argument("--budget", default="35MB")
    parser.add_argument("--allocation", default="fill", choices=["myqasr", "fill", "knapsack", "knapsack-output"])
    parser.add_argument("--per-group", type=int, default=4, help="speakers per age group (even: half female)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    meta = {
        k: getattr(args, k.replace("-", "_")) for k in ("model", "target", "budget", "allocation", "per_group", "seed")
    }
    stem = RESULTS / f"allocation_speakers_{args.model.replace('.', '_')}_{args.target}_{args.budget}"
    json_path = stem.with_suffix(".json")
    done = {}
    if json_path.is_file():
        stored = read_json(json_path, "a results file")
        if stored["meta"] != meta:
            sys.exit(f"{json_path} was measured with {stored['meta']}: delete it or pass the same settings")
        done = stored["rows"]
    speakers = choose_speakers(args.per_group, args.seed)

    def save() -> None:
        write_json(json_path, {"meta": meta, "rows": done, "speakers": speakers})
        write_text(stem.with_suffix(".md"), report(meta, done, speakers))

    if args.report_only:
        save()
        return
    bundle = load_whisper(args.model)
    allocation, _, layer_cost = args.allocation.partition("-")
    uniform = make_plan(
        bundle,
        None,
        PlanOptions(target=args.target, budget=args.budget, order="uniform", calibration="minmax", seed=args.seed),
        progress=False,
    )
    plans, simulated = {}, {}

    def own_plan(speaker: str):
        if speaker not in plans:
            calib, _ = speaker_split(speaker, args.seed)
            t0 = time.perf_counter()
            user = observe_user(bundle, calib, N_CALIB, args.seed, progress=False)
            options = PlanOptions(
                target=args.target,
                budget=args.budget,
                allocation=allocation,
                layer_cost=layer_cost or "local",
                calibration="cosine",
                seed=args.seed,
            )
            plans[speaker] = (make_plan(bundle, user, options, progress=False), round(time.perf_counter() - t0, 1))
        return plans[speaker]

    def model_for(plan):
        if plan is None:
            return bundle
        digest = plan_digest(plan)
        if digest not in simulated:
            simulated.clear()  # one simulated copy at a time: base's would not fit twice in memory
            simulated[digest] = simulate(bundle, plan)
        return simulated[digest]

    partner = {
        s: speakers[other][i]
        for group, other in (("child", "adult"), ("adult", "child"))
        for i, s in enumerate(speakers[group])
    }
    for group in GROUPS:
        for speaker in speakers[group]:
            _, test = speaker_split(speaker, args.seed)
            ids = {str(u.audio_path): u.utt_id for u in test}
            for system in SYSTEMS:
                key = f"{system}/{speaker}"
                if key in done:
                    continue
                started = time.perf_counter()
                plan, plan_seconds = {
                    "fp": (None, None),
                    "uniform": (uniform, 0.0),
                    "own": own_plan(speaker) if system == "own" else (None, None),
                    "mismatched": own_plan(partner[speaker]) if system == "mismatched" else (None, None),
                }[system]
                result = evaluate(TorchRunner(model_for(plan)), test, model_id=key, progress=False).to_dict()
                done[key] = {
                    "system": system,
                    "speaker": speaker,
                    "group": group,
                    "plan_from": None
                    if plan is None or system == "uniform"
                    else (speaker if system == "own" else partner[speaker]),
                    "megabytes": plan.total_bytes / 1e6 if plan else None,
                    "formats": ", ".join(f"{k} x{v}" for k, v in sorted(plan.format_counts().items())) if plan else "",
                    "plan_digest": plan_digest(plan) if plan else "fp",
                    "plan_seconds": plan_seconds,
                    "wall_s": round(time.perf_counter() - started, 1),
                    "utterances": [
                        {"utt_id": ids[u["audio_path"]], "hypothesis": u["hypothesis"], "counts": u["counts"]}
                        for u in result["utterances"]
                    ],
                }
                save()
                say(f"{key}: WER {aggregate(_counts(done[key], False)).wer:.3f} ({done[key]['wall_s']} s)")


if __name__ == "__main__":
    main()
