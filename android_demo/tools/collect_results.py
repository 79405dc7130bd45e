"""Check the phone's benchmark records and add WER per group, in the harness's record schema.

    python android_demo/tools/collect_results.py results/*/records.json \\
        --clips android_demo/app/src/main/assets/clips/manifest.jsonl --out benchmarks/results/android.json

Input: one or more records.json files written by the app's benchmark mode (one per device), each a results
object in the harness's schema (exporter/schemas/bench_result.schema.json), validated with
exporter/bench_schema.py. Then, per run, the per-clip `clip_latency` records' hypotheses are scored against
the clips' reference texts with edgeasr's scorer (exporter/scoring.py: Whisper-normalised, collapsed WER),
and `wer` records are added per group and for "all". The output is one results file of the same schema, so `edgeasr bench`'s report tools read it.
WER is computed here, not on the phone, so phone and host numbers use one normaliser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exporter.bench_schema import load_results, validate_results  # noqa: E402
from exporter.io import write_json  # noqa: E402
from exporter.scoring import score  # noqa: E402
from runtimes.errors import EdgeAsrError  # noqa: E402

RUNTIME = "executorch-android"
CLIP_LATENCY = "clip_latency"
ALL = "all"


def load_records(path: Path) -> list[dict]:
    """The records of one results file from the app, validated against the harness schema."""
    records = load_results(path)["records"]
    if not records:
        raise EdgeAsrError(f"{path}: the results file holds no records")
    return records


def load_references(manifest: Path) -> dict[str, str]:
    references = {}
    for line in Path(manifest).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("text") is not None:
                references[row["id"]] = row["text"]
    return references


def wer_records(records: list[dict], references: dict[str, str]) -> list[dict]:
    """WER per group and overall, per run, from the clip_latency records whose clip has a reference text.

    A new record copies the run's identity (model, runtime, artifact, device, data, run id, timestamp) from
    the run's first clip record, so it lands in the same table row as the phone's speed records."""
    runs: dict[str, list[dict]] = {}
    for record in records:
        extra = record.get("extra", {})
        if record["metric"]["name"] == CLIP_LATENCY and extra.get("clip") in references and "hypothesis" in extra:
            runs.setdefault(record["run_id"], []).append(record)
    out = []
    for scored in runs.values():
        groups: dict[str, list[dict]] = {ALL: scored}
        for record in scored:
            groups.setdefault(record["group"], []).append(record)
        for group, members in groups.items():
            result = score(
                [references[r["extra"]["clip"]] for r in members], [r["extra"]["hypothesis"] for r in members]
            )
            identity = {k: v for k, v in members[0].items() if k not in ("metric", "group", "n", "extra")}
            out.append(
                identity
                | {
                    "metric": {
                        "name": "wer",
                        "value": None if result.wer is None else round(result.wer, 6),
                        "unit": "ratio",
                    },
                    "group": group,
                    "n": len(members),
                    "extra": {
                        "n_words": result.n_tokens,
                        "errors": result.token_errors,
                        "wer_plain": result.wer_plain,
                        "cer": result.cer,
                        "scored_by": "android_demo/tools/collect_results.py",
                    },
                }
            )
    return out


def collect(paths: list[Path], clips_manifest: Path | None) -> dict:
    references = load_references(clips_manifest) if clips_manifest else {}
    combined = []
    for path in paths:
        records = load_records(path)
        combined += records + wer_records(records, references)
    results = {"schema_version": 1, "generated_by": "android_demo/tools/collect_results.py", "records": combined}
    validate_results(results, "the collected results")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", type=Path, help="records.json files from the app")
    parser.add_argument("--clips", type=Path, help="the bundled clips' manifest.jsonl (reference texts)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        combined = collect(args.records, args.clips)
    except EdgeAsrError as exc:
        print(f"collect_results: error: {exc}", file=sys.stderr)
        return 2
    write_json(args.out, combined)
    records = combined["records"]
    added = sum(r["metric"]["name"] == "wer" for r in records)
    print(f"wrote {len(records)} records ({added} WER) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
