"""Compare two saved `edgeasr eval --json` results on the same clips, with bootstrap intervals.

Why a separate step rather than evaluating both models in one run: evaluations are slow (a phone,
a big model) and are usually done at different times; the JSON files already hold per-clip edit
counts, so a comparison needs no audio and no model, only the two files.

The two results are paired by `audio_path`, so the order of clips in either file does not matter;
the paired clips are sorted by path before resampling, which makes the report depend only on the
files' content and the seed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from exporter.evaluate import SCHEMA_VERSION
from exporter.scoring import (
    METRIC_LABELS,
    METRICS,
    Comparison,
    UtteranceCounts,
    format_comparison,
    paired_bootstrap,
)
from runtimes.errors import EdgeAsrError

CLUSTER_CHOICES = ("group",)
# An interval from one clip is meaningless (every resample is that clip), so smaller groups get
# their rates but no CI.
MIN_CLIPS_FOR_CI = 2

_COUNT_FIELDS = tuple(f.name for f in dataclasses.fields(UtteranceCounts))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_eval(path: str | Path) -> dict:
    """Read and check one `edgeasr eval --json` file; raise EdgeAsrError if it cannot be compared."""
    path = Path(path)
    if not path.exists():
        raise EdgeAsrError(f"eval result not found: {path} (write one with `edgeasr eval ... --json {path}`)")
    if not path.is_file():
        raise EdgeAsrError(f"eval result {path} is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeAsrError(
            f"eval result {path} is not valid JSON ({exc}); expected the file written by `edgeasr eval --json`"
        ) from exc
    _check_eval(data, str(path))
    return data


def _check_eval(data: object, source: str) -> None:
    """The shape checks shared by files (load_eval) and dicts handed to compare_evals directly."""
    if not isinstance(data, dict) or not isinstance(data.get("utterances"), list):
        raise EdgeAsrError(f"{source} is not an edgeasr eval result (no 'utterances' list)")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise EdgeAsrError(
            f"{source} has schema_version {version!r}, but this edgeasr reads version "
            f"{SCHEMA_VERSION}; re-run `edgeasr eval --json` with this version"
        )
    if not any(isinstance(u, dict) and u.get("counts") for u in data["utterances"]):
        raise EdgeAsrError(
            f"{source} has no per-clip error counts: the data it was evaluated on had no "
            "transcripts, so there is no WER to compare"
        )


# ---------------------------------------------------------------------------------------------
# Pairing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clip:
    counts: UtteranceCounts
    group: str | None


def _system_name(data: dict) -> str:
    return f"{data.get('model_id', '?')} [{data.get('runtime', '?')}]"


def _counts_from_json(raw: dict, where: str) -> UtteranceCounts:
    missing = [name for name in _COUNT_FIELDS if name not in raw]
    if missing:
        raise EdgeAsrError(f"{where}: counts lack {', '.join(missing)}; is this an edgeasr eval result?")
    return UtteranceCounts(**{name: raw[name] for name in _COUNT_FIELDS})


def _scored_clips(data: dict, side: str) -> dict[str, _Clip]:
    """audio_path -> counts and group of every clip that has counts (clips without a transcript
    carry no score and take no part in the comparison)."""
    _check_eval(data, f"result {side}")
    clips: dict[str, _Clip] = {}
    for utt in data["utterances"]:
        if not utt.get("counts"):
            continue
        path = utt["audio_path"]
        if path in clips:
            raise EdgeAsrError(f"result {side} lists clip {path} twice; cannot pair it with the other result")
        group = utt.get("group")
        clips[path] = _Clip(
            _counts_from_json(utt["counts"], f"result {side}, clip {path}"), None if group is None else str(group)
        )
    return clips


def _check_same_clips(clips_a: dict[str, _Clip], clips_b: dict[str, _Clip]) -> list[str]:
    """The shared clip paths, sorted; raise if either side has clips the other lacks, or if a clip's
    reference differs between them."""
    only_a = sorted(clips_a.keys() - clips_b.keys())
    only_b = sorted(clips_b.keys() - clips_a.keys())
    if only_a or only_b:
        details = [
            f"{len(only_a)} only in A" + (f" (e.g. {only_a[0]})" if only_a else ""),
            f"{len(only_b)} only in B" + (f" (e.g. {only_b[0]})" if only_b else ""),
        ]
        raise EdgeAsrError(
            f"the two results were scored on different clips: {', '.join(details)}; "
            "run both evaluations on the same --data"
        )
    paths = sorted(clips_a)
    # paired_bootstrap checks this too, but only knows clip indices; here we can name the file.
    for path in paths:
        ref_a, ref_b = clips_a[path].counts.reference, clips_b[path].counts.reference
        if ref_a != ref_b:
            raise EdgeAsrError(
                f"clip {path} has different references in A ({ref_a!r}) and B ({ref_b!r}); "
                "were the two results evaluated on the same manifest?"
            )
    return paths


def _shared_group_by(a: dict, b: dict) -> str | None:
    """The grouping key both results used, or None when either was ungrouped or they differ."""
    key_a, key_b = a.get("group_by"), b.get("group_by")
    return key_a if key_a and key_a == key_b else None


def _group_labels(paths: list[str], clips_a: dict[str, _Clip], clips_b: dict[str, _Clip]) -> list[str]:
    """One group value per clip; A and B must agree, since they describe the same clip."""
    labels = []
    for path in paths:
        group_a, group_b = clips_a[path].group, clips_b[path].group
        if group_a is None or group_a != group_b:
            raise EdgeAsrError(
                f"clip {path} is in group {group_a!r} in A but {group_b!r} in B; "
                "were the two results evaluated on the same manifest?"
            )
        labels.append(group_a)
    return labels


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupComparison:
    """One group's rates for A and B; `comparison` is None when the group is too small for a CI."""

    group: str
    n_clips: int
    rate_a: float | None  # None when the group's references have no words for the metric
    rate_b: float | None
    comparison: Comparison | None

    def to_dict(self) -> dict:
        return {
            "group": self.group,
            "n_clips": self.n_clips,
            "rate_a": self.rate_a,
            "rate_b": self.rate_b,
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
        }


