"""Tables and plots of benchmark records (any file that follows the bench result schema).

Columns are systems: one runtime running one artifact on one device. They are built from the records
alone, so a file with phone records appended renders the same way.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from exporter.io import atomic_path

SPEED_ROWS = (
    ("load_time", "load time (ms)"),
    ("latency_median", "latency median (ms)"),
    ("latency_p90", "latency p90 (ms)"),
    ("encode_median", "encoder median (ms)"),
    ("real_time_factor", "real-time factor"),
)
MEMORY_ROWS = (
    ("memory_load_peak", "load peak (MB)"),
    ("memory_run_peak", "run peak (MB)"),
    ("predicted_memory_load_peak", "predicted load peak (MB)"),
    ("predicted_memory_run_peak", "predicted run peak (MB)"),
    ("memory_baseline", "process baseline (MB)"),
)
MB = 1e6


def _system_key(record: dict) -> tuple:
    return (
        record["runtime"]["name"],
        record["runtime"]["backend"],
        record["artifact"]["name"],
        record["device"]["name"],
        record["run_id"],
    )


def systems(records: list[dict]) -> OrderedDict[tuple, dict]:
    """Key -> {label, runtime, artifact, metrics: {(metric, group): record}}, in record order."""
    found: OrderedDict[tuple, dict] = OrderedDict()
    for record in records:
        key = _system_key(record)
        entry = found.setdefault(
            key,
            {"runtime": record["runtime"], "artifact": record["artifact"], "device": record["device"], "metrics": {}},
        )
        entry["metrics"][(record["metric"]["name"], record["group"])] = record
    # The shortest label that tells systems apart: runtime, then backend, artifact, device, run as needed.
    for key, entry in found.items():
        parts, rivals = [], [other for other in found if other[0] == key[0] and other != key]
        for index in (1, 2, 3, 4):
            if not rivals:
                break
            if any(other[index] != key[index] for other in rivals):
                parts.append(key[index])
                rivals = [other for other in rivals if other[index] == key[index]]
        entry["label"] = key[0] + (f" ({', '.join(parts)})" if parts else "")
    return found


def _value(entry: dict, metric: str, group: str = "all"):
    record = entry["metrics"].get((metric, group))
    return None if record is None else record["metric"]["value"]


def _fmt(value, metric: str) -> str:
    if value is None:
        return "-"
    if metric.startswith(("memory", "predicted_memory")) or metric.endswith("bytes"):
        return f"{value / MB:.1f}"
    if metric == "real_time_factor":
        return f"{value:.3f}"
    return f"{value:,.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _groups(found) -> list[str]:
    groups = []
    for entry in found.values():
        for metric, group in entry["metrics"]:
            if metric == "wer" and group not in groups:
                groups.append(group)
    return sorted(groups, key=lambda g: (g != "all", g))


def memory_comparison(entry: dict) -> list[tuple[str, float, float, float]]:
    """(phase, measured, predicted, relative error of the prediction) where both exist."""
    rows = []
    for phase in ("load", "run"):
        measured, predicted = _value(entry, f"memory_{phase}_peak"), _value(entry, f"predicted_memory_{phase}_peak")
        if measured and predicted is not None:
            rows.append((phase, measured, predicted, (predicted - measured) / measured))
    return rows


def format_markdown(data: dict, title: str = "edgeasr bench") -> str:
    found = systems(data["records"])
    labels = [e["label"] for e in found.values()]
    lines = [f"# {title}", ""]
    first = data["records"][0] if data["records"] else None
    if first:
        d = first["data"]
        lines += [
            f"Data: `{d['name']}`"
            + (f" split {d['split']}" if d.get("split") else "")
            + f", {d['n_clips']} clips"
            + (f", {d['audio_seconds']:.1f} s of audio" if d.get("audio_seconds") else "")
            + f". Device: {first['device']['name']} "
            f"({first['device']['kind']}, {first['device'].get('cores')} cores).",
            "",
        ]
    lines += [f"- note: {note}" for note in data.get("notes", [])]
    lines += ["", "## Speed and size", ""]
    rows = [[name] + [_fmt(_value(e, metric), metric) for e in found.values()] for metric, name in SPEED_ROWS]
    rows.append(["artifact bytes (MB)"] + [_fmt(_value(e, "artifact_bytes"), "artifact_bytes") for e in found.values()])
    rows.append(["budget (MB)"] + [_fmt(e["artifact"].get("budget_bytes"), "artifact_bytes") for e in found.values()])
    lines += _table(["metric"] + labels, rows)
    lines += ["", "## Memory (bytes added to the process: peak resident set minus its baseline)", ""]
    rows = [[name] + [_fmt(_value(e, metric), metric) for e in found.values()] for metric, name in MEMORY_ROWS]
    lines += _table(["metric"] + labels, rows)
    comparisons = [(e["label"], c) for e in found.values() for c in memory_comparison(e)]
    if comparisons:
        lines += ["", "Predicted vs measured peak memory (memory model of `exporter/memory.py`):", ""]
        lines += _table(
            ["system", "phase", "measured MB", "predicted MB", "error"],
            [
                [label, phase, f"{m / MB:.1f}", f"{p / MB:.1f}", f"{100 * err:+.0f} %"]
                for label, (phase, m, p, err) in comparisons
            ],
        )
    groups = _groups(found)
    lines += ["", "## WER by group (collapsed WER %, n clips)", ""]
    if groups:
        rows = []
        for group in groups:
            row = [group]
            for entry in found.values():
                record = entry["metrics"].get(("wer", group))
                value = None if record is None else record["metric"]["value"]
                row.append(
                    "-" if record is None else f"{'-' if value is None else f'{100 * value:.1f}'} (n={record['n']})"
                )
            rows.append(row)
        lines += _table(["group"] + labels, rows)
    else:
        lines.append("No WER: the data has no transcripts.")
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path, title: str = "edgeasr bench") -> None:
    """Three panels: latency (median, p90 whisker), memory (measured and predicted peaks), WER per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    found = list(systems(data["records"]).values())
    labels = [e["label"] for e in found]
    x = np.arange(len(found))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    median = [_value(e, "latency_median") or 0 for e in found]
    p90 = [_value(e, "latency_p90") or 0 for e in found]
    axes[0].bar(x, median, color="tab:blue", label="median")
    axes[0].errorbar(
        x, median, yerr=[[0] * len(found), np.subtract(p90, median)], fmt="none", ecolor="black", capsize=4, label="p90"
    )
    axes[0].set_ylabel("latency per clip (ms)")
    axes[0].set_title("latency")
    width = 0.2
    series = [
        ("memory_load_peak", "load peak", "tab:orange"),
        ("predicted_memory_load_peak", "predicted load", "moccasin"),
        ("memory_run_peak", "run peak", "tab:red"),
        ("predicted_memory_run_peak", "predicted run", "mistyrose"),
    ]
    for i, (metric, name, color) in enumerate(series):
        values = [(_value(e, metric) or 0) / MB for e in found]
        axes[1].bar(x + (i - 1.5) * width, values, width, label=name, color=color, edgecolor="grey")
    axes[1].set_ylabel("MB over process baseline")
    axes[1].set_title("peak memory")
    groups = _groups(systems(data["records"]))
    if groups:
        width = 0.8 / len(groups)
        for i, group in enumerate(groups):
            values = [100 * (_value(e, "wer", group) or 0) for e in found]
            axes[2].bar(x + (i - (len(groups) - 1) / 2) * width, values, width, label=group)
        axes[2].set_ylabel("WER %")
    else:
        axes[2].text(0.5, 0.5, "no transcripts: WER skipped", ha="center", va="center", transform=axes[2].transAxes)
    axes[2].set_title("WER by group")
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Lay out, write `fig` as a PNG atomically (no half-written plot on a crash), and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# A collapsed plan loops and scores WER in the hundreds; WER-vs-size plots stop their axis here so the other
# points stay readable, and print each clipped value at the top edge.
WER_AXIS_TOP = 150.0


def plot_wer_clipped(ax, points: list[tuple[float, float]], style: str = "-o", top: float = WER_AXIS_TOP, **kwargs):
    """Plot (x, WER %) points on `ax` with WER above `top` drawn at `top` and labelled with its value."""
    points = sorted(points)
    (line,) = ax.plot(*zip(*[(x, min(y, top)) for x, y in points]), style, **kwargs)
    for x, y in points:
        if y > top:
            ax.annotate(
                f"{y:.0f}",
                (x, top),
                textcoords="offset points",
                xytext=(0, -10),
                ha="center",
                fontsize=6,
                color=line.get_color(),
            )
    ax.set_ylim(0, top * 1.03)
    return line


__all__ = ["WER_AXIS_TOP", "format_markdown", "memory_comparison", "plot", "plot_wer_clipped", "save_figure", "systems"]
