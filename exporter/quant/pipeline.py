"""From a model and the user's clips to a calibrated plan: sensitivity -> allocation -> calibration, then
(`round_weights`) the codes: nearest, or GPTQ's on the user's activations.

`observe_user(bundle, clips)` runs the expensive part once (FP pseudo-labels and layer observations);
`make_plan(bundle, observations, options)` is then cheap enough to call for many budgets and orders.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from exporter.choices import (
    ALLOCATIONS,
    CALIBRATIONS,
    CODE_ROUNDINGS,
    DEFAULT_ALLOCATION,
    DEFAULT_CALIB_CLIPS,
    DEFAULT_CALIBRATION,
    DEFAULT_LAYER_COST,
    DEFAULT_ORDER,
    DEFAULT_SENSITIVITY,
    LAYER_COSTS,
    ORDERS,
    SENSITIVITY_METRICS,
)
from exporter.data import Dataset
from exporter.models import WhisperBundle
from exporter.quant.allocate import allocate, auto_method, check_budget, followers, layer_bytes, reachable_range
from exporter.quant.budget import Budget
from exporter.quant.calibrate import calibrate
from exporter.quant.costs import layer_costs
from exporter.quant.gptq import gptq_layers, gptq_round, input_hessians
from exporter.quant.layers import quantizable_layers, unquantised_bytes
from exporter.quant.observe import Observations, observe, sensitivities
from exporter.quant.output_costs import output_costs
from exporter.quant.plan import LayerPlan, QuantPlan
from exporter.quant.targets import Target, get_target
from runtimes.audio import load_audio
from runtimes.errors import EdgeAsrError


@dataclass(frozen=True)
class PlanOptions:
    target: str = "android"
    budget: Budget | str | int = "80MB"  # parsed into a Budget when the options are made
    order: str = DEFAULT_ORDER
    calibration: str = DEFAULT_CALIBRATION
    sensitivity_metric: str = DEFAULT_SENSITIVITY
    seed: int = 0
    activation_bits: int | None = None  # static A-bit input quantisation, sim target only
    allocation: str = DEFAULT_ALLOCATION
    one_rung: bool = False  # fill only: keep every layer within one rung of the others (myQASR's constraint)
    layer_cost: str = DEFAULT_LAYER_COST  # knapsack only: what a layer's rung costs (choices.LAYER_COSTS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "budget", Budget.parse(self.budget))  # a malformed budget fails here, early
        if self.order == "uniform" and self.allocation in ("fill", "auto"):
            # The uniform order means every layer on one rung; filling would move some up, so a uniform plan
            # is the first fit (and the plan records allocation myqasr).
            object.__setattr__(self, "allocation", "myqasr")

    def validate(self, has_calibration_data: bool) -> None:
        if self.order not in ORDERS:
            raise EdgeAsrError(f"unknown order {self.order!r}; choose one of {', '.join(ORDERS)}")
        if self.allocation not in ALLOCATIONS:
            raise EdgeAsrError(f"unknown allocation {self.allocation!r}; choose one of {', '.join(ALLOCATIONS)}")
        if self.layer_cost not in LAYER_COSTS:
            raise EdgeAsrError(f"unknown layer cost {self.layer_cost!r}; choose one of {', '.join(LAYER_COSTS)}")
        if self.allocation == "knapsack" and not has_calibration_data:
            raise EdgeAsrError(
                "--allocation knapsack measures each layer's cost on calibration clips; give --calib "
                "(or use --allocation myqasr / fill)"
            )
        if self.calibration not in CALIBRATIONS:
            raise EdgeAsrError(f"unknown calibration {self.calibration!r}; choose one of {', '.join(CALIBRATIONS)}")
        if self.sensitivity_metric not in SENSITIVITY_METRICS:
            raise EdgeAsrError(
                f"unknown sensitivity metric {self.sensitivity_metric!r}; choose one of "
                f"{', '.join(SENSITIVITY_METRICS)}"
            )
        if not has_calibration_data and (
            self.order not in ("uniform",) or self.calibration != "minmax" or self.activation_bits
        ):
            raise EdgeAsrError(
                f"order {self.order!r} with calibration {self.calibration!r} needs calibration "
                "clips (--calib); without clips only --order uniform --calibration minmax works"
            )
        if self.activation_bits is not None and self.target != "sim":
            raise EdgeAsrError(
                "--activation-bits is a simulation setting (target sim); runtime targets quantise "
                "activations as their kernels do"
            )


@dataclass
class UserObservations:
    source: str
    observations: Observations
    # Measured layer costs by (target, layer cost): the output measure takes minutes, and an export that
    # re-plans for a smaller budget, or a benchmark planning many budgets, needs the same table again.
    costs: dict[tuple[str, str], dict[str, list[float]]] = field(default_factory=dict)
    # GPTQ's input Hessians by layer name (one forward pass per clip; the same for every plan of this model)
    hessians: dict[str, torch.Tensor] = field(default_factory=dict)

    def layer_costs(
        self, bundle: WhisperBundle, target: Target, measure: str, progress: bool
    ) -> dict[str, list[float]]:
        key = (target.name, measure)
        if key not in self.costs:
            if measure == "output":
                self.costs[key] = output_costs(bundle, self.observations, target, progress=progress)
            else:
                self.costs[key] = layer_costs(bundle, self.observations, target)
        return self.costs[key]


def round_weights(
    bundle: WhisperBundle, plan: QuantPlan, user: UserObservations | None, rounding: str, progress: bool = True
) -> tuple[WhisperBundle, QuantPlan]:
    """The bundle and plan every later stage (simulation, lowering, parity) uses: unchanged for nearest
    rounding; for "gptq", a copy whose rounded layers hold GPTQ's grid weights (exporter/quant/gptq.py).
    "auto" is resolved for the plan first (`auto_rounding`)."""
    if rounding not in CODE_ROUNDINGS:
        raise EdgeAsrError(f"unknown rounding {rounding!r}; choose one of {', '.join(CODE_ROUNDINGS)}")
    if rounding == "nearest":
        return bundle, plan
    if user is None:
        raise EdgeAsrError("GPTQ rounding weighs errors by the activations of calibration clips; give --calib")
    names = [layer.name for layer in gptq_layers(plan)]
    missing = [name for name in names if name not in user.hessians]
    if missing:
        user.hessians.update(input_hessians(bundle, missing, user.observations, progress))
    return gptq_round(bundle, plan, user.hessians, progress=progress)


def select_clips(dataset: Dataset, n: int, seed: int = 0) -> Dataset:
    """`n` clips, a seeded sample when the set is larger (so the choice does not follow file order)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise EdgeAsrError(f"the number of clips to use must be a whole number >= 1, not {n!r}")
    utterances = list(dataset)
    if len(utterances) > n:
        utterances = sorted(random.Random(seed).sample(utterances, n), key=lambda u: str(u.audio_path))
    return Dataset(dataset.source, utterances)


