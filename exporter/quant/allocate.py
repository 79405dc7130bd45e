"""Bit allocation under a byte budget: myQASR's first fit, that plan filled up to the budget, or a knapsack.

myqasr (the paper's procedure, with its uniformity constraint). Every layer starts on the top rung
(float: fp32, or fp16 on onnx) of its kind's ladder. Layers are visited in a fixed order and
each visit moves one layer down one rung; after every single move the exact plan size is recomputed, and
the first plan that fits the budget is returned. A full pass moves every layer once, so at any moment all
layers are on rung r or r + 1: within one rung of each other. A layer that has reached the bottom of its
ladder stays there while the others go on.

Orders (all deterministic):
  myqasr    highest sensitivity (median |output|) steps down first: the released myQASR code's default
            (`uniform_reverse`), so in a half-finished pass the most active layers hold one rung less;
  reversed  lowest sensitivity first (the paper's ablation);
  shuffled  a seeded random order (the paper's ablation);
  uniform   every layer on the same rung: the highest rung whose size fits.
Ties in sensitivity keep the model's module order.

The first fit can stop well short of the budget when the move that crossed it was a big layer (base android
80 MB came out at 64.7 MB). `fill` then moves units back up one rung, most sensitive first, while the plan
fits; `knapsack` instead takes measured per-layer, per-rung costs (exporter/quant/costs.py) and returns the
plan of least total cost that fits, exactly for byte sizes rounded to slots (exporter/quant/knapsack.py).

On a target that stores a tied pair once (`Target.shares_tied_weights`), the output projection is not a
unit of its own: it moves with the token embedding (one visit moves both), the pair's bottom is the
shorter ladder's, its sensitivity is the larger of the two, and once quantised the follower costs 0 bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from exporter.choices import ALLOCATIONS, DEFAULT_ORDER, ORDERS
from exporter.quant.budget import format_bytes
from exporter.quant.layers import QuantLayer, tied_followers
from exporter.quant.targets import Target
from runtimes.errors import EdgeAsrError


@dataclass(frozen=True)
class Allocation:
    rungs: dict[str, int]  # layer name -> rung index in its ladder (0 = float)
    total_bytes: int
    moves: int  # single-layer steps taken


def followers(layers: list[QuantLayer], target: Target) -> dict[str, str]:
    """follower -> leader for the pairs this target stores once; empty where it stores both."""
    return tied_followers(layers) if target.shares_tied_weights else {}


def layer_bytes(layer: QuantLayer, target: Target, rung: int, tied: bool = False) -> int:
    """Stored bytes of `layer` on `rung`; a tied follower shares its leader's quantised tensor."""
    if tied and rung > 0:
        return 0
    return target.ladder(layer.kind)[rung].weight_bytes(layer.shape)


def plan_bytes(layers: list[QuantLayer], rungs: dict[str, int], target: Target, fixed_bytes: int) -> int:
    tied = followers(layers, target)
    return fixed_bytes + sum(layer_bytes(layer, target, rungs[layer.name], layer.name in tied) for layer in layers)


def _units(layers: list[QuantLayer], target: Target) -> dict[str, list[QuantLayer]]:
    """leader name -> the layers that move with it (itself first), in module order."""
    tied = followers(layers, target)
    units = {layer.name: [layer] for layer in layers if layer.name not in tied}
    for layer in layers:
        if layer.name in tied:
            units[tied[layer.name]].append(layer)
    return units


def _bottom(unit: list[QuantLayer], target: Target) -> int:
    return min(len(target.ladder(layer.kind)) for layer in unit) - 1


def reachable_range(layers: list[QuantLayer], target: Target, fixed_bytes: int) -> tuple[int, int]:
    """(smallest size: every layer on its bottom rung, full-precision size)."""
    bottom, top = {}, {}
    for unit in _units(layers, target).values():
        for layer in unit:
            bottom[layer.name], top[layer.name] = _bottom(unit, target), 0
    return plan_bytes(layers, bottom, target, fixed_bytes), plan_bytes(layers, top, target, fixed_bytes)


