"""Personalised allocation on speechocean762's user groups: myQASR's first fit vs fill vs knapsack.

Children and adults (Mandarin-L1 speakers of English) are the user groups. Speakers are split once, per age
group and gender: a few speakers give the calibration clips (32 unlabelled clips, transcripts unused), the
others give the test clips, so no test speaker was ever seen by a plan. For each target budget, rows: FP,
uniform (no clips), and each allocation (myqasr, fill, knapsack) calibrated on children, on adults, or on the
generic synthetic clips shipped in the package. Every row is tested on both groups: matched calibration
(children-calibrated on children) against mismatched and generic. WER with n words per group; paired
bootstrap intervals resampled by speaker for: best allocation vs uniform, vs myqasr, and matched vs
mismatched. Simulated in PyTorch with the target's real formats (see exporter/quant/targets.py).

Resumable: rows already in the results JSON are skipped; JSON, table and plot are rewritten after each row.
With --refresh, each stored row's plan is made again first and a row whose plan differs (a ladder or a
simulation changed since it was measured) is measured again, with its real-runtime row if it had one.

    python benchmarks/allocation_groups.py --model tiny.en [--target android] [--budgets 55MB 45MB 40MB]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

from bench_common import DATA, RESULTS, WORK, lower_artifact, say  # noqa: E402  (sets sys.path, quiets libraries)

from exporter.data import Dataset, load_dataset  # noqa: E402
from exporter.evaluate import evaluate  # noqa: E402
from exporter.export.inputs import generic_calibration_set  # noqa: E402
from exporter.io import read_json, write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.quant.layers import quantizable_layers, unquantised_bytes  # noqa: E402
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user  # noqa: E402
from exporter.quant.simulate import simulate  # noqa: E402
from exporter.quant.targets import get_target  # noqa: E402
from exporter.scoring import UtteranceCounts, aggregate, capped, paired_bootstrap  # noqa: E402
from runtimes.artifact import open_artifact  # noqa: E402
from runtimes.torch_runner import TorchRunner  # noqa: E402

SPEECHOCEAN = DATA / "speechocean762" / "manifest.jsonl"
GROUPS = ("child", "adult")
# knapsack-output: the knapsack on output costs (the model's next-token KL per layer and rung,
# exporter/quant/output_costs.py) instead of each layer's own output error.
ALLOCATIONS = ("myqasr", "fill", "knapsack", "knapsack-output")
CALIBS = ("child", "adult", "generic")
GENDERS = ("female", "male")
# Calibration on one gender within a group (the group's calibration speakers of that gender): the issue's
# "female/male within each"; measured on request (--calibs), tested on that group's clips of each gender.
SUBGROUP_CALIBS = tuple(f"{group}-{gender}" for group in GROUPS for gender in GENDERS)
BUDGETS = {
    # tiny.en on onnx: uniform is 4-bit from 21.4 MB (a 22 MB budget), all 2-bit (18.1 MB) below
    "tiny.en": {"android": ["55MB", "45MB", "40MB"], "onnx": ["21MB", "20MB", "19MB"]},
    # base on onnx: uniform is 4-bit down to 42 MB, all 2-bit (31.5 MB) below
    "base": {"android": ["80MB", "70MB", "62MB"], "onnx": ["40MB", "36MB", "33MB"]},
}


def split_speakers(n_calib_speakers: int, n_calib: int, n_test: int, seed: int) -> tuple[dict, Dataset]:
    """({group: calibration clips}, test clips of both groups): disjoint speakers, balanced by gender."""
    data = load_dataset(SPEECHOCEAN)
    rng = random.Random(seed)
    calib, test = {}, []
    for group in GROUPS:
        clips = [u for u in data if u.extra["age_group"] == group]
        by_gender = {}
        for gender in GENDERS:
            speakers = sorted({u.speaker for u in clips if u.gender == gender})
            by_gender[gender] = set(rng.sample(speakers, n_calib_speakers // 2))
        calib_speakers = set().union(*by_gender.values())
        pool = [u for u in clips if u.speaker in calib_speakers]
        calib[group] = Dataset(data.source, sorted(rng.sample(pool, n_calib), key=lambda u: u.utt_id))
        held_out = [u for u in clips if u.speaker not in calib_speakers]
        test += sorted(rng.sample(held_out, n_test), key=lambda u: u.utt_id)
        for gender, speakers in by_gender.items():  # own generator: the sets above stay as they were measured
            own = [u for u in clips if u.speaker in speakers]
            picked = random.Random(f"{seed}/{group}-{gender}").sample(own, min(n_calib, len(own)))
            calib[f"{group}-{gender}"] = Dataset(data.source, sorted(picked, key=lambda u: u.utt_id))
    return calib, Dataset(data.source, test)


def row_plan(model_id: str, target: str, budgets: list[str], allocations=ALLOCATIONS, calibs=CALIBS) -> list[dict]:
    rows = [{"key": "fp", "system": "FP", "budget": None, "calib": None, "allocation": None}]
    for budget in budgets:
        rows.append(
            {
                "key": f"{target}/{budget}/uniform",
                "system": "uniform",
                "budget": budget,
                "calib": None,
                "allocation": None,
            }
        )
        for calib in calibs:  # calibration-major: each group's matched rows come in together
            for allocation in allocations:
                key = f"{target}/{budget}/{allocation}/{calib}"
                rows.append(
                    {"key": key, "system": allocation, "budget": budget, "calib": calib, "allocation": allocation}
                )
    return rows


def plan_digest(plan) -> str:
    """What the simulated model depends on (formats, clips, input ranges), so identical plans are tested once."""
    layers = [[layer.name, layer.format.to_dict(), layer.clip, layer.input_absmax] for layer in plan.layers]
    return hashlib.sha256(json.dumps(layers, sort_keys=True).encode()).hexdigest()[:16]


def _counts(
    row: dict, group: str, cap: bool = False, speakers: set[str] | None = None
) -> tuple[list[UtteranceCounts], list[str]]:
    """Counts of `row`'s clips of `group` (only those of `speakers` where given) and each clip's speaker."""
    kept = [u for u in row["utterances"] if u["group"] == group and (speakers is None or u["speaker"] in speakers)]
    counts = [UtteranceCounts(**u["counts"]) for u in kept]
    return [capped(c) for c in counts] if cap else counts, [u["speaker"] for u in kept]


def _compare(a: dict, b: dict, group: str, cap: bool = False, speakers: set[str] | None = None) -> str:
    counts_a, clusters = _counts(a, group, cap, speakers)
    counts_b, _ = _counts(b, group, cap, speakers)
    c = paired_bootstrap(counts_a, counts_b, clusters=clusters, n_resamples=2000, seed=0)
    mark = " *" if c.significant else ""
    return f"{100 * c.delta:+.1f} [{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}]{mark}"


def speakers_by_gender() -> dict[str, set[str]]:
    """speechocean762's speakers of each gender (the rows store each clip's speaker, not its gender)."""
    found: dict[str, set[str]] = {gender: set() for gender in GENDERS}
    for u in load_dataset(SPEECHOCEAN):
        found[u.gender].add(u.speaker)
    return found


def gender_section(target: str, done: dict, meta: dict) -> list[str]:
    """Calibration on one gender of a group against the other gender's and the whole group's, on the
    group's test clips of each gender."""
    if not any(k.rsplit("/", 1)[-1] in SUBGROUP_CALIBS for k in done):
        return []
    genders = speakers_by_gender()
    lines = [
        "",
        "## Gender within group: one gender's calibration speakers plan the model",
        "",
        f"Calibration: {meta['n_calib']} unlabelled clips of the group's {meta['n_calib_speakers'] // 2} "
        "calibration speakers of one gender; tested on the group's test clips of each gender (the same test "
        "clips as above, split). Same gender vs other gender, and vs the whole group's calibration "
        "(B - A, B = same gender; * = interval excludes 0).",
        "",
        "| budget | test clips | allocation | WER same gender % (n) | other gender | whole group | "
        "same vs other (pts) | same vs whole group (pts) |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for budget in meta["budgets"]:
        for group in GROUPS:
            for gender in GENDERS:
                other = GENDERS[1 - GENDERS.index(gender)]
                speakers = genders[gender]
                for allocation in ALLOCATIONS:
                    same = done.get(f"{target}/{budget}/{allocation}/{group}-{gender}")
                    rival = done.get(f"{target}/{budget}/{allocation}/{group}-{other}")
                    whole = done.get(f"{target}/{budget}/{allocation}/{group}")
                    if same is None or rival is None or whole is None:
                        continue

                    def wer(row: dict) -> str:
                        score = aggregate(_counts(row, group, speakers=speakers)[0])
                        return f"{100 * score.wer:.1f} ({score.n_words})"

                    lines.append(
                        f"| {budget} | {group} {gender} | {allocation} | {wer(same)} | {wer(rival)} | {wer(whole)} | "
                        f"{_compare(rival, same, group, speakers=speakers)} | "
                        f"{_compare(whole, same, group, speakers=speakers)} |"
                    )
    return lines


def _wer(row: dict, group: str) -> str:
    g = row["groups"][group]
    return f"{100 * g['wer']:.1f} ({g['n_words']})"


def capped_wer(row: dict, group: str) -> float:
    return aggregate(_counts(row, group, cap=True)[0]).wer


# The defaults of the options a results file records in its meta (main's parser)
SETTING_DEFAULTS = {"n_calib": 32, "n_calib_speakers": 8, "n_test": 60, "seed": 0}


def _settings(meta: dict) -> str:
    """The options of the run that differ from the defaults, so the command shown resumes the same file."""
    return "".join(
        f" --{name.replace('_', '-')} {meta[name]}"
        for name, default in SETTING_DEFAULTS.items()
        if meta[name] != default
    )


def _has_rows(budget: str, done: dict) -> bool:
    return any(f"/{budget}/" in key for key in done)


def _unmeasured(done: dict, meta: dict) -> str:
    missing = [b for b in meta["budgets"] if not _has_rows(b, done)]
    return f" (not measured yet: {', '.join(missing)}; the run was stopped before them)" if missing else ""


def report(model_id: str, target: str, done: dict, rows: list[dict], meta: dict, timings: dict) -> str:
    shown = []
    for row in rows:
        if row["key"] in done:
            shown.append(row)
            shown += [{"key": k} for k, r in done.items() if r.get("runtime") and k.startswith(row["key"] + "@")]
    lines = [
        f"# Allocation on user groups: Whisper {model_id}, target {target}, speechocean762",
        "",
        f"Produced by `python benchmarks/allocation_groups.py --model {model_id} --target {target} "
        f"--budgets {' '.join(meta['budgets'])}{_settings(meta)}`{_unmeasured(done, meta)}. "
        f"Calibration: {meta['n_calib']} unlabelled clips of {meta['n_calib_speakers']} speakers per group "
        f"(children, adults; half female); test: {meta['n_test']} clips per group from the other speakers. "
        "WER = collapsed-token WER, n = scored words. Simulated in PyTorch with the target's formats; sizes are "
        "the plans' exact bytes (MB = 10^6). Intervals: 95 % paired bootstrap resampled by speaker "
        "(B - A in WER points; * = excludes 0). Every row decodes with the loop guard (runtimes/decoding.py: a "
        "decoder that repeats one span is stopped after its first copy); capped: each clip's errors capped at "
        "its reference words. knapsack: per-layer costs from each layer's own output error (1 - cosine); "
        "knapsack-output: from the model's next-token KL with only that layer quantised "
        "(exporter/quant/output_costs.py).",
        "",
        "Seconds (this machine, 2 cores; observation = FP pass over the calibration clips, costs = the "
        "knapsack's table, measured once per calibration set): "
        + (", ".join(f"{k} {v}" for k, v in sorted(timings.items())) or "not recorded"),
        "",
        "| row | MB | WER children % (n) | capped | WER adults % (n) | capped | formats |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in shown:
        r = done[row["key"]]
        formats = ", ".join(f"{k} x{v}" for k, v in sorted(r["format_counts"].items()))
        if r.get("same_plan_as"):
            formats = f"same plan as {r['same_plan_as']}"
        lines.append(
            f"| {row['key']} | {r['megabytes']:.1f} | {_wer(r, 'child')} | {100 * capped_wer(r, 'child'):.1f} | "
            f"{_wer(r, 'adult')} | {100 * capped_wer(r, 'adult'):.1f} | {formats} |"
        )
    lines += ["", "## Comparisons at equal budget (tested on each group)", ""]
    lines += [
        "| budget | group | B vs A | delta WER (B - A) | delta capped WER |",
        "|---|---|---|---|---|",
    ]

    def compared(a: dict, b: dict, group: str) -> str:
        return f"{_compare(a, b, group)} | {_compare(a, b, group, cap=True)}"

    for key, r in done.items():
        if r.get("runtime"):
            simulated = done[key.split("@")[0]]
            for group in GROUPS:
                lines.append(f"| {r['budget']} | {group} | {key} vs its simulation | {compared(simulated, r, group)} |")
    for budget in meta["budgets"]:
        uniform = done.get(f"{target}/{budget}/uniform")
        for group in GROUPS:
            other = "adult" if group == "child" else "child"
            for allocation in ALLOCATIONS:
                matched = done.get(f"{target}/{budget}/{allocation}/{group}")
                if matched is None:
                    continue
                if uniform is not None:
                    lines.append(
                        f"| {budget} | {group} | {allocation}/{group} vs uniform | {compared(uniform, matched, group)} |"
                    )
                local = done.get(f"{target}/{budget}/knapsack/{group}")
                if allocation == "knapsack-output" and local is not None:
                    lines.append(
                        f"| {budget} | {group} | {allocation}/{group} vs knapsack/{group} | {compared(local, matched, group)} |"
                    )
                first = done.get(f"{target}/{budget}/myqasr/{group}")
                if allocation != "myqasr" and first is not None:
                    lines.append(
                        f"| {budget} | {group} | {allocation}/{group} vs myqasr/{group} | {compared(first, matched, group)} |"
                    )
                for rival in (other, "generic"):
                    mismatched = done.get(f"{target}/{budget}/{allocation}/{rival}")
                    if mismatched is not None:
                        lines.append(
                            f"| {budget} | {group} | {allocation}/{group} vs {allocation}/{rival} | "
                            f"{compared(mismatched, matched, group)} |"
                        )
    lines += gender_section(target, done, meta)
    return "\n".join(lines) + "\n"


def plot(model_id: str, target: str, done: dict, stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, group in zip(axes, GROUPS):
        for system, marker in (
            ("uniform", "s"),
            ("myqasr", "o"),
            ("fill", "^"),
            ("knapsack", "D"),
            ("knapsack-output", "v"),
        ):
            points = sorted(
                (r["megabytes"], 100 * capped_wer(r, group))
                for r in done.values()
                if r["system"] == system and r["calib"] in (group, None)
            )
            if points:
                ax.plot(
                    *zip(*points), marker=marker, label=f"{system} ({'matched' if system != 'uniform' else 'no clips'})"
                )
        if "fp" in done:
            ax.axhline(100 * capped_wer(done["fp"], group), color="grey", linestyle="--", label="FP")
        ax.set_title(f"test: {group}ren" if group == "child" else "test: adults")
        ax.set_xlabel("MB")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("WER % (errors capped per clip)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Whisper {model_id}, {target}: WER vs bytes on speechocean762")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    plt.close(fig)


def row_plan_made(bundle, row: dict, args, users: dict, calib: dict, timings: dict):
    """(the plan of a row that is not FP, seconds it took): observations of its calibration set made once per
    run (and their seconds recorded), a knapsack's cost table measured once per set and measure."""
    user = None
    if row["calib"]:
        if row["calib"] not in users:
            t0 = time.perf_counter()
            users[row["calib"]] = observe_user(bundle, calib[row["calib"]], args.n_calib, args.seed)
            timings[f"observe/{row['calib']}"] = round(time.perf_counter() - t0, 1)
        user = users[row["calib"]]
    allocation, _, layer_cost = (row["allocation"] or "myqasr").partition("-")
    options = PlanOptions(
        target=args.target,
        budget=row["budget"],
        order="uniform" if row["system"] == "uniform" else "myqasr",
        calibration="minmax" if row["system"] == "uniform" else "cosine",
        allocation=allocation,
        layer_cost=layer_cost or "local",
        seed=args.seed,
    )
    if user is not None and allocation == "knapsack":
        key = f"costs/{layer_cost or 'local'}/{row['calib']}"
        t0 = time.perf_counter()
        user.layer_costs(bundle, get_target(args.target), options.layer_cost, progress=False)
        timings.setdefault(key, round(time.perf_counter() - t0, 1))  # first measure only: cached after
    t0 = time.perf_counter()
    plan = make_plan(bundle, user, options, progress=False)
    return plan, round(time.perf_counter() - t0, 1)


def scored(result: dict, test: Dataset) -> tuple[list[dict], dict]:
    """(per-clip records with group and speaker, {group: WER, words, clips}) of an evaluation of `test`."""
    by_path = {str(u.audio_path): u for u in test}
    utterances = []
    for u in result["utterances"]:
        source = by_path[u["audio_path"]]
        utterances.append(
            {
                "utt_id": source.utt_id,
                "group": source.extra["age_group"],
                "speaker": source.speaker,
                "hypothesis": u["hypothesis"],
                "counts": u["counts"],
            }
        )
    groups = {}
    for group in GROUPS:
        score = aggregate([UtteranceCounts(**u["counts"]) for u in utterances if u["group"] == group])
        groups[group] = {"wer": score.wer, "n_words": score.n_words, "n_clips": score.n_clips}
    return utterances, groups


# The real runtime a row's plan is run through (--runtime-rows): the export format edgeasr export writes for
# the target by default, and the runner that decodes it (None: the artifact's own).
RUNTIME_ROWS = {"android": ("pte", "executorch"), "onnx": ("sherpa", "onnx")}


def runtime_row(bundle, key: str, done: dict, args, users: dict, calib: dict, timings: dict, test: Dataset) -> dict:
    """A simulated row's plan made again (its digest must match), lowered as `edgeasr export` lowers it, and
    decoded by the real runtime on the same test clips."""
    row = done[key]
    fmt, runtime = RUNTIME_ROWS[args.target]
    plan, _ = row_plan_made(bundle, row, args, users, calib, timings)
    if plan_digest(plan) != row["plan_digest"]:
        sys.exit(f"{key}: the plan made again differs from the one simulated (digest); re-run the row first")
    started = time.perf_counter()
    folder = lower_artifact(bundle, plan, fmt, WORK / f"allocation-{args.model}-{fmt}-{plan_digest(plan)}")
    runner = open_artifact(folder, threads=2, runtime=runtime)
    result = evaluate(runner, test, model_id=f"{key}@{runtime}", group_by=None, progress=False).to_dict()
    utterances, groups = scored(result, test)
    return {
        **{
            k: row[k] for k in ("key", "system", "budget", "calib", "allocation", "bytes", "megabytes", "format_counts")
        },
        "key": f"{key}@{runtime}",
        "runtime": runtime,
        "artifact_format": fmt,
        "plan_digest": row["plan_digest"],
        "groups": groups,
        "wall_s": round(time.perf_counter() - started, 1),
        "utterances": utterances,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", choices=sorted(BUDGETS))
    parser.add_argument("--target", default="android", choices=["android", "onnx"])
    parser.add_argument(
        "--budgets",
        nargs="+",
        help="default: the design's three budgets for the target; more are added to a results file",
    )
    parser.add_argument("--n-calib", type=int, default=SETTING_DEFAULTS["n_calib"])
    parser.add_argument("--n-calib-speakers", type=int, default=SETTING_DEFAULTS["n_calib_speakers"])
    parser.add_argument("--n-test", type=int, default=SETTING_DEFAULTS["n_test"], help="test clips per group")
    parser.add_argument("--seed", type=int, default=SETTING_DEFAULTS["seed"])
    parser.add_argument(
        "--allocations", nargs="+", choices=ALLOCATIONS, default=list(ALLOCATIONS), help="rows to measure (default all)"
    )
    parser.add_argument(
        "--calibs",
        nargs="+",
        choices=CALIBS + SUBGROUP_CALIBS,
        default=list(CALIBS),
        help="calibration sets (default: children, adults, generic; child-female etc. on request)",
    )
    parser.add_argument(
        "--runtime-rows",
        nargs="+",
        default=[],
        metavar="ROW",
        help="measured rows (keys as in the table) to run again through the target's real runtime",
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="make each stored row's plan again and measure again those whose plan changed",
    )
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    budgets = args.budgets or BUDGETS[args.model][args.target]
    stem = RESULTS / f"allocation_{args.model.replace('.', '_')}_{args.target}"
    json_path = stem.with_suffix(".json")
    meta = {
        "model": args.model,
        "target": args.target,
        "budgets": budgets,
        "n_calib": args.n_calib,
        "n_calib_speakers": args.n_calib_speakers,
        "n_test": args.n_test,
        "seed": args.seed,
        "loop_guard": True,  # results measured before the guard existed are not comparable
    }
    done, timings = {}, {}
    if json_path.is_file():
        stored = read_json(json_path, "a results file")
        settings = {k: v for k, v in meta.items() if k != "budgets"}
        if {k: v for k, v in stored["meta"].items() if k != "budgets"} != settings:
            sys.exit(f"{json_path} was measured with {stored['meta']}: delete it or pass the same settings")
        # more budgets on the same settings add rows; those measured stay. A stored budget with no rows (a
        # stopped run's plan) stays listed only while it is asked for again.
        measured = [b for b in stored["meta"]["budgets"] if _has_rows(b, stored["rows"])]
        budgets = measured + [b for b in budgets if b not in measured]
        meta["budgets"] = budgets
        done = stored["rows"]
        timings = stored.get("timings", {})
    rows = row_plan(args.model, args.target, budgets, calibs=CALIBS + SUBGROUP_CALIBS)  # every row measured
    todo = row_plan(args.model, args.target, args.budgets or budgets, args.allocations, args.calibs)

    def save() -> None:
        write_json(json_path, {"meta": meta, "rows": done, "timings": timings})
        write_text(stem.with_suffix(".md"), report(args.model, args.target, done, rows, meta, timings))
        plot(args.model, args.target, done, stem)

    if args.report_only:
        save()
        return
    bundle = load_whisper(args.model)
    calib, test = split_speakers(args.n_calib_speakers, args.n_calib, args.n_test, args.seed)
    calib["generic"] = generic_calibration_set()
    users = {}
    for row in todo:
        plan = None
        if row["key"] in done:
            if not (args.refresh and row["system"] != "FP"):
                continue
            plan, plan_seconds = row_plan_made(bundle, row, args, users, calib, timings)
            if plan_digest(plan) == done[row["key"]]["plan_digest"]:
                continue
            say(f"{row['key']}: the plan changed since it was measured; measuring it again")
            stale = [k for k in done if k == row["key"] or k.startswith(row["key"] + "@")]
            args.runtime_rows += [
                k.split("@")[0] for k in stale if "@" in k and k.split("@")[0] not in args.runtime_rows
            ]
            for k in stale:
                del done[k]
        started = time.perf_counter()
        if row["system"] == "FP":
            evaluated = bundle
        else:
            if plan is None:
                plan, plan_seconds = row_plan_made(bundle, row, args, users, calib, timings)
            digest = plan_digest(plan)
            twin = next((r for r in done.values() if r.get("plan_digest") == digest and not r.get("runtime")), None)
            if twin is not None:  # same formats and scales as a row already tested: same transcripts
                done[row["key"]] = {**twin, **row, "plan_seconds": plan_seconds, "same_plan_as": twin["key"]}
                save()
                say(f"{row['key']}: same plan as {twin['key']}")
                continue
            evaluated = simulate(bundle, plan)
        result = evaluate(TorchRunner(evaluated), test, model_id=row["key"], group_by=None, progress=False).to_dict()
        utterances, groups = scored(result, test)
        if plan is None:
            layers = quantizable_layers(bundle.model)
            size = unquantised_bytes(bundle.model, layers) + sum(4 * layer.numel for layer in layers)
        else:
            size = plan.total_bytes
        done[row["key"]] = {
            **row,
            "bytes": size,
            "megabytes": size / 1e6,
            "format_counts": plan.format_counts() if plan else {},
            "plan_seconds": plan_seconds if plan else None,
            "plan_digest": plan_digest(plan) if plan else "fp",
            "groups": groups,
            "wall_s": round(time.perf_counter() - started, 1),
            "utterances": utterances,
        }
        save()
        say(
            f"{row['key']}: children {groups['child']['wer']:.3f} adults {groups['adult']['wer']:.3f} "
            f"({done[row['key']]['wall_s']} s)"
        )
    for key in args.runtime_rows:
        if key not in done or done[key]["system"] == "FP":
            sys.exit(f"{key}: no simulated plan row of that key in {json_path}; measure it first")
        runtime_key = f"{key}@{RUNTIME_ROWS[args.target][1]}"
        if runtime_key not in done:
            done[runtime_key] = runtime_row(bundle, key, done, args, users, calib, timings, test)
            save()
            groups = done[runtime_key]["groups"]
            say(f"{runtime_key}: children {groups['child']['wer']:.3f} adults {groups['adult']['wer']:.3f}")
    say(f"seconds: {timings}")


if __name__ == "__main__":
    main()
