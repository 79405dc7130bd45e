"""`edgeasr export --lora DIR`: the NF4 base plus a speaker's adapters, lowered and verified.

The base is fixed by the adapter (it was trained against that NF4 plan), so there is no budget search: the
artifact is lowered, measured and must fit the budget. Per artifact format (each backend's `lower_lora`):

  onnx  MatMulBnb4 NF4 base + LoRA MatMuls on overridable inputs, plus .onnx_adapter files
        (exporter/lower/onnx_lora.py): numerically the trained model;
  pte   XNNPACK has no NF4: the base is re-quantised per --lora-pte-mode, LoRA branches kept in float32 or
        merged (exporter/lower/executorch_lora.py).

Parity: the artifact must reproduce the transcripts of the PyTorch model the adapter was trained as (the
simulated NF4 base + LoRA), on the user's clips (--calib) or the generic set, within export's tolerances.
Output is staged and renamed into place like `edgeasr export`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from exporter.export.inputs import generic_calibration_set, parity_clips, user_clips
from exporter.export.options import ExportOptions
from exporter.export.parity import check_client, check_parity
from exporter.export.report import render_lora_report
from exporter.export.result import ArtifactResult, artifact_files, artifact_folder, export_summary, seal_artifact
from exporter.export.stages import say
from exporter.io import check_output_folder, staged_dir, write_json, write_text
from exporter.lower.registry import get_backend
from exporter.models import WhisperBundle, load_whisper
from exporter.personalize.base import Nf4Options, nf4_plan
from exporter.personalize.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_adapter_matches, load_adapter
from exporter.personalize.run import adapted_model
from exporter.quant.budget import format_bytes
from exporter.quant.plan import QuantPlan
from exporter.quant.simulate import simulate
from runtimes.artifact import open_artifact
from runtimes.contract import PLAN_FILE, PTE_ADAPTER_FILE, REPORT_FILE, SHERPA_TOKENS_FILE, SUMMARY_FILE
from runtimes.errors import EdgeAsrError
from runtimes.torch_runner import TorchRunner


def lower_lora_artifact(
    fmt: str, lora_bundle, plan: QuantPlan, folder: Path, lora_info: dict, pte_mode: str
) -> tuple[QuantPlan, dict[str, int]]:
    """(the plan the artifact stores, its files and bytes) after lowering with the format's backend."""
    folder.mkdir(parents=True, exist_ok=True)
    stored = get_backend(fmt).lower_lora(lora_bundle, plan, folder, lora_info, pte_mode)
    stored.save(folder / PLAN_FILE)
    return stored, artifact_files(folder)


def write_user_adapter(artifact: str | Path, adapter: str | Path, out_dir: str | Path) -> list[Path]:
    """Another user's adapter files for an existing NF4 + LoRA artifact, without lowering anything: an
    adapter.ptd for its base .pte, .onnx_adapter files for its ONNX pair (both into `out_dir` when the export
    holds both). The adapter must be trained for the artifact's model and NF4 base (for the .pte also its
    rank, alpha, targets and scope); nothing is written otherwise."""
    from runtimes.artifact import artifact_runtimes, locate

    state, info = load_adapter(Path(adapter))
    lora_info = {"model_id": info.model_id, "lora": info.lora.to_dict(), "base": info.base}
    runtimes = [r for r in artifact_runtimes(artifact) if r in ("executorch", "onnx")]
    if not runtimes:
        raise EdgeAsrError(f"{artifact} holds no .pte or ONNX pair to write an adapter for")
    out_dir = check_output_folder(Path(out_dir))
    written = []
    with staged_dir(out_dir) as staging:
        for runtime in runtimes:
            kind, folder = locate(artifact, runtime)
            if runtime == "executorch":
                from exporter.lower.pte_adapter import write_adapter_file
                from runtimes.executorch_runner import read_adapter_contract

                pte = folder / kind.entry_file
                contract = read_adapter_contract(pte)
                if contract is None:
                    raise EdgeAsrError(
                        f"{pte} keeps no adapter apart (a merged --lora-pte-mode, or no LoRA): export the user's "
                        "program with `edgeasr export --lora` instead"
                    )
                write_adapter_file(pte, contract, state, lora_info, staging / PTE_ADAPTER_FILE)
                written.append(out_dir / PTE_ADAPTER_FILE)
            elif (folder / SHERPA_TOKENS_FILE).is_file():
                raise EdgeAsrError(
                    f"{folder} is in sherpa-onnx's layout, whose graphs hold one user's adapter (sherpa binds a "
                    "fixed set of inputs): export each user's pair with `edgeasr export --lora`, or export the "
                    "base with --onnx-layout edgeasr to swap adapter files at run time"
                )
            else:
                from exporter.lower.onnx_lora import write_adapters_for_artifact

                written += [out_dir / p.name for p in write_adapters_for_artifact(folder, state, lora_info, staging)]
    return written


