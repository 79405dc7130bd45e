"""`edgeasr export`: model + user clips + budget -> verified on-device artifacts, in explicit stages.

  1. load      the full-precision model;
  2. observe   the user's unlabelled clips (or the generic set shipped in the package: not personalised);
  3. plan      per artifact format, a myQASR plan on that runtime's ladder whose *artifact file* fits the
               budget: the plan is made for the budget minus an overhead allowance, lowered, measured, and
               re-planned tighter if the files came out over budget;
  4. lower     to ExecuTorch (.pte) and/or ONNX;
  5. verify    parity: calibration clips through the artifact and through the simulated plan in PyTorch must
               give the same transcripts (and close encoder outputs), else the export fails;
  5b. memory  with --memory-budget, the audio context / attention that fit are chosen before lowering
               (exporter.memory_budget) and the lowered artifact's own memory estimate is checked again;
               every artifact gets memory.json (exporter.memory) beside plan.json;
  6. write     everything is staged in a temporary folder beside the output and renamed into place at the
               end, so an interrupted or failed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from exporter.audio import FULL_FRAMES, load_audio, log_mel_frames
from exporter.data import Dataset, load_dataset
from exporter.errors import EdgeAsrError
from exporter.io import _umask, write_json, write_text
from exporter.memory import MemoryEstimate, format_estimate
from exporter.memory_budget import MemorySettings, check_artifact, choose_settings, fixed_settings
from exporter.models import WhisperBundle, load_whisper
from exporter.normalize import normalize
from exporter.procmem import peak_rss_bytes, reset_peak_rss
from exporter.quant.budget import format_bytes, parse_budget
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user, select_clips
from exporter.quant.plan import QuantPlan, format_plan_table
from exporter.quant.simulate import simulate
from exporter.scoring import utterance_counts
from runtimes.torch_runner import TorchRunner

FORMATS = {"pte": "android", "onnx": "onnx"}  # artifact format -> planning target (its ladder)
# What the Android app loads from its assets folder (android_demo/): the program, the tokenizer it decodes
# with, and the plan for display (the app reads the plan it runs from the .pte itself).
BUNDLE_FILES = ("model.pte", "tokenizer.json", "plan.json")
DEFAULT_FORMATS = {"android": ("pte",), "executorch": ("pte",), "onnx": ("onnx",)}
# First guess at what an artifact holds beyond the plan's weight bytes (graph, plan JSON, alignment).
OVERHEAD_ALLOWANCE = 400_000
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ExportOptions:
    model: str = "base"
    target: str = "android"
    budget: str = "80MB"
    formats: tuple[str, ...] = ()
    calib: Path | None = None
    n_calib: int = 32
    order: str = "myqasr"
    calibration: str = "cosine"
    seed: int = 0
    parity_clips: int = 4
    # Parity tolerances. Each XNNPACK layer equals the simulation to float round-off, but the runtimes sum
    # in different orders and the differences flip a few int8 activation codes per layer, which changes a
    # word now and then on hard clips; a runtime that drops scales or mis-packs weights is off by orders of
    # magnitude and produces unrelated text.
    max_transcript_wer: float = 0.35  # artifact vs simulated transcripts: per-clip error rate (capped), mean
    max_logits_error: float = 0.5  # max |logits_artifact - logits_sim| / max |logits_sim|, first step
    max_plan_disagreement: float = 0.5  # beyond this the simulated plan itself has lost the FP transcripts
    memory_budget: str | None = None  # runtime RAM budget (peak, predicted by exporter.memory)
    max_audio_seconds: float | None = None  # audio context of the encoder (None: 30 s, or the budget's choice)
    attention: str | None = None  # ExecuTorch encoder attention, eager or sdpa (None: eager)
    # NF4 + LoRA (exporter/personalize/export.py): an adapter folder from `edgeasr personalize`, and how the
    # .pte carries it (XNNPACK has no NF4; see exporter/lower/executorch_lora.py)
    lora: Path | None = None
    lora_pte_mode: str = "branch-int8"

    def resolved_formats(self) -> tuple[str, ...]:
        if self.target not in DEFAULT_FORMATS:
            raise EdgeAsrError(f"unknown export target {self.target!r}; choose android, executorch or onnx")
        formats = self.formats or DEFAULT_FORMATS[self.target]
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise EdgeAsrError(f"unknown artifact format(s) {', '.join(unknown)}; choose from pte, onnx")
        return tuple(dict.fromkeys(formats))


def artifact_bytes(files: dict[str, int]) -> int:
    """What the budget counts: every artifact file except the tokenizer."""
    return sum(size for name, size in files.items() if name != "tokenizer.json")


class StageTimes:
    """Wall seconds and peak resident memory per export stage, in the order the stages first ran (seconds
    summed, peaks maxed over repeats, such as a re-plan after an over-budget attempt); export.json keeps
    them so a slow or memory-hungry export says which stage it was. Peaks are per stage where the OS can
    reset its high-water mark (Linux), else the process's peak so far."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        reset_peak_rss()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - started, 1)
            self.peak_rss_mb[stage] = max(self.peak_rss_mb.get(stage, 0.0), round(peak_rss_bytes() / 1e6, 1))


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
        return artifact_bytes(self.files)


