"""Size sweep through the real runtimes: WER per gender against artifact bytes, myQASR vs uniform, per target.

For each target (android -> ExecuTorch .pte, onnx -> ONNX Runtime) and each size budget: a myQASR plan
(cosine calibration on 32 unlabelled AN4 train clips of both genders, observed once) and a uniform plan
(no clips, min/max scales) are lowered the way `edgeasr export` lowers them (plan for the budget minus its
overhead allowance), then `edgeasr bench` runs each artifact on the same AN4 test clips, balanced by
gender. PyTorch FP is measured once as the reference line.

Resumable: artifacts are kept in the work folder and finished rows are skipped on a rerun. A budget whose
plan equals, layer for layer, one already measured on that target reuses its records (marked in the table).

    python benchmarks/size_sweep.py --model tiny.en [--targets android onnx] [--per-gender 20] [--report-only]
"""

from __future__ import annotations

import argparse
import hashlib
import json

from bench_common import (
    AN4,
    GENDERS,
    OVERHEAD_ALLOWANCE,
    RESULTS,
    WORK,
    an4_test_clips,
    calibration_folder,
    is_current,
    lower_artifact,
    say,
    write_results,
)

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.data import load_dataset
from exporter.io import write_text
from exporter.models import load_whisper
from exporter.quant.budget import parse_budget
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user
from exporter.quant.plan import QuantPlan

BUDGETS = {  # MB = 10^6 bytes: between the uniform int8 / int4 / lowest sizes of each ladder
    "tiny.en": {"android": ["55MB", "45MB", "36MB"], "onnx": ["55MB", "38MB", "33MB"]},
    "base": {"android": ["100MB", "80MB", "62MB"], "onnx": ["100MB", "65MB", "55MB"]},
}
FORMAT = {"android": "pte", "onnx": "onnx"}
RUNTIME = {"android": "executorch", "onnx": "onnx"}
ORDERS = {"myqasr": "cosine", "uniform": "minmax"}


def plan_digest(plan: QuantPlan) -> str:
    """What decides the artifact's weights: every layer's format and scales (not the budget it was made for)."""
    layers = json.dumps([layer.to_dict() for layer in plan.layers], sort_keys=True)
    return hashlib.sha256(layers.encode()).hexdigest()[:16]


def _value(records, name, group="all"):
    for r in records:
        if r["metric"]["name"] == name and r["group"] == group:
            return r
    return None


