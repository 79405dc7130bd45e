"""`edgeasr inspect`: the plan an artifact carries inside it (its decisions: QuantPlan.artifact_plan), as a table."""

from __future__ import annotations

from pathlib import Path

from exporter.quant.plan import QuantPlan, format_plan_table
from runtimes.artifact import read_plan


def describe_artifact(path: Path) -> tuple[dict, list[str]]:
    """(plan dict, lines) read from the artifact itself: a .pte, an .onnx, or a folder holding one."""
    entry, plan = read_plan(path)
    return plan, [f"{entry} ({entry.stat().st_size:,} bytes)", format_plan_table(QuantPlan.from_dict(plan))]
