"""GPTQ rounding on the user's activations: which code each weight gets, once the plan fixed its scale.

Nearest rounding minimises each weight's own error. GPTQ (Frantar et al., 2022) instead minimises the layer's
output error on recorded inputs X: columns are rounded one at a time, and each column's rounding error is
spread onto the columns not yet rounded, weighted by the inverse of H = X^T X. Here X is the user's own
activations (the calibration clips, teacher-forced on the FP model's pseudo-labels, every real row), so the
rounding is personalised and label-free, like the rest of the plan.

The scales are not searched: each group keeps the scale its format's rule computes from the (clipped)
weights, so bytes, formats and the lowering's scale arithmetic are untouched; only codes move. The result is
written back as float weights that lie on the plan's grid (`grid_weight`): quantising them with the target's
own rule (the simulation, torchao for ExecuTorch, the ONNX lowering) gives exactly GPTQ's codes and the same
scales. That holds because each group keeps one weight at its range's end (the "anchor", whose magnitude
fixes the scale) and every other weight sits on code * scale strictly inside that range, so everything
downstream works on an ordinary float model.

Which layers: Linear layers with an int format. Embedding lookups have no input to weigh errors by; the
encoder convolutions stay float on the targets that lower; on a target that stores the tied output
projection once (onnx), rounding it for the logits would move the embedding's rows too, so it keeps nearest
rounding there. Targets whose converter folds LayerNorms into the weights (litert) quantise other weights
than the model's and are refused.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, replace

import torch
from torch import nn
from tqdm import tqdm

from exporter.models import WhisperBundle
from exporter.quant.formats import QuantFormat
from exporter.quant.observe import Observations, is_encoder_side
from exporter.quant.plan import LayerPlan, QuantPlan
from exporter.quant.primitives import clip_groups, quantize_weight
from exporter.quant.targets import get_target
from runtimes.errors import EdgeAsrError


@dataclass(frozen=True)
class GptqOptions:
    # Added to H's diagonal, as a fraction of its mean. GPTQ's usual 0.01 assumes far more rows than inputs;
    # here a decoder layer sees about ten tokens per clip (a few hundred rows for 384-2048 inputs), and at 0.01
    # its rounding fitted those rows: on held-out clips of the same group (tiny.en, android 35 MB, by hand) the
    # output projection's error came out above nearest rounding's, and children's WER rose (46.5 -> 52.9 %,
    # 60 clips), where 1.0 kept every layer's held-out error below nearest's (benchmarks/results/rounding_*).
    damping: float = 1.0
    # Columns rounded between two updates of the rest of the matrix (the update is the same, only batched).
    block: int = 128
    # Round input columns in order of decreasing activity (H's diagonal) instead of their index order. The
    # scales are fixed before rounding, so any order keeps the same groups.
    act_order: bool = False


def gptq_refusal(name: str) -> str | None:
    """Why the target cannot take GPTQ's codes (its converter quantises other weights than the model's), or
    None where it can."""
    if get_target(name).folds_layernorms:
        return (
            f"--rounding gptq is not available for the {name} target: its converter folds LayerNorms into "
            "the weights before quantising them; use --rounding nearest"
        )
    return None


def check_gptq_target(name: str) -> None:
    """Refuse a target that cannot take GPTQ's codes (export checks this early)."""
    refusal = gptq_refusal(name)
    if refusal is not None:
        raise EdgeAsrError(refusal)


def gptq_layers(plan: QuantPlan) -> list[LayerPlan]:
    """The plan's layers GPTQ rounds (see the module docstring for which and why)."""
    check_gptq_target(plan.target)
    target = get_target(plan.target)
    tied = {layer.name for layer in plan.layers if layer.tied_to} if target.shares_tied_weights else set()
    return [
        layer
        for layer in plan.layers
        if layer.kind == "linear" and layer.format.kind == "int" and layer.name not in tied
    ]


