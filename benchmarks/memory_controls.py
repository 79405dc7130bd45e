"""Memory controls: predicted vs measured peak memory per audio context and attention, and what a shorter
audio context costs in WER.

1. The runtime comparison's artifacts (myQASR plans; benchmarks/runtime_comparison.py) are lowered again with
   every control setting: ExecuTorch 30 s sdpa / 30 s eager / 15 s sdpa / 10 s eager / 5 s eager, ONNX Runtime
   30 s / 10 s / 5 s, and 30 s / 10 s with ONNX Runtime's CPU memory arena off (the weights do not change,
   only the activations). `edgeasr bench` measures each on the
   AN4 test clips in its own process: load and run peaks against `exporter.memory`'s prediction, latency, WER.
2. PyTorch FP at each audio context on the same AN4 clips (all under 6.2 s) and on english_misc (22 clips up
   to 11.7 s, so 5 s and 10 s contexts cut some into windows): the accuracy effect of the context alone.

    python benchmarks/memory_controls.py --model tiny.en --budget 55MB [--report-only]
"""

from __future__ import annotations

import argparse
import json

from bench_common import AN4, DATA, RESULTS, WORK, an4_test_clips, is_current, lower_artifact, say, write_results

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.bench_report import memory_comparison, save_figure, systems
from exporter.data import load_dataset
from exporter.io import write_text
from exporter.models import load_whisper
from exporter.quant.plan import QuantPlan

PTE_SETTINGS = ((3000, "sdpa"), (3000, "eager"), (1500, "sdpa"), (1000, "eager"), (500, "eager"))
ONNX_SETTINGS = ((3000, "explicit"), (1000, "explicit"), (500, "explicit"))
ONNX_NO_ARENA = (3000, 1000)  # also measured with ONNX Runtime's CPU memory arena off
FP_CONTEXTS = (3000, 1500, 1000, 500)


