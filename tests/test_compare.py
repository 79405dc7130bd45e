"""Tests for exporter.compare: pairing two saved eval results and bootstrapping the WER change.

The eval results are built by hand from real AN4 references with made-up hypotheses, so no model
runs and the tests take well under a second.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from exporter.compare import ComparisonReport, compare_evals, format_report, load_eval
from exporter.evaluate import SCHEMA_VERSION
from exporter.scoring import count_errors
from runtimes.errors import EdgeAsrError

N_CLIPS = 120  # enough clips, from several speakers, for a clear verdict; still fast to score


@pytest.fixture(scope="module")
def an4_rows(shared_data: Path) -> list[dict]:
    manifest = shared_data / "an4" / "manifest.jsonl"  # shared_data fails in CI when the data is missing
    with manifest.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:N_CLIPS]


def _drop_last_word(text: str) -> str:
    return " ".join(text.split()[:-1])


def _hypotheses(rows: list[dict], every: int) -> list[str]:
    """The reference, except that every `every`-th clip loses its last word (a deletion)."""
    return [_drop_last_word(r["transcript"]) if i % every == 0 else r["transcript"] for i, r in enumerate(rows)]


def make_eval(
    rows: list[dict], hyps: list[str], model_id: str = "tiny.en", runtime: str = "ct2", group_by: str | None = None
) -> dict:
    """An eval result shaped like `EvalResult.to_dict()` (only the fields compare reads are real)."""
    utterances = []
    for row, hyp in zip(rows, hyps, strict=True):
        counts = count_errors(row["transcript"], hyp, "en")
        utterances.append(
            {
                "utt_id": row["utt_id"],
                "audio_path": row["audio_path"],
                "reference": row["transcript"],
                "hypothesis": hyp,
                "language": "en",
                "audio_seconds": row["duration_s"],
                "timings": {"total": 0.1},
                "group": row[group_by] if group_by else None,
                "counts": vars(counts).copy(),
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "model_id": model_id,
        "runtime": runtime,
        "data": "an4",
        "group_by": group_by,
        "overall": None,
        "groups": {},
        "speed": {},
        "utterances": utterances,
    }


def _roundtrip(tmp_path: Path, name: str, data: dict) -> dict:
    """Write the result to a file and read it back, as the CLI will."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return load_eval(path)


@pytest.fixture(scope="module")
def good(an4_rows, tmp_path_factory) -> dict:
    # A near-perfect system: one clip in 20 loses a word.
    data = make_eval(an4_rows, _hypotheses(an4_rows, every=20), group_by="speaker")
    return _roundtrip(tmp_path_factory.mktemp("evals"), "good", data)


@pytest.fixture(scope="module")
def bad(an4_rows, tmp_path_factory) -> dict:
    # A clearly worse system on the same clips: every other clip loses a word.
    data = make_eval(
        an4_rows, _hypotheses(an4_rows, every=2), model_id="tiny.en-int8", runtime="onnx", group_by="speaker"
    )
    return _roundtrip(tmp_path_factory.mktemp("evals"), "bad", data)


# Tests share these two results: they must copy (dict(...)) rather than modify them.


# --- verdicts ----------------------------------------------------------------------------------


def test_a_against_itself_has_zero_delta_and_covers_zero(good):
    report = compare_evals(good, good, n_resamples=500)
    o = report.overall
    assert o.delta == 0
    assert o.ci_low <= 0 <= o.ci_high
    assert not o.significant
    assert report.n_clips == N_CLIPS
    assert report.name_a.endswith("(A)") and report.name_b.endswith("(B)")  # same model: told apart


def test_clearly_worse_b_is_a_significant_increase(good, bad):
    report = compare_evals(good, bad, n_resamples=500)
    o = report.overall
    assert o.rate_b > o.rate_a
    assert o.delta > 0 and o.ci_low > 0
    assert o.significant
    assert report.name_a == "tiny.en [ct2]" and report.name_b == "tiny.en-int8 [onnx]"
    text = format_report(report)
    assert "tiny.en-int8 [onnx] vs tiny.en [ct2]: WER +" in text
    assert "— significant" in text


def test_other_metrics_are_labelled(good, bad):
    text = format_report(compare_evals(good, bad, metric="cer", n_resamples=200))
    assert "CER A%" in text and ": CER +" in text


def test_unknown_metric_is_rejected(good):
    with pytest.raises(EdgeAsrError, match="unknown metric"):
        compare_evals(good, good, metric="bleu")


# --- pairing -----------------------------------------------------------------------------------


def test_clip_order_does_not_matter(good, bad):
    shuffled = dict(bad, utterances=random.Random(1).sample(bad["utterances"], len(bad["utterances"])))
    assert compare_evals(good, shuffled, n_resamples=300) == compare_evals(good, bad, n_resamples=300)


def test_different_clip_sets_are_named_with_counts(good, bad):
    extra = dict(bad["utterances"][0], audio_path="wav/test/xxxx/extra.wav")
    b = dict(bad, utterances=bad["utterances"][2:] + [extra])
    with pytest.raises(EdgeAsrError) as err:
        compare_evals(good, b)
    message = str(err.value)
    assert "2 only in A" in message and "1 only in B" in message
    assert good["utterances"][0]["audio_path"] in message or good["utterances"][1]["audio_path"] in message
    assert "extra.wav" in message


