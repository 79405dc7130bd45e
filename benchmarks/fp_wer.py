"""Full-precision WER of the bundled models on real speech, per gender.

Writes benchmarks/results/fp_wer.json (every hypothesis, every score) and fp_wer.md (the table the README
quotes). Usage:  python benchmarks/fp_wer.py [--models tiny.en base] [--limit N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.logs import quiet_libraries  # noqa: E402

quiet_libraries()

import torch  # noqa: E402

from exporter.data import load_dataset  # noqa: E402
from exporter.evaluate import evaluate  # noqa: E402
from exporter.io import write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.scoring import aggregate, count_errors, paired_bootstrap  # noqa: E402
from runtimes.torch_runner import TorchRunner  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SETS = {"an4": DATA / "an4" / "manifest.jsonl", "english_misc": DATA / "english_misc" / "manifest.jsonl"}
RESULTS = ROOT / "benchmarks" / "results"


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}"


def rescore(result: dict) -> None:
    """Recompute every count and score of a stored result from its references and hypotheses."""
    groups: dict[str, list] = {}
    for u in result["utterances"]:
        counts = count_errors(u["reference"], u["hypothesis"], u["language"])
        u["counts"] = dataclasses.asdict(counts)
        groups.setdefault(u["group"], []).append(counts)
    result["groups"] = {g: aggregate(c).to_dict() for g, c in sorted(groups.items())}
    result["overall"] = aggregate([c for cs in groups.values() for c in cs]).to_dict()


def comparisons(runs: list[dict]) -> list[str]:
    """base - tiny.en on the same clips, per data set and gender, with a paired bootstrap interval."""
    by_key = {(r["model"], r["data"]): r["result"] for r in runs}
    lines = [
        "",
        "Paired difference base - tiny.en (WER points, 95 % paired bootstrap interval over clips, "
        "2000 resamples, seed 0; * = interval excludes 0):",
        "",
        "| data | group | n clips | base - tiny.en |",
        "|---|---|---:|---|",
    ]
    from exporter.scoring import UtteranceCounts

    for data in SETS:
        a, b = by_key.get(("tiny.en", data)), by_key.get(("base", data))
        if not (a and b):
            continue
        for group in sorted(a["groups"]) + ["all"]:
            pick = [i for i, u in enumerate(a["utterances"]) if group == "all" or u["group"] == group]
            ca = [UtteranceCounts(**a["utterances"][i]["counts"]) for i in pick]
            cb = [UtteranceCounts(**b["utterances"][i]["counts"]) for i in pick]
            c = paired_bootstrap(ca, cb)
            mark = " *" if c.significant else ""
            lines.append(
                f"| {data} | {group} | {len(pick)} | {100 * c.delta:+.1f} "
                f"[{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}]{mark} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", type=Path, default=RESULTS / "fp_wer")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="no decoding: re-score the hypotheses stored in the results JSON (after a scoring change)",
    )
    args = parser.parse_args()

    if args.rescore:
        runs = json.loads(args.out.with_suffix(".json").read_text())["runs"]
        for run in runs:
            rescore(run["result"])
    else:
        runs = []
        for model_id in args.models:
            runner = TorchRunner(load_whisper(model_id))
            for set_name, manifest in SETS.items():
                dataset = load_dataset(manifest).head(args.limit)
                started = time.perf_counter()
                result = evaluate(runner, dataset, model_id=model_id, group_by="gender")
                runs.append(
                    {
                        "model": model_id,
                        "data": set_name,
                        "wall_s": round(time.perf_counter() - started, 1),
                        "result": result.to_dict(),
                    }
                )

    lines = [
        "# Full-precision WER (PyTorch reference runner, float32, greedy)",
        "",
        "Produced by `python benchmarks/fp_wer.py`. WER = collapsed-token WER (runs of spelled letters and",
        "of digits joined after Whisper normalisation, see `exporter/scoring.py`); plain WER = normalised words;",
        "CER on characters with spaces removed. n = clips / reference words.",
        "",
        "| model | data | group | n clips | n words | WER % | plain WER % | CER % |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        res = run["result"]
        rows = list(res["groups"].items()) + [("all", res["overall"])]
        for group, s in rows:
            lines.append(
                f"| {run['model']} | {run['data']} | {group} | {s['n_clips']} | {s['n_words']} | "
                f"{_pct(s['wer'])} | {_pct(s['wer_plain'])} | {_pct(s['cer'])} |"
            )
    lines += comparisons(runs)
    lines += ["", f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}."]
    write_json(args.out.with_suffix(".json"), {"runs": runs})
    write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
