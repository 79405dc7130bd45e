"""The knapsack's output costs (exporter/quant/output_costs.py) on tiny.en and real clips: each cost is the
KL that the real simulation of a one-layer plan gives, float rungs cost nothing, and a tied pair stored
once is measured together."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from exporter.data import load_dataset
from exporter.quant.observe import Observations
from exporter.quant.output_costs import output_costs
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user
from exporter.quant.simulate import apply_plan
from exporter.quant.targets import get_target

pytestmark = pytest.mark.slow
LAYERS = (
    "model.encoder.layers.2.fc1",
    "model.decoder.layers.1.encoder_attn.v_proj",
    "model.decoder.embed_tokens",
    "proj_out",
)


@pytest.fixture(scope="module")
def user(tiny_en, shared_data):
    speechocean = load_dataset(shared_data / "speechocean762" / "manifest.jsonl")
    return observe_user(tiny_en, speechocean, n_clips=2, progress=False)


def _some_layers(observations: Observations) -> Observations:
    return replace(observations, layers=[layer for layer in observations.layers if layer.name in LAYERS])


def _kl_of_simulated_plan(bundle, user, layer_name: str, rung: int) -> float:
    """Independently of output_costs: a plan with only this layer on `rung`, simulated as WER rows are, each
    clip run whole (no shared batch, no cached encoder blocks), KL over the pseudo-label's predictions."""
    target = get_target("android")
    plan = make_plan(bundle, user, PlanOptions(target="android", budget="229MB", calibration="minmax"), False)
    layers = [
        replace(layer, format=target.ladder(layer.kind)[rung if layer.name == layer_name else 0], clip=1.0)
        for layer in plan.layers
    ]
    simulated = apply_plan(bundle.model, replace(plan, layers=layers))
    total, positions = 0.0, 0
    with torch.no_grad():
        for clip in user.observations.clips:
            features = torch.from_numpy(clip.features)[None]
            tokens = torch.tensor([clip.tokens])
            first = clip.tokens.index(bundle.special.no_timestamps)
            logp = [
                F.log_softmax(model(input_features=features, decoder_input_ids=tokens).logits[0, first:-1], -1)
                for model in (bundle.model, simulated)
            ]
            total += float((logp[0].exp() * (logp[0] - logp[1])).sum())
            positions += logp[0].shape[0]
    return total / positions


def test_output_costs_are_the_kl_of_the_simulated_one_layer_plan(tiny_en, user):
    target = get_target("android")
    costs = output_costs(tiny_en, _some_layers(user.observations), target, n_clips=2, progress=False)
    assert set(costs) == set(LAYERS)
    for name, per_rung in costs.items():
        kind = next(layer.kind for layer in user.observations.layers if layer.name == name)
        ladder = target.ladder(kind)
        assert len(per_rung) == len(ladder) and per_rung[0] == 0.0 and all(c >= 0 for c in per_rung)
    # an encoder layer (re-run from its block on), a cross-attention projection (decoder only), the embedding
    for name, rung in (("model.encoder.layers.2.fc1", 4), ("model.decoder.layers.1.encoder_attn.v_proj", 2)):
        assert costs[name][rung] == pytest.approx(_kl_of_simulated_plan(tiny_en, user, name, rung), rel=1e-3, abs=1e-6)
    embedding = costs["model.decoder.embed_tokens"]
    lowest = len(target.ladder("embedding")) - 1
    assert embedding[-1] == pytest.approx(
        _kl_of_simulated_plan(tiny_en, user, "model.decoder.embed_tokens", lowest), rel=1e-3
    )
    assert embedding[-1] > embedding[1] > 0  # 4 bits in groups of 128 cost more than 8 bits


def test_a_pair_stored_once_is_measured_together(tiny_en, user):
    onnx = output_costs(tiny_en, _some_layers(user.observations), get_target("onnx"), n_clips=1, progress=False)
    assert all(c == 0.0 for c in onnx["proj_out"])  # the pair's cost sits on its leader, counted once
    alone = output_costs(tiny_en, _some_layers(user.observations), get_target("android"), n_clips=1, progress=False)
    # on onnx the 4-bit rung quantises embedding and output projection together: more than the embedding alone
    assert onnx["model.decoder.embed_tokens"][2] > alone["model.decoder.embed_tokens"][2]


def test_knapsack_plan_records_its_output_costs(tiny_en, user):
    options = PlanOptions(
        target="android", budget="45MB", calibration="minmax", allocation="knapsack", layer_cost="output"
    )
    observations = replace(user, observations=_some_layers(user.observations), costs={})
    costs = observations.layer_costs(tiny_en, get_target("android"), "output", progress=False)
    user.costs[("android", "output")] = {
        **{layer.name: [0.0] * len(get_target("android").ladder(layer.kind)) for layer in user.observations.layers},
        **costs,
    }
    plan = make_plan(tiny_en, user, options, progress=False)
    assert plan.layer_cost == "output" and plan.total_bytes <= plan.budget_bytes
    assert plan.layer("model.decoder.embed_tokens").costs == [round(c, 8) for c in costs["model.decoder.embed_tokens"]]
    assert make_plan(tiny_en, user, replace(options, allocation="fill"), progress=False).layer_cost is None