def visit_order(layers: list[QuantLayer], sensitivity: dict[str, float], order: str, seed: int = 0) -> list[str]:
    names = [layer.name for layer in layers]
    if order == "myqasr":
        return sorted(names, key=lambda n: -sensitivity[n])  # stable: ties keep module order
    if order == "reversed":
        return sorted(names, key=lambda n: sensitivity[n])
    if order in ("shuffled", "uniform"):
        shuffled = list(names)
        random.Random(seed).shuffle(shuffled)
        return shuffled if order == "shuffled" else names
    raise EdgeAsrError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")


def check_budget(budget: int, lo: int, hi: int, target: Target, overhead: int = 0) -> None:
    """Refuse a budget outside the plans' sizes [lo, hi). `overhead` is what the artifact file holds
    beyond the plan (graph, metadata): the budget must cover it too, and the message says so."""
    lo, hi = lo + overhead, hi + overhead
    extra = f" (plan plus an allowance of {format_bytes(overhead)} for the file's graph)" if overhead else ""
    if budget >= hi:
        raise EdgeAsrError(
            f"budget {format_bytes(budget)} is not below the full-precision size "
            f"{format_bytes(hi)}{extra}: nothing to quantise. Reachable on target {target.name}: "
            f"{format_bytes(lo)} to {format_bytes(hi)}"
        )
    if budget < lo:
        # XNNPACK holds the tied embedding twice (a table and a packed Linear); ONNX Runtime reads one copy
        tied_twice = target.name in ("android", "executorch")
        other = ", or use --target onnx, which stores the tied embedding once" if tied_twice else ""
        raise EdgeAsrError(
            f"budget {format_bytes(budget)} cannot be met on target {target.name}: the smallest "
            f"plan (every layer on its lowest format) is {format_bytes(lo)}{extra}. Reachable: "
            f"{format_bytes(lo)} to {format_bytes(hi)}; raise the budget or pick a smaller model{other}"
        )


def _uniform(layers, target, budget, fixed_bytes) -> Allocation:
    units = _units(layers, target)
    depth = max(_bottom(unit, target) for unit in units.values()) + 1
    for rung in range(depth):
        rungs = {layer.name: min(rung, _bottom(unit, target)) for unit in units.values() for layer in unit}
        size = plan_bytes(layers, rungs, target, fixed_bytes)
        if size <= budget:
            return Allocation(rungs, size, moves=0)
    raise AssertionError("unreachable: the budget was checked against the smallest plan")


def allocate(
    layers: list[QuantLayer],
    sensitivity: dict[str, float],
    target: Target,
    budget: int,
    order: str = DEFAULT_ORDER,
    seed: int = 0,
    fixed_bytes: int = 0,
    method: str = "myqasr",
    costs: dict[str, list[float]] | None = None,
    one_rung: bool = False,
) -> Allocation:
    """Rungs for every layer whose exact plan size fits `budget` bytes, by `method`:

    myqasr    the first plan, in the given order, that fits (the paper's procedure; see the module doc);
    fill      that plan, then layers moved back up one rung at a time, most sensitive first, while the
              plan still fits (`one_rung`: only while all layers stay within one rung of each other);
    knapsack  the plan of least summed `costs` (per layer and rung, exporter/quant/costs.py) that fits,
              solved by dynamic programming over bytes (exporter/quant/knapsack.py); `order` is unused.
    auto is resolved before this (`auto_method`, on fill's plan) into fill or knapsack.
    """
    if method not in ALLOCATIONS:
        raise EdgeAsrError(f"unknown allocation {method!r}; choose one of {', '.join(ALLOCATIONS)}")
    if method == "auto":
        raise EdgeAsrError("the auto allocation is resolved into fill or knapsack first (auto_method)")
    lo, hi = reachable_range(layers, target, fixed_bytes)
    check_budget(budget, lo, hi, target)
    if method == "knapsack":
        if costs is None:
            raise EdgeAsrError("the knapsack allocation needs measured layer costs (calibration clips)")
        return _knapsack(layers, target, budget, fixed_bytes, costs)
    first = _first_fit(layers, sensitivity, target, budget, order, seed, fixed_bytes, hi)
    if method == "fill":
        return _fill(layers, sensitivity, target, budget, fixed_bytes, first, one_rung)
    return first


