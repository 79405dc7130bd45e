"""Word and character error rates, and paired comparisons between two systems.

Why this module exists rather than a one-line `jiwer.wer` call:

* AN4 references are in spoken form and spell names letter by letter ("P I T T S B U R G H") or read
  digit strings ("SIX SIX ONE FIVE ..."), while Whisper writes "Pittsburgh" or "661 5064". Scoring
  those word by word turns one correct spelled word into up to N errors, so the headline WER is
  computed on *collapsed* tokens (see `collapse`). The plain normalised WER is kept alongside it.
* The Whisper English normaliser has two habits that break spelled sequences (see `scoring_tokens`):
  it reads the letter "O" as the digit zero, and it writes a lone digit 1 as the word "one".
* Corpus WER is sum(errors) / sum(reference words), never a mean of per-clip rates, so short
  clips ("YES") do not weigh as much as long ones.
* Comparing two models on ~100 clips needs an uncertainty estimate; `paired_bootstrap` resamples
  the clips (optionally speakers, then clips) and reports a percentile interval for the WER change.

Edit distances come from rapidfuzz's Levenshtein, which is fast and accepts empty sequences
(jiwer raises on an empty reference).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein

from exporter.choices import METRICS
from exporter.normalize import is_english, normalize
from runtimes.errors import EdgeAsrError

METRIC_LABELS = {"wer": "WER", "wer_plain": "plain WER", "cer": "CER"}

# ---------------------------------------------------------------------------------------------
# Tokenisation for scoring
# ---------------------------------------------------------------------------------------------

# Stand-in for a spelled letter "O" while the English normaliser runs; it must be a plain
# lower-case word with no digits, which the normaliser passes through untouched.
_LETTER_O_PLACEHOLDER = "qqspelledletteroqq"
_RAW_WORD = re.compile(r"[A-Za-z0-9']+")


def _is_letter(token: str) -> bool:
    return len(token) == 1 and token.isalpha()


def _is_number(token: str) -> bool:
    return token.isdecimal()


def collapse(words: list[str], language: str | None = "en") -> list[str]:
    """Join spelled letters and read-out digits into single tokens.

    Input is already-normalised words (`normalize(text).split()`). The rule, applied left to right:

    1. English only: the token "one" is read as the digit "1". The Whisper English normaliser
       rewrites every stand-alone "1" as "one" "for readability", so after normalisation "one"
       always denotes the number 1; without this, "5 6 1 5" would not join into "5615".
    2. Every maximal run of tokens that are a single alphabetic character is joined into one
       token: "p i t t s b u r g h" -> "pittsburgh". A run of length one is left as it is.
    3. Every maximal run of tokens made only of decimal digits is joined into one token:
       "661 5064" -> "6615064", "5 61 5" -> "5615".
    4. A letter run and a digit run next to each other stay separate tokens, and any other token
       (a word such as "enter", "3.5", "11th") ends a run: "j p e g 4" -> ["jpeg", "4"].

    Why: AN4 spells names letter by letter and reads digit strings digit by digit, and Whisper
    groups the same letters and digits in its own way ("pittsbu rgh", "661 5064"). Scored as
    words, one spelled name would count as up to N errors; collapsed, it counts as at most a few.
    The rule is applied identically to reference and hypothesis.
    """
    english = is_english(language)
    out: list[str] = []
    run: list[str] = []
    run_kind: str | None = None  # "letter", "number" or None while not inside a run

    def flush() -> None:
        nonlocal run_kind
        if run:
            out.append("".join(run))
            run.clear()
        run_kind = None

    for word in words:
        if english and word == "one":
            word = "1"
        kind = "letter" if _is_letter(word) else "number" if _is_number(word) else None
        if kind != run_kind:
            flush()
        if kind is None:
            out.append(word)
        else:
            run.append(word)
            run_kind = kind
    flush()
    return out


def _protect_spelled_o(text: str) -> str:
    """Mark each letter "O" that is part of a spelled sequence, before English normalisation.

    The English normaliser treats "o" like "oh" and "zero" and turns it into the digit 0, so
    AN4's "J O H N" would become "j 0 h n" and collapse into three tokens instead of "john"
    (73 of AN4's reference words are such an "O"). A stand-alone "O"/"o" counts as a letter when
    the word before or after it is also a single letter; an "O" among words or digits is left for
    the normaliser to read as zero.
    """
    matches = list(_RAW_WORD.finditer(text))
    spans = []
    for i, match in enumerate(matches):
        if match.group().lower() != "o":
            continue
        neighbours = [matches[j].group() for j in (i - 1, i + 1) if 0 <= j < len(matches)]
        if any(_is_letter(n) for n in neighbours):
            spans.append(match.span())
    for start, end in reversed(spans):
        text = text[:start] + _LETTER_O_PLACEHOLDER + text[end:]
    return text


def plain_tokens(text: str, language: str | None = "en") -> list[str]:
    """The normalised words, exactly as the shared Whisper normaliser produces them."""
    return normalize(text, language).split()


def scoring_tokens(text: str, language: str | None = "en") -> list[str]:
    """Tokens for the headline WER: normalised, spelled "O" kept as a letter, then `collapse`d.

    >>> scoring_tokens("J O H N FIVE SIX ONE FIVE")
    ['john', '5615']
    """
    if not is_english(language):
        return collapse(plain_tokens(text, language), language)
    words = normalize(_protect_spelled_o(text), language).split()
    words = ["o" if w == _LETTER_O_PLACEHOLDER else w for w in words]
    return collapse(words, language)


# ---------------------------------------------------------------------------------------------
# Per-utterance counts and corpus scores
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UtteranceCounts:
    """Edit counts for one clip; sum these (never average rates) to get corpus figures.

    A reference that is empty after normalisation has 0 reference words, and every hypothesis
    word counts as an insertion.
    """

    reference: str  # collapsed normalised reference, used to check that two systems are paired
    ref_words: int  # plain normalised reference words
    word_errors: int  # Levenshtein distance between plain normalised word lists
    ref_tokens: int  # collapsed reference tokens
    token_errors: int  # Levenshtein distance between collapsed token lists (headline WER)
    ref_chars: int  # characters of the collapsed reference, spaces removed
    char_errors: int  # Levenshtein distance between space-free collapsed strings

    def errors_and_total(self, metric: str) -> tuple[int, int]:
        """(errors, reference size) for `metric`, one of METRICS."""
        if metric == "wer":
            return self.token_errors, self.ref_tokens
        if metric == "wer_plain":
            return self.word_errors, self.ref_words
        if metric == "cer":
            return self.char_errors, self.ref_chars
        raise EdgeAsrError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


def count_errors(reference: str, hypothesis: str | None, language: str | None = "en") -> UtteranceCounts:
    """Plain, collapsed and character edit counts for one clip. A None hypothesis counts as empty."""
    hypothesis = hypothesis or ""
    ref_plain, hyp_plain = plain_tokens(reference, language), plain_tokens(hypothesis, language)
    ref_coll, hyp_coll = scoring_tokens(reference, language), scoring_tokens(hypothesis, language)
    ref_chars, hyp_chars = "".join(ref_coll), "".join(hyp_coll)
    return UtteranceCounts(
        reference=" ".join(ref_coll),
        ref_words=len(ref_plain),
        word_errors=Levenshtein.distance(ref_plain, hyp_plain),
        ref_tokens=len(ref_coll),
        token_errors=Levenshtein.distance(ref_coll, hyp_coll),
        ref_chars=len(ref_chars),
        char_errors=Levenshtein.distance(ref_chars, hyp_chars),
    )


def capped(counts: UtteranceCounts) -> UtteranceCounts:
    """The clip's collapsed-token errors capped at its reference tokens: a hallucination loop (one adult
    speechocean762 clip draws 113 insertions from FP tiny.en) then counts as one wrong clip, not as a quarter
    of a corpus's errors."""
    return dataclasses.replace(counts, token_errors=min(counts.token_errors, counts.ref_tokens))


