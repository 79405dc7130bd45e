"""What an export's artifacts came to: where each sits in the output folder, and export.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from exporter.io import write_json
from exporter.lower.backend import Backend
from runtimes.contract import CHECKSUM_FILE, PLAN_FILE
from runtimes.integrity import folder_checksums


@dataclass
class ArtifactResult:
    format: str
    folder: str
    files: dict[str, int]
    plan_bytes: int
    attempts: int
    parity: dict = field(default_factory=dict)
    seconds: float = 0.0
    memory: dict = field(default_factory=dict)  # settings and estimates (exporter.memory), as in memory.json
    stages: dict = field(default_factory=dict)  # seconds of plan / lower / memory / parity (StageTimes)
    stage_peak_rss_mb: dict = field(default_factory=dict)  # peak resident MB in each of those stages

    @property
    def artifact_bytes(self) -> int:
        return Backend.budget_bytes(self.files)


def artifact_files(folder: Path) -> dict[str, int]:
    """Bytes of each file an artifact folder holds (its subfolders and plan.json, a copy of what the
    artifact carries inside, not counted)."""
    skip = (PLAN_FILE, CHECKSUM_FILE)
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name not in skip}


def seal_artifact(folder: Path) -> None:
    """Record the sha256 of every file in the finished artifact folder (runtimes.integrity), so a runner
    refuses a file changed or damaged after the export. Called last, once the folder's files are final."""
    write_json(folder / CHECKSUM_FILE, folder_checksums(folder))


def artifact_folder(staging: Path, index: int, fmt: str) -> tuple[Path, str]:
    """(folder, its name in export.json) of the export's `index`-th format: the first format's files sit at
    the top of the output folder, any other in a subfolder named after its format (runtimes.contract)."""
    return (staging, ".") if index == 0 else (staging / fmt, fmt)


def export_summary(options, personalised: bool, details: dict, results: list, seconds: float) -> dict:
    """export.json's fields shared by both kinds of export; `details` follow `personalised`."""
    return {
        "schema_version": 1,
        "model": options.model,
        "target": options.target,
        "budget_bytes": options.budget_bytes,
        "personalised": personalised,
        **details,
        "options": options.to_dict(),
        "artifacts": [{**asdict(r), "artifact_bytes": r.artifact_bytes} for r, _ in results],
        "seconds": round(seconds, 1),
    }
