"""Where an ONNX Runtime session's resident weights go: file bytes, float32 widening, prepacked copies, the rest.

The memory model (exporter/memory.py) counts an ONNX pair's resident weights as twice the files plus the
widened half initializers, a factor read off measurements. This benchmark takes that term apart, per graph
(encoder, decoder) of the peers benchmark's sherpa-layout exports (target onnx, fill, english_misc
calibration) at whisper.cpp q4_0's and q8_0's bytes:

  file          the .onnx file's bytes (codes, half scales and floats, graph);
  folded        the initializers once ORT has optimised the graph (its Casts of half tensors folded into
                float32 copies, the tied projection's reshaped scales, constants), summed from the optimised
                model ORT writes (SessionOptions.optimized_model_filepath);
  no prepack    resident bytes the session adds (RSS after creating it minus before), with prepacking off
                (session.disable_prepacking), so every initializer is held once as ORT keeps it;
  resident      the same with ORT's defaults: kernels that prepack (MatMulNBits) keep their own layout and
                drop the initializer, unless another node reads it (the tied table: GatherBlockQuantized).

Derived: prepack = resident - no prepack (what prepacking adds: the tied table's second copy), and session =
no prepack - folded (graph, kernels, allocations outside the initializers). Each session is created in its
own process with the runner's settings (one thread, ORT's arena and memory patterns off, glibc's mmap
threshold fixed: runtimes/allocator.py), then measured once nothing more is allocated.

    python benchmarks/onnx_resident.py --models tiny.en base
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import RESULTS, produced_by, say, write_notes_and_rows
from onnx_int8_compute import BUDGETS
from peers import exported

from exporter.io import read_json, write_text
from runtimes.contract import DECODER_FILE, ENCODER_FILE
from runtimes.onnx_runner import runner_session

SIZES = {"q4_0": 4, "q8_0": 8}  # whisper.cpp size -> onnx_int8_compute's BUDGETS key


def probe(paths: list[Path], prepack: bool) -> dict:
    """In this (fresh) process: the resident bytes that sessions on `paths`, created one after the other and
    all kept, add once created."""
    from runtimes.allocator import fix_mmap_threshold
    from runtimes.procmem import rss_bytes

    fix_mmap_threshold()
    import onnxruntime  # noqa: F401 - the library's own pages count in the baseline, not in the session

    gc.collect()
    before = rss_bytes()
    config = None if prepack else {"session.disable_prepacking": "1"}
    sessions = [runner_session(path, 1, config=config) for path in paths]  # the runner's own settings
    gc.collect()
    after = rss_bytes()
    del sessions
    return {"resident_bytes": after - before}


def folded_initializer_bytes(path: Path) -> int:
    """Initializer bytes of `path` after ORT's graph optimisation (Casts of half tensors folded)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    with tempfile.TemporaryDirectory() as scratch:
        optimized = Path(scratch) / "optimized.onnx"
        options = ort.SessionOptions()  # the graph optimisations are ORT's defaults, as in the runner's sessions
        options.log_severity_level = 3
        options.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        proto = onnx.load(str(optimized))
    return sum(numpy_helper.to_array(t).nbytes for t in proto.graph.initializer)


def measured(paths: list[Path], prepack: bool = True) -> int:
    command = [sys.executable, __file__, "--prepack", str(int(prepack))] + [f"--probe={path}" for path in paths]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])["resident_bytes"]