def _languages_for(languages: str | Sequence[str | None] | None, n: int) -> list[str | None]:
    if languages is None or isinstance(languages, str):
        return [languages or "en"] * n
    languages = list(languages)
    if len(languages) != n:
        raise EdgeAsrError(f"got {len(languages)} languages for {n} references; give one per clip or a single code")
    return languages


def utterance_counts(
    refs: Sequence[str],
    hyps: Sequence[str | None],
    languages: str | Sequence[str | None] | None = None,
) -> list[UtteranceCounts]:
    """Per-clip counts, in input order. `languages`: None (English), one code, or one per clip."""
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise EdgeAsrError(f"got {len(refs)} references but {len(hyps)} hypotheses; they must pair up one to one")
    langs = _languages_for(languages, len(refs))
    return [count_errors(r, h, lang) for r, h, lang in zip(refs, hyps, langs, strict=True)]


def _rate(errors: int, total: int) -> float | None:
    # No reference words at all: the rate is undefined, not zero or infinite.
    return errors / total if total else None


@dataclass(frozen=True)
class Score:
    """Corpus-level scores: every rate is sum(errors) / sum(reference size) over the clips."""

    n_clips: int
    n_words: int  # plain normalised reference words
    wer: float | None  # headline: collapsed tokens
    wer_plain: float | None  # plain normalised words
    cer: float | None  # characters, spaces removed
    word_errors: int
    n_tokens: int  # collapsed reference tokens
    token_errors: int
    n_chars: int
    char_errors: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def aggregate(counts: Sequence[UtteranceCounts]) -> Score:
    """Corpus score from per-clip counts, e.g. for one speaker or gender group."""
    word_errors = sum(c.word_errors for c in counts)
    n_words = sum(c.ref_words for c in counts)
    token_errors = sum(c.token_errors for c in counts)
    n_tokens = sum(c.ref_tokens for c in counts)
    char_errors = sum(c.char_errors for c in counts)
    n_chars = sum(c.ref_chars for c in counts)
    return Score(
        n_clips=len(counts),
        n_words=n_words,
        wer=_rate(token_errors, n_tokens),
        wer_plain=_rate(word_errors, n_words),
        cer=_rate(char_errors, n_chars),
        word_errors=word_errors,
        n_tokens=n_tokens,
        token_errors=token_errors,
        n_chars=n_chars,
        char_errors=char_errors,
    )


