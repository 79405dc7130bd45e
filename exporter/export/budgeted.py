"""One artifact of an export, fitted to the byte budget: plan, lower, measure, re-plan tighter if over.

The plan is made for the budget minus an allowance for what the file holds beyond the plan's weights
(graph, plan JSON, alignment); the lowered files are measured, and when they come out over the budget the
plan is made again that much tighter. Then the artifact's memory is estimated (memory.json) and its parity
with the simulated plan checked.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from exporter.export.options import ExportOptions
from exporter.export.parity import check_client, check_parity
from exporter.export.result import ArtifactResult, artifact_files
from exporter.export.stages import StageTimes, describe_stages, say
from exporter.io import write_json
from exporter.lower.registry import get_backend
from exporter.memory_budget import MemorySettings, check_artifact, choose_settings, fixed_settings
from exporter.models import WhisperBundle
from exporter.quant.budget import format_bytes
from exporter.quant.gptq import auto_rounding, check_rounding
from exporter.quant.pipeline import PlanOptions, check_plan_budget, make_plan, round_weights
from exporter.quant.plan import QuantPlan
from exporter.quant.simulate import simulate
from runtimes.artifact import open_artifact
from runtimes.audio import FULL_FRAMES
from runtimes.contract import MEMORY_FILE, PLAN_FILE
from runtimes.errors import EdgeAsrError
from runtimes.torch_runner import TorchRunner

# First guess at what an artifact holds beyond the plan's weight bytes (graph, plan JSON, alignment).
OVERHEAD_ALLOWANCE = 400_000
MAX_ATTEMPTS = 3


def check_reachable(bundle: WhisperBundle, fmt: str, options: ExportOptions) -> None:
    """Refuse a budget the format's ladder cannot meet (and, with a memory budget, a memory budget no audio
    context meets), from the model's shapes alone: before any calibration clip is observed."""
    budget = options.budget_bytes
    check_plan_budget(bundle, PlanOptions(target=get_backend(fmt).target, budget=budget), OVERHEAD_ALLOWANCE)
    if options.memory_budget is not None:  # weights fill the size budget, so this is the most they can be
        choose_settings(
            bundle.model.config,
            fmt,
            budget,
            0,
            options.memory_budget_bytes,
            options.max_audio_seconds,
            options.attention,
        )


def lower_artifact(
    fmt: str, bundle: WhisperBundle, plan: QuantPlan, folder: Path, settings: MemorySettings = MemorySettings()
) -> dict[str, int]:
    """Lower `plan` with the format's backend into `folder`, write plan.json; the files and their bytes."""
    check_rounding(bundle.model, plan)
    folder.mkdir(parents=True, exist_ok=True)
    get_backend(fmt).lower(bundle, plan, folder, settings.n_frames, settings.attention)
    plan.save(folder / PLAN_FILE)
    return artifact_files(folder)