class Suite:
    def __init__(self, args):
        self.args = args
        self.source = WORK / f"{args.model}-{args.budget}-pte-onnx-myqasr"
        if not args.report_only and not is_current(self.source):
            raise SystemExit(
                f"{self.source} is missing or was lowered by older code: run benchmarks/runtime_comparison.py --model "
                f"{args.model} --budget {args.budget} first"
            )
        self.stem = RESULTS / f"memory_controls_{args.model.replace('.', '_')}"
        path = self.stem.with_suffix(".json")
        self.data = (
            json.loads(path.read_text())
            if path.is_file()
            else {
                "schema_version": 1,
                "generated_by": f"edgeasr {__version__} benchmarks/memory_controls.py",
                "notes": [],
                "records": [],
            }
        )
        self.clips = None if args.report_only else an4_test_clips(args.per_gender)
        self._bundle = None

    def done(self, key: str) -> bool:
        return any(r.get("extra", {}).get("controls_row") == key for r in self.data["records"])

    def folder(self, fmt: str, frames: int, attention: str):
        folder = WORK / f"controls-{self.args.model}-{self.args.budget}" / f"{fmt}-{frames}-{attention}"
        if not is_current(folder):
            if self._bundle is None:
                self._bundle = load_whisper(self.args.model)
            plan_file = self.source / "plan.json" if fmt == "pte" else self.source / "onnx" / "plan.json"
            say(f"lowering {fmt} at {frames} frames, {attention}")
            lower_artifact(self._bundle, QuantPlan.load(plan_file), fmt, folder, frames, attention)
        return folder

    def run(self, key: str, folder, runtimes, dataset, data_name: str, arena: bool = True) -> None:
        if self.done(key):
            return
        say(f"{key}: bench {', '.join(runtimes)} on {len(dataset)} {data_name} clips")
        source = AN4 if data_name == "an4" else DATA / data_name / "manifest.jsonl"
        result = bench(
            BenchOptions(
                artifact=folder,
                data=source,
                runtimes=runtimes,
                onnx_memory_arena=arena,
                group_by="gender" if data_name == "an4" else None,
            ),
            dataset=dataset,
        )
        for record in result.records:
            record.setdefault("extra", {})["controls_row"] = key
        self.data["records"] += result.records
        self.data["notes"] = sorted(set(self.data["notes"]) | set(result.notes))
        write_results(self.stem.with_suffix(".json"), self.data)

    def measure(self) -> None:
        for fmt, settings, runtime in (("pte", PTE_SETTINGS, "executorch"), ("onnx", ONNX_SETTINGS, "onnx")):
            for frames, attention in settings:
                self.run(
                    f"memory/{runtime}/{frames}/{attention}",
                    self.folder(fmt, frames, attention),
                    (runtime,),
                    self.clips,
                    "an4",
                )
        for frames in ONNX_NO_ARENA:
            self.run(
                f"memory/onnx/{frames}/no-arena",
                self.folder("onnx", frames, "explicit"),
                ("onnx",),
                self.clips,
                "an4",
                arena=False,
            )
        misc = load_dataset(DATA / "english_misc" / "manifest.jsonl")
        for frames in FP_CONTEXTS:
            attention = next(a for f, a in PTE_SETTINGS if f == frames)
            folder = self.folder("pte", frames, attention)
            self.run(f"context/an4/{frames}", folder, ("torch-fp",), self.clips, "an4")
            self.run(f"context/english_misc/{frames}", folder, ("torch-fp",), misc, "english_misc")

    def rows(self, prefix: str):
        keys = list(dict.fromkeys(r["extra"]["controls_row"] for r in self.data["records"]))
        return [
            (k, [r for r in self.data["records"] if r["extra"]["controls_row"] == k])
            for k in keys
            if k.startswith(prefix)
        ]

    def markdown(self) -> str:
        lines = [
            f"# Memory controls: {self.args.model} ({self.args.budget} myQASR plans)",
            "",
            "Peak memory = bytes the artifact adds to a fresh process (resident set peak minus the baseline "
            "with the runtime imported), measured by `edgeasr bench`; predicted = `exporter.memory` from "
            "the artifact (ExecuTorch: its memory plan; ONNX: graph liveness) for the Python host.",
            "",
            "| runtime | context s | attention or arena | artifact MB | load peak MB (pred.) | run peak MB (pred.) | "
            "run error | latency median ms | WER % AN4 |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for key, records in self.rows("memory/"):
            _, runtime, frames, attention = key.split("/")
            entry = next(iter(systems(records).values()))
            cmp = {phase: (m, p, e) for phase, m, p, e in memory_comparison(entry)}
            latency = entry["metrics"][("latency_median", "all")]["metric"]["value"]
            wer = entry["metrics"][("wer", "all")]["metric"]["value"]
            lines.append(
                f"| {runtime} | {int(frames) / 100:g} | {attention} | {entry['artifact']['bytes'] / 1e6:.1f} | "
                f"{cmp['load'][0] / 1e6:.0f} ({cmp['load'][1] / 1e6:.0f}) | {cmp['run'][0] / 1e6:.0f} "
                f"({cmp['run'][1] / 1e6:.0f}) | {100 * cmp['run'][2]:+.0f} % | {latency:,.0f} | {100 * wer:.1f} |"
            )
        lines += [
            "",
            "## WER of PyTorch FP per audio context (collapsed WER %, n clips)",
            "",
            "| context s | AN4 test (all) | AN4 female | AN4 male | english_misc |",
            "|---:|---:|---:|---:|---:|",
        ]
        for frames in FP_CONTEXTS:
            cells = []
            for data_name, groups in (("an4", ("all", "female", "male")), ("english_misc", ("all",))):
                found = dict(self.rows(f"context/{data_name}/{frames}"))
                records = found.get(f"context/{data_name}/{frames}", [])
                for group in groups:
                    r = next((r for r in records if r["metric"]["name"] == "wer" and r["group"] == group), None)
                    cells.append("-" if r is None else f"{100 * r['metric']['value']:.1f} (n={r['n']})")
            lines.append(f"| {frames / 100:g} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Produced by `python benchmarks/memory_controls.py --model {self.args.model} --budget "
            f"{self.args.budget}`; records in `{self.stem.name}.json`.",
        ]
        return "\n".join(lines) + "\n"

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        top = 0
        for key, records in self.rows("memory/"):
            entry = next(iter(systems(records).values()))
            for phase, measured, predicted, _ in memory_comparison(entry):
                marker = "o" if "executorch" in key else "s"
                color = "tab:red" if phase == "run" else "tab:orange"
                axes[0].scatter(measured / 1e6, predicted / 1e6, marker=marker, color=color)
                axes[0].annotate(f"{key.split('/', 1)[1]} {phase}", (measured / 1e6, predicted / 1e6), fontsize=6)
                top = max(top, measured / 1e6, predicted / 1e6)
        line = [0, top * 1.1]
        axes[0].plot(line, line, "k-", lw=0.8)
        axes[0].fill_between(
            line, [0.8 * v for v in line], [1.2 * v for v in line], color="grey", alpha=0.15, label="within 20 %"
        )
        axes[0].set_xlabel("measured peak MB (over process baseline)")
        axes[0].set_ylabel("predicted peak MB")
        axes[0].set_title("memory model: o ExecuTorch, s ONNX Runtime; red run, orange load")
        axes[0].legend(fontsize=7)
        for data_name, groups in (("an4", ("all", "female", "male")), ("english_misc", ("all",))):
            for group in groups:
                points = []
                for frames in FP_CONTEXTS:
                    records = dict(self.rows(f"context/{data_name}/{frames}")).get(f"context/{data_name}/{frames}")
                    r = next((r for r in records or [] if r["metric"]["name"] == "wer" and r["group"] == group), None)
                    if r:
                        points.append((frames / 100, 100 * r["metric"]["value"]))
                if points:
                    axes[1].plot(*zip(*points), "-o", label=f"{data_name} {group}")
        axes[1].set_xlabel("audio context (s)")
        # log scale: the 5 s context loops into WERs of several hundred percent, which would flatten the
        # 15-30 s points (the ones a budget decision turns on) onto the axis
        axes[1].set_yscale("log")
        axes[1].set_ylabel("WER % (PyTorch FP, log scale)")
        axes[1].set_title("accuracy cost of a shorter audio context")
        axes[1].legend(fontsize=7)
        for ax in axes:
            ax.grid(alpha=0.3)
        save_figure(fig, self.stem.with_suffix(".png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--budget", default="55MB")
    parser.add_argument("--per-gender", type=int, default=20)
    parser.add_argument("--report-only", action="store_true", help="re-render table and plot from the JSON")
    args = parser.parse_args()
    suite = Suite(args)
    if not args.report_only:
        suite.measure()
    write_text(suite.stem.with_suffix(".md"), suite.markdown())
    suite.plot()
    say(f"wrote {suite.stem}.json/.md/.png")


if __name__ == "__main__":
    main()