def measure(model: str, size: str) -> dict:
    from exporter.memory import estimate_artifact, model_config

    folder = exported(model, "onnx", "onnx", BUDGETS[SIZES[size]][model])
    if isinstance(folder, str):
        raise SystemExit(f"the {model} export at {size}'s bytes failed: {folder}")
    graphs = []
    for name in (ENCODER_FILE, DECODER_FILE):
        path = folder / name
        say(f"{model} {size}: {name}")
        resident, no_prepack = measured([path]), measured([path], prepack=False)
        folded = folded_initializer_bytes(path)
        graphs.append(
            {
                "graph": name,
                "file_bytes": path.stat().st_size,
                "folded_bytes": folded,
                "no_prepack_bytes": no_prepack,
                "resident_bytes": resident,
                "prepack_bytes": resident - no_prepack,
                "session_bytes": no_prepack - folded,
            }
        )
    estimate = estimate_artifact(folder, "onnx", model_config(model))
    say(f"{model} {size}: both sessions in one process")
    return {
        "model": model,
        "size": size,
        "artifact": folder.name,
        "graphs": graphs,
        "pair_resident_bytes": measured([folder / ENCODER_FILE, folder / DECODER_FILE]),
        "predicted_weights_bytes": estimate.weights_bytes,
    }


def markdown(rows: list[dict], notes: list[str]) -> str:
    lines = [
        "# Where an ONNX Runtime session's resident weights go",
        "",
        *notes,
        "",
        "| model | size | graph | file MB | folded MB | no prepack MB | resident MB | prepack MB | session MB | "
        "resident / file |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for g in row["graphs"]:
            lines.append(
                f"| {row['model']} | {row['size']} | {g['graph']} | {g['file_bytes'] / 1e6:.1f} | "
                f"{g['folded_bytes'] / 1e6:.1f} | {g['no_prepack_bytes'] / 1e6:.1f} | {g['resident_bytes'] / 1e6:.1f} | "
                f"{g['prepack_bytes'] / 1e6:+.1f} | {g['session_bytes'] / 1e6:+.1f} | "
                f"{g['resident_bytes'] / g['file_bytes']:.2f} |"
            )
    lines += [
        "",
        "The pair against the memory model's weights term (2 x the files + the widened half initializers):",
        "",
        "| model | size | files MB | resident MB (sessions apart, summed) | resident MB (one process) | predicted MB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        files = sum(g["file_bytes"] for g in row["graphs"])
        apart = sum(g["resident_bytes"] for g in row["graphs"])
        lines.append(
            f"| {row['model']} | {row['size']} | {files / 1e6:.1f} | {apart / 1e6:.1f} | "
            f"{row['pair_resident_bytes'] / 1e6:.1f} | {row['predicted_weights_bytes'] / 1e6:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES), help="whisper.cpp sizes")
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"], choices=sorted(BUDGETS[8]))
    parser.add_argument("--note", action="append", default=[], help="a line to add to the results' notes")
    parser.add_argument("--report-only", action="store_true", help="re-make the table from the results file")
    parser.add_argument("--probe", type=Path, action="append", help=argparse.SUPPRESS)  # sessions, in this process
    parser.add_argument("--prepack", type=int, choices=(0, 1), default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, bool(args.prepack))))
        return
    stem = RESULTS / "onnx_resident"
    if args.report_only:
        data = read_json(stem.with_suffix(".json"), "an onnx_resident results file")
        write_text(stem.with_suffix(".md"), markdown(data["rows"], data["notes"]))
        return
    rows = [measure(model, size) for model in args.models for size in args.sizes]
    notes = [
        "Sherpa-layout pairs from benchmarks/peers.py's exports (target onnx, fill, english_misc calibration) at "
        "whisper.cpp's q4_0 and q8_0 bytes. Per graph, each session in its own process with the runner's "
        "settings (1 thread, arena and memory patterns off, glibc's mmap threshold fixed); resident = RSS after "
        "creating the session minus before (onnxruntime imported); one process: both sessions created in one "
        "process, as the runner holds them. folded: initializers of the graph ORT optimised (half tensors' "
        "Casts folded into float32). prepack = resident - no prepack; session = no prepack - folded. "
        "predicted: exporter.memory's weights term for the pair.",
        *args.note,
        produced_by(
            "onnx_resident.py", {"--models": args.models, "--sizes": args.sizes if args.sizes != list(SIZES) else None}
        ),
    ]
    write_notes_and_rows(stem, {"notes": notes, "rows": rows}, markdown(rows, notes))


if __name__ == "__main__":
    main()
