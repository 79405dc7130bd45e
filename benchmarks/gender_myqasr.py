"""myQASR's gender experiment on real speech (AN4), per target ladder.

Calibrate on 32 unlabelled clips of female train speakers, or of male train speakers, or on none (uniform);
test on held-out clips of each gender (never a calibration clip). For each target and budget, rows:
FP, uniform (no clips, min/max), myqasr (female- or male-calibrated) x {minmax, cosine, hessian}, and the
reversed / shuffled orders (cosine). WER per test gender with n, paired bootstrap intervals for
"matched calibration vs uniform" and "matched vs mismatched", a results table and one WER-vs-MB plot per
test gender.

Resumable: rows already in the results JSON are skipped, and the JSON, table and plots are rewritten after
every row, so a run cut short keeps what it measured. The table and plots always show every stored row, so a
run of one target keeps the others' rows in view (`--report-only` re-renders them).

    python benchmarks/gender_myqasr.py --model tiny.en [--targets android onnx sim] [--n-test 80]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.logs import quiet_libraries  # noqa: E402

quiet_libraries()

import fcntl  # noqa: E402
import json  # noqa: E402

from exporter.bench_report import plot_wer_clipped, save_figure  # noqa: E402
from exporter.data import Dataset, load_dataset  # noqa: E402
from exporter.evaluate import evaluate  # noqa: E402
from exporter.io import write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user  # noqa: E402
from exporter.quant.simulate import simulate  # noqa: E402
from exporter.scoring import UtteranceCounts, paired_bootstrap  # noqa: E402
from runtimes.torch_runner import TorchRunner  # noqa: E402

AN4 = ROOT.parent / "shared" / "data" / "an4" / "manifest.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
GENDERS = ("female", "male")
CALIBRATIONS = ("minmax", "cosine", "hessian")
TARGETS = ("android", "onnx", "sim")
# Budgets per model and target (MB = 10^6 bytes): between the uniform int8 / int4 / lowest sizes so that
# the allocation is really mixed; the lowest one is where uniform quantisation breaks down.
BUDGETS = {
    "tiny.en": {"android": ["55MB", "45MB", "36MB"], "onnx": ["45MB", "33MB", "26MB"], "sim": ["60MB", "45MB", "35MB"]},
    "base": {"android": ["100MB", "80MB", "62MB"], "onnx": ["85MB", "65MB", "50MB"], "sim": ["110MB", "80MB", "60MB"]},
}


def split_an4(n_calib: int, n_test: int, seed: int) -> tuple[dict[str, Dataset], Dataset]:
    an4 = load_dataset(AN4)
    calib, test = {}, []
    for gender in GENDERS:
        train = [u for u in an4 if u.gender == gender and u.split == "train"]
        chosen = sorted(random.Random(seed).sample(train, n_calib), key=lambda u: str(u.audio_path))
        calib[gender] = Dataset(an4.source, chosen)
        held_out = [u for u in an4 if u.gender == gender and u not in chosen]
        test += sorted(
            random.Random(seed + 1).sample(held_out, min(n_test, len(held_out))), key=lambda u: str(u.audio_path)
        )
    return calib, Dataset(an4.source, test)


def row_plan(model_id: str, targets: list[str], calibrations: list[str]) -> list[dict]:
    rows = [
        {"key": "fp", "system": "FP", "target": "-", "budget": None, "calib": None, "order": None, "calibration": None}
    ]
    for target in targets:
        for budget in BUDGETS[model_id][target]:

            def add(system, order, calib, calibration):
                rows.append(
                    {
                        "key": f"{target}/{budget}/{system}/{calib}/{calibration}",
                        "system": system,
                        "target": target,
                        "budget": budget,
                        "calib": calib,
                        "order": order,
                        "calibration": calibration,
                    }
                )

            add("uniform", "uniform", None, "minmax")
            for calibration in calibrations:
                for gender in GENDERS:
                    add("myqasr", "myqasr", gender, calibration)
            for system in ("reversed", "shuffled"):
                for gender in GENDERS:
                    add(system, system, gender, "cosine")
    return rows


def stored_rows(model_id: str, done: dict[str, dict]) -> list[dict]:
    """Every measured row in the canonical order, whatever targets and calibrations this run was given: the
    table and the plots always show the whole results file, so resuming one target keeps the others."""
    every = row_plan(model_id, list(BUDGETS[model_id]), list(CALIBRATIONS))
    return [row for row in every if row["key"] in done]


@contextmanager
def results_lock(json_path: Path):
    """Hold the results file for one read-merge-write-render. Two runs of one model on different targets
    (say onnx and sim, one per core) share the file; each keeps rows in memory, so an unlocked write would
    drop the rows the other run stored meanwhile, and a late render would show a stale table."""
    with open(json_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def load_rows(json_path: Path, meta: dict) -> dict[str, dict]:
    """The stored rows, refused when they were measured with other settings."""
    if not json_path.is_file():
        return {}
    stored = json.loads(json_path.read_text())
    if stored["meta"] != meta:
        sys.exit(
            f"{json_path} was measured with {stored['meta']}, not {meta}: delete it to start over, "
            "or pass the same settings to resume"
        )
    return stored["rows"]


def render(model_id: str, done: dict[str, dict], meta: dict, stem: Path) -> None:
    shown = stored_rows(model_id, done)
    write_text(stem.with_suffix(".md"), report(model_id, done, shown, meta))
    plot(model_id, done, shown, stem)


def _counts(result: dict, gender: str) -> list[UtteranceCounts]:
    return [UtteranceCounts(**u["counts"]) for u in result["utterances"] if u["group"] == gender]


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(comparison) -> str:
    mark = " *" if comparison.significant else ""
    return f"{100 * comparison.delta:+.1f} [{100 * comparison.ci_low:+.1f}, {100 * comparison.ci_high:+.1f}]{mark}"


def report(model_id: str, done: dict[str, dict], rows: list[dict], meta: dict) -> str:
    lines = [
        f"# myQASR gender experiment: Whisper {model_id} on AN4",
        "",
        f"Produced by `python benchmarks/gender_myqasr.py --model {model_id}`. Calibration: {meta['n_calib']} "
        "unlabelled clips of female or male AN4 train speakers (seeded sample); test: held-out clips of "
        "each gender (n below), never a calibration clip. WER = collapsed-token WER (see README). "
        "Sizes are the plans' exact weight bytes (MB = 10^6). Simulated in PyTorch with each target's "
        "real formats (XNNPACK 8da8w/8da4w with per-token int8 activations; ONNX MatMulNBits blocks of 32; "
        "sim = per-channel integers).",
        "",
        "| target | budget | system | calib | calibration | MB | formats | WER F % (n) | WER M % (n) |",
        "|---|---|---|---|---|---:|---|---:|---:|",
    ]
    for row in rows:
        rec = done.get(row["key"])
        if rec is None:
            continue
        g = rec["groups"]
        formats = ", ".join(f"{k}x{v}" for k, v in sorted(rec.get("format_counts", {}).items()))
        lines.append(
            f"| {row['target']} | {row['budget'] or '-'} | {row['system']} | {row['calib'] or '-'} | "
            f"{row['calibration'] or '-'} | {rec['megabytes']:.1f} | {formats or 'fp32'} | "
            f"{_pct(g['female']['wer'])} ({g['female']['n_clips']}) | "
            f"{_pct(g['male']['wer'])} ({g['male']['n_clips']}) |"
        )
    lines += [
        "",
        "## Paired comparisons (WER difference in points, 95 % paired bootstrap interval, "
        "2000 resamples of clips, seed 0; * = interval excludes 0)",
        "",
        "| target | budget | calibration | test gender | matched - uniform | matched - mismatched |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []  # (target, test gender, vs uniform, vs mismatched, identical transcripts) per pair
    for row in rows:
        if row["system"] != "myqasr" or row["calib"] != "female":
            continue
        base = f"{row['target']}/{row['budget']}"
        for gender in GENDERS:
            other = "male" if gender == "female" else "female"
            matched = done.get(f"{base}/myqasr/{gender}/{row['calibration']}")
            mismatched = done.get(f"{base}/myqasr/{other}/{row['calibration']}")
            uniform = done.get(f"{base}/uniform/None/minmax")
            if not (matched and mismatched and uniform):
                continue
            vs_uniform = paired_bootstrap(_counts(uniform, gender), _counts(matched, gender))
            vs_mismatch = paired_bootstrap(_counts(mismatched, gender), _counts(matched, gender))
            same = _hypotheses(matched, gender) == _hypotheses(mismatched, gender)
            verdicts.append((row["target"], gender, _verdict(vs_uniform), _verdict(vs_mismatch), same))
            lines.append(
                f"| {row['target']} | {row['budget']} | {row['calibration']} | {gender} | "
                f"{_ci(vs_uniform)} | {_ci(vs_mismatch)}{' (same transcripts)' if same else ''} |"
            )
    lines += [
        "",
        '"same transcripts": the female- and male-calibrated plans gave identical text on every test clip '
        "of that gender. With min/max scales the calibration clips only change the order in which layers step "
        "down, so two orders that pick the same layers give the same plan.",
    ]
    if verdicts:
        lines += [
            "",
            "## Tally of the paired comparisons above",
            "",
            "Each cell counts (budget, calibration) pairs: matched better / matched worse (interval excludes "
            "0 either way) / no difference shown (interval includes 0).",
            "",
            "| target | test gender | pairs | matched vs uniform | matched vs mismatched | identical transcripts |",
            "|---|---|---:|---|---|---:|",
        ]
        targets = list(dict.fromkeys(v[0] for v in verdicts)) + ["all"]
        for target in targets:
            for gender in GENDERS:
                chosen = [v for v in verdicts if v[1] == gender and target in ("all", v[0])]
                if chosen:
                    lines.append(_tally_row(target, gender, chosen))
    return "\n".join(lines) + "\n"


def _tally_row(target: str, gender: str, verdicts: list[tuple]) -> str:
    def counts(column: int) -> str:
        return " / ".join(str(sum(v[column] == verdict for v in verdicts)) for verdict in range(3))

    return f"| {target} | {gender} | {len(verdicts)} | {counts(2)} | {counts(3)} | {sum(v[4] for v in verdicts)} |"


def _verdict(comparison) -> int:
    """0: matched significantly better (lower WER), 1: significantly worse, 2: interval includes 0."""
    if not comparison.significant:
        return 2
    return 0 if comparison.delta < 0 else 1


def _hypotheses(result: dict, gender: str) -> list:
    return [u["hypothesis"] for u in result["utterances"] if u["group"] == gender]


def plot(model_id: str, done: dict[str, dict], rows: list[dict], out_stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fp = done.get("fp")
    targets = sorted({r["target"] for r in rows if r["target"] != "-"})

    def label_of(row, gender):
        return (
            row["system"]
            if row["calib"] is None
            else f"{row['system']} ({'matched' if row['calib'] == gender else 'mismatched'}, {row['calibration']})"
        )

    paths = []
    for gender in GENDERS:
        # one colour per series across the panels, and one legend for the figure: with per-panel colour
        # cycles a target that has an extra series (hessian) would shift every colour after it
        labels = sorted({label_of(r, gender) for r in rows if r["target"] != "-" and r["key"] in done})
        palette = plt.get_cmap("tab20").colors
        colours = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
        fig, axes = plt.subplots(1, len(targets), figsize=(5.5 * len(targets), 4.2), squeeze=False)
        for ax, target in zip(axes[0], targets):
            series: dict[str, list[tuple[float, float]]] = {}
            for row in rows:
                rec = done.get(row["key"])
                if rec is None or row["target"] != target:
                    continue
                series.setdefault(label_of(row, gender), []).append(
                    (rec["megabytes"], 100 * rec["groups"][gender]["wer"])
                )
            for label, points in sorted(series.items()):
                plot_wer_clipped(ax, points, "o-", label=label, color=colours[label])
            if fp:
                ax.axhline(100 * fp["groups"][gender]["wer"], color="black", linestyle="--", label="FP")
            ax.set_title(f"{target}: test {gender}")
            ax.set_xlabel("plan size (MB)")
            ax.set_ylabel("WER %")
            ax.grid(alpha=0.3)
        handles = {}
        for ax in axes[0]:
            handles.update(zip(*reversed(ax.get_legend_handles_labels())))
        axes[0][-1].legend(list(handles.values()), list(handles), fontsize=6, loc="upper right")
        fig.suptitle(f"Whisper {model_id} on AN4, {gender} test clips")
        path = out_stem.with_name(f"{out_stem.name}_{gender}.png")
        save_figure(fig, path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", choices=sorted(BUDGETS))
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--calibrations", nargs="+", choices=CALIBRATIONS, default=list(CALIBRATIONS))
    parser.add_argument("--n-calib", type=int, default=32)
    parser.add_argument("--n-test", type=int, default=80, help="held-out test clips per gender")
    parser.add_argument(
        "--budgets",
        nargs="+",
        help="only these budgets of the chosen targets (default: all), e.g. to split one "
        "target's rows between two processes",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-only", action="store_true", help="re-render table and plots from the JSON")
    args = parser.parse_args()

    stem = RESULTS / f"gender_{args.model.replace('.', '_')}"
    json_path = stem.with_suffix(".json")
    meta = {"model": args.model, "n_calib": args.n_calib, "n_test": args.n_test, "seed": args.seed}
    done = load_rows(json_path, meta)
    if args.report_only:
        render(args.model, done, meta, stem)
        return
    rows = row_plan(args.model, args.targets, args.calibrations)
    if args.budgets:
        known = {budget for target in args.targets for budget in BUDGETS[args.model][target]}
        if unknown := sorted(set(args.budgets) - known):
            parser.error(
                f"budget(s) {', '.join(unknown)} not in the design of {' '.join(args.targets)} "
                f"for {args.model}; choose from {', '.join(sorted(known))}"
            )
        rows = [row for row in rows if row["system"] == "FP" or row["budget"] in args.budgets]
    bundle = load_whisper(args.model)
    calib, test = split_an4(args.n_calib, args.n_test, args.seed)
    users = {}
    for row in rows:
        if row["key"] in done:
            continue
        started = time.perf_counter()
        if row["system"] == "FP":
            evaluated, plan = bundle, None
        else:
            user = None
            if row["calib"]:
                if row["calib"] not in users:
                    users[row["calib"]] = observe_user(bundle, calib[row["calib"]], args.n_calib, args.seed)
                user = users[row["calib"]]
            plan = make_plan(
                bundle,
                user,
                PlanOptions(
                    target=row["target"],
                    budget=row["budget"],
                    order=row["order"],
                    calibration=row["calibration"],
                    seed=args.seed,
                ),
            )
            evaluated = simulate(bundle, plan)
        result = evaluate(TorchRunner(evaluated), test, model_id=row["key"], group_by="gender").to_dict()
        size = plan.total_bytes if plan else 0
        if plan is None:
            from exporter.quant.layers import quantizable_layers, unquantised_bytes

            layers = quantizable_layers(bundle.model)
            size = unquantised_bytes(bundle.model, layers) + sum(4 * layer.numel for layer in layers)
        done[row["key"]] = {
            **row,
            "megabytes": size / 1e6,
            "bytes": size,
            "format_counts": plan.format_counts() if plan else {},
            "groups": result["groups"],
            "wall_s": round(time.perf_counter() - started, 1),
            "utterances": [
                {
                    "audio_path": u["audio_path"],
                    "group": u["group"],
                    "hypothesis": u["hypothesis"],
                    "counts": u["counts"],
                }
                for u in result["utterances"]
            ],
        }
        with results_lock(json_path):
            done = {**load_rows(json_path, meta), **done}
            write_json(json_path, {"meta": meta, "rows": done})
            render(args.model, done, meta, stem)
        print(
            f"[{sum(r['key'] in done for r in rows)}/{len(rows)}] {row['key']}: F {done[row['key']]['groups']['female']['wer']:.3f} "
            f"M {done[row['key']]['groups']['male']['wer']:.3f} ({done[row['key']]['wall_s']} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