def export_artifact(
    fmt: str,
    bundle: WhisperBundle,
    user,
    options: ExportOptions,
    folder: Path,
    parity_clips: list[np.ndarray],
    progress: bool,
) -> tuple[ArtifactResult, QuantPlan]:
    started = time.perf_counter()
    stage = StageTimes()
    budget = options.budget_bytes
    plan_budget = budget - OVERHEAD_ALLOWANCE
    for attempt in range(1, MAX_ATTEMPTS + 1):
        plan_options = PlanOptions(
            target=get_backend(fmt).target,
            budget=plan_budget,
            order=options.order,
            allocation=options.allocation,
            layer_cost=options.layer_cost,
            calibration=options.calibration if user else "minmax",
            seed=options.seed,
        )
        say(f"{fmt}: planning for {format_bytes(plan_budget)} of weights (attempt {attempt})")
        with stage("plan"):
            plan = make_plan(bundle, user, plan_options, progress)
            if options.allocation == "auto":
                say(f"{fmt}: auto allocation ran {plan.allocation} (knapsack where fill reaches the lowest rung)")
            plan.budget_bytes = budget
            # from here on, `rounded` holds the weights whose codes the plan means (GPTQ's grid weights)
            rounding = options.rounding
            if rounding == "auto":  # the generic synthetic clips were never measured as GPTQ's inputs
                rounding = auto_rounding(plan, has_clips=options.calib is not None)
                say(f"{fmt}: auto rounding runs {rounding} (GPTQ where the plan holds 2-bit Linears and --calib)")
            rounded, plan = round_weights(bundle, plan, user, rounding, progress)
            settings = memory_settings(fmt, rounded, plan, options)
        say(f"{fmt}: lowering {plan.format_counts()}, {settings.describe()}")
        for stale in (p for p in folder.glob("*") if p.is_file()):  # an earlier, over-budget attempt
            stale.unlink()
        with stage("lower"):
            files = lower_artifact(fmt, rounded, plan, folder, settings)
        size = get_backend(fmt).budget_bytes(files)
        if size <= budget:
            break
        say(f"{fmt}: artifact is {format_bytes(size)}, over the budget; planning tighter")
        # Below the plan just made, not the budget it was made for: a plan can end well under its budget
        # (allocation moves whole layers), and only a smaller plan makes a smaller file.
        plan_budget = min(plan_budget, plan.total_bytes) - (size - budget) - OVERHEAD_ALLOWANCE // 4
    else:
        raise EdgeAsrError(
            f"could not fit the {fmt} artifact into {format_bytes(budget)} after {MAX_ATTEMPTS} "
            "attempts; raise the budget"
        )
    with stage("memory"):
        memory = check_memory(fmt, rounded, folder, settings, options)
    say(f"{fmt}: parity check on {len(parity_clips)} clips")
    with stage("parity"):
        framing = get_backend(fmt).framing
        simulated = TorchRunner(simulate(rounded, plan), n_frames=settings.n_frames, framing=framing)
        full_precision = TorchRunner(bundle, n_frames=settings.n_frames, framing=framing)
        parity = check_parity(open_artifact(folder), simulated, parity_clips, options, full_precision)
        reference = [row["artifact"] for row in parity["rows"]]
        for client in get_backend(fmt).clients:
            say(f"{fmt}: parity of {client} with edgeasr's runner on {len(parity_clips)} clips")
            parity.setdefault("clients", {})[client] = check_client(
                open_artifact(folder, runtime=client), parity_clips, reference, options, full_precision
            )
    result = ArtifactResult(
        fmt,
        folder.name,
        files,
        plan.total_bytes,
        attempt,
        parity,
        round(time.perf_counter() - started, 1),
        memory,
        stage.seconds,
        stage.peak_rss_mb,
    )
    say(f"{fmt}: done in {result.seconds:.0f} s ({describe_stages(stage.seconds, stage.peak_rss_mb)})")
    return result, plan


def memory_settings(fmt: str, bundle: WhisperBundle, plan: QuantPlan, options: ExportOptions) -> MemorySettings:
    memory_budget = options.memory_budget_bytes
    if memory_budget is None:
        return fixed_settings(fmt, options.max_audio_seconds, options.attention)
    largest = max((layer.bytes for layer in plan.layers), default=0)
    settings, estimate = choose_settings(
        bundle.model.config, fmt, plan.total_bytes, largest, memory_budget, options.max_audio_seconds, options.attention
    )
    say(
        f"{fmt}: predicted peak {format_bytes(estimate.peak_bytes)} with {settings.describe()} "
        f"(memory budget {format_bytes(memory_budget)})"
    )
    if settings.n_frames < FULL_FRAMES:
        # Measured, not assumed: Whisper was trained on 30 s windows, and even the FP model loses accuracy
        # at shorter contexts (benchmarks/results/memory_controls_tiny_en.md).
        say(
            f"{fmt}: warning: the memory budget needs a {settings.audio_seconds:g} s audio context; Whisper "
            "transcribes worse with less than its 30 s window (see the README's memory controls results). "
            "Check WER with `edgeasr bench` before shipping, or raise --memory-budget"
        )
    return settings


def check_memory(
    fmt: str, bundle: WhisperBundle, folder: Path, settings: MemorySettings, options: ExportOptions
) -> dict:
    """The lowered artifact's own memory estimate, checked against the budget; written as memory.json."""
    estimates = check_artifact(folder, fmt, bundle.model.config, options.memory_budget_bytes)
    memory = {
        "schema_version": 1,
        "settings": settings.to_dict(),
        "memory_budget_bytes": options.memory_budget_bytes,
        "estimates": {host: e.to_dict() for host, e in estimates.items()},
    }
    write_json(folder / MEMORY_FILE, memory)
    return memory