def check_reachable(bundle: WhisperBundle, target_name: str, weight_budget: int) -> None:
    from exporter.quant.allocate import check_budget, reachable_range
    from exporter.quant.layers import quantisable_layers, unquantised_bytes
    from exporter.quant.targets import get_target

    layers = quantisable_layers(bundle.model)
    target = get_target(target_name)
    lo, hi = reachable_range(layers, target, unquantised_bytes(bundle.model, layers))
    check_budget(weight_budget, lo, hi, target)


def _say(message: str) -> None:
    print(f"[export] {message}", file=sys.stderr, flush=True)


def generic_calibration_set() -> Dataset:
    folder = Path(str(resources.files("exporter").joinpath("assets/generic_calib")))
    return load_dataset(folder)


def _lower(fmt: str, bundle: WhisperBundle, plan: QuantPlan, folder: Path,
           settings: MemorySettings = MemorySettings()) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "pte":
        from exporter.lower.executorch import lower_executorch

        lower_executorch(bundle, plan, folder / "model.pte", settings.n_frames, settings.attention)
        shutil.copyfile(bundle_tokenizer(bundle), folder / "tokenizer.json")
    else:
        from exporter.lower.onnx import lower_onnx

        lower_onnx(bundle, plan, folder, settings.n_frames)
    plan.save(folder / "plan.json")
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name != "plan.json"}


def bundle_tokenizer(bundle: WhisperBundle) -> Path:
    if bundle.folder is None or not (bundle.folder / "tokenizer.json").is_file():
        raise EdgeAsrError(f"model {bundle.model_id} has no tokenizer.json to ship with the artifact")
    return bundle.folder / "tokenizer.json"


def artifact_runner(folder: Path, threads: int | None = None):
    """The runner for an exported folder (ExecuTorch if it holds model.pte, else ONNX)."""
    folder = Path(folder)
    if (folder / "model.pte").is_file():
        from tokenizers import Tokenizer

        from runtimes.executorch_runner import ExecutorchRunner

        tokenizer_path = folder / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise EdgeAsrError(f"{folder} has model.pte but no tokenizer.json")
        return ExecutorchRunner(folder / "model.pte", Tokenizer.from_file(str(tokenizer_path)))
    if (folder / "encoder.onnx").is_file():
        from runtimes.onnx_runner import OnnxRunner

        return OnnxRunner(folder)
    if (folder / "executorch").is_dir() or (folder / "onnx").is_dir():
        return artifact_runner(folder / ("executorch" if (folder / "executorch").is_dir() else "onnx"), threads)
    raise EdgeAsrError(f"{folder} holds no edgeasr artifact (model.pte or encoder.onnx)")


def _first_logits(runner, features: np.ndarray) -> np.ndarray:
    session = runner.start_decoder(runner.encode(features))
    return np.asarray(session.step(runner.special.prompt("en" if runner.special.is_multilingual else None)))


def _disagreement(references: list[str], hypotheses: list[str]) -> float:
    """Mean over clips of min(1, token errors / reference tokens): one looping transcript counts as one
    wrong clip, not as thousands of insertions."""
    rates = []
    for counts in utterance_counts(references, hypotheses):
        errors, total = counts.errors_and_total("wer")
        rates.append(min(1.0, errors / max(total, 1)))
    return float(np.mean(rates)) if rates else 0.0


