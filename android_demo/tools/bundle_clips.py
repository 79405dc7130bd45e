"""Put benchmark clips into the Android app's assets: 16 kHz PCM16 WAVs plus clips/manifest.jsonl.

    python android_demo/tools/bundle_clips.py --data ../shared/data/english_misc/manifest.jsonl \\
        --out android_demo/app/src/main/assets/clips --group-by gender --limit 12

Each manifest line is {"id", "file", "group", "text"} (text only where the data set has a transcript); the
app's benchmark mode (BenchmarkMode.kt) runs every clip and reports latency per group, and
collect_results.py turns the phone's hypotheses into WER per group against these texts. Clips are read with
runtimes.audio.load_audio (any rate, resampled to 16 kHz), because the app itself does not resample. The
folder is rebuilt in a staging folder and swapped in, so a failed run leaves the previous clips intact.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exporter.data import load_dataset  # noqa: E402
from runtimes.audio import SAMPLE_RATE, load_audio  # noqa: E402
from runtimes.errors import EdgeAsrError  # noqa: E402

RESERVED_GROUP = "all"  # the app's name for the whole set


def bundle_clips(
    data: Path, out: Path, group_by: str = "gender", limit: int | None = None, split: str | None = None
) -> list[dict]:
    import soundfile as sf

    dataset = load_dataset(data).filter(split=split).head(limit)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    rows = []
    try:
        for utterance in dataset:
            group = utterance.group(group_by)
            if group == RESERVED_GROUP:
                raise EdgeAsrError(f"{utterance.utt_id}: group name {RESERVED_GROUP!r} is reserved for the whole set")
            samples = load_audio(utterance.audio_path, expected_rate=utterance.sample_rate)
            name = f"{utterance.utt_id}.wav"
            sf.write(staging / name, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            row = {"id": utterance.utt_id, "file": name, "group": group}
            if utterance.transcript is not None:
                row["text"] = utterance.transcript
            rows.append(row)
        (staging / "manifest.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
        staging.chmod(0o755)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of audio or .jsonl/.csv manifest")
    parser.add_argument("--out", type=Path, required=True, help="e.g. android_demo/app/src/main/assets/clips")
    parser.add_argument("--group-by", default="gender", choices=["gender", "speaker", "language", "split"])
    parser.add_argument("--limit", type=int, help="only the first N clips")
    parser.add_argument("--split", help="only clips of this split")
    args = parser.parse_args(argv)
    try:
        rows = bundle_clips(args.data, args.out, args.group_by, args.limit, args.split)
    except EdgeAsrError as exc:
        print(f"bundle_clips: error: {exc}", file=sys.stderr)
        return 2
    groups = sorted({r["group"] for r in rows})
    print(f"wrote {len(rows)} clips ({', '.join(groups)}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