# auto rounding's threshold: GPTQ pays where the plan puts a Linear on this many bits or fewer
# (choices.DEFAULT_ROUNDING has the measurements).
AUTO_GPTQ_MAX_BITS = 2


def auto_rounding(plan: QuantPlan, has_clips: bool) -> str:
    """The rounding `auto` runs for `plan`: GPTQ where a layer it rounds is on AUTO_GPTQ_MAX_BITS or fewer and
    there are calibration clips to weigh by, nearest elsewhere (and on targets that refuse GPTQ)."""
    if not has_clips or gptq_refusal(plan.target) is not None:
        return "nearest"
    low = [layer for layer in gptq_layers(plan) if layer.format.bits <= AUTO_GPTQ_MAX_BITS]
    return "gptq" if low else "nearest"


@torch.inference_mode()
def input_hessians(
    bundle: WhisperBundle, names: list[str], observations: Observations, progress: bool = True
) -> dict[str, torch.Tensor]:
    """H = X^T X / rows per layer, X = every real (non-padding) input row of every calibration clip.

    One teacher-forced forward of the FP model per clip on its pseudo-label (recorded by the observation),
    float64 accumulation: encoder layers see a few hundred rows per clip, decoder layers one per token.
    """
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = dict.fromkeys(names, 0)
    frames = {"n": 0}

    def hook(name: str):
        def record(module, args):
            x = args[0][0]
            if is_encoder_side(name):
                x = x[: frames["n"]]
            x = x.double()
            sums[name] = sums.get(name, 0) + x.T @ x
            rows[name] += x.shape[0]

        return record

    handles = [bundle.model.get_submodule(name).register_forward_pre_hook(hook(name)) for name in names]
    try:
        for record in tqdm(observations.clips, desc="GPTQ inputs", unit="clip", disable=not progress):
            frames["n"] = record.encoder_frames
            features = torch.from_numpy(record.features)[None]
            bundle.model(input_features=features, decoder_input_ids=torch.tensor([record.tokens]))
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if not rows[name]]
    if missing:
        raise EdgeAsrError(f"GPTQ recorded no inputs for {missing[0]}; give calibration clips with speech")
    return {name: (sums[name] / rows[name]).float() for name in names}


def _group_layout(weight: torch.Tensor, fmt: QuantFormat) -> int:
    """Columns per scale: the group size, or the whole row for per-channel formats."""
    if fmt.granularity == "group":
        if weight.shape[1] % fmt.group_size:
            raise EdgeAsrError(f"GPTQ needs whole groups: {weight.shape[1]} columns, groups of {fmt.group_size}")
        return fmt.group_size
    if fmt.granularity == "per_channel":
        return weight.shape[1]
    raise EdgeAsrError(f"GPTQ rounds per-channel or grouped formats, not {fmt.granularity} ({fmt.name})")


def _inverse_factor(hessian: torch.Tensor, damping: float) -> torch.Tensor:
    """The upper Cholesky factor U of H^-1 (H^-1 = U^T U), H damped; its rows give GPTQ's update weights."""
    h = hessian.double().clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0  # channels never active: their weights cannot matter, any rounding is as good
    h += damping * torch.diagonal(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True).float()


