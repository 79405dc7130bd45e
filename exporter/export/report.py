"""report.md: what an export made, for a person (export.json holds the same for programs)."""

from __future__ import annotations

from exporter.export.options import ExportOptions
from exporter.export.result import ArtifactResult
from exporter.export.stages import StageTimes, describe_stages
from exporter.memory import MemoryEstimate, format_estimate
from exporter.memory_budget import MemorySettings
from exporter.quant.budget import format_bytes
from exporter.quant.plan import QuantPlan


def render_report(
    options: ExportOptions,
    personalised: bool,
    results: list[tuple[ArtifactResult, QuantPlan]],
    seconds: float,
    stages: StageTimes | None = None,
) -> str:
    budget = options.budget_bytes
    lines = [f"# edgeasr export: {options.model} for {options.target}", ""]
    if personalised:
        lines.append(f"Personalised: calibrated on the user's clips from `{options.calib}`.")
    else:
        lines.append(
            "**Not personalised**: no --calib was given, so scales were calibrated on the generic "
            "synthetic clips shipped with edgeasr."
        )
    lines += [
        "",
        f"Budget: {format_bytes(budget)} (artifact files; tokenizer.json not counted). Export took {seconds:.0f} s.",
        "",
    ]
    if stages is not None:
        lines += [f"Stages: {describe_stages(stages.seconds, stages.peak_rss_mb)}; per artifact below.", ""]
    for result, plan in results:
        status = "within" if result.artifact_bytes <= budget else "OVER"
        lines += [
            f"## {result.format} (`{result.folder}/`)",
            "",
            f"- artifact bytes: {result.artifact_bytes:,} ({status} budget); plan weight bytes: "
            f"{result.plan_bytes:,}; planning attempts: {result.attempts}",
            f"- parity with the simulated plan: {result.parity['matching']}/{result.parity['clips']} "
            f"clips with identical normalised text; word disagreement with the simulation (scoring tokens, "
            f"capped at 1 per clip, mean) {result.parity['transcript_disagreement']}; first-step logits relative max error "
            f"{result.parity['logits_relative_max_error']}",
            *(
                f"- {name} (the client itself) against edgeasr's runner: {check['matching']}/{check['clips']} clips "
                f"with identical normalised text; word disagreement {check['transcript_disagreement']}"
                for name, check in result.parity.get("clients", {}).items()
            ),
            f"- time: {result.seconds:.0f} s ({describe_stages(result.stages, result.stage_peak_rss_mb)})",
            "",
            "| file | bytes |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {size:,} |" for name, size in result.files.items()]
        lines += ["", "| category | bytes |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in plan.totals().items()]
        lines += ["", "Formats: " + ", ".join(f"{k} x{v}" for k, v in sorted(plan.format_counts().items())), ""]
        lines += memory_report(result.memory)
    return "\n".join(lines) + "\n"


def memory_report(memory: dict) -> list[str]:
    if not memory:
        return []
    settings = MemorySettings(**{k: memory["settings"][k] for k in ("n_frames", "attention", "chosen_by")})
    budget = memory["memory_budget_bytes"]
    lines = [
        f"Runtime memory (`memory.json`): {settings.describe()} (chosen by: {settings.chosen_by})"
        + (f"; memory budget {format_bytes(budget)}" if budget else "")
        + ".",
        "",
    ]
    for host, data in memory["estimates"].items():
        where = "ExecuTorch C++ Module / ONNX Runtime on the phone" if host == "android" else "Python runtime"
        lines += [f"Predicted for {host} ({where}):", ""] + format_estimate(MemoryEstimate.from_dict(data)) + [""]
    return lines


def render_lora_report(
    options: ExportOptions, info, results: list[tuple[ArtifactResult, QuantPlan]], seconds: float
) -> str:
    budget = options.budget_bytes
    lines = [
        f"# edgeasr export: {options.model} NF4 + LoRA for {options.target}",
        "",
        f"Adapter: `{options.lora}` (rank {info.lora.rank}, alpha {info.lora.alpha}, targets "
        f"{','.join(info.lora.targets)} in {','.join(info.lora.scope)}; trained on "
        f"{len(info.training.get('clips', []))} clips with {info.training.get('labels')} labels).",
        f"Budget: {format_bytes(budget)} (artifact files, tokenizer.json not counted). Took {seconds:.0f} s.",
        "",
    ]
    for result, plan in results:
        lines += [
            f"## {result.format} (`{result.folder}/`)",
            "",
            f"- artifact bytes: {result.artifact_bytes:,}; base plan weight bytes {plan.total_bytes:,}",
            f"- parity with the PyTorch NF4 + LoRA model: {result.parity['matching']}/{result.parity['clips']} "
            f"clips with identical normalised text, word disagreement (scoring tokens, capped at 1 per clip, "
            f"mean) {result.parity['transcript_disagreement']}, first-step "
            f"logits relative max error {result.parity['logits_relative_max_error']}",
            "",
            "| file | bytes |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {size:,} |" for name, size in result.files.items()]
        lines += ["", "Formats: " + ", ".join(f"{k} x{v}" for k, v in sorted(plan.format_counts().items())), ""]
    return "\n".join(lines) + "\n"