@dataclass(frozen=True)
class ComparisonReport:
    """B minus A on the same clips: overall and (when both results were grouped alike) per group."""

    name_a: str
    name_b: str
    metric: str
    n_clips: int
    group_by: str | None
    cluster_by: str | None
    overall: Comparison
    groups: tuple[GroupComparison, ...] = ()
    notes: tuple[str, ...] = ()  # why something the user may expect (per-group rows) is absent

    def to_dict(self) -> dict:
        return {
            "name_a": self.name_a,
            "name_b": self.name_b,
            "metric": self.metric,
            "n_clips": self.n_clips,
            "group_by": self.group_by,
            "cluster_by": self.cluster_by,
            "overall": self.overall.to_dict(),
            "groups": [g.to_dict() for g in self.groups],
            "notes": list(self.notes),
        }


def _rate(counts: list[UtteranceCounts], metric: str) -> float | None:
    pairs = [c.errors_and_total(metric) for c in counts]
    total = sum(t for _, t in pairs)
    return sum(e for e, _ in pairs) / total if total else None


def _compare_group(
    name: str,
    counts_a: list[UtteranceCounts],
    counts_b: list[UtteranceCounts],
    metric: str,
    n_resamples: int,
    seed: int,
) -> GroupComparison:
    rate_a, rate_b = _rate(counts_a, metric), _rate(counts_b, metric)
    comparison = None
    # Within one group every clip shares the group's cluster label, so clusters would add nothing:
    # resample clips.
    if len(counts_a) >= MIN_CLIPS_FOR_CI and rate_a is not None:
        comparison = paired_bootstrap(counts_a, counts_b, n_resamples=n_resamples, seed=seed, metric=metric)
    return GroupComparison(name, len(counts_a), rate_a, rate_b, comparison)


def _distinct_names(a: dict, b: dict) -> tuple[str, str]:
    name_a, name_b = _system_name(a), _system_name(b)
    # Comparing a model with itself (e.g. two runs) would otherwise read "x vs x".
    return (f"{name_a} (A)", f"{name_b} (B)") if name_a == name_b else (name_a, name_b)