def gptq_codes(
    weight: torch.Tensor, hessian: torch.Tensor, fmt: QuantFormat, clip: float, options: GptqOptions
) -> torch.Tensor:
    """The codes GPTQ picks for a (out, in) weight, shaped like `quantize_weight`'s grouped view.

    Every group keeps the scale (and code range) that `quantize_weight` computes from the clipped weights;
    its anchor (the weight that fixed the scale) keeps its own code, so `grid_weight` can reproduce both.
    """
    out_features, in_features = weight.shape
    columns_per_scale = _group_layout(weight, fmt)
    nearest, stored_scale = quantize_weight(weight, fmt, clip)
    groups, _, _ = clip_groups(weight, fmt, clip)
    anchors = groups.abs().argmax(dim=1)
    low, high = _code_range(nearest, anchors, fmt)
    # per weight: the stored scale (what the runtime multiplies by) and the code bounds of its group
    per_weight = stored_scale.reshape(out_features, -1).repeat_interleave(columns_per_scale, dim=1)
    low_w = low.reshape(out_features, -1).repeat_interleave(columns_per_scale, dim=1)
    high_w = high.reshape(out_features, -1).repeat_interleave(columns_per_scale, dim=1)
    anchor_mask = torch.zeros_like(groups, dtype=torch.bool)
    anchor_mask[torch.arange(len(groups)), anchors] = True
    anchor_mask = anchor_mask.reshape(out_features, in_features)
    anchor_codes = nearest.reshape(out_features, in_features).float()

    work = groups.reshape(out_features, in_features).clone()  # the clipped weights, updated as columns round
    if options.act_order:  # the most active input columns first, while the others can still absorb errors
        order = torch.argsort(torch.diagonal(hessian), descending=True, stable=True)
        hessian = hessian[order][:, order]
        work, per_weight, low_w, high_w = (t[:, order] for t in (work, per_weight, low_w, high_w))
        anchor_mask, anchor_codes = anchor_mask[:, order], anchor_codes[:, order]
    factor = _inverse_factor(hessian, options.damping)
    codes = torch.zeros_like(work)
    for start in range(0, in_features, options.block):
        stop = min(start + options.block, in_features)
        errors = torch.zeros(out_features, stop - start)
        for col in range(start, stop):
            scale = per_weight[:, col]
            code = torch.clamp(torch.round(work[:, col] / scale), low_w[:, col], high_w[:, col])
            code = torch.where(anchor_mask[:, col], anchor_codes[:, col], code)
            codes[:, col] = code
            error = (work[:, col] - code * scale) / factor[col, col]
            work[:, col + 1 : stop] -= error[:, None] * factor[col, col + 1 : stop][None, :]
            errors[:, col - start] = error
        work[:, stop:] -= errors @ factor[start:stop, stop:]
    if options.act_order:
        codes = codes[:, torch.argsort(order)]
    return codes.reshape(nearest.shape).to(nearest.dtype)