def score(
    refs: Sequence[str],
    hyps: Sequence[str | None],
    languages: str | Sequence[str | None] | None = None,
) -> Score:
    """Corpus WER (collapsed), plain WER and CER of `hyps` against `refs`."""
    return aggregate(utterance_counts(refs, hyps, languages))


# ---------------------------------------------------------------------------------------------
# Paired bootstrap
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """System B minus system A on the same clips, with a paired bootstrap percentile interval.

    Rates are fractions (0.023 is 2.3 points). `n_clusters` is None when clips were resampled
    independently.
    """

    metric: str
    rate_a: float
    rate_b: float
    delta: float  # rate_b - rate_a, on the full set of clips
    ci_low: float
    ci_high: float
    confidence: float
    n_clips: int
    n_clusters: int | None
    n_resamples: int
    seed: int

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero (B really differs from A at this confidence)."""
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"significant": self.significant}


def _paired_arrays(
    counts_a: Sequence[UtteranceCounts], counts_b: Sequence[UtteranceCounts], metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-clip errors of A, errors of B and reference sizes, after checking the pairing."""
    if len(counts_a) != len(counts_b):
        raise EdgeAsrError(
            f"cannot compare systems scored on different clips: A has {len(counts_a)} clips, B has {len(counts_b)}"
        )
    if not counts_a:
        raise EdgeAsrError("cannot compare systems on zero clips")
    for i, (a, b) in enumerate(zip(counts_a, counts_b, strict=True)):
        if a.reference != b.reference:
            raise EdgeAsrError(
                f"clip {i} has different references for A ({a.reference!r}) and B ({b.reference!r}); "
                "both systems must be scored on the same clips in the same order"
            )
    pairs_a = np.array([c.errors_and_total(metric) for c in counts_a], dtype=np.int64)
    errors_b = np.array([c.errors_and_total(metric)[0] for c in counts_b], dtype=np.int64)
    return pairs_a[:, 0], errors_b, pairs_a[:, 1]


