"""Transcribe a data set with a runner and score it, overall and per group."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from exporter.data import Dataset, Utterance
from exporter.scoring import Score, UtteranceCounts, aggregate, count_errors
from runtimes.audio import load_audio
from runtimes.base import Runner
from runtimes.decoding import DecodingOptions
from runtimes.errors import EdgeAsrError

SCHEMA_VERSION = 1


@dataclass
class UtteranceResult:
    utt_id: str
    audio_path: str
    reference: str | None
    hypothesis: str
    language: str
    audio_seconds: float
    timings: dict[str, float]
    group: str | None = None
    counts: UtteranceCounts | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["counts"] = None if self.counts is None else asdict(self.counts)
        return data


@dataclass
class EvalResult:
    model_id: str
    runtime: str
    data: str
    group_by: str | None
    utterances: list[UtteranceResult]
    overall: Score | None
    groups: dict[str, Score] = field(default_factory=dict)

    def hypotheses(self) -> list[str]:
        return [u.hypothesis for u in self.utterances]

    def counts(self) -> list[UtteranceCounts]:
        return [u.counts for u in self.utterances if u.counts is not None]

    def speed(self) -> dict[str, float]:
        audio = sum(u.audio_seconds for u in self.utterances)
        compute = sum(u.timings["total"] for u in self.utterances)
        latencies = [u.timings["total"] for u in self.utterances]
        return {
            "audio_seconds": round(audio, 3),
            "compute_seconds": round(compute, 3),
            "real_time_factor": round(compute / audio, 4) if audio else None,
            "median_latency_s": round(statistics.median(latencies), 4) if latencies else None,
        }

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "model_id": self.model_id,
            "runtime": self.runtime,
            "data": self.data,
            "group_by": self.group_by,
            "overall": None if self.overall is None else self.overall.to_dict(),
            "groups": {name: score.to_dict() for name, score in self.groups.items()},
            "speed": self.speed(),
            "utterances": [u.to_dict() for u in self.utterances],
        }


def _check_languages(runner: Runner, dataset: Dataset) -> None:
    if runner.special.is_multilingual:
        return
    other = sorted({u.language for u in dataset if u.language not in (None, "en")})
    if other:
        raise EdgeAsrError(
            f"the model is English-only but the data has languages {', '.join(other)}; "
            "use a multilingual model (--model base) or an English-only data set"
        )


def _decode_one(runner: Runner, utt: Utterance, group_by: str | None, loop_guard: bool = True) -> UtteranceResult:
    samples = load_audio(utt.audio_path, expected_rate=utt.sample_rate)
    language = utt.language if runner.special.is_multilingual else None
    out = runner.transcribe(samples, DecodingOptions(language=language, loop_guard=loop_guard))
    return UtteranceResult(
        utt_id=utt.utt_id,
        audio_path=str(utt.audio_path),
        reference=utt.transcript,
        hypothesis=out.text,
        language=out.language,
        audio_seconds=round(out.audio_seconds, 4),
        timings={k: round(v, 5) for k, v in out.timings.items()},
        group=utt.group(group_by) if group_by else None,
        counts=None if utt.transcript is None else count_errors(utt.transcript, out.text, utt.language or "en"),
    )


def evaluate(
    runner: Runner,
    dataset: Dataset,
    model_id: str,
    group_by: str | None = None,
    progress: bool = True,
    loop_guard: bool = True,
) -> EvalResult:
    """Transcribe every utterance; score those with transcripts (overall and per `group_by` value)."""
    _check_languages(runner, dataset)
    if group_by:
        for utt in dataset:
            utt.group(group_by)  # fail before any decoding when a group value is missing
    results = [
        _decode_one(runner, utt, group_by, loop_guard)
        for utt in tqdm(dataset, desc=f"{model_id} [{runner.name}]", unit="clip", disable=not progress)
    ]
    scored = [r for r in results if r.counts is not None]
    by_group: dict[str, list[UtteranceCounts]] = defaultdict(list)
    for r in scored:
        if r.group is not None:
            by_group[r.group].append(r.counts)
    return EvalResult(
        model_id=model_id,
        runtime=runner.name,
        data=str(dataset.source),
        group_by=group_by,
        utterances=results,
        overall=aggregate([r.counts for r in scored]) if scored else None,
        groups={name: aggregate(counts) for name, counts in sorted(by_group.items())},
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_table(result: EvalResult) -> str:
    """Plain-text table: one row per group and one overall, WER (collapsed), plain WER, CER, n."""
    header = f"{'group':<16} {'clips':>6} {'words':>6} {'WER%':>7} {'plainWER%':>10} {'CER%':>7}"
    lines = [f"model {result.model_id} on {result.data} ({result.runtime})", header, "-" * len(header)]
    rows = list(result.groups.items()) + ([("all", result.overall)] if result.overall else [])
    for name, s in rows:
        lines.append(
            f"{name:<16} {s.n_clips:>6} {s.n_words:>6} {_pct(s.wer):>7} {_pct(s.wer_plain):>10} {_pct(s.cer):>7}"
        )
    if result.overall is None:
        lines.append("(no transcripts in the data: WER not computed)")
    speed = result.speed()
    lines.append(
        f"audio {speed['audio_seconds']:.1f} s, compute {speed['compute_seconds']:.1f} s, "
        f"real-time factor {speed['real_time_factor']}"
    )
    return "\n".join(lines)
