"""Check the phone's benchmark records and add WER per group, in the harness's record schema.

    python android_demo/tools/collect_results.py results/*/records.json \\
        --clips android_demo/app/src/main/assets/clips/manifest.jsonl --out benchmarks/results/android.json

Input: one or more records.json files written by the app's benchmark mode (one per device). Each record is
validated against the schema (android_demo/README.md, "Benchmark results"); then, per file, the per-clip
`latency_ms` records' hypotheses are scored against the clips' reference texts with edgeasr's scorer
(exporter/scoring.py: Whisper-normalised, collapsed WER) and `wer` records are added per group and for
"all". WER is computed here, not on the phone, so phone and host numbers use one normaliser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exporter.errors import EdgeAsrError  # noqa: E402
from exporter.io import write_json  # noqa: E402
from exporter.scoring import score  # noqa: E402

SCHEMA_VERSION = 1
RUNTIME = "executorch-android"
FIELDS = {"schema_version": int, "model": str, "runtime": str, "artifact": dict, "device": str, "metric": str,
          "value": (int, float), "unit": str, "group": str, "n": int, "timestamp": str}
ALL = "all"


def validate_record(record: object, where: str) -> dict:
    if not isinstance(record, dict):
        raise EdgeAsrError(f"{where}: a record must be a JSON object")
    for key, kind in FIELDS.items():
        if key not in record:
            raise EdgeAsrError(f"{where}: record lacks {key!r}")
        if not isinstance(record[key], kind) or isinstance(record[key], bool):
            raise EdgeAsrError(f"{where}: {key!r} has the wrong type ({type(record[key]).__name__})")
    if record["schema_version"] != SCHEMA_VERSION:
        raise EdgeAsrError(f"{where}: schema_version {record['schema_version']} is not {SCHEMA_VERSION}")
    artifact = record["artifact"]
    if not isinstance(artifact.get("file"), str) or len(str(artifact.get("sha256", ""))) != 64:
        raise EdgeAsrError(f"{where}: artifact must hold a file name and a 64-hex sha256")
    if record["n"] < 1:
        raise EdgeAsrError(f"{where}: n must be at least 1")
    return record


def load_records(path: Path) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgeAsrError(f"cannot read benchmark records {path}: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise EdgeAsrError(f"{path}: expected a non-empty JSON list of records")
    return [validate_record(r, f"{path} record {i}") for i, r in enumerate(data)]


def load_references(manifest: Path) -> dict[str, str]:
    references = {}
    for line in Path(manifest).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("text") is not None:
                references[row["id"]] = row["text"]
    return references


def wer_records(records: list[dict], references: dict[str, str]) -> list[dict]:
    """WER per group and overall from the per-clip records that have a reference text."""
    per_clip = [r for r in records if r["metric"] == "latency_ms" and "hypothesis" in r.get("extra", {})]
    scored = [r for r in per_clip if r["extra"].get("clip") in references]
    if not scored:
        return []
    template = scored[0]
    groups: dict[str, list[dict]] = {ALL: scored}
    for record in scored:
        groups.setdefault(record["group"], []).append(record)
    out = []
    for group, members in groups.items():
        result = score([references[r["extra"]["clip"]] for r in members], [r["extra"]["hypothesis"] for r in members])
        if result.wer is None:
            continue
        out.append({key: template[key] for key in FIELDS} | {
            "metric": "wer", "value": round(result.wer, 6), "unit": "ratio", "group": group, "n": len(members)})
    return out


def collect(paths: list[Path], clips_manifest: Path | None) -> list[dict]:
    references = load_references(clips_manifest) if clips_manifest else {}
    combined = []
    for path in paths:
        records = load_records(path)
        combined += records + wer_records(records, references)
    return combined


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
    added = sum(r["metric"] == "wer" for r in combined)
    print(f"wrote {len(combined)} records ({added} WER) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
