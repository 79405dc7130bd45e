"""Per-layer scale calibration on the user's activations.

Each quantised layer gets one clip ratio c (scale = c * absmax / qmax per channel or group), chosen on the
inputs recorded from the user's clips (see observe.py); layers are calibrated in parallel on full-precision
inputs, as in myQASR.
  minmax   c = 1: the full weight range, no search;
  cosine   c on a grid maximising the mean cosine similarity between the layer's FP output and its
           quantised output (quantised weight, and quantised input where the runtime quantises it);
  hessian  c maximising -mean((g * (y_fp - y_q))^2), where g = dL/dy is the gradient of the layer output
           under L = KL(quantised model || FP model) on the clip's pseudo-label tokens: PTQ4ViT's
           Hessian-guided metric, label-free. g comes from the plan quantised with minmax scales.
A tied pair stored once (the output projection reading the embedding's tensor) must share one clip: it is
calibrated on the output projection, whose outputs are the logits, and the embedding takes the same clip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm import tqdm

from exporter.choices import CALIBRATIONS
from exporter.models import WhisperBundle
from exporter.quant.formats import DYNAMIC_ACTIVATIONS
from exporter.quant.observe import Observations
from exporter.quant.plan import LayerPlan, QuantPlan
from exporter.quant.primitives import fake_quantize_input, fake_quantize_weight

# Coarse grid of clip ratios, then one refinement step around the best (17 evaluations per layer).
COARSE_GRID = tuple(round(0.30 + 0.05 * i, 3) for i in range(15))  # 0.30 .. 1.00
REFINE_STEP = 0.025


def _layer_inputs(layer: LayerPlan, inputs: list[torch.Tensor], quantize_input: bool) -> list[torch.Tensor]:
    """Recorded inputs as the runtime sees them (int8 per token for 8da* formats, per block for ORT's
    int8-compute MatMulNBits): done once per layer."""
    if layer.kind == "conv":
        return [fake_quantize_input(x.T, layer.format).T if quantize_input else x for x in inputs]
    rows = torch.cat(inputs)  # one matrix: a single matmul per candidate
    return [fake_quantize_input(rows, layer.format) if quantize_input else rows]


def _layer_outputs(
    layer: LayerPlan, module: torch.nn.Module, inputs: list[torch.Tensor], weight: torch.Tensor
) -> torch.Tensor:
    """The layer's outputs on prepared inputs, as one (positions, channels) matrix."""
    if layer.kind == "conv":
        return torch.cat([F.conv1d(x[None], weight, module.bias, module.stride, module.padding)[0].T for x in inputs])
    return F.linear(inputs[0], weight, module.bias)