def check_parity(artifact, simulated: TorchRunner, clips: list[np.ndarray], options: ExportOptions,
                 full_precision: TorchRunner | None = None) -> dict:
    """Same clips through the artifact and the simulated plan; raises when they diverge.

    Two measures: the first decoder step's logits on the first clip (relative max error; float-order
    differences between runtimes flip a few int8 activation codes, so quantised models differ by up to
    ~0.15 here, while a runtime that drops the scales is off by 1e3 and more), and how far the artifact's
    transcripts are from the simulated plan's (per-clip error rate capped at 1, averaged). When they
    diverge and `full_precision` is given, the simulated plan is compared with it too: if the plan itself
    no longer transcribes like the full-precision model, the budget is the problem, not the runtime.
    """
    features = log_mel_frames(clips[0][: simulated.window_samples], simulated.n_mels, simulated.n_frames)
    reference = _first_logits(simulated, features)
    logits_error = float(np.abs(_first_logits(artifact, features) - reference).max() / np.abs(reference).max())
    rows = []
    for samples in clips:
        a, b = artifact.transcribe(samples).text, simulated.transcribe(samples).text
        rows.append({"artifact": a, "simulated": b, "match": normalize(a) == normalize(b)})
    matching = sum(r["match"] for r in rows)
    agreement = _disagreement([r["simulated"] for r in rows], [r["artifact"] for r in rows])
    result = {"clips": len(rows), "matching": matching, "share": matching / len(rows),
              "transcript_disagreement": round(agreement, 4),
              "logits_relative_max_error": round(logits_error, 5), "rows": rows}
    if agreement > options.max_transcript_wer or logits_error > options.max_logits_error:
        if full_precision is not None and logits_error <= options.max_logits_error:
            fp_texts = [full_precision.transcribe(samples).text for samples in clips]
            plan_vs_fp = _disagreement(fp_texts, [r["simulated"] for r in rows])
            result["simulated_vs_full_precision"] = round(plan_vs_fp, 4)
            if plan_vs_fp > options.max_plan_disagreement:
                raise EdgeAsrError(
                    f"the budget leaves a model that no longer transcribes: at this budget the plan's own "
                    f"transcripts differ from the full-precision model's on {100 * plan_vs_fp:.0f} % of words "
                    f"(per clip, capped), so the runtime's small numerical differences decide the text and "
                    f"parity cannot be checked. Raise the budget (or use --calib clips of the user)")
        raise EdgeAsrError(
            f"parity check failed: the artifact's transcripts differ from the simulated plan's on "
            f"{100 * agreement:.0f} % of words (allowed {100 * options.max_transcript_wer:.0f} %) and its "
            f"first-step logits by {logits_error:.3g} relative (allowed {options.max_logits_error}); the runtime "
            "computes something other than the plan, so no artifact was written. Report this with the plan "
            "(edgeasr plan ... --json)")
    return result


def _export_one(fmt: str, bundle: WhisperBundle, user, options: ExportOptions, budget: int, folder: Path,
                parity_clips: list[np.ndarray], progress: bool) -> tuple[ArtifactResult, QuantPlan]:
    started = time.perf_counter()
    stage = StageTimes()
    plan_budget = budget - OVERHEAD_ALLOWANCE
    for attempt in range(1, MAX_ATTEMPTS + 1):
        plan_options = PlanOptions(target=FORMATS[fmt], budget=plan_budget, order=options.order,
                                   calibration=options.calibration if user else "minmax", seed=options.seed)
        _say(f"{fmt}: planning for {format_bytes(plan_budget)} of weights (attempt {attempt})")
        with stage("plan"):
            plan = make_plan(bundle, user, plan_options, progress)
            plan.budget_bytes = budget
            settings = _memory_settings(fmt, bundle, plan, options)
        _say(f"{fmt}: lowering {plan.format_counts()}, {settings.describe()}")
        for stale in (p for p in folder.glob("*") if p.is_file()):  # an earlier, over-budget attempt
            stale.unlink()
        with stage("lower"):
            files = _lower(fmt, bundle, plan, folder, settings)
        size = artifact_bytes(files)
        if size <= budget:
            break
        _say(f"{fmt}: artifact is {format_bytes(size)}, over the budget; planning tighter")
        plan_budget -= size - budget + OVERHEAD_ALLOWANCE // 4
    else:
        raise EdgeAsrError(f"could not fit the {fmt} artifact into {format_bytes(budget)} after {MAX_ATTEMPTS} "
                           "attempts; raise the budget")
    with stage("memory"):
        memory = _check_memory(fmt, bundle, folder, settings, options)
    _say(f"{fmt}: parity check on {len(parity_clips)} clips")
    with stage("parity"):
        simulated = TorchRunner(simulate(bundle, plan), n_frames=settings.n_frames)
        parity = check_parity(artifact_runner(folder), simulated, parity_clips, options,
                              TorchRunner(bundle, n_frames=settings.n_frames))
    result = ArtifactResult(fmt, folder.name, files, plan.total_bytes, attempt, parity,
                            round(time.perf_counter() - started, 1), memory, stage.seconds, stage.peak_rss_mb)
    _say(f"{fmt}: done in {result.seconds:.0f} s ({describe_stages(stage.seconds, stage.peak_rss_mb)})")
    return result, plan


