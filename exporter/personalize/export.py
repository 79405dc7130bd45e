"""`edgeasr export --lora DIR`: the NF4 base plus a speaker's adapters, lowered and verified.

The base is fixed by the adapter (it was trained against that NF4 plan), so there is no budget search: the
artifact is lowered, measured and must fit the budget. Per artifact format:

  onnx  MatMulBnb4 NF4 base + LoRA MatMuls on overridable inputs, plus .onnx_adapter files
        (exporter/lower/onnx_lora.py): numerically the trained model;
  pte   XNNPACK has no NF4: the base is re-quantised per --lora-pte-mode, LoRA branches kept in float32 or
        merged (exporter/lower/executorch_lora.py).

Parity: the artifact must reproduce the transcripts of the PyTorch model the adapter was trained as (the
simulated NF4 base + LoRA), on the user's clips (--calib) or the generic set, within export's tolerances.
Output is staged and renamed into place like `edgeasr export`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from exporter.audio import load_audio
from exporter.data import load_dataset
from exporter.errors import EdgeAsrError
from exporter.export import (
    ArtifactResult,
    ExportOptions,
    _say,
    artifact_runner,
    bundle_tokenizer,
    check_parity,
    generic_calibration_set,
)
from exporter.io import _umask, write_json, write_text
from exporter.models import load_whisper
from exporter.personalize.base import Nf4Options, nf4_plan
from exporter.personalize.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_adapter_matches, load_adapter
from exporter.personalize.run import adapted_model
from exporter.quant.budget import format_bytes, parse_budget
from exporter.quant.pipeline import select_clips
from exporter.quant.plan import QuantPlan
from exporter.quant.simulate import simulate
from runtimes.torch_runner import TorchRunner


def _lower(fmt: str, lora_bundle, plan: QuantPlan, folder: Path, lora_info: dict, pte_mode: str) -> QuantPlan:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        from exporter.lower.onnx_lora import lower_onnx_lora

        lower_onnx_lora(lora_bundle, plan, folder, lora_info)
        stored = plan
    else:
        from exporter.lower.executorch_lora import lower_executorch_lora

        stored = lower_executorch_lora(lora_bundle, plan, pte_mode, folder / "model.pte")
        shutil.copyfile(bundle_tokenizer(lora_bundle), folder / "tokenizer.json")
    stored.save(folder / "plan.json")
    return stored


def _files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != "plan.json"}


def _report(options: ExportOptions, budget: int, info, results: list[tuple[ArtifactResult, QuantPlan]],
            seconds: float) -> str:
    lines = [f"# edgeasr export: {options.model} NF4 + LoRA for {options.target}", "",
             f"Adapter: `{options.lora}` (rank {info.lora.rank}, alpha {info.lora.alpha}, targets "
             f"{','.join(info.lora.targets)} in {','.join(info.lora.scope)}; trained on "
             f"{len(info.training.get('clips', []))} clips with {info.training.get('labels')} labels).",
             f"Budget: {format_bytes(budget)} (artifact files, tokenizer.json not counted). Took {seconds:.0f} s.", ""]
    for result, plan in results:
        lines += [f"## {result.format} (`{result.folder}/`)", "",
                  f"- artifact bytes: {result.artifact_bytes:,}; base plan weight bytes {plan.total_bytes:,}",
                  f"- parity with the PyTorch NF4 + LoRA model: {result.parity['matching']}/{result.parity['clips']} "
                  f"clips with identical normalised text, word disagreement (scoring tokens, capped at 1 per clip, "
                  f"mean) {result.parity['transcript_disagreement']}, first-step "
                  f"logits relative max error {result.parity['logits_relative_max_error']}",
                  "", "| file | bytes |", "|---|---:|"]
        lines += [f"| {name} | {size:,} |" for name, size in result.files.items()]
        lines += ["", "Formats: " + ", ".join(f"{k} x{v}" for k, v in sorted(plan.format_counts().items())), ""]
    return "\n".join(lines) + "\n"


def export_lora(options: ExportOptions, out_dir: Path, progress: bool = True) -> dict:
    formats = options.resolved_formats()
    budget = parse_budget(options.budget)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise EdgeAsrError(f"output folder {out_dir} exists and is not empty; choose a new one or remove it")
    state, info = load_adapter(options.lora)
    base_options = Nf4Options.from_dict(info.base)
    check_adapter_matches(info, options.model, info.base, str(options.lora))  # the model id must match
    started = time.perf_counter()
    _say(f"loading {options.model} and the adapter {options.lora}")
    fp = load_whisper(options.model)
    plan = nf4_plan(fp, base_options)
    lora_bundle = adapted_model(fp, info.lora, 0, state, str(options.lora))
    reference = TorchRunner(simulate(lora_bundle, plan))
    clips_set = load_dataset(options.calib) if options.calib else generic_calibration_set()
    parity_set = select_clips(clips_set, options.parity_clips, options.seed + 1)
    parity_clips = [load_audio(u.audio_path, expected_rate=u.sample_rate) for u in parity_set]
    lora_info = {"adapter": str(options.lora), "model_id": info.model_id, "lora": info.lora.to_dict(),
                 "base": info.base}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        results = []
        for index, fmt in enumerate(formats):
            folder = staging if index == 0 else staging / fmt
            t0 = time.perf_counter()
            _say(f"{fmt}: lowering NF4 + LoRA" + (f" (mode {options.lora_pte_mode})" if fmt == "pte" else ""))
            stored = _lower(fmt, lora_bundle, plan, folder, lora_info, options.lora_pte_mode)
            files = _files(folder)
            size = sum(v for k, v in files.items() if k != "tokenizer.json")
            if size > budget:
                raise EdgeAsrError(f"the {fmt} NF4 + LoRA artifact is {format_bytes(size)}, over the budget "
                                   f"{format_bytes(budget)}; the base is fixed by the adapter, so raise the budget"
                                   + (" or use --lora-pte-mode branch-int4" if fmt == "pte" else ""))
            _say(f"{fmt}: parity check on {len(parity_clips)} clips")
            parity = check_parity(artifact_runner(folder), reference, parity_clips, options)
            result = ArtifactResult(fmt, "." if index == 0 else fmt, files, stored.total_bytes, 1, parity,
                                    round(time.perf_counter() - t0, 1))
            results.append((result, stored))
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):  # the training record travels with the artifact
            shutil.copyfile(Path(options.lora) / name, staging / name)
        seconds = time.perf_counter() - started
        summary = {
            "schema_version": 1, "model": options.model, "target": options.target, "budget_bytes": budget,
            "personalised": True, "lora": lora_info, "lora_pte_mode": options.lora_pte_mode,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
            "artifacts": [{**asdict(r), "artifact_bytes": r.artifact_bytes} for r, _ in results],
            "seconds": round(seconds, 1),
        }
        write_json(staging / "export.json", summary)
        write_text(staging / "report.md", _report(options, budget, info, results, seconds))
        staging.chmod(0o777 & ~_umask())
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _say(f"done in {time.perf_counter() - started:.0f} s: {out_dir}")
    return summary
