"""Run memory against #25's goal at every whisper.cpp size: the bytes a run adds to its process, against
1.5 x (the artifact's bytes + the KV cache), for the ONNX pair, the .pte and whisper.cpp itself.

Per whisper.cpp size (q4_0, q5_0, q8_0 of benchmarks/results/peers_<model>.json): whisper.cpp's own file
(benchmarks/peer_worker.py), and benchmarks/peers.py's edgeasr exports at its bytes: the onnx target (sherpa
layout, the ONNX runner) and the android target (.pte, run as an app runs it: ExecuTorch's C++ runtime,
`executorch-native`) where that target can meet the size. Each runs in its own process on the peers'
default clips (40 AN4 test + 1 clip of each of 40 speechocean762 speakers), one thread, one round. Run peak =
the process's peak resident set while transcribing minus its baseline (the runtime or library imported, the
clips read, nothing loaded; executorch-native: the worker and the Python side that feeds it, summed). KV
cache = every decoder layer's self-attention keys and values at 448 tokens plus the cross-attention keys and
values over a full 30 s window, in float32 (exporter.memory.kv_cache_bytes), as in benchmarks/pte_memory.py: one
term per model, the same for every system, whatever each holds (whisper.cpp's cache is half precision, and so
are the ONNX pair's cross-attention keys and values).

    python benchmarks/memory_goal.py [--models tiny.en base] [--report-only]
"""

from __future__ import annotations

import argparse

from bench_common import RESULTS, produced_by, say
from clients import SPEECHOCEAN, test_clips
from peer_formats import GGML_QUANTS
from peers import exported, ggml_path, peer_artifacts, run_peer, summarise

from exporter import __version__
from exporter.bench import BenchOptions, bench
from exporter.io import read_json, write_json, write_text
from exporter.memory import WhisperShape, kv_cache_bytes, model_config

GOAL_FACTOR = 1.5  # #25: run peak within 1.5 x (artifact bytes + KV cache)
# target -> (format, runtime that runs it as its client does)
TARGETS = {"onnx": ("onnx", "onnx"), "android": ("pte", "executorch-native")}
MODELS = ["tiny.en", "base"]
MB = 1e6


def whisper_cpp_sizes(model: str) -> dict[str, int]:
    """whisper.cpp's file bytes per quantisation, as benchmarks/peers.py measured them."""
    path = RESULTS / f"peers_{model.replace('.', '_')}.json"
    rows = read_json(path, "a peers results file", "run benchmarks/peers.py first")["rows"]
    sizes = {row["system"].split()[-1]: row["bytes"] for row in rows if row["system"].startswith("whisper.cpp")}
    return {quant: sizes[quant] for quant in GGML_QUANTS if quant in sizes}


def edgeasr_row(model: str, target: str, size: int, clips) -> dict | str:
    """The bench of the export at `size` bytes, or why the target cannot meet it (the export's message)."""
    fmt, runtime = TARGETS[target]
    folder = exported(model, target, fmt, size)
    if isinstance(folder, str):
        return folder
    say(f"{model} {target} at {size / MB:.1f} MB through {runtime}")
    result = bench(BenchOptions(artifact=folder, data=SPEECHOCEAN, runtimes=(runtime,), threads=1), dataset=clips)
    metric = {r["metric"]["name"]: r for r in result.records if r["group"] == "all"}
    value = {name: record["metric"]["value"] for name, record in metric.items()}
    return {
        "system": f"edgeasr {fmt}",
        "runtime": runtime,
        "artifact_bytes": int(value["artifact_bytes"]),
        "run_peak_bytes": int(value["memory_run_peak"]),
        "predicted_run_peak_bytes": int(value["predicted_memory_run_peak"]),
        "load_peak_bytes": int(value["memory_load_peak"]),
        "baseline_bytes": int(value["memory_baseline"]),
        "rtf": value["real_time_factor"],
        "wer": value["wer"],
        "n_words": metric["wer"]["extra"]["n_words"],
    }