def _clip_resamples(n_clips: int, n_resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clip index, resample index) of every draw: n_clips draws with replacement per resample."""
    clips = rng.integers(0, n_clips, size=(n_resamples, n_clips)).ravel()
    owner = np.repeat(np.arange(n_resamples), n_clips)
    return clips, owner


def _cluster_resamples(
    cluster_codes: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Two-level draws: per resample, pick clusters with replacement, then that cluster's
    number of clips with replacement from within each picked cluster.

    Everything is drawn as flat arrays so 2000 resamples of ~500 clips take a few milliseconds.
    """
    order = np.argsort(cluster_codes, kind="stable")  # clip indices grouped by cluster
    sizes = np.bincount(cluster_codes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    n_clusters = len(sizes)

    picked = rng.integers(0, n_clusters, size=(n_resamples, n_clusters)).ravel()
    draws_per_pick = sizes[picked]
    pick_of_draw = np.repeat(np.arange(picked.size), draws_per_pick)
    cluster_of_draw = picked[pick_of_draw]
    within = (rng.random(pick_of_draw.size) * sizes[cluster_of_draw]).astype(np.int64)
    clips = order[starts[cluster_of_draw] + within]
    owner = pick_of_draw // n_clusters
    return clips, owner


def _encode_clusters(clusters: Sequence[object], n_clips: int) -> np.ndarray:
    clusters = list(clusters)
    if len(clusters) != n_clips:
        raise EdgeAsrError(f"got {len(clusters)} cluster labels for {n_clips} clips; give one label per clip")
    codes: dict[object, int] = {}
    return np.array([codes.setdefault(c, len(codes)) for c in clusters], dtype=np.int64)


def paired_bootstrap(
    counts_a: Sequence[UtteranceCounts],
    counts_b: Sequence[UtteranceCounts],
    clusters: Sequence[object] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    metric: str = "wer",
) -> Comparison:
    """Paired bootstrap of delta = rate_B - rate_A over the same clips.

    Each resample draws clips with replacement (the same draws for A and B, which is what makes
    it paired) and recomputes both corpus rates as sum/sum. With `clusters` (e.g. one speaker id
    per clip), each resample first draws clusters with replacement and then clips within each
    drawn cluster, so the interval also reflects how much results vary between speakers.
    The interval is the percentile interval of the resampled deltas; resamples whose reference
    size is zero (possible only with empty references) are dropped.
    """
    if metric not in METRICS:
        raise EdgeAsrError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if n_resamples < 1:
        raise EdgeAsrError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise EdgeAsrError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    errors_a, errors_b, totals = _paired_arrays(counts_a, counts_b, metric)
    if totals.sum() == 0:
        raise EdgeAsrError(f"the references have no words for {metric}, so there is no rate to compare")

    rng = np.random.default_rng(seed)
    n_clusters = None
    if clusters is None:
        clips, owner = _clip_resamples(len(totals), n_resamples, rng)
    else:
        codes = _encode_clusters(clusters, len(totals))
        n_clusters = int(codes.max()) + 1
        clips, owner = _cluster_resamples(codes, n_resamples, rng)

    # Per resample: sum of (B errors - A errors) over sum of reference sizes.
    diff_sums = np.bincount(owner, weights=errors_b[clips] - errors_a[clips], minlength=n_resamples)
    total_sums = np.bincount(owner, weights=totals[clips], minlength=n_resamples)
    valid = total_sums > 0
    deltas = diff_sums[valid] / total_sums[valid]

    tail = (1 - confidence) / 2 * 100
    ci_low, ci_high = np.percentile(deltas, [tail, 100 - tail])
    rate_a = errors_a.sum() / totals.sum()
    rate_b = errors_b.sum() / totals.sum()
    return Comparison(
        metric=metric,
        rate_a=float(rate_a),
        rate_b=float(rate_b),
        delta=float(rate_b - rate_a),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        confidence=confidence,
        n_clips=len(totals),
        n_clusters=n_clusters,
        n_resamples=n_resamples,
        seed=seed,
    )


def format_comparison(name_a: str, name_b: str, comparison: Comparison) -> str:
    """One line, e.g. "B vs A: WER +2.3 pts [95% CI +0.4, +4.1] (n=130 clips) — significant"."""
    c = comparison
    label = METRIC_LABELS.get(c.metric, c.metric)
    sample = f"n={c.n_clips} clips" + (f", {c.n_clusters} clusters" if c.n_clusters is not None else "")
    verdict = "significant" if c.significant else "not significant"
    return (
        f"{name_b} vs {name_a}: {label} {100 * c.delta:+.1f} pts "
        f"[{100 * c.confidence:g}% CI {100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}] ({sample}) — {verdict}"
    )