def stage_values(summary: dict, key: str = "stages") -> dict[str, float]:
    """One export.json's per-stage `key` ("stages" or "stage_peak_rss_mb") as one mapping: the shared stages,
    then each artifact's, named `format.stage` (e.g. `pte.lower`); empty for an export that predates them."""
    values = dict(summary.get(key, {}))
    for artifact in summary.get("artifacts", []):
        values.update({f"{artifact['format']}.{name}": v for name, v in artifact.get(key, {}).items()})
    return values


def describe_stages(seconds: dict[str, float], peaks: dict[str, float] | None = None) -> str:
    peaks = peaks or {}
    return ", ".join(f"{name} {value:.0f} s" + (f" / {peaks[name]:,.0f} MB peak" if name in peaks else "")
                     for name, value in seconds.items())


def _memory_budget(options: ExportOptions) -> int | None:
    return None if options.memory_budget is None else parse_budget(options.memory_budget)


def _memory_settings(fmt: str, bundle: WhisperBundle, plan: QuantPlan, options: ExportOptions) -> MemorySettings:
    memory_budget = _memory_budget(options)
    if memory_budget is None:
        return fixed_settings(fmt, options.max_audio_seconds, options.attention)
    largest = max((layer.bytes for layer in plan.layers), default=0)
    settings, estimate = choose_settings(bundle.model.config, fmt, plan.total_bytes, largest, memory_budget,
                                         options.max_audio_seconds, options.attention)
    _say(f"{fmt}: predicted peak {format_bytes(estimate.peak_bytes)} with {settings.describe()} "
         f"(memory budget {format_bytes(memory_budget)})")
    if settings.n_frames < FULL_FRAMES:
        # Measured, not assumed: Whisper was trained on 30 s windows, and even the FP model loses accuracy
        # at shorter contexts (benchmarks/results/memory_controls_tiny_en.md).
        _say(f"{fmt}: warning: the memory budget needs a {settings.audio_seconds:g} s audio context; Whisper "
             "transcribes worse with less than its 30 s window (see the README's memory controls results). "
             "Check WER with `edgeasr bench` before shipping, or raise --memory-budget")
    return settings


def _check_memory(fmt: str, bundle: WhisperBundle, folder: Path, settings: MemorySettings,
                  options: ExportOptions) -> dict:
    """The lowered artifact's own memory estimate, checked against the budget; written as memory.json."""
    estimates = check_artifact(folder, fmt, bundle.model.config, _memory_budget(options))
    memory = {"schema_version": 1, "settings": settings.to_dict(), "memory_budget_bytes": _memory_budget(options),
              "estimates": {host: e.to_dict() for host, e in estimates.items()}}
    write_json(folder / "memory.json", memory)
    return memory


