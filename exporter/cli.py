"""The `edgeasr` command line.

Every subcommand is a small function over the library. `EdgeAsrError` becomes a one-line message on stderr
and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path


def _quiet_libraries() -> None:
    """Keep third-party start-up chatter (optional CUDA kernels, deprecation notices) off the console."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("torchao", "torch.utils._pytree", "torch._dynamo", "executorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # Environment switches rather than imports: importing transformers costs seconds, and bad input
    # should be reported before that.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TORCH_LOGS", "-all")


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny.en",
                        help="bundled model (tiny.en, base), a local Hugging Face folder, or a hub id "
                             "(default: tiny.en)")


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from exporter.audio import load_audio

    clips = [load_audio(path) for path in args.clips]  # validate every clip before loading a model
    from exporter.models import load_whisper
    from runtimes.decoding import DecodingOptions
    from runtimes.torch_runner import TorchRunner

    runner = TorchRunner(load_whisper(args.model))
    options = DecodingOptions(language=args.language, task=args.task)
    for path, samples in zip(args.clips, clips):
        result = runner.transcribe(samples, options)
        prefix = f"{path}: " if len(args.clips) > 1 else ""
        print(f"{prefix}{result.text}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from exporter.data import load_dataset

    dataset = load_dataset(args.data).filter(split=args.split).head(args.limit)
    from exporter.evaluate import evaluate, format_table
    from exporter.io import write_json
    from exporter.models import load_whisper
    from runtimes.torch_runner import TorchRunner

    result = evaluate(TorchRunner(load_whisper(args.model)), dataset, model_id=args.model,
                      group_by=args.group_by, progress=not args.no_progress)
    print(format_table(result))
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeasr", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="transcribe audio clips with a full-precision model")
    p.add_argument("clips", nargs="+", type=Path, help="audio files (wav, flac, ogg)")
    _add_model(p)
    p.add_argument("--language", help="ISO code (multilingual models detect it when omitted)")
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    p.set_defaults(func=_cmd_transcribe)

    p = sub.add_parser("eval", help="word error rate of a model on a data set, per group")
    _add_model(p)
    p.add_argument("--data", required=True, type=Path, help="folder of audio, or .jsonl/.csv manifest")
    p.add_argument("--group-by", choices=["gender", "speaker", "language", "split"])
    p.add_argument("--split", help="only utterances of this split (e.g. test)")
    p.add_argument("--limit", type=int, help="only the first N utterances")
    p.add_argument("--json", type=Path, help="write the full result (per clip and per group) here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    from exporter.errors import EdgeAsrError

    try:
        return args.func(args)
    except EdgeAsrError as exc:
        print(f"edgeasr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeasr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