def compare_evals(
    a: dict, b: dict, metric: str = "wer", cluster_by: str | None = None, n_resamples: int = 2000, seed: int = 0
) -> ComparisonReport:
    """Paired bootstrap of B minus A, overall and per group, from two eval results (see load_eval).

    `cluster_by="group"` resamples whole groups (then clips within them) for the overall interval,
    e.g. speakers when both results were evaluated with `--group-by speaker`.
    """
    if metric not in METRICS:
        raise EdgeAsrError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if cluster_by is not None and cluster_by not in CLUSTER_CHOICES:
        raise EdgeAsrError(f"cannot cluster by {cluster_by!r}; expected one of {', '.join(CLUSTER_CHOICES)}")
    clips_a, clips_b = _scored_clips(a, "A"), _scored_clips(b, "B")
    paths = _check_same_clips(clips_a, clips_b)
    counts_a = [clips_a[p].counts for p in paths]
    counts_b = [clips_b[p].counts for p in paths]

    group_by = _shared_group_by(a, b)
    notes: list[str] = []
    if group_by is None and (a.get("group_by") or b.get("group_by")):
        notes.append(f"no per-group rows: A was grouped by {a.get('group_by')}, B by {b.get('group_by')}")
    labels = _group_labels(paths, clips_a, clips_b) if group_by else None
    if cluster_by == "group" and labels is None:
        raise EdgeAsrError(
            "cluster_by='group' needs both results evaluated with the same --group-by "
            "(e.g. --group-by speaker to resample speakers)"
        )

    overall = paired_bootstrap(
        counts_a,
        counts_b,
        clusters=labels if cluster_by == "group" else None,
        n_resamples=n_resamples,
        seed=seed,
        metric=metric,
    )

    groups: list[GroupComparison] = []
    if labels is not None:
        for name in sorted(set(labels)):
            members = [i for i, label in enumerate(labels) if label == name]
            groups.append(
                _compare_group(
                    name, [counts_a[i] for i in members], [counts_b[i] for i in members], metric, n_resamples, seed
                )
            )
        small = [g.group for g in groups if g.comparison is None]
        if small:
            notes.append(
                f"no interval for {len(small)} group(s) with fewer than {MIN_CLIPS_FOR_CI} scored "
                f"clips or no reference words: {', '.join(small)}"
            )

    name_a, name_b = _distinct_names(a, b)
    return ComparisonReport(
        name_a, name_b, metric, len(paths), group_by, cluster_by, overall, tuple(groups), tuple(notes)
    )


# ---------------------------------------------------------------------------------------------
# Text output
# ---------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _row(name: str, n: int, rate_a: float | None, rate_b: float | None, c: Comparison | None, width: int) -> str:
    delta = "-" if rate_a is None or rate_b is None else f"{100 * (rate_b - rate_a):+.1f}"
    ci = "-" if c is None else f"[{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}]"
    significant = "-" if c is None else ("yes" if c.significant else "no")
    return f"{name:<16} {n:>6} {_pct(rate_a):>{width}} {_pct(rate_b):>{width}} {delta:>7} {ci:>16} {significant:>5}"


def format_report(report: ComparisonReport) -> str:
    """Plain-text table (one row per group, then all clips) and the overall verdict line."""
    r = report
    label = METRIC_LABELS.get(r.metric, r.metric)
    confidence = f"{100 * r.overall.confidence:g}% CI"
    resampling = f"{r.overall.n_resamples} paired bootstrap resamples"
    if r.cluster_by:
        resampling += f" of {r.group_by or r.cluster_by} clusters (overall row)"
    width = max(7, len(label) + 3)  # "plain WER A%" is wider than "WER A%"
    header = (
        f"{'group':<16} {'clips':>6} {label + ' A%':>{width}} {label + ' B%':>{width}} {'delta':>7} "
        f"{confidence:>16} {'sig.':>5}"
    )
    lines = [
        f"A = {r.name_a}",
        f"B = {r.name_b}",
        f"{label}, {confidence} from {resampling}",
        header,
        "-" * len(header),
    ]
    for g in r.groups:
        lines.append(_row(g.group, g.n_clips, g.rate_a, g.rate_b, g.comparison, width))
    o = r.overall
    lines.append(_row("all", r.n_clips, o.rate_a, o.rate_b, o, width))
    lines.extend(f"note: {note}" for note in r.notes)
    lines.append(format_comparison(r.name_a, r.name_b, o))
    return "\n".join(lines)
