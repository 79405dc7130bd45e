"""The `edgeasr` command line.

Every subcommand is a small function over the library. A bad input is one line on stderr and exit status 2:
an `EdgeAsrError` from the library, an argument argparse refuses, or a file-system failure no stage caught
(`--debug` shows the traceback of these). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields
from pathlib import Path

from exporter.choices import (
    ALLOCATIONS,
    ARTIFACT_RUNTIMES,
    BENCH_RUNTIMES,
    CALIBRATIONS,
    DEFAULT_ALLOCATION,
    DEFAULT_CALIB_CLIPS,
    DEFAULT_CALIBRATION,
    DEFAULT_EMBEDDING,
    DEFAULT_LAYER_COST,
    DEFAULT_ORDER,
    DEFAULT_SENSITIVITY,
    EMBEDDINGS,
    GROUP_KEYS,
    INSTALLABLE_RUNTIMES,
    LABEL_STYLES,
    LAYER_COSTS,
    METRICS,
    ONNX_LAYOUTS,
    ORDERS,
    PLAN_TARGETS,
    PTE_LAYOUTS,
    ROUNDINGS,
    SENSITIVITY_METRICS,
    TASKS,
)
from exporter.export.options import ExportOptions
from exporter.io import check_output_file
from exporter.logs import quiet_libraries
from exporter.lower.registry import EXPORT_TARGETS, FORMATS
from exporter.lower.settings import ATTENTIONS, DEFAULT_ATTENTION, DEFAULT_PTE_MODE, PTE_MODES

_EXPORT = ExportOptions()  # the defaults `edgeasr export` shows


class _Parser(argparse.ArgumentParser):
    """argparse, with its refusals on one line (usage is one `--help` away) like every other error."""

    def error(self, message: str):
        if message.endswith("expected one argument"):
            message += " (a value that starts with '-' is written --option=VALUE)"
        self.exit(2, f"edgeasr: error: {message} (see `{self.prog} --help`)\n")


def _number(text: str, kind, lowest: float, strict: bool, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value) or value < lowest or (strict and value == lowest):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _positive_int(text: str) -> int:
    return _number(text, int, 0, True, "a whole number >= 1")


def _count(text: str) -> int:
    return _number(text, int, 0, False, "a whole number >= 0")


def _positive_float(text: str) -> float:
    return _number(text, float, 0.0, True, "a finite number > 0")


def _fraction(text: str) -> float:
    return _number(text, float, 0.0, False, "a finite number >= 0")


def _add_layouts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--onnx-layout",
        default=_EXPORT.onnx_layout,
        choices=ONNX_LAYOUTS,
        help="sherpa: the ONNX pair (and tokens.txt) that sherpa-onnx's OfflineRecognizer loads; edgeasr: "
        "edgeasr's own layout, whose NF4 + LoRA pair swaps per-user adapter files at run time "
        f"(default {_EXPORT.onnx_layout})",
    )
    parser.add_argument(
        "--pte-layout",
        default=_EXPORT.pte_layout,
        choices=PTE_LAYOUTS,
        help="runner: a .pte with the methods ExecuTorch's ASR runner (Seq2SeqRunner, Android AsrModule) calls, "
        f"one encoder output unpacked in text_decoder (default {_EXPORT.pte_layout})",
    )


def _add_scales_and_codes(parser: argparse.ArgumentParser) -> None:
    """export's and fleet's --calibration (each layer's clip ratio) and --rounding (each weight's code)."""
    parser.add_argument("--calibration", default=_EXPORT.calibration, choices=CALIBRATIONS)
    parser.add_argument(
        "--rounding",
        default=_EXPORT.rounding,
        choices=ROUNDINGS,
        help="codes: the nearest ones, GPTQ's on the calibration clips' activations (not for litert / "
        "tflite-runtime), or auto: GPTQ where the plan holds 2-bit Linears and --calib is given, nearest "
        f"elsewhere (default {_EXPORT.rounding})",
    )


def _add_allocation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allocation",
        default=DEFAULT_ALLOCATION,
        choices=ALLOCATIONS,
        help="myqasr: the paper's first fit; fill: then spend what is left of the budget, most sensitive "
        "layers first; knapsack: least measured damage; auto: knapsack where fill's plan reaches the lowest "
        f"rung, else fill (default {DEFAULT_ALLOCATION})",
    )
    parser.add_argument(
        "--layer-cost",
        default=DEFAULT_LAYER_COST,
        choices=LAYER_COSTS,
        help="with --allocation knapsack, each layer's cost on each rung: local (its own output error, seconds) "
        "or output (the model's next-token KL with only that layer quantised, minutes) "
        f"(default {DEFAULT_LAYER_COST})",
    )


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="tiny.en",
        help="bundled model (tiny.en, base), a local Hugging Face folder, or a hub id (default: tiny.en)",
    )


def _add_adapter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--adapter",
        type=Path,
        help="another user's LoRA adapter for an NF4 + LoRA artifact: an adapter.ptd for a .pte, a folder of "
        ".onnx_adapter files for ONNX (written by `edgeasr adapter`)",
    )


def _add_loop_guard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-loop-guard",
        action="store_true",
        help="decode without the loop guard (which stops a decoder that repeats one span of tokens, keeping "
        "its first copy); for comparing raw greedy output with other tools",
    )


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from runtimes.audio import load_audio

    if args.runtime and not args.artifact:
        raise_usage("--runtime goes with --artifact")
    clips = [load_audio(path) for path in args.clips]  # validate every clip before loading a model
    from runtimes.decoding import DecodingOptions

    if args.artifact:
        from runtimes.artifact import open_artifact

        runner = open_artifact(args.artifact, runtime=args.runtime, adapters=args.adapter)
    else:
        if args.adapter is not None:
            raise_usage("--adapter goes with --artifact (an NF4 + LoRA export)")
        from exporter.models import load_whisper
        from runtimes.torch_runner import TorchRunner

        runner = TorchRunner(load_whisper(args.model))
    options = DecodingOptions(language=args.language, task=args.task, loop_guard=not args.no_loop_guard)
    for path, samples in zip(args.clips, clips):
        result = runner.transcribe(samples, options)
        prefix = f"{path}: " if len(args.clips) > 1 else ""
        print(f"{prefix}{result.text}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    check_output_file(args.json, "--json")
    if args.compare:
        return _compare(args)
    if args.data is None:
        raise_usage("eval needs --data (or --compare A.json B.json)")
    from exporter.data import check_audio, load_dataset

    dataset = load_dataset(args.data).filter(split=args.split).head(args.limit)
    plan = _load_plan(args.plan)
    check_audio(dataset)  # every clip decodes at its stated rate before the model loads
    from exporter.evaluate import evaluate, format_table
    from exporter.io import write_json
    from exporter.models import load_whisper
    from runtimes.torch_runner import TorchRunner

    if plan is not None:
        _check_plan_model(plan, args.model)  # before the model loads
    bundle = load_whisper(args.model)
    model_id = args.model
    if plan is not None:
        from exporter.quant.simulate import simulate

        bundle = simulate(bundle, plan)
        model_id = bundle.model_id
    result = evaluate(
        TorchRunner(bundle), dataset, model_id=model_id, group_by=args.group_by, progress=not args.no_progress
    )
    print(format_table(result))
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0


def raise_usage(message: str) -> None:
    from runtimes.errors import EdgeAsrError

    raise EdgeAsrError(message)


def _load_plan(path: Path | None):
    if path is None:
        return None
    from exporter.quant.plan import QuantPlan

    return QuantPlan.load(path)


def _check_plan_model(plan, model_id: str) -> None:
    if plan.model_id != model_id:
        raise_usage(f"the plan was made for model {plan.model_id!r}, not {model_id!r}; pass --model {plan.model_id}")


def _compare(args: argparse.Namespace) -> int:
    from exporter.compare import compare_evals, format_report, load_eval
    from exporter.io import write_json

    a, b = (load_eval(path) for path in args.compare)
    report = compare_evals(
        a, b, metric=args.metric, cluster_by=args.cluster_by, n_resamples=args.resamples, seed=args.seed
    )
    print(format_report(report))
    if args.json:
        write_json(args.json, report.to_dict())
        print(f"wrote {args.json}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from exporter.data import load_dataset

    check_output_file(args.json, "--json")
    from exporter.quant.pipeline import PlanOptions

    options = PlanOptions(
        target=args.target,
        budget=args.budget,
        order=args.order,
        allocation=args.allocation,
        layer_cost=args.layer_cost,
        one_rung=args.one_rung,
        calibration=args.calibration,
        sensitivity_metric=args.sensitivity,
        seed=args.seed,
        activation_bits=args.activation_bits,
    )
    calib = load_dataset(args.calib) if args.calib else None
    options.validate(calib is not None)
    if calib is not None:  # every clip the plan observes is decoded before the model loads
        from exporter.data import check_audio
        from exporter.quant.pipeline import select_clips

        check_audio(select_clips(calib, args.n_calib, args.seed))
    from exporter.models import load_whisper
    from exporter.quant.pipeline import check_plan_budget, make_plan, observe_user
    from exporter.quant.plan import format_plan_table

    bundle = load_whisper(args.model)
    check_plan_budget(bundle, options)  # an impossible budget is refused before any clip is observed
    user = observe_user(bundle, calib, args.n_calib, args.seed, progress=not args.no_progress) if calib else None
    plan = make_plan(bundle, user, options, progress=not args.no_progress)
    print(format_plan_table(plan, max_rows=None if args.all_layers else 20))
    if not plan.personalised:
        print("note: no calibration clips given, so this plan is not personalised")
    if args.json:
        plan.save(args.json)
        print(f"wrote {args.json}")
    return 0


def _export_options(args: argparse.Namespace) -> ExportOptions:
    """ExportOptions from the flags `export` or `fleet` parsed: every field with a flag of that name; the
    others keep their defaults."""
    values = {f.name: getattr(args, f.name) for f in fields(ExportOptions) if hasattr(args, f.name)}
    values["formats"] = tuple(f.strip() for f in args.formats.split(",")) if args.formats else ()
    return ExportOptions(**values)


def _cmd_export(args: argparse.Namespace) -> int:
    from exporter.export.run import export

    options = _export_options(args)
    if args.threads is not None:  # float sums follow the thread count: same threads, same bytes (as in a fleet)
        import torch

        torch.set_num_threads(args.threads)
    summary = export(options, args.out, progress=not args.no_progress, bundle_dir=args.bundle)
    for artifact in summary["artifacts"]:
        print(
            f"{artifact['format']}: {args.out / artifact['folder']} {artifact['artifact_bytes']:,} bytes "
            f"(budget {summary['budget_bytes']:,}); parity {artifact['parity']['matching']}/"
            f"{artifact['parity']['clips']} clips"
        )
        memory = artifact.get("memory")
        if memory:
            settings = memory["settings"]
            peaks = ", ".join(f"{host} {e['peak_bytes'] / 1e6:.0f} MB" for host, e in memory["estimates"].items())
            print(
                f"  predicted peak memory: {peaks}; audio context {settings['audio_seconds']:g} s, "
                f"{settings['attention']} attention ({settings['chosen_by']})"
            )
    if not summary["personalised"]:
        print("note: no --calib given: calibrated on generic synthetic clips, so this export is not personalised")
    print(f"report: {args.out / 'report.md'}")
    if args.bundle:
        print(f"bundled for the Android app: {', '.join(Path(p).name for p in summary['bundled'])} in {args.bundle}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from exporter.bench import BenchOptions, bench
    from exporter.bench_report import format_markdown, memory_comparison, plot, systems
    from exporter.bench_schema import load_results, validate_results
    from exporter.io import write_json, write_text

    for option, path in (("--json", args.json), ("--md", args.md), ("--plot", args.plot)):
        check_output_file(path, option)
    options = BenchOptions(
        artifact=args.artifact,
        data=args.data,
        runtimes=tuple(args.runtime or ()),
        group_by=args.group_by,
        split=args.split,
        limit=args.limit,
        warmup=args.warmup,
        threads=args.threads,
        worker_timeout=args.worker_timeout,
        adapter=args.adapter,
        loop_guard=not args.no_loop_guard,
    )
    previous = load_results(args.json) if args.append and args.json.exists() else None
    result = bench(options)
    data = result.to_dict()
    if previous is not None:
        data["records"] = previous["records"] + data["records"]
        data["notes"] = previous.get("notes", []) + data["notes"]
    validate_results(data, "the results edgeasr bench produced")  # a bug here must not write a bad table
    write_json(args.json, data)
    for note in result.notes:
        print(f"note: {note}")
    for entry in systems(result.records).values():

        def value(metric, group="all"):
            record = entry["metrics"].get((metric, group))
            return None if record is None else record["metric"]["value"]

        wer = value("wer")
        memory = (
            ", ".join(
                f"{phase} peak {m / 1e6:.0f} MB (predicted {p / 1e6:.0f}, {100 * e:+.0f} %)"
                for phase, m, p, e in memory_comparison(entry)
            )
            or f"load peak {value('memory_load_peak') / 1e6:.0f} MB, run peak {value('memory_run_peak') / 1e6:.0f} MB"
        )
        print(
            f"{entry['label']}: median {value('latency_median')} ms, p90 {value('latency_p90')} ms, "
            f"RTF {value('real_time_factor')}, {memory}" + ("" if wer is None else f", WER {100 * wer:.1f} %")
        )
    print(f"wrote {args.json}")
    if args.md:
        write_text(args.md, format_markdown(data))
        print(f"wrote {args.md}")
    if args.plot:
        plot(data, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _confidence_filter(args: argparse.Namespace):
    """The pseudo-label confidence filter the flags ask for: off unless --confidence-filter or a threshold is
    given (it made label-free adaptation worse in benchmarks/results/pqm_speechocean_tiny_en.md)."""
    from exporter.personalize.labels import ConfidenceFilter
    from runtimes.errors import EdgeAsrError

    thresholds = args.min_logprob is not None or args.max_compression_ratio is not None
    if args.transcripts:
        if args.teacher or args.confidence_filter or thresholds:
            raise EdgeAsrError(
                "--teacher, --confidence-filter, --min-logprob and --max-compression-ratio apply to "
                "--pseudo-labels only"
            )
        return None
    if not (args.confidence_filter or thresholds):
        return None
    defaults = ConfidenceFilter()
    return ConfidenceFilter(
        min_avg_logprob=args.min_logprob if args.min_logprob is not None else defaults.min_avg_logprob,
        max_compression_ratio=(
            args.max_compression_ratio if args.max_compression_ratio is not None else defaults.max_compression_ratio
        ),
    )


def _cmd_personalize(args: argparse.Namespace) -> int:
    from exporter.personalize.base import Nf4Options
    from exporter.personalize.lora import LoraConfig, parse_targets
    from exporter.personalize.run import PersonalizeOptions, personalize
    from exporter.personalize.train import TrainOptions

    lora = None
    if any(v is not None for v in (args.rank, args.alpha, args.dropout, args.targets, args.scope, args.encoder_layers)):
        defaults = LoraConfig()
        lora = LoraConfig(
            rank=args.rank if args.rank is not None else defaults.rank,
            alpha=args.alpha if args.alpha is not None else 2.0 * (args.rank or defaults.rank),
            dropout=args.dropout if args.dropout is not None else defaults.dropout,
            targets=parse_targets(args.targets) if args.targets else defaults.targets,
            scope=parse_targets(args.scope) if args.scope else defaults.scope,
            encoder_layers=args.encoder_layers,
        )
    options = PersonalizeOptions(
        model=args.model,
        clips=args.clips,
        labels="transcripts" if args.transcripts else "pseudo",
        speaker=args.speaker,
        split=args.split,
        n_clips=args.n_clips,
        pretrained=args.pretrained_lora,
        lora=lora,
        train=TrainOptions(
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            lr=args.lr if args.lr is not None else (3e-4 if args.pretrained_lora else 1e-3),
        ),
        base=Nf4Options(block_size=args.block_size, double_quant_block=args.double_quant, embedding=args.embedding),
        label_style=args.label_style,
        teachers=tuple(t.strip() for t in args.teacher.split(",") if t.strip()) if args.teacher else (),
        confidence=_confidence_filter(args),
    )
    info = personalize(options, args.out, progress=not args.no_progress)
    curve = info["training"]["curve"]
    print(
        f"adapters: {args.out} ({info['training']['adapter_parameters']:,} parameters, "
        f"{','.join(info['lora']['targets'])} in {','.join(info['lora']['scope'])}); loss {curve[0]['loss']:.4f} -> "
        f"{curve[-1]['loss']:.4f} over {len(curve)} steps, {info['training']['seconds']:.0f} s"
    )
    return 0


def _cmd_fleet(args: argparse.Namespace) -> int:
    from exporter.fleet.run import FleetOptions, run_fleet
    from exporter.quant.budget import Budget

    defaults = _export_options(args)  # what each user's row does not set
    options = FleetOptions(
        users=args.users,
        out=args.out,
        defaults=defaults,
        address=args.address,
        workers=args.workers,
        threads=args.threads,
        retries=args.retries,
        worker_memory=Budget.parse(args.worker_memory).bytes if args.worker_memory else None,
    )
    summary = run_fleet(options, progress=not args.no_progress)
    t = summary["totals"]
    print(
        f"{t['users']} users: {t['ok']} ok ({t['exported']} exported, {t['skipped']} already done), "
        f"{t['failed']} failed; {t['distinct_artifacts']} distinct artifacts for {t['artifacts']}; "
        f"{t['bytes_on_disk'] / 1e6:,.1f} MB on disk ({t['bytes_as_copies'] / 1e6:,.1f} MB as copies); "
        f"{t['wall_seconds']:,.0f} s"
    )
    for user in summary["users"]:
        if user["status"] != "ok":
            print(f"  {user['user']}: {user['status']}: {user['error']}")
    print(f"summary: {args.out / 'fleet.md'}")
    return 0 if t["failed"] == 0 else 1


def _cmd_adapter(args: argparse.Namespace) -> int:
    from exporter.export.bundle import bundle_user_adapter, check_user_bundle
    from exporter.export.lora import write_user_adapter
    from runtimes.artifact import artifact_runtimes
    from runtimes.contract import PTE_ADAPTER_FILE

    user = args.user or args.lora.name
    if args.bundle is not None:  # refused before anything is written
        if "executorch" not in artifact_runtimes(args.artifact):
            raise_usage(f"{args.artifact} holds no .pte, so there is no adapter file to bundle")
        check_user_bundle(args.bundle, user)
    written = write_user_adapter(args.artifact, args.lora, args.out)
    sizes = ", ".join(f"{path.name} ({path.stat().st_size:,} bytes)" for path in written)
    print(f"{args.out}: {sizes}; run with --artifact {args.artifact} --adapter {args.out}")
    if args.bundle is not None:
        print(f"bundled {bundle_user_adapter(args.out / PTE_ADAPTER_FILE, args.bundle, user)} (user {user!r})")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from exporter.export import describe_artifact

    _, lines = describe_artifact(args.artifact)
    print("\n".join(lines))
    return 0


def _cmd_runtimes_install(args: argparse.Namespace) -> int:
    from runtimes.tflite_process import install

    venv = install(args.venv, args.python)
    if args.venv:
        print(f"created {venv}; runners find it with EDGEASR_TFLITE_VENV={venv.absolute()}")
    else:
        print(f"created {venv}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgeasr", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of input errors too (for reporting a problem)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="transcribe audio clips with a full-precision model")
    p.add_argument("clips", nargs="+", type=Path, help="audio files (wav, flac, ogg)")
    _add_model(p)
    p.add_argument("--language", help="ISO code (multilingual models detect it when omitted)")
    p.add_argument("--task", default=TASKS[0], choices=TASKS)
    p.add_argument("--artifact", type=Path, help="transcribe through an exported folder instead of --model")
    p.add_argument(
        "--runtime",
        choices=ARTIFACT_RUNTIMES,
        help="the runtime that runs --artifact (default: the artifact's own); tflite-runtime runs a LiteRT pair "
        "in its own environment (`edgeasr runtimes install tflite-runtime`)",
    )
    _add_adapter(p)
    _add_loop_guard(p)
    p.set_defaults(func=_cmd_transcribe)

    p = sub.add_parser("eval", help="word error rate of a model on a data set, per group")
    _add_model(p)
    p.add_argument("--data", type=Path, help="folder of audio, or .jsonl/.csv manifest")
    p.add_argument("--plan", type=Path, help="simulate this quantisation plan (from `edgeasr plan`)")
    p.add_argument("--group-by", choices=GROUP_KEYS)
    p.add_argument("--split", help="only utterances of this split (e.g. test)")
    p.add_argument("--limit", type=_positive_int, help="only the first N utterances")
    p.add_argument("--json", type=Path, help="write the full result (per clip and per group) here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A.json", "B.json"),
        help="instead of evaluating: compare two eval results on the same clips (B - A, with a "
        "95%% paired bootstrap interval)",
    )
    p.add_argument("--metric", default=METRICS[0], choices=METRICS, help="for --compare")
    p.add_argument(
        "--cluster-by",
        choices=["group"],
        help="for --compare: resample whole groups (use with results grouped by speaker)",
    )
    p.add_argument("--resamples", type=_positive_int, default=2000, help="for --compare (default 2000)")
    p.add_argument("--seed", type=_count, default=0, help="for --compare (default 0)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("plan", help="personalised mixed-precision plan (myQASR) under a byte budget")
    _add_model(p)
    p.add_argument("--target", default=PLAN_TARGETS[0], choices=PLAN_TARGETS)
    p.add_argument("--budget", required=True, help="size budget: 80MB (10^6 bytes), 76MiB (2^20), or bytes")
    p.add_argument("--calib", type=Path, help="the user's unlabelled clips: folder or manifest")
    p.add_argument(
        "--n-calib",
        type=_positive_int,
        default=DEFAULT_CALIB_CLIPS,
        help=f"calibration clips to use (default {DEFAULT_CALIB_CLIPS})",
    )
    p.add_argument("--order", default=DEFAULT_ORDER, choices=ORDERS)
    _add_allocation(p)
    p.add_argument(
        "--one-rung",
        action="store_true",
        help="with --allocation fill or auto (which then stays on fill): keep every layer within one rung of "
        "the others (myQASR's constraint)",
    )
    p.add_argument("--calibration", default=DEFAULT_CALIBRATION, choices=CALIBRATIONS)
    p.add_argument("--sensitivity", default=DEFAULT_SENSITIVITY, choices=SENSITIVITY_METRICS)
    p.add_argument("--activation-bits", type=int, choices=[8], help="sim target: static A8 inputs")
    p.add_argument("--seed", type=_count, default=0)
    p.add_argument("--json", type=Path, help="write the plan here")
    p.add_argument("--all-layers", action="store_true", help="print every layer, not the first 20")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("export", help="plan, lower and verify on-device artifacts that fit a size budget")
    p.add_argument(
        "--model", default=_EXPORT.model, help=f"bundled model, local folder or hub id (default: {_EXPORT.model})"
    )
    p.add_argument("--target", default=_EXPORT.target, choices=EXPORT_TARGETS)
    p.add_argument("--budget", required=True, help="artifact size budget: 80MB (10^6 bytes), 76MiB, or bytes")
    p.add_argument(
        "--calib",
        type=Path,
        help="the user's unlabelled clips (folder or manifest); without it "
        "a generic synthetic set is used and the result is not personalised",
    )
    p.add_argument("--speaker", help="only the --calib clips of this speaker (a manifest's speaker column)")
    p.add_argument("--formats", help=f"comma list of {','.join(FORMATS)} (default: pte for android, onnx for onnx)")
    _add_layouts(p)
    p.add_argument("--out", type=Path, required=True, help="new output folder")
    p.add_argument(
        "--bundle",
        type=Path,
        metavar="ASSETS_DIR",
        help="after a successful export, also copy model.pte, tokenizer.json and plan.json here "
        "(e.g. android_demo/app/src/main/assets/) for the Android app; with --lora and --pte-layout runner, "
        "the user's adapter file too, as adapters/<user>.ptd",
    )
    p.add_argument("--n-calib", type=_positive_int, default=_EXPORT.n_calib)
    p.add_argument("--order", default=_EXPORT.order, choices=ORDERS)
    _add_allocation(p)
    _add_scales_and_codes(p)
    p.add_argument("--seed", type=_count, default=0)
    p.add_argument(
        "--memory-budget",
        help="runtime RAM budget for the predicted peak (weights + activations + "
        "KV cache + load peak), e.g. 250MB; shrinks activations (a shorter "
        "audio context) until it fits, else fails",
    )
    p.add_argument(
        "--max-audio-seconds",
        type=_positive_float,
        help="audio context of the encoder (default 30 s): shorter means far smaller attention maps; "
        "longer clips are transcribed in windows of this length",
    )
    p.add_argument(
        "--attention",
        choices=ATTENTIONS,
        help=f"ExecuTorch encoder attention (default {DEFAULT_ATTENTION}); chunked: the same arithmetic over slices of "
        "the queries, so no whole attention map is held (far less run memory at 30 s)",
    )
    p.add_argument(
        "--lora",
        type=Path,
        help="adapter folder from `edgeasr personalize`: export its NF4 base "
        "plus the adapters (no budget search; --calib clips check parity)",
    )
    p.add_argument(
        "--lora-pte-mode",
        default=DEFAULT_PTE_MODE,
        choices=PTE_MODES,
        help=f"how the .pte carries NF4 + LoRA (XNNPACK has no NF4; default {DEFAULT_PTE_MODE})",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="PyTorch compute threads (default: PyTorch's); an export is reproducible byte for byte at one thread count",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("bench", help="latency, memory, size and WER per group of an exported artifact, per runtime")
    p.add_argument("--artifact", type=Path, required=True, help="a folder written by `edgeasr export`")
    p.add_argument(
        "--runtime",
        nargs="+",
        choices=BENCH_RUNTIMES,
        help="runtimes to measure, each in its own process (default: the artifact's own: executorch "
        "for model.pte, onnx for encoder.onnx, litert for encoder.tflite, and tflite-runtime too for a pair "
        "exported for it); torch simulates the artifact's plan, torch-fp is the full-precision model",
    )
    p.add_argument("--data", type=Path, required=True, help="folder of audio, or .jsonl/.csv manifest")
    p.add_argument("--group-by", choices=GROUP_KEYS)
    p.add_argument("--split", help="only utterances of this split (e.g. test)")
    p.add_argument("--limit", type=_positive_int, help="only the first N utterances")
    p.add_argument("--warmup", type=_count, default=1, help="untimed runs of the first clip before timing (default 1)")
    p.add_argument("--threads", type=_positive_int, default=1, help="compute threads per runtime (default 1)")
    p.add_argument(
        "--worker-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="stop a runtime's process that runs longer than this (default: 300 s + 60 s per clip)",
    )
    p.add_argument(
        "--json", type=Path, required=True, help="results file (schema: exporter/schemas/bench_result.schema.json)"
    )
    _add_adapter(p)
    _add_loop_guard(p)
    p.add_argument("--append", action="store_true", help="add the records to an existing --json file")
    p.add_argument("--md", type=Path, help="also write a Markdown report here")
    p.add_argument("--plot", type=Path, help="also write a PNG plot here")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("personalize", help="train LoRA adapters on an NF4 base from one speaker's clips (PQM)")
    _add_model(p)
    p.add_argument("--clips", type=Path, required=True, help="the speaker's clips: folder of audio or manifest")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument(
        "--transcripts", action="store_true", help="train on the manifest's transcripts (every clip needs one)"
    )
    labels.add_argument(
        "--pseudo-labels",
        action="store_true",
        help="train on a full-precision model's transcripts (label-free; the default): the model's own or --teacher's",
    )
    p.add_argument(
        "--teacher",
        help="the full-precision model(s) that write the pseudo-labels, comma-separated: each clip takes the label "
        "its labeller was surest of (e.g. tiny.en,base for tiny.en; default: the model itself)",
    )
    p.add_argument(
        "--confidence-filter",
        action="store_true",
        help="drop clips whose pseudo-label the labeller was unsure of (Whisper's fallback thresholds: mean token "
        "log-probability < -1.0 or compression ratio > 2.4); off by default: it did not help in the benchmark",
    )
    p.add_argument(
        "--min-logprob",
        type=float,
        metavar="LOGP",
        help="filter: drop clips whose pseudo-label's mean token log-probability is below this (implies the filter)",
    )
    p.add_argument(
        "--max-compression-ratio",
        type=_positive_float,
        help="filter: drop clips whose pseudo-label compresses better than this, i.e. loops (implies the filter)",
    )
    p.add_argument(
        "--label-style",
        default=LABEL_STYLES[0],
        choices=LABEL_STYLES,
        help="transcripts as training text: lower-case all-caps ones (default), keep, or the scoring normaliser's form",
    )
    p.add_argument("--speaker", help="only clips of this speaker (manifest column)")
    p.add_argument("--split", help="only clips of this split (manifest column)")
    p.add_argument("--n-clips", type=_positive_int, help="use the first N clips (default: all)")
    p.add_argument(
        "--pretrained-lora",
        type=Path,
        help="start from this adapter folder (e.g. multi-speaker pre-training); its LoRA settings are used",
    )
    p.add_argument("--rank", type=_positive_int, help="LoRA rank (default 8)")
    p.add_argument("--alpha", type=_positive_float, help="LoRA alpha (default 2 x rank)")
    p.add_argument("--dropout", type=_fraction, help="LoRA dropout (default 0.05)")
    p.add_argument("--targets", help="comma list of q,k,v,out,fc1,fc2 (default q,v)")
    p.add_argument("--scope", help="comma list of encoder,decoder (default decoder: self- and cross-attention)")
    p.add_argument(
        "--encoder-layers",
        type=_positive_int,
        help="with the encoder in --scope: adapt only its last N layers (the rest runs once per clip; default all)",
    )
    p.add_argument("--steps", type=_positive_int, default=30, help="optimiser steps (default 30)")
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument("--lr", type=_positive_float, help="learning rate (default 1e-3; 3e-4 from --pretrained-lora)")
    p.add_argument("--seed", type=_count, default=0)
    p.add_argument("--block-size", type=_positive_int, default=64, help="NF4 block size (default 64)")
    p.add_argument(
        "--double-quant",
        type=_positive_int,
        metavar="BLOCKS",
        help="store NF4 block scales as uint8 in chunks of BLOCKS blocks (e.g. 256)",
    )
    p.add_argument(
        "--embedding",
        default=DEFAULT_EMBEDDING,
        choices=EMBEDDINGS,
        help=f"token embedding format of the NF4 base (default {DEFAULT_EMBEDDING})",
    )
    p.add_argument("--out", type=Path, required=True, help="new adapter folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_personalize)

    p = sub.add_parser("fleet", help="personalised exports for many users from one base model, on Ray")
    p.add_argument(
        "--users",
        type=Path,
        required=True,
        help='JSON lines, one user a line: {"user": ID, "clips": FOLDER_OR_MANIFEST, "speaker": S, '
        '"target": T, "budget": B, "formats": F} (speaker, target, budget, formats optional)',
    )
    p.add_argument("--out", type=Path, required=True, help="fleet folder (new, or an earlier run's to resume)")
    p.add_argument("--address", help="a Ray cluster's address (default: a local Ray started for this run)")
    p.add_argument("--workers", type=_positive_int, help="Ray actors, each holding the model (default: CPUs / threads)")
    p.add_argument("--threads", type=_positive_int, default=1, help="compute threads per worker (default 1)")
    p.add_argument(
        "--retries", type=_count, default=1, help="further attempts after an error that is not an input error"
    )
    p.add_argument("--worker-memory", help="memory Ray reserves per worker, e.g. 3GiB (default: by model)")
    p.add_argument("--model", default=_EXPORT.model, help=f"the base model every user shares (default {_EXPORT.model})")
    p.add_argument("--target", default=_EXPORT.target, choices=EXPORT_TARGETS, help="default for rows without one")
    p.add_argument("--budget", required=True, help="default budget for rows without one, e.g. 45MB")
    p.add_argument("--formats", help="default formats for rows without target or formats")
    _add_layouts(p)  # every user's artifacts share the layouts
    p.add_argument("--n-calib", type=_positive_int, default=_EXPORT.n_calib)
    _add_allocation(p)
    _add_scales_and_codes(p)
    p.add_argument("--seed", type=_count, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_fleet)

    p = sub.add_parser(
        "adapter", help="write another user's adapter files for an NF4 + LoRA export (no lowering: the base is shared)"
    )
    p.add_argument("--artifact", type=Path, required=True, help="a folder written by `edgeasr export --lora`")
    p.add_argument("--lora", type=Path, required=True, help="the user's adapter folder from `edgeasr personalize`")
    p.add_argument("--out", type=Path, required=True, help="new folder for the user's adapter files")
    p.add_argument(
        "--bundle",
        type=Path,
        help="also add the user's adapter.ptd to an Android assets folder that holds this base program "
        "(ASR-runner layout), as adapters/<user>.ptd",
    )
    p.add_argument("--user", help="the user's name in the app (default: the --lora folder's name)")
    p.set_defaults(func=_cmd_adapter)

    p = sub.add_parser("runtimes", help="set up a runtime that lives in an environment of its own")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("install", help="create the runtime's environment (tflite-runtime: numpy < 2)")
    q.add_argument("runtime", choices=INSTALLABLE_RUNTIMES)
    q.add_argument(
        "--venv",
        type=Path,
        help="where to create it (default: $EDGEASR_TFLITE_VENV, else ~/.cache/edgeasr/tflite-runtime-<version>); "
        "a runner finds it there through the same variable",
    )
    q.add_argument("--python", help="the Python to build it with (default: this one; tflite-runtime needs 3.9-3.11)")
    q.set_defaults(func=_cmd_runtimes_install)

    p = sub.add_parser("inspect", help="print the per-layer plan stored inside an artifact")
    p.add_argument("artifact", type=Path, help="a .pte, an .onnx, or an export folder")
    p.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    from runtimes.errors import EdgeAsrError

    try:
        return args.func(args)
    except EdgeAsrError as exc:
        if args.debug:
            raise
        print(f"edgeasr: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system failed somewhere no stage expected it: still the user's to fix
        if args.debug:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"edgeasr: error: file system error{where}: {exc.strerror or exc}; check the path, its "
            "permissions and free space (--debug shows where it happened)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("edgeasr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