def _report(options: ExportOptions, budget: int, personalised: bool, calib_source: str,
            results: list[tuple[ArtifactResult, QuantPlan]], seconds: float,
            stages: StageTimes | None = None) -> str:
    lines = [f"# edgeasr export: {options.model} for {options.target}", ""]
    if personalised:
        lines.append(f"Personalised: calibrated on the user's clips from `{calib_source}`.")
    else:
        lines.append("**Not personalised**: no --calib was given, so scales were calibrated on the generic "
                     "synthetic clips shipped with edgeasr.")
    lines += ["", f"Budget: {format_bytes(budget)} (artifact files; tokenizer.json not counted). "
                  f"Export took {seconds:.0f} s.", ""]
    if stages is not None:
        lines += [f"Stages: {describe_stages(stages.seconds, stages.peak_rss_mb)}; per artifact below.", ""]
    for result, plan in results:
        status = "within" if result.artifact_bytes <= budget else "OVER"
        lines += [f"## {result.format} (`{result.folder}/`)", "",
                  f"- artifact bytes: {result.artifact_bytes:,} ({status} budget); plan weight bytes: "
                  f"{result.plan_bytes:,}; planning attempts: {result.attempts}",
                  f"- parity with the simulated plan: {result.parity['matching']}/{result.parity['clips']} "
                  f"clips with identical normalised text; word disagreement with the simulation (scoring tokens, "
                  f"capped at 1 per clip, mean) {result.parity['transcript_disagreement']}; first-step logits relative max error "
                  f"{result.parity['logits_relative_max_error']}",
                  f"- time: {result.seconds:.0f} s ({describe_stages(result.stages, result.stage_peak_rss_mb)})",
                  "", "| file | bytes |", "|---|---:|"]
        lines += [f"| {name} | {size:,} |" for name, size in result.files.items()]
        lines += ["", "| category | bytes |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in plan.totals().items()]
        lines += ["", "Formats: " + ", ".join(f"{k} x{v}" for k, v in sorted(plan.format_counts().items())), ""]
        lines += _memory_report(result.memory)
    return "\n".join(lines) + "\n"


def _memory_report(memory: dict) -> list[str]:
    if not memory:
        return []
    settings = MemorySettings(**{k: memory["settings"][k] for k in ("n_frames", "attention", "chosen_by")})
    budget = memory["memory_budget_bytes"]
    lines = [f"Runtime memory (`memory.json`): {settings.describe()} (chosen by: {settings.chosen_by})"
             + (f"; memory budget {format_bytes(budget)}" if budget else "") + ".", ""]
    for host, data in memory["estimates"].items():
        where = "ExecuTorch C++ Module / ONNX Runtime on the phone" if host == "android" else "Python runtime"
        lines += [f"Predicted for {host} ({where}):", ""] + format_estimate(MemoryEstimate.from_dict(data)) + [""]
    return lines


def export(options: ExportOptions, out_dir: Path, progress: bool = True, bundle_dir: Path | None = None) -> dict:
    """Run every stage; the finished folder appears at `out_dir` only if all of them succeed.

    With `bundle_dir`, the .pte artifact's files are then copied there too (see `bundle_artifacts`); that
    folder is checked for writability before anything expensive runs.
    """
    if options.lora is not None:  # NF4 base + adapters: the base is fixed by the adapter, no budget search
        from exporter.personalize.export import export_lora

        unsupported = [flag for flag, value in (("--bundle", bundle_dir), ("--memory-budget", options.memory_budget),
                                                ("--max-audio-seconds", options.max_audio_seconds),
                                                ("--attention", options.attention)) if value is not None]
        if unsupported:
            raise EdgeAsrError(f"{', '.join(unsupported)} cannot be combined with --lora yet: NF4 + LoRA exports "
                               "keep the 30 s audio context; export without them, then copy the .pte by hand")

        return export_lora(options, out_dir, progress)
    formats = options.resolved_formats()
    if bundle_dir is not None:
        if "pte" not in formats:
            raise EdgeAsrError("--bundle copies the ExecuTorch (.pte) artifact into the Android app, but this "
                               f"export makes only {', '.join(formats)}; add --formats pte")
        check_bundle_folder(bundle_dir)
    budget = parse_budget(options.budget)
    calib = load_dataset(options.calib) if options.calib else None
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise EdgeAsrError(f"output folder {out_dir} exists and is not empty; choose a new one or remove it")
    stage = StageTimes()
    _say(f"loading {options.model}")
    with stage("load"):
        bundle = load_whisper(options.model)
    for fmt in formats:  # an impossible budget is reported before any expensive stage
        check_reachable(bundle, FORMATS[fmt], budget - OVERHEAD_ALLOWANCE)
        if options.memory_budget is not None:  # weights fill the size budget, so this is the most they can be
            choose_settings(bundle.model.config, fmt, budget, 0, _memory_budget(options),
                            options.max_audio_seconds, options.attention)
    personalised = calib is not None
    clips_set = calib if calib is not None else generic_calibration_set()
    _say(f"observing {min(options.n_calib, len(clips_set))} calibration clips "
         f"({'user' if personalised else 'generic, not personalised'})")
    with stage("observe"):
        user = observe_user(bundle, clips_set, options.n_calib, options.seed, progress)
    parity_set = select_clips(clips_set, options.parity_clips, options.seed + 1)
    parity_clips = [load_audio(u.audio_path, expected_rate=u.sample_rate) for u in parity_set]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        results = []
        for index, fmt in enumerate(formats):
            # the first format's files sit at the top of the output folder, any other in a subfolder
            folder = staging if index == 0 else staging / fmt
            results.append(_export_one(fmt, bundle, user, options, budget, folder, parity_clips, progress))
            results[-1][0].folder = "." if index == 0 else fmt
        seconds = time.perf_counter() - started
        summary = {
            "schema_version": 1, "model": options.model, "target": options.target, "budget_bytes": budget,
            "personalised": personalised, "calibration_source": str(options.calib) if calib else "generic",
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
            "artifacts": [{**asdict(r), "artifact_bytes": r.artifact_bytes} for r, _ in results],
            "seconds": round(seconds, 1),
            "stages": stage.seconds,  # shared stages; each artifact lists its own
            "stage_peak_rss_mb": stage.peak_rss_mb,
        }
        write_json(staging / "export.json", summary)
        write_text(staging / "report.md", _report(options, budget, personalised,
                                                    str(options.calib), results, seconds, stage))
        staging.chmod(0o777 & ~_umask())  # mkdtemp made it private; the output gets normal permissions
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _say(f"done in {time.perf_counter() - started:.0f} s: {out_dir}")
    if bundle_dir is not None:
        copied = bundle_artifacts(out_dir, bundle_dir)
        summary["bundled"] = [str(p) for p in copied]
        _say(f"bundled {', '.join(p.name for p in copied)} into {bundle_dir}")
    return summary


def check_bundle_folder(bundle_dir: Path) -> Path:
    """Create `bundle_dir` if needed and prove it is writable, before any expensive stage runs."""
    bundle_dir = Path(bundle_dir)
    try:
        bundle_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgeasr-bundle-probe.", dir=bundle_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EdgeAsrError(f"cannot write the Android bundle to {bundle_dir}: {exc.strerror or exc}; pass a "
                           "writable folder to --bundle (e.g. android_demo/app/src/main/assets/)") from exc
    return bundle_dir


