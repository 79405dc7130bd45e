"""`edgeasr inspect`: the plan an artifact carries inside it (its decisions: QuantPlan.artifact_plan), as a table."""

from __future__ import annotations

from pathlib import Path

from exporter.quant.plan import QuantPlan, format_plan_table
from runtimes.artifact import read_plan


def describe_artifact(path: Path) -> tuple[dict, list[str]]:
    """(plan dict, lines) read from the artifact itself: a .pte, an .onnx, or a folder holding one."""
    entry, plan = read_plan(path)
    lines = [f"{entry} ({entry.stat().st_size:,} bytes)"]
    if entry.suffix == ".pte":
        from runtimes.executorch_runner import read_adapter_contract

        contract = read_adapter_contract(entry)
        if contract is not None:
            lora = contract["lora"]
            lines.append(
                f"base program: the LoRA adapter (rank {lora['rank']}, {', '.join(lora['targets'])} in "
                f"{', '.join(lora['scope'])}, {len(contract['tensors'])} tensors) is a separate per-user file, "
                "adapter.ptd"
            )
    return plan, lines + [format_plan_table(QuantPlan.from_dict(plan))]
