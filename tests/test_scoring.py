"""Tests for exporter.scoring: the collapse rule, corpus sums and the paired bootstrap."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from exporter.scoring import (
    Comparison,
    aggregate,
    collapse,
    count_errors,
    format_comparison,
    paired_bootstrap,
    score,
    scoring_tokens,
    utterance_counts,
)
from runtimes.errors import EdgeAsrError


@pytest.fixture(scope="module")
def an4_transcripts(shared_data: Path) -> list[str]:
    with (shared_data / "an4" / "manifest.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line)["transcript"] for line in f if line.strip()]


# --- collapse rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("p i t t s b u r g h", ["pittsburgh"]),
        ("661 5064", ["6615064"]),
        ("j p e g 4", ["jpeg", "4"]),
        ("enter 9169", ["enter", "9169"]),
        ("a b c 1 2 3 d e", ["abc", "123", "de"]),
        ("rubout z y t l 51", ["rubout", "zytl", "51"]),
        ("i think", ["i", "think"]),  # a lone letter stays a word
        ("3.5 2", ["3.5", "2"]),  # decimals are not digit runs
        ("5 6 one 5", ["5615"]),  # "one" is the normaliser's spelling of a lone 1
        ("", []),
    ],
)
def test_collapse_rule(words, expected):
    assert collapse(words.split()) == expected


def test_collapse_keeps_one_as_word_outside_english():
    assert collapse(["5", "one"], language="fr") == ["5", "one"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5 6 one 5", ["5615"]),  # normalises to "5 61 5"
        ("5 6 1 5", ["5615"]),  # normalises to "5 6 one 5"
        ("J P E G FOUR", ["jpeg", "4"]),
        ("J O H N", ["john"]),  # the normaliser alone gives "j 0 h n"
        ("M O R E W O O D", ["morewood"]),  # ... and "m 0 r e w 00 d"
        ("J. O. H. N.", ["john"]),
        ("O U FOUR SEVEN TWENTY NINE", ["ou", "4729"]),
        ("ERASE E X X S ZERO", ["erase", "exxs", "0"]),
        ("SEVEN OH SIX NINE", ["7069"]),  # "oh" among digits is still zero
        ("Oh, five", ["05"]),
    ],
)
def test_scoring_tokens(text, expected):
    assert scoring_tokens(text) == expected


def test_collapse_on_real_an4_references(an4_transcripts):
    by_text = set(an4_transcripts)
    expected = {
        "P I T T S B U R G H": ["pittsburgh"],
        "TWO SIX EIGHT FOUR FOUR ONE EIGHT": ["2684418"],
        "N L N S ONE SEVENTY FIVE": ["nlns", "175"],
        "ERASE C K C W FOURTEEN EIGHTY FIVE": ["erase", "ckcw", "1485"],
        "M O R E W O O D": ["morewood"],
        "J O H N": ["john"],
        "P T Q D Q ONE": ["ptqdq", "1"],
    }
    present = {ref: tokens for ref, tokens in expected.items() if ref in by_text}
    assert len(present) >= 4, f"expected AN4 references missing; found only {sorted(present)}"
    for ref, tokens in present.items():
        assert scoring_tokens(ref) == tokens, ref


def test_every_fully_spelled_an4_reference_collapses_to_one_word(an4_transcripts):
    spelled = [t for t in an4_transcripts if all(len(w) == 1 and w.isalpha() for w in t.split())]
    assert len(spelled) > 50
    for ref in spelled:
        assert scoring_tokens(ref) == ["".join(ref.split()).lower()], ref


def test_every_an4_digit_reference_collapses_to_one_number(an4_transcripts):
    digit_words = {"ZERO", "OH", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"}
    digit_strings = [t for t in an4_transcripts if len(t.split()) > 1 and set(t.split()) <= digit_words]
    assert len(digit_strings) > 10
    for ref in digit_strings:
        tokens = scoring_tokens(ref)
        assert len(tokens) == 1 and tokens[0].isdecimal() and len(tokens[0]) == len(ref.split()), ref


# --- per-utterance counts -------------------------------------------------------------------


def test_spelled_word_split_differently_costs_two_collapsed_errors():
    counts = count_errors("P I T T S B U R G H", "pittsbu rgh")
    assert counts.ref_tokens == 1 and counts.token_errors == 2
    assert counts.ref_words == 10 and counts.word_errors >= 9
    assert counts.char_errors == 0


def test_digit_grouping_does_not_count():
    counts = count_errors("6615064", "661 5064")
    assert counts.token_errors == 0 and counts.char_errors == 0
    assert counts.word_errors == 2  # plain: one substitution and one insertion


def test_spoken_form_digits_score_zero():
    counts = count_errors("ENTER NINE ONE SIX NINE", "Enter 9169.")
    assert (counts.word_errors, counts.token_errors, counts.char_errors) == (0, 0, 0)
    assert counts.ref_words == 2 and counts.ref_tokens == 2


def test_empty_reference_counts_insertions():
    counts = count_errors("", "hello there")
    assert (counts.ref_words, counts.word_errors) == (0, 2)
    assert (counts.ref_tokens, counts.token_errors) == (0, 2)
    assert (counts.ref_chars, counts.char_errors) == (0, len("hellothere"))


def test_missing_hypothesis_counts_as_empty():
    counts = count_errors("GO STOP", None)
    assert counts.word_errors == 2 and counts.token_errors == 2


# --- corpus scores --------------------------------------------------------------------------


def test_corpus_wer_is_sum_over_sum_not_mean_of_rates():
    refs = ["YES", "alpha beta gamma delta epsilon zeta eta theta iota kappa"]  # 1 + 10 words
    hyps = ["no", "alpha beta gamma delta epsilon zeta eta theta iota kappa"]
    result = score(refs, hyps)
    assert result.n_clips == 2 and result.n_words == 11 and result.word_errors == 1
    assert result.wer == pytest.approx(1 / 11)  # a mean of per-clip rates would give 0.5
    assert result.wer_plain == pytest.approx(1 / 11)


def test_corpus_with_no_reference_words_has_no_rate():
    result = score(["", "uh"], ["something", ""])  # "uh" is a filler the normaliser removes
    assert result.n_words == 0 and result.word_errors == 1
    assert result.wer is None and result.wer_plain is None and result.cer is None
    assert json.loads(json.dumps(result.to_dict()))["wer"] is None


def test_empty_reference_adds_insertions_to_corpus():
    result = score(["GO", ""], ["go", "extra words"])
    assert result.n_words == 1 and result.word_errors == 2 and result.wer == 2.0


def test_score_equals_aggregate_of_utterance_counts():
    refs = ["P I T T S B U R G H", "ENTER NINE ONE SIX NINE", "YES"]
    hyps = ["Pittsburgh", "Enter 9169.", "Yeah."]
    assert score(refs, hyps) == aggregate(utterance_counts(refs, hyps))
    result = score(refs, hyps)
    assert (result.n_tokens, result.token_errors) == (4, 1)
    assert result.wer == pytest.approx(1 / 4)
    assert set(result.to_dict()) >= {"n_clips", "n_words", "wer", "wer_plain", "cer"}


def test_languages_per_clip_and_validation():
    assert score(["Bonjour  le monde"], ["bonjour le monde"], languages=["fr"]).wer == 0
    with pytest.raises(EdgeAsrError, match="languages"):
        score(["a", "b"], ["a", "b"], languages=["en"])
    with pytest.raises(EdgeAsrError, match="2 references but 1 hypotheses"):
        score(["a", "b"], ["a"])


# --- paired bootstrap -----------------------------------------------------------------------


def _synthetic_refs(n: int) -> list[str]:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    return [" ".join(words[(i + k) % len(words)] for k in range(3 + i % 4)) for i in range(n)]


def _drop_last_word(text: str) -> str:
    return " ".join(text.split()[:-1])


@pytest.fixture(scope="module")
def paired_systems():
    """System A is nearly perfect; system B returns nothing for every second clip."""
    refs = _synthetic_refs(200)
    hyps_a = [_drop_last_word(r) if i % 10 == 0 else r for i, r in enumerate(refs)]
    hyps_b = ["" if i % 2 else r for i, r in enumerate(refs)]
    return refs, utterance_counts(refs, hyps_a), utterance_counts(refs, hyps_b)


def test_bootstrap_is_reproducible_for_a_seed(paired_systems):
    _, a, b = paired_systems
    first = paired_bootstrap(a, b, seed=7, n_resamples=500)
    again = paired_bootstrap(a, b, seed=7, n_resamples=500)
    other = paired_bootstrap(a, b, seed=8, n_resamples=500)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_system_against_itself_has_zero_delta(paired_systems):
    _, a, _ = paired_systems
    comparison = paired_bootstrap(a, a)
    assert comparison.delta == 0
    assert comparison.ci_low <= 0 <= comparison.ci_high
    assert not comparison.significant


def test_clearly_worse_system_is_significant(paired_systems):
    _, a, b = paired_systems
    comparison = paired_bootstrap(a, b)
    assert comparison.delta > 0.3
    assert 0 < comparison.ci_low <= comparison.delta <= comparison.ci_high
    assert comparison.significant
    reverse = paired_bootstrap(b, a)
    assert reverse.ci_high < 0 and reverse.significant


def test_delta_matches_corpus_scores(paired_systems):
    refs, a, b = paired_systems
    comparison = paired_bootstrap(a, b, metric="wer_plain")
    assert comparison.rate_a == pytest.approx(aggregate(a).wer_plain)
    assert comparison.delta == pytest.approx(aggregate(b).wer_plain - aggregate(a).wer_plain)
    assert paired_bootstrap(a, b, metric="cer").delta == pytest.approx(aggregate(b).cer - aggregate(a).cer)


def test_clustered_interval_is_wider_when_one_speaker_carries_the_errors():
    refs = _synthetic_refs(200)
    speakers = [f"spk{i % 10}" for i in range(200)]
    hyps_a = list(refs)
    # B fails only on speaker 0's clips: the difference is one speaker's problem, which clip-level
    # resampling treats as 20 independent pieces of evidence.
    hyps_b = ["" if spk == "spk0" else r for r, spk in zip(refs, speakers)]
    a, b = utterance_counts(refs, hyps_a), utterance_counts(refs, hyps_b)
    flat = paired_bootstrap(a, b, seed=1)
    clustered = paired_bootstrap(a, b, clusters=speakers, seed=1)
    assert clustered.n_clusters == 10 and flat.n_clusters is None
    assert clustered.delta == flat.delta
    assert clustered.ci_high - clustered.ci_low >= flat.ci_high - flat.ci_low
    assert clustered.ci_low <= flat.ci_low  # one-speaker effect: can even include zero


def test_clustered_bootstrap_is_reproducible_and_covers_delta(paired_systems):
    refs, a, b = paired_systems
    speakers = [i % 7 for i in range(len(refs))]
    first = paired_bootstrap(a, b, clusters=speakers, seed=3)
    assert first == paired_bootstrap(a, b, clusters=speakers, seed=3)
    assert first.ci_low <= first.delta <= first.ci_high


def test_bootstrap_is_fast():
    refs = _synthetic_refs(500)
    a = utterance_counts(refs, refs)
    b = utterance_counts(refs, [_drop_last_word(r) for r in refs])
    speakers = [i % 40 for i in range(500)]
    start = time.perf_counter()
    paired_bootstrap(a, b, n_resamples=2000)
    paired_bootstrap(a, b, clusters=speakers, n_resamples=2000)
    assert time.perf_counter() - start < 1.0


def test_bootstrap_validation(paired_systems):
    refs, a, b = paired_systems
    with pytest.raises(EdgeAsrError, match="A has 200 clips, B has 199"):
        paired_bootstrap(a, b[:-1])
    with pytest.raises(EdgeAsrError, match="clip 0 has different references"):
        paired_bootstrap(a, list(reversed(b)))
    with pytest.raises(EdgeAsrError, match="cluster labels"):
        paired_bootstrap(a, b, clusters=["s"] * 3)
    with pytest.raises(EdgeAsrError, match="unknown metric"):
        paired_bootstrap(a, b, metric="bleu")
    with pytest.raises(EdgeAsrError, match="zero clips"):
        paired_bootstrap([], [])
    empty = utterance_counts([""], ["x"])
    with pytest.raises(EdgeAsrError, match="no words"):
        paired_bootstrap(empty, empty)


# --- formatting -----------------------------------------------------------------------------


def test_format_comparison():
    comparison = Comparison(
        metric="wer",
        rate_a=0.10,
        rate_b=0.123,
        delta=0.023,
        ci_low=0.004,
        ci_high=0.041,
        confidence=0.95,
        n_clips=130,
        n_clusters=None,
        n_resamples=2000,
        seed=0,
    )
    assert format_comparison("A", "B", comparison) == (
        "B vs A: WER +2.3 pts [95% CI +0.4, +4.1] (n=130 clips) — significant"
    )
    unclear = Comparison(
        metric="cer",
        rate_a=0.1,
        rate_b=0.09,
        delta=-0.01,
        ci_low=-0.03,
        ci_high=0.012,
        confidence=0.9,
        n_clips=130,
        n_clusters=10,
        n_resamples=2000,
        seed=0,
    )
    assert format_comparison("fp32", "int8", unclear) == (
        "int8 vs fp32: CER -1.0 pts [90% CI -3.0, +1.2] (n=130 clips, 10 clusters) — not significant"
    )
    assert unclear.to_dict()["significant"] is False


def test_mixed_letter_digit_tokens_split_at_boundaries():
    from exporter.scoring import scoring_tokens

    # the Whisper normaliser already separates letters from digits; collapsing must keep that
    assert scoring_tokens("HPGL77") == ["hpgl", "77"]
    assert scoring_tokens("H P G L SEVENTY SEVEN") == scoring_tokens("HPGL77")
    assert scoring_tokens("June 11th, 1967") == ["june", "11th", "1967"]  # ordinals stay whole
