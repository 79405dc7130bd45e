"""Export a model with `edgeasr export`, record wall time and peak memory, then check on real speech that the
artifact's transcripts match the simulated plan's.

Calibration: 32 unlabelled AN4 train clips (a seeded sample of a user group). Parity set: all of ../shared/data/english_misc
plus the AN4 test split (never calibration clips). Writes benchmarks/results/export_<model>_<format>_<budget>.{json,md}.

    python benchmarks/export_parity.py --model base --target android --budget 80MB
    python benchmarks/export_parity.py --model base --target onnx --budget 50MB
    python benchmarks/export_parity.py --model base --target android --budget 80MB --report-only
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

from exporter.cli import _quiet_libraries  # noqa: E402

_quiet_libraries()

from exporter.audio import load_audio  # noqa: E402
from exporter.data import Dataset, load_dataset  # noqa: E402
from exporter.export import artifact_runner  # noqa: E402
from exporter.io import write_json, write_text  # noqa: E402
from exporter.models import load_whisper  # noqa: E402
from exporter.normalize import normalize  # noqa: E402
from exporter.quant.plan import QuantPlan  # noqa: E402
from exporter.quant.simulate import simulate  # noqa: E402
from exporter.scoring import score, scoring_tokens  # noqa: E402
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
    args = parser.parse_args()
    if args.report_only:
        write_report(RESULTS / f"export_{args.model.replace('.', '_')}_{args.target}_{args.budget}")
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
    subprocess.run([sys.executable, "-m", "exporter", "export", "--model", args.model, "--target", args.target,
                    "--budget", args.budget, "--calib", str(calib), "--out", str(out), "--no-progress"],
                   check=True, cwd=ROOT)
    wall = time.perf_counter() - started
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    bundle = load_whisper(args.model)
    plan = QuantPlan.load(out / "plan.json")
    artifact = artifact_runner(out)
    simulated = TorchRunner(simulate(bundle, plan))
    clips = list(load_dataset(DATA / "english_misc" / "manifest.jsonl")) + [u for u in an4 if u.split == "test"]
    clips = clips[: args.limit] if args.limit else clips
    rows = []
    for utt in clips:
        samples = load_audio(utt.audio_path, expected_rate=utt.sample_rate)
        language = utt.language if bundle.special.is_multilingual else None
        from runtimes.decoding import DecodingOptions

        a = artifact.transcribe(samples, DecodingOptions(language=language))
        s = simulated.transcribe(samples, DecodingOptions(language=language))
        rows.append({"utt_id": utt.utt_id, "reference": utt.transcript, "artifact": a.text, "simulated": s.text,
                     "identical": normalize(a.text) == normalize(s.text),
                     "artifact_s": round(a.timings["total"], 3), "simulated_s": round(s.timings["total"], 3)})
    identical = sum(r["identical"] for r in rows)
    files = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    artifact_bytes = sum(v for k, v in files.items() if k.endswith((".pte", ".onnx")))
    result = {
        "model": args.model, "target": args.target, "budget": args.budget, "artifact_bytes": artifact_bytes,
        "plan_bytes": plan.total_bytes, "formats": plan.format_counts(), "export_wall_s": round(wall, 1),
        "export_peak_rss_mb": round(peak_rss_mb, 1), "parity_clips": len(rows), "identical": identical,
        "identical_share": identical / len(rows),
        "wer_artifact": score([r["reference"] for r in rows], [r["artifact"] for r in rows]).wer,
        "wer_simulated": score([r["reference"] for r in rows], [r["simulated"] for r in rows]).wer,
        "rows": rows,
    }
    stem = RESULTS / f"export_{args.model.replace('.', '_')}_{args.target}_{args.budget}"
    write_json(stem.with_suffix(".json"), result)
    write_report(stem)


def write_report(stem: Path) -> None:
    """The Markdown table, rendered from the stored JSON (so a new view needs no new measurement)."""
    result = json.loads(stem.with_suffix(".json").read_text())
    rows = result["rows"]
    identical = sum(r["identical"] for r in rows)
    # The scorer's view: equal collapsed tokens means the clip's WER is the same for both; punctuation,
    # casing and number formatting ("1, 3, 7" / "One, three, seven") no longer count as a mismatch.
    same_tokens = sum(scoring_tokens(r["artifact"]) == scoring_tokens(r["simulated"]) for r in rows)
    write_text(stem.with_suffix(".md"), "\n".join([
        f"# Export parity: {result['model']}, {result['target']}, budget {result['budget']}", "",
        "Produced by `python benchmarks/export_parity.py` on this 2-core machine (times include contention).", "",
        f"- artifact bytes: {result['artifact_bytes']:,} (plan weights {result['plan_bytes']:,}); "
        f"formats {result['formats']}",
        f"- export wall time: {result['export_wall_s']:.0f} s; peak RSS of the export process: "
        f"{result['export_peak_rss_mb']:.0f} MB",
        f"- transcripts identical to the simulated plan (Whisper-normalised text): {identical}/{len(rows)} "
        f"({100 * identical / len(rows):.1f} %) on english_misc + AN4 test",
        f"- transcripts with identical scoring tokens (collapsed, as WER counts them): {same_tokens}/{len(rows)} "
        f"({100 * same_tokens / len(rows):.1f} %)",
        f"- WER against references: artifact {100 * result['wer_artifact']:.1f} %, simulated "
        f"{100 * result['wer_simulated']:.1f} %", ""]))
    print(stem.with_suffix(".md").read_text())

if __name__ == "__main__":
    main()
