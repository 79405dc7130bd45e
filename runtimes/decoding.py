"""Greedy decoding shared by every runner.

A runner only supplies a `DecoderSession`: feed it tokens, get the logits of the last one back (it keeps its
own KV cache). Prompting, language detection, token suppression and stopping live here once, so all
runtimes decode identically and differences in transcripts come from the numerics alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from runtimes.tokenizer import SpecialTokens

# Whisper's text context is 448 positions; openai/whisper samples at most half of it.
MAX_NEW_TOKENS = 224
MAX_POSITIONS = 448


class DecoderSession(Protocol):
    def step(self, tokens: list[int]) -> np.ndarray:
        """Append `tokens` to the sequence; return the logits (vocab,) predicted after the last one."""


@dataclass(frozen=True)
class DecodingOptions:
    language: str | None = None  # None: English for English-only models, detected for multilingual ones
    task: str = "transcribe"
    max_new_tokens: int = MAX_NEW_TOKENS


def suppression_mask(special: SpecialTokens, vocab: int, first: bool) -> np.ndarray:
    """Tokens that may not be generated: the model's suppress list plus every special token but end of text
    (no timestamps, no prompt tokens in the text), and blank / end of text as the very first token."""
    mask = np.zeros(vocab, dtype=bool)
    mask[[t for t in special.suppress if t < vocab]] = True
    mask[special.eot + 1 :] = True
    if first:
        mask[[t for t in special.suppress_begin if t < vocab]] = True
    return mask


def detect_language(logits: np.ndarray, special: SpecialTokens) -> str:
    """Most likely language from the logits after <|startoftranscript|>."""
    codes = list(special.languages)
    ids = np.array([special.languages[c] for c in codes])
    return codes[int(np.argmax(logits[ids]))]


def greedy_decode(
    session: DecoderSession, prompt: list[int], special: SpecialTokens, max_new_tokens: int = MAX_NEW_TOKENS
) -> list[int]:
    """Generated tokens after `prompt`, end of text excluded."""
    limit = min(max_new_tokens, MAX_POSITIONS - len(prompt))
    logits = session.step(prompt)
    masks = {}
    generated: list[int] = []
    while len(generated) < limit:
        first = not generated
        if first not in masks:
            masks[first] = suppression_mask(special, logits.shape[-1], first)
        token = int(np.argmax(np.where(masks[first], -np.inf, logits)))
        if token == special.eot:
            break
        generated.append(token)
        if len(generated) < limit:
            logits = session.step([token])
    return generated