def whisper_cpp_row(model: str, quant: str, clips) -> dict:
    from exporter.models import load_whisper

    path = ggml_path(model, quant)
    if not path.is_file():  # written from the same model as the exports (benchmarks/peer_formats.py)
        path = peer_artifacts(model, load_whisper(model), [quant], ct2=False)[f"whisper.cpp {quant}"]
    row = run_peer(f"whisper.cpp {quant}", path, clips, 1, [])
    summary = summarise(row, clips, None)  # as the peers tables score it
    return {
        "system": f"whisper.cpp {quant}",
        "runtime": "whisper.cpp (pywhispercpp)",
        "artifact_bytes": row.bytes,
        "run_peak_bytes": row.run_peak - row.baseline,
        "predicted_run_peak_bytes": None,
        "load_peak_bytes": None,
        "baseline_bytes": row.baseline,
        "rtf": summary["rtf"],
        "wer": summary["wer_all"],
        "n_words": summary["n_words_all"],  # as edgeasr bench counts them: collapsed reference tokens
    }


def measure(args) -> dict:
    clips = test_clips()
    rows, unmet = [], []
    for model in args.models:
        kv = kv_cache_bytes(WhisperShape.from_config(model_config(model)))
        for quant, size in whisper_cpp_sizes(model).items():
            context = {"model": model, "quant": quant, "size_bytes": size, "kv_cache_bytes": kv}
            rows.append({**context, **whisper_cpp_row(model, quant, clips)})
            for target in TARGETS:
                row = edgeasr_row(model, target, size, clips)
                if isinstance(row, str):
                    unmet.append(f"{model} {target} at whisper.cpp {quant}'s {size / MB:.1f} MB: not made, {row}")
                else:
                    rows.append({**context, **row})
    notes = [
        f"{len(clips)} clips (40 AN4 test, 1 clip of each of 40 speechocean762 speakers, seed 0); 1 thread; one "
        "round on the shared 2-core host. edgeasr exports: benchmarks/peers.py's (fill, english_misc "
        "calibration, which is not tested).",
        "KV cache: float32 keys and values of 448 tokens and a 30 s window, the same term for every system "
        "(whisper.cpp holds its cache in half precision, the ONNX pair its cross-attention keys and values).",
        *unmet,
        produced_by("memory_goal.py", {"--models": None if args.models == MODELS else args.models}),
    ]
    return {"generated_by": f"edgeasr {__version__} benchmarks/memory_goal.py", "notes": notes, "rows": rows}


def markdown(data: dict) -> str:
    lines = [
        "# Run memory against 1.5 x (artifact + KV cache), at every whisper.cpp size",
        "",
        *[f"- {note}" for note in data["notes"]],
        "",
        "Peaks are bytes above the process's baseline (the runtime or library imported, nothing loaded). "
        "Predicted: `exporter.memory`'s run peak for the artifact (ONNX: host python; .pte: host native, the "
        "worker). Process peak = baseline + run peak. WER: collapsed, edgeasr's scorer, every system's output "
        "through edgeasr's loop guard (as in benchmarks/peers.py).",
        "",
        "| model | whisper.cpp size | system | artifact MB | KV cache MB | goal MB | run peak MB (pred.) | "
        "within goal | process peak MB | RTF | WER % (n words) |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in data["rows"]:
        goal = GOAL_FACTOR * (row["artifact_bytes"] + row["kv_cache_bytes"])
        run, predicted = row["run_peak_bytes"], row["predicted_run_peak_bytes"]
        within = "yes" if run <= goal else f"no (+{(run - goal) / MB:.0f})"
        lines.append(
            f"| {row['model']} | {row['quant']} ({row['size_bytes'] / MB:.1f} MB) | {row['system']} | "
            f"{row['artifact_bytes'] / MB:.1f} | {row['kv_cache_bytes'] / MB:.1f} | {goal / MB:.0f} | "
            f"{run / MB:.0f}{'' if predicted is None else f' ({predicted / MB:.0f})'} | {within} | "
            f"{(row['baseline_bytes'] + run) / MB:.0f} | {row['rtf']:.3f} | "
            f"{100 * row['wer']:.1f} ({row['n_words']}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--report-only", action="store_true", help="re-make the table from the results file")
    args = parser.parse_args()
    stem = RESULTS / "memory_goal"
    if args.report_only:
        data = read_json(stem.with_suffix(".json"), "a memory_goal results file")
    else:
        data = measure(args)
        write_json(stem.with_suffix(".json"), data)
    write_text(stem.with_suffix(".md"), markdown(data))
    say(f"wrote {stem}.json/.md")


if __name__ == "__main__":
    main()
