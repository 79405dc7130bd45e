"""Export a model with `edgeasr export`, record wall time and peak memory, then check on real speech that the
artifact's transcripts match the simulated plan's.

Calibration: 32 unlabelled AN4 train clips (a seeded sample of a user group). Parity set: all of ../shared/data/english_misc
plus the AN4 test split (never calibration clips). Writes benchmarks/results/export_<model>_<format>_<budget>.{json,md}.

Noise floor: the same simulated plan transcribes the clips a second time with PyTorch's other attention
kernel (eager instead of sdpa: the same arithmetic, float round-off apart). How often the simulation agrees
with itself that way bounds the agreement any runtime can reach with it.

    python benchmarks/export_parity.py --model base --target android --budget 80MB
    python benchmarks/export_parity.py --model base --target onnx --budget 50MB
    python benchmarks/export_parity.py --model base --target android --budget 80MB --report-only
    python benchmarks/export_parity.py --model base --target android --budget 80MB --noise-floor-only PLAN.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.logs import quiet_libraries  # noqa: E402

quiet_libraries()

from exporter.data import load_dataset  # noqa: E402
from exporter.export import describe_stages, stage_values  # noqa: E402
from exporter.io import write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.normalize import normalize  # noqa: E402
from exporter.quant.plan import QuantPlan  # noqa: E402
from exporter.quant.simulate import simulate  # noqa: E402
from exporter.scoring import score, scoring_tokens  # noqa: E402
from runtimes.artifact import open_artifact  # noqa: E402
from runtimes.audio import load_audio  # noqa: E402
from runtimes.decoding import DecodingOptions  # noqa: E402
from runtimes.torch_runner import TorchRunner  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--target", default="android", choices=["android", "onnx"])
    parser.add_argument("--budget", default="80MB")
    parser.add_argument("--limit", type=int, help="parity clips (default: all)")
    parser.add_argument("--report-only", action="store_true", help="re-render the Markdown from the stored JSON")
    parser.add_argument(
        "--noise-floor-only",
        type=Path,
        metavar="PLAN",
        help="add the noise floor to the stored JSON, from the plan.json of that run's export",
    )
    args = parser.parse_args()
    stem = RESULTS / f"export_{args.model.replace('.', '_')}_{args.target}_{args.budget}"
    if args.report_only:
        write_report(stem)
        return
    if args.noise_floor_only:
        add_noise_floor(stem, args.noise_floor_only)
        write_report(stem)
        return

    an4 = load_dataset(DATA / "an4" / "manifest.jsonl")
    work = Path(tempfile.mkdtemp(prefix="edgeasr-bench-"))
    # The user's clips as a folder of (linked) audio files, as an app developer would pass them.
    calib = work / "calib"
    calib.mkdir()
    for u in an4:
        if u.split == "train":
            (calib / u.audio_path.name).symlink_to(u.audio_path)
    out = work / "artifact"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "export",
            "--model",
            args.model,
            "--target",
            args.target,
            "--budget",
            args.budget,
            "--calib",
            str(calib),
            "--out",
            str(out),
            "--no-progress",
        ],
        check=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - started
    # ru_maxrss is in KiB on Linux; report 10^6-byte MB like every other result file
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e6

    bundle = load_whisper(args.model)
    plan = QuantPlan.load(out / "plan.json")
    artifact = open_artifact(out)
    simulated = TorchRunner(simulate(bundle, plan))
    floor = floor_runner(bundle, plan)
    rows = []
    for utt in parity_clips(args.limit):
        a, s, eager = (transcribe(runner, utt, bundle) for runner in (artifact, simulated, floor))
        rows.append(
            {
                "utt_id": utt.utt_id,
                "reference": utt.transcript,
                "artifact": a.text,
                "simulated": s.text,
                "simulated_eager": eager.text,
                "identical": normalize(a.text) == normalize(s.text),
                "artifact_s": round(a.timings["total"], 3),
                "simulated_s": round(s.timings["total"], 3),
            }
        )
    identical = sum(r["identical"] for r in rows)
    summary = json.loads((out / "export.json").read_text())
    stages, stage_peaks = stage_values(summary), stage_values(summary, "stage_peak_rss_mb")
    files = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    artifact_bytes = sum(v for k, v in files.items() if k.endswith((".pte", ".onnx")))
    result = {
        "model": args.model,
        "target": args.target,
        "budget": args.budget,
        "artifact_bytes": artifact_bytes,
        "plan_bytes": plan.total_bytes,
        "formats": plan.format_counts(),
        "export_wall_s": round(wall, 1),
        "export_peak_rss_mb": round(peak_rss_mb, 1),
        "export_stages_s": stages,
        "export_stage_peak_rss_mb": stage_peaks,
        "parity_clips": len(rows),
        "identical": identical,
        "identical_share": identical / len(rows),
        "wer_artifact": score([r["reference"] for r in rows], [r["artifact"] for r in rows]).wer,
        "wer_simulated": score([r["reference"] for r in rows], [r["simulated"] for r in rows]).wer,
        "rows": rows,
    }
    write_json(stem.with_suffix(".json"), result)
    write_report(stem)


def parity_clips(limit: int | None = None) -> list:
    an4 = load_dataset(DATA / "an4" / "manifest.jsonl")
    clips = list(load_dataset(DATA / "english_misc" / "manifest.jsonl")) + [u for u in an4 if u.split == "test"]
    return clips[:limit] if limit else clips


def transcribe(runner, utt, bundle):
    """One parity clip through one runner, in the clip's language where the model is multilingual."""
    samples = load_audio(utt.audio_path, expected_rate=utt.sample_rate)
    return runner.transcribe(
        samples, DecodingOptions(language=utt.language if bundle.special.is_multilingual else None)
    )