def observe_user(
    bundle: WhisperBundle, dataset: Dataset, n_clips: int = DEFAULT_CALIB_CLIPS, seed: int = 0, progress: bool = True
) -> UserObservations:
    """Pseudo-label and observe the user's unlabelled clips with the FP model (transcripts are ignored)."""
    chosen = select_clips(dataset, n_clips, seed)
    clips = [load_audio(u.audio_path, expected_rate=u.sample_rate) for u in chosen]
    languages = [u.language if bundle.special.is_multilingual else None for u in chosen]
    layers = quantizable_layers(bundle.model)
    return UserObservations(str(dataset.source), observe(bundle, layers, clips, languages, progress))


def _input_absmax(observations: Observations, name: str) -> float | None:
    inputs = observations.per_layer[name].inputs
    return max(float(x.abs().max()) for x in inputs) if inputs else None


def check_plan_budget(bundle: WhisperBundle, options: PlanOptions, overhead: int = 0) -> None:
    """Refuse a budget the target's ladder cannot meet, from the model's shapes alone (milliseconds), so
    callers can check it before observing any clip. `overhead`: bytes the artifact adds beyond the plan."""
    layers = quantizable_layers(bundle.model)
    target = get_target(options.target)
    lo, hi = reachable_range(layers, target, unquantised_bytes(bundle.model, layers, target.float_bits))
    check_budget(options.budget.bytes, lo, hi, target, overhead)


def make_plan(
    bundle: WhisperBundle, user: UserObservations | None, options: PlanOptions, progress: bool = True
) -> QuantPlan:
    """Allocate formats under the budget and calibrate their scales; returns the plan."""
    options.validate(user is not None)
    target = get_target(options.target)
    budget = options.budget.bytes
    layers = quantizable_layers(bundle.model)
    fixed = unquantised_bytes(bundle.model, layers, target.float_bits)
    if user is not None:
        sens = sensitivities(user.observations, options.sensitivity_metric)
    else:
        sens = {layer.name: 0.0 for layer in layers}
    method = options.allocation
    if method == "auto":  # fill's plan decides; it takes milliseconds, the knapsack's costs seconds
        fill = allocate(
            layers, sens, target, budget, options.order, options.seed, fixed, "fill", None, options.one_rung
        )
        # myQASR's one-rung constraint asked for is kept: the knapsack knows no such constraint
        method = "fill" if options.one_rung else auto_method(layers, fill, target, has_costs=user is not None)
    costs = user.layer_costs(bundle, target, options.layer_cost, progress) if method == "knapsack" else None
    allocation = allocate(
        layers,
        sens,
        target,
        budget,
        options.order,
        options.seed,
        fixed,
        method=method,
        costs=costs,
        one_rung=options.one_rung,
    )
    tied = followers(layers, target)
    layer_plans = []
    for layer in layers:
        rung = allocation.rungs[layer.name]
        fmt = target.ladder(layer.kind)[rung]
        layer_plans.append(
            LayerPlan(
                name=layer.name,
                kind=layer.kind,
                category=layer.category,
                shape=list(layer.shape),
                format=fmt,
                sensitivity=sens[layer.name] if user is not None else None,
                bytes=layer_bytes(layer, target, rung, layer.name in tied),
                tied_to=tied.get(layer.name),
                input_absmax=_input_absmax(user.observations, layer.name) if user and options.activation_bits else None,
                costs=[round(c, 8) for c in costs[layer.name]] if costs else None,
            )
        )
    plan = QuantPlan(
        model_id=bundle.model_id,
        target=target.name,
        budget_bytes=budget,
        order=options.order,
        calibration=options.calibration,
        sensitivity_metric=options.sensitivity_metric,
        calibration_clips=len(user.observations.clips) if user else 0,
        calibration_source=user.source if user else "none",
        personalised=user is not None,
        layers=layer_plans,
        unquantised_bytes=fixed,
        seed=options.seed,
        activation_bits=options.activation_bits,
        allocation=method,
        layer_cost=options.layer_cost if method == "knapsack" else None,
    )
    if user is not None and options.calibration != "minmax":
        torch.manual_seed(options.seed)
        plan = calibrate(bundle, plan, user.observations, options.calibration, progress)
    if plan.total_bytes != allocation.total_bytes:
        raise AssertionError("plan size disagrees with the allocation")
    return plan
