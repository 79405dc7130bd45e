"""The allocator: one-rung constraint, never over budget, deterministic; exact byte costs."""

from __future__ import annotations

import itertools
import random

import pytest

from exporter.quant.allocate import allocate, auto_method, followers, plan_bytes, reachable_range, visit_order
from exporter.quant.budget import parse_budget
from exporter.quant.formats import FP32, int_format
from exporter.quant.layers import QuantLayer
from exporter.quant.targets import get_target
from runtimes.errors import EdgeAsrError


def _layers(n: int = 12, seed: int = 0) -> list[QuantLayer]:
    rng = random.Random(seed)
    layers = [QuantLayer("model.encoder.conv1", "conv", "conv", (64, 80, 3))]
    for i in range(n):
        shape = (rng.choice([64, 128, 256]), rng.choice([64, 128, 256]))
        layers.append(QuantLayer(f"model.encoder.layers.{i}.fc1", "linear", "encoder_linear", shape))
    layers.append(QuantLayer("model.decoder.embed_tokens", "embedding", "embedding", (1000, 64)))
    layers.append(QuantLayer("proj_out", "linear", "output_projection", (1000, 64)))
    return layers


def _sens(layers, seed=1):
    rng = random.Random(seed)
    return {layer.name: rng.random() for layer in layers}


def _check_one_rung(layers, rungs, target):
    """All layers that still have rungs below them are within one rung of each other."""
    open_rungs = [rungs[l.name] for l in layers if rungs[l.name] < len(target.ladder(l.kind)) - 1]
    bottomed = [rungs[l.name] for l in layers if rungs[l.name] == len(target.ladder(l.kind)) - 1]
    if open_rungs:
        assert max(open_rungs) - min(open_rungs) <= 1
        # a layer that hit the bottom of a shorter ladder is never more than one rung below the rest
        assert all(b <= min(open_rungs) + 1 for b in bottomed)


@pytest.mark.parametrize("target_name", ["android", "onnx", "litert", "sim"])
@pytest.mark.parametrize("order", ["myqasr", "reversed", "shuffled", "uniform"])
def test_fits_budget_and_keeps_one_rung(target_name, order):
    target = get_target(target_name)
    layers = _layers()
    sens = _sens(layers)
    lo, hi = reachable_range(layers, target, fixed_bytes=1000)
    for fraction in (0.02, 0.2, 0.5, 0.8, 0.99):
        budget = int(lo + fraction * (hi - lo))
        result = allocate(layers, sens, target, budget, order, seed=3, fixed_bytes=1000)
        assert result.total_bytes <= budget
        assert result.total_bytes == plan_bytes(layers, result.rungs, target, 1000)
        if order != "uniform":
            _check_one_rung(layers, result.rungs, target)
        else:
            rung_values = {min(r, 99) for r in result.rungs.values()}
            depth = {len(target.ladder(l.kind)) - 1 for l in layers}
            assert len(rung_values - depth) <= 1  # one common rung (bottomed-out ladders aside)


def test_first_fitting_plan_is_returned():
    """One move fewer would not fit: the allocator stops at the first plan under budget."""
    target = get_target("sim")
    layers = _layers()
    sens = _sens(layers)
    lo, hi = reachable_range(layers, target, 0)
    budget = (lo + hi) // 2
    result = allocate(layers, sens, target, budget, "myqasr")
    sequence = visit_order(layers, sens, "myqasr")
    # undo the last move: the layer that moved last is the one after which the size first fit
    order_pos = {name: i for i, name in enumerate(sequence)}
    top = max(result.rungs.values())
    moved_to_top = [n for n, r in result.rungs.items() if r == top]
    last = max(moved_to_top, key=order_pos.get)
    previous = dict(result.rungs, **{last: result.rungs[last] - 1})
    assert plan_bytes(layers, previous, target, 0) > budget


