"""Text normalisation before scoring.

English uses the Whisper English normaliser (numbers to digits, spelled numbers joined, British to American
spelling, punctuation and fillers removed), so that AN4's spoken-form reference "ENTER NINE ONE SIX NINE" and
Whisper's "Enter 9169." both become "enter 9169". Other languages use the basic Whisper normaliser
(lower case, punctuation and diacritic-free symbols removed, whitespace collapsed).
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer


@functools.cache
def _english() -> EnglishTextNormalizer:
    # The British->American spelling table ships as data in whisper-normalizer; the normaliser
    # logic itself comes from transformers.
    table = resources.files("whisper_normalizer").joinpath("normalizers/english.json").read_text("utf-8")
    return EnglishTextNormalizer(json.loads(table))


@functools.cache
def _basic() -> BasicTextNormalizer:
    return BasicTextNormalizer()


def is_english(language: str | None) -> bool:
    return language is None or language.lower() in {"en", "english", "en-us", "en-gb"}


def normalize(text: str, language: str | None = "en") -> str:
    """Normalise `text` for scoring; `language` is an ISO code (None means English)."""
    normaliser = _english() if is_english(language) else _basic()
    return " ".join(normaliser(text).split())