class Sweep:
    def __init__(self, args):
        self.args = args
        self.stem = RESULTS / f"size_sweep_{args.model.replace('.', '_')}"
        path = self.stem.with_suffix(".json")
        self.data = (
            json.loads(path.read_text())
            if path.is_file()
            else {
                "schema_version": 1,
                "generated_by": f"edgeasr {__version__} benchmarks/size_sweep.py",
                "notes": [],
                "records": [],
            }
        )
        self.clips = an4_test_clips(args.per_gender)
        self._bundle = self._user = None

    def done(self, key: str) -> bool:
        return any(r.get("extra", {}).get("sweep_row") == key for r in self.data["records"])

    @property
    def bundle(self):
        if self._bundle is None:
            self._bundle = load_whisper(self.args.model)
        return self._bundle

    def user(self):
        """The myQASR observations of 32 unlabelled AN4 train clips (made once)."""
        if self._user is None:
            say("observing 32 calibration clips")
            self._user = observe_user(self.bundle, load_dataset(calibration_folder()), 32, seed=0, progress=False)
        return self._user

    def plan(self, target: str, budget: str, order: str) -> QuantPlan:
        plan_budget = parse_budget(budget) - OVERHEAD_ALLOWANCE
        options = PlanOptions(target=target, budget=plan_budget, order=order, calibration=ORDERS[order])
        plan = make_plan(self.bundle, self.user() if order == "myqasr" else None, options, progress=False)
        plan.budget_bytes = parse_budget(budget)
        return plan

    def run(self, key: str, folder, runtimes, extra: dict) -> None:
        say(f"{key}: bench {', '.join(runtimes)} on {len(self.clips)} clips")
        result = bench(
            BenchOptions(artifact=folder, data=AN4, runtimes=runtimes, group_by="gender", threads=self.args.threads),
            dataset=self.clips,
        )
        for record in result.records:
            record.setdefault("extra", {}).update(sweep_row=key, **extra)
        self.data["records"] += result.records
        self.data["notes"] = sorted(set(self.data["notes"]) | set(result.notes))
        self.save()

    def row(self, target: str, budget: str, order: str) -> None:
        key = f"{target}/{budget}/{order}"
        if self.done(key):
            return
        extra = {"sweep_target": target, "sweep_budget": budget, "sweep_order": order}
        plan = self.plan(target, budget, order)
        extra["plan_digest"] = plan_digest(plan)
        if self.reuse(key, extra):
            return
        folder = WORK / f"sweep-{self.args.model}" / f"{target}-{budget}-{order}"
        if not is_current(folder):
            say(f"{key}: lowering")
            lower_artifact(self.bundle, plan, FORMAT[target], folder)
        self.run(key, folder, (RUNTIME[target],), extra)

    def reuse(self, key: str, extra: dict) -> bool:
        """A budget whose plan is layer for layer one already measured (uniform plans often are: the
        same rung fits two budgets) gets that row's records, marked, instead of a second identical run."""
        for other, records in self.rows():
            first = records[0].get("extra", {})
            if first.get("plan_digest") == extra["plan_digest"] and first.get("sweep_target") == extra["sweep_target"]:
                say(f"{key}: same plan as {other}; its measurements are reused")
                for record in records:
                    copy = json.loads(json.dumps(record))
                    copy["extra"].update(extra, sweep_row=key, same_artifact_as=other)
                    self.data["records"].append(copy)
                self.save()
                return True
        return False

    def reference(self) -> None:
        if self.done("fp"):
            return
        folder = next((WORK / f"sweep-{self.args.model}").glob("*/plan.json")).parent
        self.run("fp", folder, ("torch-fp",), {"sweep_target": "-", "sweep_budget": None, "sweep_order": "fp"})

    def save(self) -> None:
        write_results(self.stem.with_suffix(".json"), self.data)
        write_text(self.stem.with_suffix(".md"), self.markdown())
        self.plot()

    def rows(self):
        keys = []
        for r in self.data["records"]:
            key = r["extra"]["sweep_row"]
            if key not in keys:
                keys.append(key)
        for key in keys:
            records = [r for r in self.data["records"] if r["extra"]["sweep_row"] == key]
            yield key, records

    def markdown(self) -> str:
        n = len(self.clips)
        lines = [
            f"# Size sweep: {self.args.model}, WER per gender through the real runtimes",
            "",
            f"{n} AN4 test clips ({self.args.per_gender} per gender, seed 0); collapsed WER %. myQASR: "
            "cosine calibration on 32 unlabelled AN4 train clips (both genders); uniform: no clips, min/max "
            "scales. Each artifact measured by `edgeasr bench` in its own process; a row marked (= row) has "
            "layer for layer the same plan as that row, whose measurements it repeats.",
            "",
            "| target | budget | order | artifact MB | WER all | WER female (n) | WER male (n) | "
            "latency median ms | run peak MB |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for _key, records in self.rows():
            extra = records[0]["extra"]
            wer = {g: _value(records, "wer", g) for g in ("all",) + GENDERS}
            cells = [
                f"{100 * wer[g]['metric']['value']:.1f}" + ("" if g == "all" else f" ({wer[g]['n']})")
                if wer[g]
                else "-"
                for g in wer
            ]
            order = extra["sweep_order"] + (f" (= {extra['same_artifact_as']})" if "same_artifact_as" in extra else "")
            lines.append(
                f"| {extra['sweep_target']} | {extra['sweep_budget'] or '-'} | {order} | "
                f"{records[0]['artifact']['bytes'] / 1e6:.1f} | {' | '.join(cells)} | "
                f"{_value(records, 'latency_median')['metric']['value']:,.0f} | "
                f"{_value(records, 'memory_run_peak')['metric']['value'] / 1e6:.0f} |"
            )
        lines += [
            "",
            f"Produced by `python benchmarks/size_sweep.py --model {self.args.model}`; records in "
            f"`{self.stem.name}.json` (bench result schema v1).",
        ]
        return "\n".join(lines) + "\n"

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from exporter.bench_report import plot_wer_clipped, save_figure

        targets = [t for t in ("android", "onnx") if any(k.startswith(t) for k, _ in self.rows())]
        if not targets:
            return
        fig, axes = plt.subplots(1, len(targets), figsize=(6.5 * len(targets), 4.5), squeeze=False)
        fp = dict(self.rows()).get("fp")
        for ax, target in zip(axes[0], targets):
            for order, style in (("myqasr", "-o"), ("uniform", "--s")):
                for gender, color in (("female", "tab:red"), ("male", "tab:blue")):
                    points = sorted(
                        (rs[0]["artifact"]["bytes"] / 1e6, 100 * _value(rs, "wer", gender)["metric"]["value"])
                        for k, rs in self.rows()
                        if k.startswith(f"{target}/") and k.endswith(f"/{order}") and _value(rs, "wer", gender)
                    )
                    if points:
                        plot_wer_clipped(ax, points, style, color=color, label=f"{order} {gender}")
            if fp:
                for gender, color in (("female", "tab:red"), ("male", "tab:blue")):
                    ax.axhline(
                        100 * _value(fp, "wer", gender)["metric"]["value"],
                        color=color,
                        lw=0.8,
                        ls=":",
                        label=f"FP {gender}",
                    )
            ax.set_title(f"{self.args.model}, {target} ({RUNTIME[target]})")
            ax.set_xlabel("artifact MB")
            ax.set_ylabel("WER %")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        save_figure(fig, self.stem.with_suffix(".png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", choices=list(BUDGETS))
    parser.add_argument("--targets", nargs="+", default=["android", "onnx"], choices=["android", "onnx"])
    parser.add_argument("--budgets", nargs="+", help="override the budget list (all targets)")
    parser.add_argument("--per-gender", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="re-render table and plot from the JSON")
    args = parser.parse_args()
    sweep = Sweep(args)
    if args.report_only:
        sweep.save()
        return
    for target in args.targets:
        for budget in args.budgets or BUDGETS[args.model][target]:
            for order in ORDERS:
                sweep.row(target, budget, order)
    sweep.reference()
    sweep.save()
    say(f"wrote {sweep.stem}.json/.md/.png")


if __name__ == "__main__":
    main()