def export_lora(
    options: ExportOptions, out_dir: Path, progress: bool = True, model: WhisperBundle | None = None
) -> dict:
    formats = options.resolved_formats()
    budget = options.budget_bytes
    out_dir = check_output_folder(out_dir)
    state, info = load_adapter(options.lora)
    try:
        base_options = Nf4Options.from_dict(info.base)
    except TypeError as exc:
        raise EdgeAsrError(f"{options.lora}: adapter.json's 'base' is not an NF4 base description ({exc})") from exc
    base_options.validate()
    check_adapter_matches(info, options.model, info.base, str(options.lora))  # the model id must match
    clips_set = user_clips(options.calib, options.speaker) if options.calib else generic_calibration_set()
    clips = parity_clips(clips_set, options.parity_clips, options.seed)  # decoded before the model loads
    started = time.perf_counter()
    say(f"loading {options.model} and the adapter {options.lora}")
    fp = model if model is not None else load_whisper(options.model)
    plan = nf4_plan(fp, base_options)
    lora_bundle = adapted_model(fp, info.lora, 0, state, str(options.lora))
    simulated = simulate(lora_bundle, plan)
    lora_info = {
        "adapter": str(options.lora),
        "model_id": info.model_id,
        "lora": info.lora.to_dict(),
        "base": info.base,
    }

    with staged_dir(out_dir) as staging:
        results = []
        for index, fmt in enumerate(formats):
            folder, label = artifact_folder(staging, index, fmt)
            t0 = time.perf_counter()
            say(f"{fmt}: lowering NF4 + LoRA" + (f" (mode {options.lora_pte_mode})" if fmt == "pte" else ""))
            stored, files = lower_lora_artifact(fmt, lora_bundle, plan, folder, lora_info, options.lora_pte_mode)
            size = get_backend(fmt).budget_bytes(files)
            if size > budget:
                raise EdgeAsrError(
                    f"the {fmt} NF4 + LoRA artifact is {format_bytes(size)}, over the budget "
                    f"{format_bytes(budget)}; the base is fixed by the adapter, so raise the budget"
                    + (" or use --lora-pte-mode branch-int4" if fmt == "pte" else "")
                )
            say(f"{fmt}: parity check on {len(clips)} clips")
            reference = TorchRunner(simulated, framing=get_backend(fmt).framing)  # framed as the artifact's runner
            parity = check_parity(open_artifact(folder), reference, clips, options)
            ours = [row["artifact"] for row in parity["rows"]]
            for client in get_backend(fmt).clients:  # e.g. sherpa-onnx on the sherpa layout
                say(f"{fmt}: parity of {client} with edgeasr's runner on {len(clips)} clips")
                parity.setdefault("clients", {})[client] = check_client(
                    open_artifact(folder, runtime=client), clips, ours, options
                )
            result = ArtifactResult(
                fmt,
                label,
                files,
                stored.total_bytes,
                1,
                parity,
                round(time.perf_counter() - t0, 1),
            )
            results.append((result, stored))
            seal_artifact(folder)
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):  # the training record travels with the artifact
            shutil.copyfile(Path(options.lora) / name, staging / name)
        seconds = time.perf_counter() - started
        details = {"lora": lora_info, "lora_pte_mode": options.lora_pte_mode}
        summary = export_summary(options, True, details, results, seconds)
        write_json(staging / SUMMARY_FILE, summary)
        write_text(staging / REPORT_FILE, render_lora_report(options, info, results, seconds))
    say(f"done in {time.perf_counter() - started:.0f} s: {out_dir}")
    return summary
