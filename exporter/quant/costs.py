"""Measured, label-free cost of each layer on each rung: what `--allocation knapsack` minimises.

For a layer and a rung, the cost is the damage to that layer's own output when only it is quantised to the
rung's format: 1 - the mean cosine similarity between its full-precision output and its quantised output, on
the inputs recorded from the user's unlabelled clips (observe.py), with the input quantised where the runtime
quantises it (8da* formats) and min/max scales. The token embedding's output is the rows the user's clips
looked up. Float rungs cost 0. One matrix product per layer and rung on at most 1024 recorded rows, so the
whole table takes seconds, not the minutes that a model pass per layer and rung would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from exporter.models import WhisperBundle
from exporter.quant.formats import DYNAMIC_ACTIVATIONS, QuantFormat
from exporter.quant.layers import QuantLayer
from exporter.quant.observe import Observations
from exporter.quant.primitives import fake_quantize_input, fake_quantize_weight
from exporter.quant.targets import Target


def _outputs(layer: QuantLayer, module: torch.nn.Module, inputs: list[torch.Tensor], weight: torch.Tensor):
    if layer.kind == "conv":
        return torch.cat([F.conv1d(x[None], weight, module.bias, module.stride, module.padding)[0].T for x in inputs])
    return F.linear(torch.cat(inputs), weight, module.bias)


def _quantized_inputs(layer: QuantLayer, inputs: list[torch.Tensor], fmt: QuantFormat) -> list[torch.Tensor]:
    if layer.kind == "conv":
        return [fake_quantize_input(x.T, fmt).T for x in inputs]
    return [fake_quantize_input(torch.cat(inputs), fmt)]


def _distance(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    return max(0.0, 1.0 - float(F.cosine_similarity(reference, candidate, dim=-1).mean()))


@torch.no_grad()
def layer_costs(bundle: WhisperBundle, observations: Observations, target: Target) -> dict[str, list[float]]:
    """{layer: [cost on rung 0, rung 1, ...]} along the layer kind's ladder on `target`."""
    costs = {}
    for layer in observations.layers:
        ladder = target.ladder(layer.kind)
        module = bundle.model.get_submodule(layer.name)
        weight = module.weight.detach().float()
        obs = observations.per_layer[layer.name]
        if layer.kind == "embedding":
            ids = torch.unique(torch.cat([t.flatten() for t in obs.token_ids]))
            rows = weight[ids]
            costs[layer.name] = [
                0.0 if fmt.is_float else _distance(rows, fake_quantize_weight(rows, fmt)) for fmt in ladder
            ]
            continue
        reference = _outputs(layer, module, obs.inputs, weight) if len(ladder) > 1 else None
        per_rung = []
        for fmt in ladder:
            if fmt.is_float:
                per_rung.append(0.0)
                continue
            inputs = _quantized_inputs(layer, obs.inputs, fmt) if fmt.activation in DYNAMIC_ACTIVATIONS else obs.inputs
            per_rung.append(_distance(reference, _outputs(layer, module, inputs, fake_quantize_weight(weight, fmt))))
        costs[layer.name] = per_rung
    return costs
