"""`edgeasr export`: model + user clips + budget -> verified on-device artifacts, in explicit stages.

1. load      the full-precision model;
2. observe   the user's unlabelled clips (or the generic set shipped in the package: not personalised);
3. plan      per artifact format, a myQASR plan on that backend's ladder whose *artifact file* fits the
             budget (exporter/export/budgeted.py);
4. lower     with the format's backend (exporter/lower/registry.py): ExecuTorch (.pte) and/or ONNX;
5. verify    parity: calibration clips through the artifact and through the simulated plan in PyTorch must
             give the same transcripts (and close first-step logits), else the export fails;
5b. memory  with --memory-budget, the audio context / attention that fit are chosen before lowering
             (exporter.memory_budget) and the lowered artifact's own memory estimate is checked again;
             every artifact gets memory.json (exporter.memory) beside plan.json;
6. write     everything is staged in a temporary folder beside the output and renamed into place at the
             end (exporter.io.staged_dir), so an interrupted or failed export leaves nothing half-written.
"""

from __future__ import annotations

import time
from pathlib import Path

from exporter.export.budgeted import check_reachable, export_artifact
from exporter.export.bundle import bundle_artifacts, check_bundle_folder, check_bundle_formats, check_lora_bundle
from exporter.export.inputs import check_clips, generic_calibration_set, parity_clips, user_clips
from exporter.export.options import ExportOptions
from exporter.export.report import render_report
from exporter.export.result import artifact_folder, export_summary, seal_artifact
from exporter.export.stages import StageTimes, say
from exporter.io import check_output_folder, staged_dir, write_json, write_text
from exporter.lower.registry import get_backend
from exporter.models import WhisperBundle, load_whisper
from exporter.quant.pipeline import observe_user
from runtimes.contract import REPORT_FILE, SUMMARY_FILE
from runtimes.errors import EdgeAsrError


def export(
    options: ExportOptions,
    out_dir: Path,
    progress: bool = True,
    bundle_dir: Path | None = None,
    model: WhisperBundle | None = None,
) -> dict:
    """Run every stage; the finished folder appears at `out_dir` only if all of them succeed.

    With `bundle_dir`, the .pte artifact's files are then copied there too (see `bundle_artifacts`); that
    folder is checked for writability before anything expensive runs. `model`: `options.model` already
    loaded (the fleet's workers load it once for many users); the export does not change it, so each
    user's files are those a fresh `edgeasr export` writes.
    """
    if model is not None and model.model_id != options.model:
        raise ValueError(f"export of {options.model!r} was handed the loaded model {model.model_id!r}")
    if options.lora is not None:  # NF4 base + adapters: the base is fixed by the adapter, no budget search
        from exporter.export.lora import export_lora

        unsupported = [
            flag
            for flag, value in (
                ("--memory-budget", options.memory_budget),
                ("--max-audio-seconds", options.max_audio_seconds),
                ("--attention", options.attention),
            )
            if value is not None
        ]
        if unsupported:
            raise EdgeAsrError(
                f"{', '.join(unsupported)} cannot be combined with --lora yet: NF4 + LoRA exports "
                "keep the 30 s audio context; export without them"
            )
        if bundle_dir is not None:
            check_lora_bundle(options)
            check_bundle_folder(bundle_dir)
        summary = export_lora(options, out_dir, progress, model)
        if bundle_dir is not None:
            _bundle(summary, out_dir, bundle_dir)
        return summary
    formats = options.resolved_formats()
    if bundle_dir is not None:
        check_bundle_formats(formats)
        check_bundle_folder(bundle_dir)
    for fmt in formats:  # a lowering whose packages are missing fails before anything is loaded
        if get_backend(fmt).preflight is not None:
            get_backend(fmt).preflight()
    calib = user_clips(options.calib, options.speaker) if options.calib else None
    started = time.perf_counter()
    out_dir = check_output_folder(out_dir)
    if calib is not None:
        check_clips(calib, options.n_calib, options.parity_clips, options.seed)
    stage = StageTimes()
    say(f"loading {options.model}")
    with stage("load"):
        bundle = model if model is not None else load_whisper(options.model)
    for fmt in formats:  # an impossible budget is reported before any expensive stage
        check_reachable(bundle, fmt, options)
    personalised = calib is not None
    clips_set = calib if calib is not None else generic_calibration_set()
    say(
        f"observing {min(options.n_calib, len(clips_set))} calibration clips "
        f"({'user' if personalised else 'generic, not personalised'})"
    )
    with stage("observe"):
        user = observe_user(bundle, clips_set, options.n_calib, options.seed, progress)
    clips = parity_clips(clips_set, options.parity_clips, options.seed)

    with staged_dir(out_dir) as staging:
        results = []
        for index, fmt in enumerate(formats):
            folder, label = artifact_folder(staging, index, fmt)
            results.append(export_artifact(fmt, bundle, user, options, folder, clips, progress))
            results[-1][0].folder = label
            seal_artifact(folder)
        seconds = time.perf_counter() - started
        source = {"calibration_source": str(options.calib) if calib else "generic"}
        summary = export_summary(options, personalised, source, results, seconds)
        summary["stages"] = stage.seconds  # shared stages; each artifact lists its own
        summary["stage_peak_rss_mb"] = stage.peak_rss_mb
        write_json(staging / SUMMARY_FILE, summary)
        write_text(
            staging / REPORT_FILE,
            render_report(options, personalised, results, seconds, stage),
        )
    say(f"done in {time.perf_counter() - started:.0f} s: {out_dir}")
    if bundle_dir is not None:
        _bundle(summary, out_dir, bundle_dir)
    return summary


def _bundle(summary: dict, out_dir: Path, bundle_dir: Path) -> None:
    copied = bundle_artifacts(out_dir, bundle_dir)
    summary["bundled"] = [str(p) for p in copied]
    say(f"bundled {', '.join(p.name for p in copied)} into {bundle_dir}")
