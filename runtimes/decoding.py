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
# The loop guard (`repeated_tail`): greedy decoding that falls into a loop repeats one span of tokens until the
# token limit, up to 224 insertions from a clip of a few words. Whisper's own remedy (temperature fallback on a
# high compression ratio) re-decodes by sampling; this guard is deterministic and costs nothing when there is no
# loop: decoding stops once the tail is one span of at most LOOP_MAX_PERIOD tokens repeated back to back at least
# LOOP_MIN_COPIES times covering at least LOOP_MIN_TOKENS tokens, and the copies after the first are dropped.
# At these settings a word said 16 times in a row, or a phrase of 6+ tokens said 3 times, reads as a loop.
LOOP_MIN_COPIES = 3
LOOP_MIN_TOKENS = 16
LOOP_MAX_PERIOD = 64


class DecoderSession(Protocol):
    def step(self, tokens: list[int]) -> np.ndarray:
        """Append `tokens` to the sequence; return the logits (vocab,) predicted after the last one."""


@dataclass(frozen=True)
class DecodingOptions:
    language: str | None = None  # None: English for English-only models, detected for multilingual ones
    task: str = "transcribe"
    max_new_tokens: int = MAX_NEW_TOKENS
    loop_guard: bool = True  # stop a decoder loop at its first repeat (see LOOP_MIN_COPIES)


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


def repeated_tail(tokens: list[int]) -> int | None:
    """How many tokens to keep when `tokens` ends in a loop (the span's first copy stays), else None.

    Only the tail is examined, so calling this after every generated token finds a loop as soon as it
    reaches the thresholds, before it fills the context."""
    n = len(tokens)
    for period in range(1, min(LOOP_MAX_PERIOD, n // LOOP_MIN_COPIES) + 1):
        copies = 1
        while (copies + 1) * period <= n and tokens[n - (copies + 1) * period : n - copies * period] == tokens[
            n - period :
        ]:
            copies += 1
        if copies >= LOOP_MIN_COPIES and copies * period >= LOOP_MIN_TOKENS:
            return n - (copies - 1) * period
    return None


def greedy_decode(
    session: DecoderSession,
    prompt: list[int],
    special: SpecialTokens,
    max_new_tokens: int = MAX_NEW_TOKENS,
    loop_guard: bool = True,
) -> list[int]:
    """Generated tokens after `prompt`, end of text excluded; with `loop_guard`, a loop stops decoding and only
    its first copy is kept (`repeated_tail`)."""
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
        if loop_guard and (keep := repeated_tail(generated)) is not None:
            return generated[:keep]
        if len(generated) < limit:
            logits = session.step([token])
    return generated
