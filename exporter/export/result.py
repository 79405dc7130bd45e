"""What one lowered artifact of an export came to (a row of export.json)."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.lower.backend import Backend


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
