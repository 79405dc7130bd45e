"""The plan: the per-layer format map that flows from sensitivity to allocation, quantisation and lowering.

Serialised as JSON with a schema version. Everything a later stage needs is in it: per layer the format
(full config, not just a name), the calibrated clip ratio, the sensitivity that ordered it, and its bytes;
plus the totals by category, the budget, and how the plan was made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path

from exporter.io import json_type, read_json, write_text
from exporter.quant.formats import QuantFormat
from exporter.quant.layers import CATEGORIES
from runtimes.errors import EdgeAsrError

SCHEMA_VERSION = 1


@dataclass
class LayerPlan:
    name: str
    kind: str
    category: str
    shape: list[int]
    format: QuantFormat
    sensitivity: float | None
    clip: float = 1.0  # scale = clip * absmax / qmax; chosen by calibration
    bytes: int = 0
    calibration_score: float | None = None  # objective reached (cosine similarity, -hessian loss), if searched
    input_absmax: float | None = None  # calibrated input range, for static activation quantisation
    tied_to: str | None = None  # leader whose quantised tensor this layer reads (0 bytes of its own)
    # knapsack allocation: measured cost of each rung of its ladder (QuantPlan.layer_cost says which measure)
    costs: list[float] | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["format"] = self.format.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LayerPlan:
        if not isinstance(data, dict):
            raise TypeError(f"a layer must be a JSON object, not a JSON {json_type(data)}")
        data = dict(data)
        if not isinstance(data.get("format"), dict):
            raise TypeError("'format' must be a JSON object (name, bits, kind, ...)")
        data["format"] = QuantFormat.from_dict(data["format"])
        return cls(**data)


@dataclass
class QuantPlan:
    model_id: str
    target: str
    budget_bytes: int | None
    order: str
    calibration: str
    sensitivity_metric: str
    calibration_clips: int
    calibration_source: str
    personalised: bool
    layers: list[LayerPlan]
    unquantised_bytes: int
    seed: int = 0
    activation_bits: int | None = None  # simulated static activation quantisation (sim target only)
    notes: list[str] = field(default_factory=list)
    allocation: str = "myqasr"  # how rungs were allocated (exporter/quant/allocate.py)
    layer_cost: str | None = None  # knapsack: the measure its per-layer costs came from (choices.LAYER_COSTS)
    # How codes were chosen (choices.ROUNDINGS). "gptq" moved the rounded layers' float weights onto the grid
    # (exporter/quant/gptq.py); their sha256 is recorded, because the plan alone cannot reproduce them.
    rounding: str = "nearest"
    rounded_weights: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def total_bytes(self) -> int:
        return self.unquantised_bytes + sum(layer.bytes for layer in self.layers)

    def totals(self) -> dict[str, int]:
        totals = {category: 0 for category in CATEGORIES}
        for layer in self.layers:
            totals[layer.category] += layer.bytes
        totals["unquantised"] += self.unquantised_bytes
        totals["total"] = self.total_bytes
        return totals

    def format_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.format.name] = counts.get(layer.format.name, 0) + 1
        return counts

    def layer(self, name: str) -> LayerPlan:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "layers"}
        data["layers"] = [layer.to_dict() for layer in self.layers]
        data["totals"] = self.totals()
        data["format_counts"] = self.format_counts()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def artifact_plan(self) -> QuantPlan:
        """The plan as an artifact carries it inside (the .pte's constant method, the ONNX metadata): what
        decides the artifact's bytes (model, target, budget, formats, clip ratios, how the plan was made),
        without what was observed on the user's clips (sensitivities, calibration scores, knapsack costs,
        the clips' path). Two users whose plans decide the same weights so get byte-identical artifacts
        (the fleet stores one, exporter/fleet/store.py), and an artifact does not change with where its clips
        lay; the full plan is plan.json beside it."""
        layers = [replace(layer, sensitivity=None, calibration_score=None, costs=None) for layer in self.layers]
        return replace(self, layers=layers, calibration_source="")

    def artifact_json(self) -> str:
        return self.artifact_plan().to_json()

    @property
    def plan_id(self) -> str:
        """Short content id of `artifact_plan()`: equal ids, same decisions, same artifact bytes."""
        return hashlib.sha256(self.artifact_json().encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict, source: str = "the plan") -> QuantPlan:
        """The plan in `data`, checked: anything that is not a whole plan is an `EdgeAsrError` naming
        `source` and what is wrong, never a half-read plan."""
        if not isinstance(data, dict):
            raise EdgeAsrError(f"{source} is not a plan: it holds a JSON {json_type(data)}, not an object{_MAKE}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise EdgeAsrError(f"plan schema version {version!r} is not supported (expected {SCHEMA_VERSION})")
        required = [f.name for f in dataclass_fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise EdgeAsrError(f"{source} is not a whole plan: it lacks {', '.join(missing)}{_MAKE}")
        layers = data["layers"]
        if not isinstance(layers, list) or not layers:
            raise EdgeAsrError(f"{source} is not a plan: 'layers' must be a non-empty list of layers{_MAKE}")
        parsed = []
        for index, layer in enumerate(layers):
            try:
                parsed.append(LayerPlan.from_dict(layer))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                name = layer.get("name") if isinstance(layer, dict) else None
                raise EdgeAsrError(
                    f"{source}: layer {index}{f' ({name})' if name else ''} is not a valid layer plan "
                    f"({type(exc).__name__}: {exc}){_MAKE}"
                ) from exc
        values = {k: v for k, v in data.items() if k not in ("totals", "format_counts")}
        try:
            return cls(**{**values, "layers": parsed})
        except TypeError as exc:
            raise EdgeAsrError(f"{source} is not a plan: {exc}{_MAKE}") from exc

    def save(self, path: str | Path) -> None:
        write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> QuantPlan:
        return cls.from_dict(read_json(path, "a plan JSON file", _MAKE.removeprefix("; ")), str(path))


_MAKE = "; make one with `edgeasr plan --json` (or use an export's plan.json)"


def format_plan_table(plan: QuantPlan, max_rows: int | None = None) -> str:
    """Per-layer table (format, clip, sensitivity, bytes) and totals by category."""
    header = f"{'layer':<52} {'format':<12} {'clip':>5} {'sensitivity':>11} {'bytes':>12}"
    lines = [header, "-" * len(header)]
    rows = plan.layers if max_rows is None else plan.layers[:max_rows]
    for layer in rows:
        sens = "-" if layer.sensitivity is None else f"{layer.sensitivity:.4g}"
        tied = f"  (shares {layer.tied_to})" if layer.tied_to and not layer.format.is_float else ""
        lines.append(f"{layer.name:<52} {layer.format.name:<12} {layer.clip:>5.2f} {sens:>11} {layer.bytes:>12,}{tied}")
    if max_rows is not None and len(plan.layers) > max_rows:
        lines.append(f"... {len(plan.layers) - max_rows} more layers")
    lines.append("")
    lines.append("totals by category (bytes):")
    for category, value in plan.totals().items():
        lines.append(f"  {category:<20} {value:>14,}")
    budget = "-" if plan.budget_bytes is None else f"{plan.budget_bytes:,}"
    lines.append(f"  {'budget':<20} {budget:>14}")
    lines.append("formats: " + ", ".join(f"{k} x{v}" for k, v in sorted(plan.format_counts().items())))
    return "\n".join(lines)