def test_myqasr_order_moves_most_sensitive_first():
    target = get_target("sim")
    layers = _layers()
    sens = _sens(layers)
    lo, hi = reachable_range(layers, target, 0)
    result = allocate(layers, sens, target, hi - 1, "myqasr")
    assert result.moves == 1
    assert [n for n, r in result.rungs.items() if r == 1] == [max(sens, key=sens.get)]
    result = allocate(layers, sens, target, hi - 1, "reversed")
    assert [n for n, r in result.rungs.items() if r == 1] == [min(sens, key=sens.get)]


def test_deterministic():
    target = get_target("android")
    layers = _layers()
    sens = _sens(layers)
    lo, hi = reachable_range(layers, target, 0)
    for order in ("myqasr", "shuffled"):
        a = allocate(layers, sens, target, (lo + hi) // 3, order, seed=7)
        b = allocate(layers, sens, target, (lo + hi) // 3, order, seed=7)
        assert a == b
    c = allocate(layers, sens, target, (lo + hi) // 3, "shuffled", seed=8)
    assert c.total_bytes <= (lo + hi) // 3


def test_impossible_budgets_name_the_reachable_range():
    target = get_target("android")
    layers = _layers()
    lo, hi = reachable_range(layers, target, 0)
    with pytest.raises(EdgeAsrError, match="cannot be met.*Reachable"):
        allocate(layers, _sens(layers), target, lo - 1)
    with pytest.raises(EdgeAsrError, match="not below the full-precision size.*Reachable"):
        allocate(layers, _sens(layers), target, hi)


def test_exact_byte_costs():
    assert FP32.weight_bytes((10, 7)) == 280
    int8_pc = int_format(8, "per_channel")
    assert int8_pc.weight_bytes((10, 7)) == 70 + 10 * 4
    int4_g32 = int_format(4, "group", 32, scale_dtype="bfloat16")
    # 40 weights per row -> 20 bytes of codes, 2 groups per row -> 2 bf16 scales per row
    assert int4_g32.weight_bytes((3, 40)) == 3 * 20 + 3 * 2 * 2
    int3 = int_format(3, "per_channel")
    assert int3.weight_bytes((2, 5)) == 2 * 2 + 2 * 4  # 15 bits -> 2 bytes per row
    conv = int_format(8, "per_channel")
    assert conv.weight_bytes((4, 80, 3)) == 4 * 240 + 4 * 4


@pytest.mark.parametrize(
    "text, expected",
    [("80MB", 80_000_000), ("76MiB", 76 * 2**20), ("123456", 123456), ("1.5gb", 1_500_000_000), ("64 KiB", 65536)],
)
def test_budget_strings(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["80XB", "MB", "-5MB", "0"])
def test_bad_budget_strings(text):
    with pytest.raises(EdgeAsrError):
        parse_budget(text)


def test_options_parse_the_budget_once_and_keep_its_text():
    from exporter.export.options import ExportOptions
    from exporter.quant.pipeline import PlanOptions

    options = ExportOptions(budget="76MiB", memory_budget="250MB")
    assert options.budget_bytes == 76 * 2**20 and options.memory_budget_bytes == 250_000_000
    assert options.to_dict()["budget"] == "76MiB" and options.to_dict()["memory_budget"] == "250MB"
    assert PlanOptions(budget=options.budget).budget.bytes == 76 * 2**20
    for bad in (lambda: ExportOptions(budget="80XB"), lambda: PlanOptions(budget="-5MB")):
        with pytest.raises(EdgeAsrError, match="cannot read budget"):  # at construction, before any work
            bad()


@pytest.mark.parametrize("order", ["myqasr", "reversed", "shuffled", "uniform"])
def test_tied_pair_moves_together_and_is_stored_once_on_onnx(order):
    target = get_target("onnx")
    layers = _layers()
    by_name = {layer.name: layer for layer in layers}
    lo, hi = reachable_range(layers, target, 0)
    embedding_ladder = target.ladder("embedding")
    for budget in range(lo, hi, max(1, (hi - lo) // 25)):
        result = allocate(layers, _sens(layers), target, budget, order, seed=3)
        rung = result.rungs["model.decoder.embed_tokens"]
        assert result.rungs["proj_out"] == rung  # never on 2 bits: the embedding's ladder stops at 4
        # quantised, the pair costs the embedding's bytes only
        own = 0 if rung else target.ladder("linear")[0].weight_bytes(by_name["proj_out"].shape)
        rest = [layer for layer in layers if layer.name != "proj_out"]
        assert result.total_bytes == plan_bytes(rest, result.rungs, target, 0) + own
        assert embedding_ladder[rung].weight_bytes((1000, 64)) > 0


def test_tied_pair_is_untied_where_the_runtime_cannot_share():
    target = get_target("android")
    layers = _layers()
    lo, _ = reachable_range(layers, target, 0)
    result = allocate(layers, _sens(layers), target, lo, "myqasr")
    assert followers(layers, target) == {}
    # at the floor both sit on their lowest rungs, each stored with its own bytes (8da4w Linear, int4 table)
    bottom = {layer.name: target.ladder(layer.kind)[-1].weight_bytes(layer.shape) for layer in layers[-2:]}
    assert all(bottom.values()) and result.total_bytes == lo
    assert lo == plan_bytes(layers[:-2], result.rungs, target, 0) + sum(bottom.values())


# --- fill and knapsack ----------------------------------------------------------------------


def _costs(layers, target, seed=2):
    """Synthetic per-rung costs: 0 on float, growing down the ladder, different per layer."""
    rng = random.Random(seed)
    costs = {}
    for layer in layers:
        scale = rng.random()
        costs[layer.name] = [0.0] + [
            scale * (2**r) * rng.uniform(0.5, 1.5) for r in range(1, len(target.ladder(layer.kind)))
        ]
    return costs


@pytest.mark.parametrize("target_name", ["android", "onnx", "litert", "sim"])
@pytest.mark.parametrize("method", ["fill", "knapsack"])
def test_fill_and_knapsack_fit_the_budget_and_are_deterministic(target_name, method):
    target = get_target(target_name)
    layers = _layers()
    sens, costs = _sens(layers), _costs(layers, target)
    lo, hi = reachable_range(layers, target, fixed_bytes=1000)
    for fraction in (0.0, 0.02, 0.3, 0.7, 0.99):
        budget = int(lo + fraction * (hi - lo))
        runs = [allocate(layers, sens, target, budget, fixed_bytes=1000, method=method, costs=costs) for _ in range(2)]
        assert runs[0] == runs[1]
        assert runs[0].total_bytes <= budget
        assert runs[0].total_bytes == plan_bytes(layers, runs[0].rungs, target, 1000)


@pytest.mark.parametrize("target_name", ["android", "onnx"])
def test_fill_spends_what_the_first_fit_left_and_never_less(target_name):
    target = get_target(target_name)
    layers = _layers(seed=4)
    sens = _sens(layers)
    lo, hi = reachable_range(layers, target, fixed_bytes=0)
    grew = 0
    for fraction in (0.05, 0.25, 0.5, 0.75):
        budget = int(lo + fraction * (hi - lo))
        first = allocate(layers, sens, target, budget)
        filled = allocate(layers, sens, target, budget, method="fill")
        assert first.total_bytes <= filled.total_bytes <= budget
        assert all(filled.rungs[n] <= first.rungs[n] for n in first.rungs)  # only ever moves layers up
        # nothing left that could still move up and fit
        for layer in layers:
            rung = filled.rungs[layer.name]
            if rung > 0 and layer.name not in followers(layers, target):
                up = dict(filled.rungs, **{layer.name: rung - 1})
                for follower, leader in followers(layers, target).items():
                    up[follower] = up[leader]
                assert plan_bytes(layers, up, target, 0) > budget
        grew += filled.total_bytes > first.total_bytes
    assert grew  # the synthetic first fits leave budget unused somewhere


def test_fill_with_one_rung_keeps_myqasrs_constraint():
    target = get_target("android")
    layers = _layers(seed=5)
    sens = _sens(layers)
    lo, hi = reachable_range(layers, target, fixed_bytes=0)
    for fraction in (0.1, 0.4, 0.8):
        budget = int(lo + fraction * (hi - lo))
        result = allocate(layers, sens, target, budget, method="fill", one_rung=True)
        assert result.total_bytes <= budget
        _check_one_rung(layers, result.rungs, target)


def test_knapsack_is_optimal_on_small_instances_by_brute_force():
    from exporter.quant.knapsack import Option, solve

    rng = random.Random(7)
    for _ in range(60):
        units = {
            f"u{i}": [Option(rng.randint(1, 40), rng.uniform(0, 10)) for _ in range(rng.randint(1, 4))]
            for i in range(rng.randint(1, 5))
        }
        capacity = rng.randint(0, 120)
        best = None
        for choice in itertools.product(*(range(len(o)) for o in units.values())):
            picked = [opts[c] for opts, c in zip(units.values(), choice)]
            if sum(o.bytes for o in picked) <= capacity:
                cost = sum(o.cost for o in picked)
                best = cost if best is None else min(best, cost)
        chosen = solve(units, capacity, slots=capacity or 1)  # one byte per slot: exact
        if best is None:
            assert chosen is None
            continue
        assert sum(units[n][i].bytes for n, i in chosen.items()) <= capacity
        assert sum(units[n][i].cost for n, i in chosen.items()) == pytest.approx(best)


def test_knapsack_with_coarse_slots_still_fits_the_budget():
    """Slots of many bytes round each option up and the capacity down: never over, close to the best."""
    from exporter.quant.knapsack import Option, solve

    rng = random.Random(8)
    units = {f"u{i}": [Option(rng.randint(1000, 90_000), rng.uniform(0, 5)) for _ in range(4)] for i in range(30)}
    capacity = 900_000
    chosen = solve(units, capacity, slots=500)
    assert sum(units[n][i].bytes for n, i in chosen.items()) <= capacity


@pytest.mark.parametrize("target_name", ["android", "onnx"])
def test_auto_takes_the_knapsack_exactly_where_fill_reaches_the_lowest_linear_rung(target_name):
    target = get_target(target_name)
    layers = _layers(seed=6)
    sens = _sens(layers)
    lowest = len(target.ladder("linear")) - 1
    lo, hi = reachable_range(layers, target, fixed_bytes=0)
    chosen = set()
    for fraction in (0.0, 0.05, 0.5, 0.99):
        fill = allocate(layers, sens, target, int(lo + fraction * (hi - lo)), method="fill")
        reaches = any(fill.rungs[l.name] == lowest for l in layers if l.kind == "linear")
        method = auto_method(layers, fill, target, has_costs=True)
        assert method == ("knapsack" if reaches else "fill")
        assert auto_method(layers, fill, target, has_costs=False) == "fill"  # no clips: no costs to measure
        chosen.add(method)
    assert chosen == {"knapsack", "fill"}  # the smallest budget reaches the bottom, the largest does not
    with pytest.raises(EdgeAsrError, match="resolved into fill or knapsack"):
        allocate(layers, sens, target, hi, method="auto")


def test_knapsack_without_costs_is_refused():
    target = get_target("android")
    layers = _layers()
    lo, _ = reachable_range(layers, target, fixed_bytes=0)
    with pytest.raises(EdgeAsrError, match="needs measured layer costs"):
        allocate(layers, _sens(layers), target, lo, method="knapsack")
    with pytest.raises(EdgeAsrError, match="unknown allocation"):
        allocate(layers, _sens(layers), target, lo, method="greedy")


def test_an_unknown_layer_cost_is_refused_before_any_clip_is_read():
    from exporter.quant.pipeline import PlanOptions

    with pytest.raises(EdgeAsrError, match="unknown layer cost 'kl'; choose one of local, output"):
        PlanOptions(allocation="knapsack", layer_cost="kl").validate(has_calibration_data=True)