def _pte_folder(export_dir: Path) -> Path:
    summary_path = export_dir / "export.json"
    if not summary_path.is_file():
        raise EdgeAsrError(f"{export_dir} is not an edgeasr export folder (no export.json)")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    folders = [a["folder"] for a in summary.get("artifacts", []) if a.get("format") == "pte"]
    if not folders:
        raise EdgeAsrError(f"{export_dir} holds no ExecuTorch (.pte) artifact to bundle; export with --formats pte")
    return export_dir / folders[0]


def bundle_artifacts(export_dir: Path, bundle_dir: Path) -> list[Path]:
    """Copy the .pte artifact's files into an app's assets folder (e.g. android_demo/app/src/main/assets/).

    Every file is first copied beside its destination under a temporary name; only when all copies
    succeeded are they renamed into place, so the app never sees a new model.pte with an old tokenizer.
    Returns the destination paths.
    """
    source = _pte_folder(Path(export_dir))
    missing = [name for name in BUNDLE_FILES if not (source / name).is_file()]
    if missing:
        raise EdgeAsrError(f"{source} lacks {', '.join(missing)}; re-run the export")
    bundle_dir = check_bundle_folder(bundle_dir)
    staged: list[tuple[Path, Path]] = []
    try:
        for name in BUNDLE_FILES:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=bundle_dir)
            os.close(fd)
            staged.append((Path(tmp), bundle_dir / name))
            shutil.copyfile(source / name, tmp)
            Path(tmp).chmod(0o666 & ~_umask())
        for tmp, final in staged:
            os.replace(tmp, final)
    except OSError as exc:
        raise EdgeAsrError(f"cannot write the Android bundle to {bundle_dir}: {exc.strerror or exc}") from exc
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [final for _, final in staged]


def describe_artifact(path: Path) -> tuple[dict, list[str]]:
    """(plan dict, lines) read from the artifact itself, for `edgeasr inspect`."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "model.pte", path / "encoder.onnx"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise EdgeAsrError("no model.pte or encoder.onnx in that folder")
    if path.suffix == ".pte":
        from runtimes.executorch_runner import read_plan_from_pte

        plan = read_plan_from_pte(path)
    elif path.suffix == ".onnx":
        from exporter.lower.onnx import read_plan_from_onnx

        plan = read_plan_from_onnx(path)
    else:
        raise EdgeAsrError(f"{path}: not an edgeasr artifact (.pte or .onnx)")
    lines = [f"{path} ({path.stat().st_size:,} bytes)", format_plan_table(QuantPlan.from_dict(plan))]
    return plan, lines


__all__ = ["ExportOptions", "export", "artifact_runner", "describe_artifact", "bundle_artifacts"]