def auto_method(layers: list[QuantLayer], fill: Allocation, target: Target, has_costs: bool) -> str:
    """What the auto allocation runs, given fill's plan: the knapsack where that plan puts a linear layer on
    the linear ladder's lowest rung (there, which layers pay for the budget decides the result, and measured
    costs choose them better: exporter/choices.py), fill elsewhere or where no costs can be measured."""
    lowest = len(target.ladder("linear")) - 1
    reaches = any(fill.rungs[layer.name] == lowest for layer in layers if layer.kind == "linear")
    return "knapsack" if reaches and has_costs else "fill"


def _unit_order(units: dict[str, list[QuantLayer]], sensitivity: dict[str, float], order: str, seed: int) -> list[str]:
    """The units' leaders in visiting order; a unit's sensitivity is the largest of its layers'."""
    unit_sensitivity = {name: max(sensitivity[layer.name] for layer in unit) for name, unit in units.items()}
    return visit_order([unit[0] for unit in units.values()], unit_sensitivity, order, seed)


def _first_fit(layers, sensitivity, target, budget, order, seed, fixed_bytes, full_bytes: int) -> Allocation:
    """`full_bytes`: the size with every layer on its float top rung, where the descent starts."""
    if order == "uniform":
        return _uniform(layers, target, budget, fixed_bytes)
    units = _units(layers, target)
    tied = followers(layers, target)
    sequence = _unit_order(units, sensitivity, order, seed)
    rungs = {layer.name: 0 for layer in layers}
    size = full_bytes
    moves = 0
    while True:
        moved = False
        for name in sequence:
            unit, rung = units[name], rungs[name]
            if rung == _bottom(unit, target):
                continue
            for layer in unit:
                is_tied = layer.name in tied
                size -= layer_bytes(layer, target, rung, is_tied) - layer_bytes(layer, target, rung + 1, is_tied)
                rungs[layer.name] = rung + 1
            moves += 1
            moved = True
            if size <= budget:
                return Allocation(dict(rungs), size, moves)
        if not moved:
            raise AssertionError("unreachable: the budget was checked against the smallest plan")


def _unit_bytes(unit: list[QuantLayer], target: Target, rung: int, tied: dict[str, str]) -> int:
    return sum(layer_bytes(layer, target, rung, layer.name in tied) for layer in unit)


def _fill(layers, sensitivity, target, budget, fixed_bytes, first: Allocation, one_rung: bool) -> Allocation:
    """Spend what the first fit left of the budget: raise units one rung (toward float), most sensitive
    first, as long as the plan still fits; passes repeat until no unit can move."""
    units = _units(layers, target)
    tied = followers(layers, target)
    sequence = _unit_order(units, sensitivity, "myqasr", 0)  # most sensitive first; ties keep module order
    rungs = dict(first.rungs)
    size, moves = first.total_bytes, first.moves
    moved = True
    while moved:
        moved = False
        for name in sequence:
            unit, rung = units[name], rungs[name]
            if rung == 0:
                continue
            if one_rung and rung - 1 < max(rungs[n] for n in units) - 1:
                continue  # would leave the lowest units more than one rung below it
            grow = _unit_bytes(unit, target, rung - 1, tied) - _unit_bytes(unit, target, rung, tied)
            if size + grow > budget:
                continue
            for layer in unit:
                rungs[layer.name] = rung - 1
            size += grow
            moves += 1
            moved = True
    return Allocation(rungs, size, moves)


def _knapsack(layers, target, budget, fixed_bytes, costs: dict[str, list[float]]) -> Allocation:
    from exporter.quant.knapsack import Option, solve

    units = _units(layers, target)
    tied = followers(layers, target)
    options = {
        name: [
            Option(_unit_bytes(unit, target, rung, tied), sum(costs[layer.name][rung] for layer in unit))
            for rung in range(_bottom(unit, target) + 1)
        ]
        for name, unit in units.items()
    }
    chosen = solve(options, budget - fixed_bytes)
    if chosen is None:
        raise AssertionError("unreachable: the budget was checked against the smallest plan")
    rungs = {layer.name: chosen[name] for name, unit in units.items() for layer in unit}
    return Allocation(rungs, plan_bytes(layers, rungs, target, fixed_bytes), moves=0)