def floor_runner(bundle, plan: QuantPlan) -> TorchRunner:
    """The simulated plan with eager attention (the bundle's model runs sdpa)."""
    floor = simulate(bundle, plan)  # its model is a copy, with its own config
    floor.model.config._attn_implementation = "eager"
    return TorchRunner(floor)


def add_noise_floor(stem: Path, plan_path: Path) -> None:
    """Transcribe a stored run's clips with its plan's eager-attention simulation, and store the texts."""
    result = json.loads(stem.with_suffix(".json").read_text())
    bundle = load_whisper(result["model"])
    floor = floor_runner(bundle, QuantPlan.load(plan_path))
    clips = {u.utt_id: u for u in parity_clips()}
    for row in result["rows"]:
        row["simulated_eager"] = transcribe(floor, clips[row["utt_id"]], bundle).text
    write_json(stem.with_suffix(".json"), result)


def write_report(stem: Path) -> None:
    """The Markdown table, rendered from the stored JSON (so a new view needs no new measurement)."""
    result = json.loads(stem.with_suffix(".json").read_text())
    rows = result["rows"]
    identical = sum(r["identical"] for r in rows)
    # The scorer's view: equal collapsed tokens means the clip's WER is the same for both; punctuation,
    # casing and number formatting ("1, 3, 7" / "One, three, seven") no longer count as a mismatch.
    same_tokens = sum(scoring_tokens(r["artifact"]) == scoring_tokens(r["simulated"]) for r in rows)
    floor = [r for r in rows if "simulated_eager" in r]
    floor_same = sum(normalize(r["simulated_eager"]) == normalize(r["simulated"]) for r in floor)
    floor_line = (
        [
            f"- noise floor: the simulated plan with eager instead of sdpa attention (float round-off "
            f"apart, the same arithmetic) gives identical text to itself on {floor_same}/{len(floor)} "
            f"({100 * floor_same / len(floor):.1f} %) clips"
        ]
        if floor
        else []
    )
    stages, peaks = result.get("export_stages_s"), result.get("export_stage_peak_rss_mb", {})
    stage_text = f" (stages: {describe_stages(stages, peaks)})" if stages else ""
    write_text(
        stem.with_suffix(".md"),
        "\n".join(
            [
                f"# Export parity: {result['model']}, {result['target']}, budget {result['budget']}",
                "",
                "Produced by `python benchmarks/export_parity.py` on this 2-core machine (times include contention).",
                "",
                f"- artifact bytes: {result['artifact_bytes']:,} (plan weights {result['plan_bytes']:,}); "
                f"formats {result['formats']}",
                f"- export wall time: {result['export_wall_s']:.0f} s{stage_text}; peak RSS of the export process: "
                f"{result['export_peak_rss_mb']:.0f} MB",
                f"- transcripts identical to the simulated plan (Whisper-normalised text): {identical}/{len(rows)} "
                f"({100 * identical / len(rows):.1f} %) on english_misc + AN4 test",
                f"- transcripts with identical scoring tokens (collapsed, as WER counts them): {same_tokens}/{len(rows)} "
                f"({100 * same_tokens / len(rows):.1f} %)",
                f"- WER against references: artifact {100 * result['wer_artifact']:.1f} %, simulated "
                f"{100 * result['wer_simulated']:.1f} %",
                *floor_line,
                "",
            ]
        ),
    )
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
