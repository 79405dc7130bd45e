"""GPTQ rounding (exporter/quant/gptq.py): its codes survive every later stage, and it pays on the inputs.

The contract that lets the rest of the pipeline stay unchanged: the grid weights GPTQ writes back quantise,
under the target's own rule and with clip 1, to exactly GPTQ's codes and the scales the plan's clip gave.
"""

from __future__ import annotations

import pytest
import torch

from exporter.quant.gptq import GptqOptions, gptq_codes, grid_weight
from exporter.quant.primitives import fake_quantize_weight, quantize_weight
from exporter.quant.targets import get_target
from runtimes.errors import EdgeAsrError

LINEAR_RUNGS = [
    (target, fmt.name)
    for target in ("android", "onnx")
    for fmt in get_target(target).ladder("linear")
    if not fmt.is_float
]


def _layer(seed: int = 0):
    """A weight with an outlier and correlated inputs (one input channel never active), as Whisper's are."""
    torch.manual_seed(seed)
    weight = torch.randn(96, 256) * 0.05
    weight[3, 7] = 0.9
    weight[5, 40] = -0.7
    inputs = torch.randn(1500, 256) @ torch.randn(256, 256) * 0.1
    inputs[:, 5] = 0
    return weight, inputs, inputs.T @ inputs / len(inputs)


@pytest.mark.parametrize("clip", [1.0, 0.8])
@pytest.mark.parametrize("target, fmt_name", LINEAR_RUNGS)
def test_grid_weights_quantise_to_gptqs_codes_and_the_plans_scales(target, fmt_name, clip):
    fmt = get_target(target).format_by_name(fmt_name)
    weight, _, hessian = _layer()
    codes = gptq_codes(weight, hessian, fmt, clip, GptqOptions())
    grid = grid_weight(weight, codes, fmt, clip)
    again, scales = quantize_weight(grid, fmt, 1.0)
    assert torch.equal(again, codes)
    assert torch.equal(scales, quantize_weight(weight, fmt, clip)[1])
    nearest = quantize_weight(weight, fmt, clip)[0]
    assert 0 < (codes != nearest).float().mean() < 0.5  # GPTQ moved some codes, not all


@pytest.mark.parametrize("target, fmt_name", LINEAR_RUNGS)
def test_gptq_cuts_the_output_error_on_its_inputs(target, fmt_name):
    fmt = get_target(target).format_by_name(fmt_name)
    weight, inputs, hessian = _layer()
    codes = gptq_codes(weight, hessian, fmt, 1.0, GptqOptions())
    rounded = fake_quantize_weight(grid_weight(weight, codes, fmt, 1.0), fmt, 1.0)
    nearest = fake_quantize_weight(weight, fmt, 1.0)

    def error(w):
        return float(((inputs @ (w - weight).T) ** 2).mean())

    assert error(rounded) < 0.8 * error(nearest)


@pytest.mark.parametrize("fmt_name", ["8da4_g32", "8da8_pc"])
def test_act_order_keeps_the_grid_contract_and_cuts_the_error(fmt_name):
    """Columns rounded by decreasing activity: the scales and anchors stay those of the index order."""
    fmt = get_target("android").format_by_name(fmt_name)
    weight, inputs, hessian = _layer(2)
    codes = gptq_codes(weight, hessian, fmt, 1.0, GptqOptions(act_order=True))
    assert not torch.equal(codes, gptq_codes(weight, hessian, fmt, 1.0, GptqOptions()))
    rounded = fake_quantize_weight(grid_weight(weight, codes, fmt, 1.0), fmt, 1.0)
    nearest = fake_quantize_weight(weight, fmt, 1.0)
    error = [float(((inputs @ (w - weight).T) ** 2).mean()) for w in (rounded, nearest)]
    assert error[0] < 0.9 * error[1]


def test_gptq_codes_are_deterministic():
    fmt = get_target("android").format_by_name("8da4_g32")
    weight, _, hessian = _layer(1)
    first = gptq_codes(weight, hessian, fmt, 1.0, GptqOptions())
    assert torch.equal(first, gptq_codes(weight.clone(), hessian.clone(), fmt, 1.0, GptqOptions()))


@pytest.fixture(scope="module")
def toy_rounded(toy_whisper, shared_data):
    """The toy model planned for android on two real clips, then GPTQ-rounded: (bundle, plan, rounded, plan')."""
    from exporter.data import load_dataset
    from exporter.quant.pipeline import PlanOptions, make_plan, observe_user, round_weights

    clips = load_dataset(shared_data / "english_misc" / "manifest.jsonl")
    user = observe_user(toy_whisper, clips, 2, 0, progress=False)
    plan = make_plan(toy_whisper, user, PlanOptions(target="android", budget="30MB", allocation="fill"), False)
    rounded, rounded_plan = round_weights(toy_whisper, plan, user, "gptq", progress=False)
    return toy_whisper, plan, rounded, rounded_plan


def test_a_gptq_plan_simulates_only_on_its_rounded_weights(toy_rounded, tmp_path):
    from exporter.quant.plan import QuantPlan
    from exporter.quant.simulate import apply_plan

    bundle, plan, rounded, rounded_plan = toy_rounded
    assert rounded_plan.rounding == "gptq" and len(rounded_plan.rounded_weights) == 64
    assert all(layer.clip == 1.0 for layer in rounded_plan.layers if layer.kind == "linear")
    assert plan.rounding == "nearest" and rounded_plan.plan_id != plan.plan_id
    # the output projection was rounded on its own; the embedding table kept the model's values
    assert not torch.equal(rounded.model.proj_out.weight, bundle.model.proj_out.weight)
    embed = "model.decoder.embed_tokens"
    assert torch.equal(rounded.model.get_submodule(embed).weight, bundle.model.get_submodule(embed).weight)
    rounded_plan.save(tmp_path / "plan.json")
    loaded = QuantPlan.load(tmp_path / "plan.json")
    apply_plan(rounded.model, loaded)  # the digest matches the weights the rounding wrote
    with pytest.raises(EdgeAsrError, match="does not hold those rounded weights"):
        apply_plan(bundle.model, loaded)


def test_gptq_is_refused_where_the_converter_quantises_other_weights(toy_rounded):
    from dataclasses import replace

    from exporter.quant.gptq import gptq_layers

    _, plan, _, _ = toy_rounded
    with pytest.raises(EdgeAsrError, match="folds LayerNorms"):
        gptq_layers(replace(plan, target="litert"))


def test_auto_rounding_runs_gptq_only_where_a_plan_holds_2_bit_linears(toy_rounded):
    from dataclasses import replace

    from exporter.quant.gptq import auto_rounding, gptq_layers

    _, plan, _, _ = toy_rounded  # android: every Linear on int8 or int4
    assert auto_rounding(plan, has_clips=True) == "nearest"
    two_bit = get_target("onnx").format_by_name("mnb2_g32_a8")
    first = gptq_layers(plan)[0].name
    low = replace(
        plan, layers=[replace(layer, format=two_bit) if layer.name == first else layer for layer in plan.layers]
    )
    assert auto_rounding(low, has_clips=True) == "gptq"
    assert auto_rounding(low, has_clips=False) == "nearest"  # nothing to weigh the errors by
    assert auto_rounding(replace(low, target="litert"), has_clips=True) == "nearest"  # refuses GPTQ