def test_same_clip_with_different_reference_is_refused(good, bad):
    first = bad["utterances"][0]
    changed = dict(first, counts=dict(first["counts"], reference="something else"))
    with pytest.raises(EdgeAsrError, match=f"clip {first['audio_path']} has different references"):
        compare_evals(good, dict(bad, utterances=[changed] + bad["utterances"][1:]))


# --- loading -----------------------------------------------------------------------------------


def test_result_without_counts_is_a_clear_error(an4_rows, tmp_path):
    data = make_eval(an4_rows, _hypotheses(an4_rows, every=5))
    for utt in data["utterances"]:
        utt["counts"] = None
        utt["reference"] = None
    path = tmp_path / "untranscribed.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(EdgeAsrError, match="no per-clip error counts.*no transcripts"):
        load_eval(path)
    with pytest.raises(EdgeAsrError, match="no per-clip error counts"):
        compare_evals(data, data)  # dicts that never went through load_eval are checked too


def test_missing_file(tmp_path):
    with pytest.raises(EdgeAsrError, match="not found.*--json"):
        load_eval(tmp_path / "nope.json")


def test_not_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(EdgeAsrError, match="not valid JSON"):
        load_eval(path)


def test_wrong_schema_version(good, tmp_path):
    path = tmp_path / "future.json"
    path.write_text(json.dumps(dict(good, schema_version=99)), encoding="utf-8")
    with pytest.raises(EdgeAsrError, match="schema_version 99"):
        load_eval(path)


# --- groups and clusters -----------------------------------------------------------------------


def test_per_group_rows_when_both_grouped_alike(good, bad, an4_rows):
    report = compare_evals(good, bad, n_resamples=300)
    speakers = sorted({r["speaker"] for r in an4_rows})
    assert report.group_by == "speaker"
    assert [g.group for g in report.groups] == speakers
    assert sum(g.n_clips for g in report.groups) == N_CLIPS
    text = format_report(report)
    for speaker in speakers:
        assert any(line.startswith(speaker) for line in text.splitlines())
    assert any(line.startswith("all ") for line in text.splitlines())


def test_single_clip_group_has_rates_but_no_interval(good, bad):
    def regroup(data: dict) -> dict:
        # Move the first clip into a group of its own.
        utts = [dict(u) for u in data["utterances"]]
        utts[0]["group"] = "lonely"
        return dict(data, utterances=utts)

    report = compare_evals(regroup(good), regroup(bad), n_resamples=200)
    lonely = next(g for g in report.groups if g.group == "lonely")
    assert lonely.n_clips == 1 and lonely.comparison is None and lonely.rate_a is not None
    assert any("lonely" in note for note in report.notes)
    row = next(line for line in format_report(report).splitlines() if line.startswith("lonely"))
    assert row.split()[-2:] == ["-", "-"]  # no CI, no verdict


def test_no_group_rows_when_ungrouped_or_grouped_differently(good, bad):
    ungrouped = dict(bad, group_by=None, utterances=[dict(u, group=None) for u in bad["utterances"]])
    report = compare_evals(good, ungrouped, n_resamples=200)
    assert report.groups == () and report.group_by is None
    assert any("grouped by" in note for note in report.notes)


def test_cluster_by_group_resamples_speakers(good, bad, an4_rows):
    report = compare_evals(good, bad, cluster_by="group", n_resamples=300)
    assert report.overall.n_clusters == len({r["speaker"] for r in an4_rows})
    assert "clusters" in format_report(report)
    plain = compare_evals(good, bad, n_resamples=300)
    assert plain.overall.n_clusters is None
    assert plain.overall.delta == report.overall.delta  # clustering changes the interval only


def test_cluster_by_group_needs_grouped_results(good, bad):
    ungrouped = dict(bad, group_by=None)
    with pytest.raises(EdgeAsrError, match="--group-by"):
        compare_evals(good, ungrouped, cluster_by="group")
    with pytest.raises(EdgeAsrError, match="cannot cluster by 'speaker'"):
        compare_evals(good, bad, cluster_by="speaker")


# --- reproducibility and JSON ------------------------------------------------------------------


def test_same_seed_gives_identical_report(good, bad):
    first = compare_evals(good, bad, cluster_by="group", n_resamples=300, seed=7)
    second = compare_evals(good, bad, cluster_by="group", n_resamples=300, seed=7)
    assert first == second
    assert format_report(first) == format_report(second)
    other = compare_evals(good, bad, cluster_by="group", n_resamples=300, seed=8)
    assert (other.overall.ci_low, other.overall.ci_high) != (first.overall.ci_low, first.overall.ci_high)


def test_to_dict_is_json_ready(good, bad):
    report = compare_evals(good, bad, n_resamples=200)
    assert isinstance(report, ComparisonReport)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["overall"]["significant"] is True
    assert data["n_clips"] == N_CLIPS
    assert {g["group"] for g in data["groups"]} == {g.group for g in report.groups}
    assert data["groups"][0]["comparison"]["metric"] == "wer"
