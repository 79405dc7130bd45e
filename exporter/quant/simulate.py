"""Apply a plan to the PyTorch model with fake quantisation, so WER can be measured for any plan.

Weights are replaced by their dequantised values (exactly what the runtime computes with, scale rounding
included). Activations are fake-quantised where the runtime quantises them: per token, dynamically, for
XNNPACK's 8da* formats; per block of the weight's group for ORT's int8-compute MatMulNBits; per tensor
with the calibrated range when the plan asks for static A8 (sim target).
The token embedding and output projection are untied, each with its own format. On a target that stores
floats as half (`Target.float_bits` 16), every float parameter is rounded to half as the artifact holds it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from exporter.models import WhisperBundle
from exporter.quant.fold import fold_layernorm_affine
from exporter.quant.formats import DYNAMIC_ACTIVATIONS, QuantFormat
from exporter.quant.gptq import check_rounding
from exporter.quant.plan import LayerPlan, QuantPlan
from exporter.quant.primitives import (
    fake_quantize_activation_static,
    fake_quantize_input,
    fake_quantize_weight,
    round_float,
)
from exporter.quant.targets import get_target
from runtimes.errors import EdgeAsrError


def dynamic_input_hook(fmt: QuantFormat, kind: str):
    """The forward pre-hook that quantises a layer's input as its runtime does at run time (per token for
    XNNPACK's 8da* formats, per block for ORT's int8-compute MatMulNBits), or None where the format computes
    on float inputs (float formats, weight-only formats, embedding lookups)."""
    if fmt.is_float or kind == "embedding" or fmt.activation not in DYNAMIC_ACTIVATIONS:
        return None
    return lambda module, args: (fake_quantize_input(args[0], fmt),) + tuple(args[1:])


def _activation_hook(layer: LayerPlan, bits: int | None):
    if layer.format.is_float or layer.kind == "embedding":
        return None
    if layer.format.activation in DYNAMIC_ACTIVATIONS:
        return dynamic_input_hook(layer.format, layer.kind)
    if bits is not None and layer.input_absmax is not None:
        return lambda module, args: (
            (fake_quantize_activation_static(args[0], layer.input_absmax, bits),) + tuple(args[1:])
        )
    return None


def check_plan_fits(model: nn.Module, plan: QuantPlan) -> None:
    """Refuse a plan whose layers are not this model's (another size or architecture), before any copy."""
    modules = dict(model.named_modules())
    for layer in plan.layers:
        weight = getattr(modules.get(layer.name), "weight", None)
        if weight is None or list(weight.shape) != list(layer.shape):
            found = "absent" if weight is None else f"of shape {list(weight.shape)}"
            raise EdgeAsrError(
                f"the plan's layer {layer.name} (shape {layer.shape}) is {found} in this model: the plan was "
                f"made for another model ({plan.model_id}); make one for this model with `edgeasr plan`"
            )


def check_float_widths(plan: QuantPlan) -> None:
    """Refuse a plan whose float layers are wider than its target stores floats (e.g. fp32 layers in a plan
    made before the target stored half): its artifact would not hold what the plan says."""
    float_bits = get_target(plan.target).float_bits
    wider = [layer.name for layer in plan.layers if layer.format.is_float and layer.format.bits != float_bits]
    if wider:
        raise EdgeAsrError(
            f"the plan keeps {wider[0]} in {plan.layer(wider[0]).format.name}, but the {plan.target} target stores "
            f"floats in {float_bits} bits; re-make the plan with `edgeasr plan --target {plan.target}`"
        )


@torch.no_grad()
def round_stored_floats(model: nn.Module, plan: QuantPlan) -> None:
    """Round, in place, every parameter the plan leaves float (norms, biases, positions; not the weights of
    its quantised layers) to the float width its target stores. Both the simulation and the lowering call
    this, so the artifact's half-precision tensors are exactly the simulated values."""
    bits = get_target(plan.target).float_bits
    if bits == 32:
        return
    quantised = {f"{layer.name}.weight" for layer in plan.layers if not layer.format.is_float}
    for name, param in model.named_parameters(remove_duplicate=False):
        if name not in quantised:
            param.copy_(round_float(param, bits))


@torch.no_grad()
def apply_plan(model: nn.Module, plan: QuantPlan) -> nn.Module:
    """A fake-quantised copy of `model` (the original is not modified)."""
    check_plan_fits(model, plan)
    check_rounding(model, plan)
    model = copy.deepcopy(model)
    if get_target(plan.target).folds_layernorms:
        fold_layernorm_affine(model)
    round_stored_floats(model, plan)
    for layer in plan.layers:
        module = model.get_submodule(layer.name)
        weight = fake_quantize_weight(module.weight, layer.format, layer.clip)
        module.weight = nn.Parameter(weight, requires_grad=False)  # a new Parameter also unties proj_out
        hook = _activation_hook(layer, plan.activation_bits)
        if hook is not None:
            module.register_forward_pre_hook(hook)
    model.eval()
    return model


def simulate(bundle: WhisperBundle, plan: QuantPlan) -> WhisperBundle:
    """A bundle whose model runs `plan` in simulation; tokenizer and features are shared."""
    simulated = copy.copy(bundle)
    simulated.model = apply_plan(bundle.model, plan)
    simulated.model_id = f"{bundle.model_id}+{plan.target}:{plan.order}/{plan.calibration}"
    return simulated


__all__ = ["apply_plan", "check_float_widths", "dynamic_input_hook", "round_stored_floats", "simulate"]