def _code_range(nearest: torch.Tensor, anchors: torch.Tensor, fmt: QuantFormat) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group, the codes a non-anchor weight may take so that the anchor stays the group's largest.

    half_range: codes in [-qmax - 1, qmax]; -qmax - 1 only where the rule gives it to the range's negative end
    (then `grid_weight` places that weight at -limit). signed_max: the full range, the anchor sitting on
    -qmax - 1 and any other weight on that code at the same value.
    """
    qmax = 2 ** (fmt.bits - 1) - 1
    anchor_code = nearest.gather(1, anchors[:, None]).float()
    if fmt.scale_rule == "signed_max":
        return torch.full_like(anchor_code, -qmax - 1), torch.full_like(anchor_code, qmax)
    if fmt.scale_rule != "half_range":
        raise EdgeAsrError(f"GPTQ rounding does not handle the {fmt.scale_rule} scale rule ({fmt.name})")
    # half_range: the anchor at -limit gets -qmax - 1 or -qmax by float rounding; any weight at -limit the same
    negative_end = torch.where(anchor_code < 0, anchor_code, torch.full_like(anchor_code, -qmax))
    return negative_end, torch.full_like(anchor_code, qmax)


def grid_weight(weight: torch.Tensor, codes: torch.Tensor, fmt: QuantFormat, clip: float) -> torch.Tensor:
    """Float weights (shape and dtype of `weight`) that the format's rule, with clip 1, quantises to exactly
    `codes` with the scales it computes from `weight` at `clip` (checked)."""
    groups, _, limit = clip_groups(weight, fmt, clip)
    _, stored_scale = quantize_weight(weight, fmt, clip)
    anchors = groups.abs().argmax(dim=1, keepdim=True)
    anchor_value = groups.gather(1, anchors)
    qmax = 2 ** (fmt.bits - 1) - 1
    values = codes.float()
    if fmt.scale_rule == "signed_max":
        # the codes were computed against peak / -(qmax + 1) in float32: code * that, exact at the ends
        code_scale = anchor_value / -(qmax + 1)
        grid = values * code_scale
    else:
        code_scale = limit / (qmax + 0.5)
        grid = values * code_scale
        grid = torch.where(values == -qmax - 1, -limit, grid)
    grid = grid.scatter(1, anchors, anchor_value)
    result = grid.reshape(weight.shape[0], -1)[:, : weight[0].numel()].reshape(weight.shape).to(weight.dtype)
    again, scale_again = quantize_weight(result, fmt, 1.0)
    if not torch.equal(again, codes) or not torch.equal(scale_again, stored_scale):
        raise AssertionError(f"GPTQ grid weights do not reproduce their codes under {fmt.name}")
    return result


def gptq_round(
    bundle: WhisperBundle,
    plan: QuantPlan,
    hessians: dict[str, torch.Tensor],
    options: GptqOptions = GptqOptions(),
    progress: bool = True,
) -> tuple[WhisperBundle, QuantPlan]:
    """A bundle whose rounded layers hold GPTQ's grid weights (the output projection untied from the
    embedding), and the plan with those layers' clip set to 1 (the clipping is in the weights now), its
    rounding recorded with the digest of those weights. `hessians`: `input_hessians` of at least those layers."""
    if plan.rounding != "nearest":
        raise EdgeAsrError(f"the plan's weights are already rounded ({plan.rounding})")
    layers = gptq_layers(plan)
    rounded = copy.copy(bundle)
    rounded.model = copy.deepcopy(bundle.model)
    for layer in tqdm(layers, desc="GPTQ rounding", unit="layer", disable=not progress):
        module = rounded.model.get_submodule(layer.name)
        weight = module.weight.detach().float()
        codes = gptq_codes(weight, hessians[layer.name], layer.format, layer.clip, options)
        grid = grid_weight(weight, codes, layer.format, layer.clip)
        module.weight = nn.Parameter(grid.to(module.weight.dtype), requires_grad=False)  # also unties proj_out
    names = {layer.name for layer in layers}
    new_layers = [replace(layer, clip=1.0) if layer.name in names else layer for layer in plan.layers]
    rounded_plan = replace(plan, layers=new_layers, rounding="gptq")
    rounded_plan.rounded_weights = rounded_weights_digest(rounded.model, rounded_plan)
    return rounded, rounded_plan


def rounded_weights_digest(model: nn.Module, plan: QuantPlan) -> str:
    """sha256 over the names and float32 values of the weights GPTQ rounds under `plan`."""
    digest = hashlib.sha256()
    for layer in gptq_layers(plan):
        weight = model.get_submodule(layer.name).weight.detach().float().contiguous()
        digest.update(layer.name.encode("utf-8"))
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()


def check_rounding(model: nn.Module, plan: QuantPlan) -> None:
    """Refuse to simulate or lower a GPTQ plan on a model that does not hold its rounded weights: the plan
    file records only their digest, and the nearest codes of the FP weights are another model."""
    if plan.rounding == "nearest":
        return
    if plan.rounding != "gptq":
        raise EdgeAsrError(f"the plan's rounding {plan.rounding!r} is unknown; make the plan again")
    if plan.rounded_weights != rounded_weights_digest(model, plan):
        raise EdgeAsrError(
            "this plan's codes were chosen by GPTQ on its calibration clips, and this model does not hold "
            "those rounded weights (the plan file records only their digest): measure the exported artifact "
            "(`edgeasr bench --artifact DIR`), or export again with --rounding nearest"
        )