def _cosine(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    return float(F.cosine_similarity(reference, candidate, dim=-1).mean())


def _hessian(reference: torch.Tensor, candidate: torch.Tensor, grads: torch.Tensor) -> float:
    return -float(((grads * (reference - candidate)) ** 2).mean())


def _search(objective) -> tuple[float, float]:
    """(best clip, its objective) over the coarse grid, refined once around the best point."""
    scored = {clip: objective(clip) for clip in COARSE_GRID}
    best = max(scored, key=scored.get)
    for clip in (round(best - REFINE_STEP, 3), round(best + REFINE_STEP, 3)):
        if 0.0 < clip <= 1.0:
            scored[clip] = objective(clip)
    best = max(scored, key=scored.get)
    return best, scored[best]


@torch.no_grad()
def calibrate_layer(
    layer: LayerPlan,
    module: torch.nn.Module,
    observations: Observations,
    method: str,
    grads: list[torch.Tensor] | None = None,
) -> tuple[float, float | None]:
    """(clip ratio, objective value) for one layer."""
    if layer.format.is_float or method == "minmax":
        return 1.0, None
    obs = observations.per_layer[layer.name]
    weight = module.weight.detach().float()
    if layer.kind == "embedding":
        ids = torch.unique(torch.cat([t.flatten() for t in obs.token_ids]))
        rows = weight[ids]  # the embedding's "output" is the looked-up rows
        return _search(lambda c: _cosine(rows, fake_quantize_weight(rows, layer.format, c)))
    reference = _layer_outputs(layer, module, _layer_inputs(layer, obs.inputs, False), weight)
    inputs = _layer_inputs(layer, obs.inputs, layer.format.activation in DYNAMIC_ACTIVATIONS)
    if method == "hessian":
        g = torch.cat(grads)

        def objective(clip: float) -> float:
            out = _layer_outputs(layer, module, inputs, fake_quantize_weight(weight, layer.format, clip))
            return _hessian(reference, out, g)
    else:

        def objective(clip: float) -> float:
            out = _layer_outputs(layer, module, inputs, fake_quantize_weight(weight, layer.format, clip))
            return _cosine(reference, out)

    return _search(objective)


def output_gradients(
    bundle: WhisperBundle, plan: QuantPlan, observations: Observations, progress: bool = True
) -> dict[str, list[torch.Tensor]]:
    """dL/d(layer output) at the recorded rows, L = KL(minmax-quantised model || FP model), per clip."""
    from exporter.quant.simulate import apply_plan

    minmax = QuantPlan(**{**plan.__dict__, "layers": [_with_clip(lp, 1.0) for lp in plan.layers]})
    qmodel = apply_plan(bundle.model, minmax)
    for p in qmodel.parameters():
        p.requires_grad_(True)  # so layer outputs are part of the graph; only output grads are taken
    wanted = [lp for lp in plan.layers if not lp.format.is_float and lp.kind != "embedding"]
    grads: dict[str, list[torch.Tensor]] = {lp.name: [] for lp in wanted}
    for index, record in enumerate(
        tqdm(observations.clips, desc="hessian gradients", unit="clip", disable=not progress)
    ):
        captured: dict[str, torch.Tensor] = {}
        handles = [
            qmodel.get_submodule(lp.name).register_forward_hook(
                lambda m, a, out, name=lp.name: captured.__setitem__(name, out)
            )
            for lp in wanted
        ]
        features = torch.from_numpy(record.features)[None]
        tokens = torch.tensor([record.tokens])
        with torch.no_grad():
            fp_logits = bundle.model(input_features=features, decoder_input_ids=tokens).logits
        q_logits = qmodel(input_features=features, decoder_input_ids=tokens).logits
        for h in handles:
            h.remove()
        loss = F.kl_div(F.log_softmax(q_logits, -1), F.softmax(fp_logits, -1), reduction="sum")
        names = list(captured)
        outs = torch.autograd.grad(loss, [captured[n] for n in names], allow_unused=True)
        for name, g in zip(names, outs):
            layer = next(lp for lp in wanted if lp.name == name)
            if layer.kind == "conv" and index >= len(observations.per_layer[name].inputs):
                continue  # conv inputs are recorded for the first clips only
            grads[name].append(_rows_like_inputs(layer, g, observations, index))
    return grads


def _rows_like_inputs(
    layer: LayerPlan, grad: torch.Tensor | None, observations: Observations, clip_index: int
) -> torch.Tensor | None:
    """Cut a full output gradient to the rows whose inputs were recorded for this clip."""
    obs = observations.per_layer[layer.name]
    record = observations.clips[clip_index]
    if grad is None:
        return None
    g = grad[0].detach()
    if layer.kind == "conv":
        conv2 = layer.name.endswith("conv2")
        return g[:, : record.encoder_frames if conv2 else record.mel_frames].T
    for index, rows in obs.row_index:
        if index == clip_index:
            return g[rows] if len(g) > int(rows.max()) else None
    return None


def _with_clip(layer: LayerPlan, clip: float) -> LayerPlan:
    return LayerPlan(**{**layer.__dict__, "clip": clip})


def calibrate(
    bundle: WhisperBundle, plan: QuantPlan, observations: Observations, method: str, progress: bool = True
) -> QuantPlan:
    """The plan with every quantised layer's clip ratio calibrated by `method`."""
    if method not in CALIBRATIONS:
        from runtimes.errors import EdgeAsrError

        raise EdgeAsrError(f"unknown calibration {method!r}; choose one of {', '.join(CALIBRATIONS)}")
    grads = output_gradients(bundle, plan, observations, progress) if method == "hessian" else {}
    layers = []
    for layer in tqdm(plan.layers, desc=f"calibrating ({method})", unit="layer", disable=not progress):
        module = bundle.model.get_submodule(layer.name)
        layer_grads = grads.get(layer.name)
        use = method
        if method == "hessian" and (not layer_grads or any(g is None for g in layer_grads)):
            use = "cosine"  # no gradient reaches this layer (e.g. embedding lookups): documented fallback
        clip, value = calibrate_layer(layer, module, observations, use, layer_grads)
        calibrated = _with_clip(layer, clip)
        calibrated.calibration_score = value
        layers.append(calibrated)
    return QuantPlan(**{**plan.__dict__, "layers": _share_tied_clips(layers)})


def _share_tied_clips(layers: list[LayerPlan]) -> list[LayerPlan]:
    clips = {layer.tied_to: (layer.clip, layer.calibration_score) for layer in layers if layer.tied_to}
    shared = []
    for layer in layers:
        if layer.name in clips and not layer.format.is_float:
            layer = _with_clip(layer, clips[layer.name][0])
            layer.calibration_score = clips[layer.name][1]
        shared.append(layer)
    return shared
