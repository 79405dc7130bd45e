"""Numerical primitives: quantise / dequantise tensors. No module surgery here.

Weights are quantised symmetrically: codes q in [-2^(b-1), 2^(b-1) - 1] and
scale = clip * absmax / (2^(b-1) - 0.5), per tensor, per output channel, or per group of `group_size`
consecutive input weights in a row. The denominator is half the code range, as torchao's symmetric mapping
computes it, so the codes and scales simulated here are the ones the ExecuTorch export stores. The clip ratio
(<= 1) is what calibration searches: clipping the range trades outlier error for resolution.

Codes are always computed against the float32 scale; a format whose `scale_dtype` is narrower then stores
the scale rounded to that dtype (round to nearest even). That is the order of the real pipeline: torchao
quantises with float32 scales and ExecuTorch's XNNPACK serialiser casts int4 group scales to bfloat16
afterwards. Simulating it this way matches the .pte's output of a single Linear to float32 round-off.

Formats with `scale_rule="narrow"` follow ai-edge-quantizer (the LiteRT target) instead: scale =
clip * absmax / (2^(b-1) - 1), rounded to its stored dtype before the codes are computed against it, codes in
[-(2^(b-1) - 1), 2^(b-1) - 1]. That reproduces the quantiser's int8 and int4 block codes bit for bit.

Formats with `scale_rule="signed_max"` (the onnx target, whose lowering stores our codes and scales as they
are) put each group's largest-magnitude weight exactly on code -2^(b-1): scale = -peak / 2^(b-1), where peak
is that weight with its sign, so the scale can be negative. Half_range spends half a step on each end that
no weight reaches; this rule does not.
"""

from __future__ import annotations

import torch

from exporter.quant.formats import QuantFormat

_TINY = 1e-12


def _as_groups(weight: torch.Tensor, fmt: QuantFormat) -> tuple[torch.Tensor, int]:
    """View the weight as (n_scales, weights per scale); returns the padding added to the last axis."""
    rows = weight.shape[0]
    flat = weight.reshape(rows, -1)
    if fmt.granularity == "per_tensor":
        return flat.reshape(1, -1), 0
    if fmt.granularity == "per_channel":
        return flat, 0
    cols = flat.shape[1]
    pad = (-cols) % fmt.group_size
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    return flat.reshape(-1, fmt.group_size), pad


def clip_groups(weight: torch.Tensor, fmt: QuantFormat, clip: float = 1.0) -> tuple[torch.Tensor, int, torch.Tensor]:
    """The grouped view of `weight` clamped to +-clip * each group's absmax: (groups, padding, limit).

    Codes are computed from the clamped weights, with the same float operations torchao applies to the
    clamped weights the ExecuTorch lowering hands it (`clip_weight`). A clamped weight lands on the range's
    end, half a code past the last one, where float32 rounding of x * (1 / scale) decides between the two
    (for int4 mostly -7, where an unclamped outlier always gets -8); only the same clamped values give the
    .pte's codes.
    """
    groups, pad = _as_groups(weight.detach().float(), fmt)
    limit = groups.abs().amax(dim=1, keepdim=True)
    if clip < 1.0:
        limit = clip * limit
        groups = torch.maximum(torch.minimum(groups, limit), -limit)
    return groups, pad, limit


def clip_weight(weight: torch.Tensor, fmt: QuantFormat, clip: float) -> torch.Tensor:
    """`weight` (its shape and dtype) with each scale group clamped to clip * its absmax: an absmax-based
    quantiser (torchao's) then computes the plan's scale and the simulation's codes from it."""
    if fmt.is_float or clip >= 1.0:
        return weight
    groups, pad, _ = clip_groups(weight, fmt, clip)
    flat = groups.reshape(weight.shape[0], -1)
    if pad:
        flat = flat[:, :-pad]
    return flat.reshape(weight.shape).to(weight.dtype)


def quantize_weight(weight: torch.Tensor, fmt: QuantFormat, clip: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes shaped like the grouped view, float32 scales (n_scales, 1)) for a symmetric int format."""
    if fmt.kind != "int":
        raise ValueError(f"quantize_weight handles int formats, not {fmt.kind}")
    groups, _, limit = clip_groups(weight, fmt, clip)
    qmax = 2 ** (fmt.bits - 1) - 1
    if fmt.scale_rule == "narrow":
        # ai-edge-quantizer: the scale is rounded to its stored precision first, the codes divide by it
        scale = _round_scale((limit / qmax).clamp_min(_TINY), fmt.scale_dtype)
        codes = torch.clamp(torch.round(groups / scale), -qmax, qmax)
        return codes.to(torch.int8 if fmt.bits <= 8 else torch.int32), scale
    if fmt.scale_rule == "signed_max":
        return _quantize_signed_max(groups, fmt, qmax)
    scale = (limit / (qmax + 0.5)).clamp_min(_TINY)
    # x * (1 / scale), not x / scale: the same float rounding as torchao, so ties land on the same code
    codes = torch.clamp(torch.round(groups * (1.0 / scale)), -qmax - 1, qmax)
    return codes.to(torch.int8 if fmt.bits <= 8 else torch.int32), _round_scale(scale, fmt.scale_dtype)


def _quantize_signed_max(groups: torch.Tensor, fmt: QuantFormat, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and scales of the "signed_max" rule: the largest-magnitude weight of each group maps exactly
    onto code -(qmax + 1), so no code is left unused at that end; the scale takes that weight's sign."""
    peak = torch.gather(groups, 1, groups.abs().argmax(dim=1, keepdim=True))
    scale = peak / -(qmax + 1)
    scale = torch.where(scale.abs() < _TINY, torch.full_like(scale, _TINY), scale)  # an all-zero group
    codes = torch.clamp(torch.round(groups / scale), -qmax - 1, qmax)
    return codes.to(torch.int8 if fmt.bits <= 8 else torch.int32), _round_scale(scale, fmt.scale_dtype)


def _round_scale(scale: torch.Tensor, dtype: str) -> torch.Tensor:
    # The runtime stores scales in this dtype (after the codes were fixed); simulate the same rounding.
    if dtype == "bfloat16":
        return scale.to(torch.bfloat16).float()
    if dtype == "float16":
        return scale.to(torch.float16).float()
    return scale


def round_float(x: torch.Tensor, bits: int) -> torch.Tensor:
    """`x` as a runtime holding `bits`-bit IEEE floats sees it (32: unchanged; 16: rounded to half)."""
    if bits == 32:
        return x
    if bits == 16:
        return x.to(torch.float16).to(x.dtype)
    raise ValueError(f"no {bits}-bit float storage")


def dequantize_weight(codes: torch.Tensor, scale: torch.Tensor, fmt: QuantFormat, shape: torch.Size) -> torch.Tensor:
    values = codes.float() * scale
    rows = shape[0]
    flat = values.reshape(rows, -1)
    cols = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
    return flat[:, :cols].reshape(shape)


def fake_quantize_weight(weight: torch.Tensor, fmt: QuantFormat, clip: float = 1.0) -> torch.Tensor:
    """The float weight the runtime effectively computes with (identity for fp32, half rounding for fp16)."""
    if fmt.is_float:
        return round_float(weight.detach().float(), fmt.bits).clone()
    if fmt.kind == "nf4":
        from exporter.quant.nf4 import fake_quantize_nf4

        return fake_quantize_nf4(weight, fmt, clip)
    codes, scale = quantize_weight(weight, fmt, clip)
    return dequantize_weight(codes, scale, fmt, weight.shape).to(weight.dtype)


def fake_quantize_activation_per_token(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Dynamic asymmetric per-token (last axis) quantisation, as XNNPACK's 8da* kernels do."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo = x.amin(dim=-1, keepdim=True).clamp(max=0)
    hi = x.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / (qmax - qmin)).clamp_min(_TINY)
    zero = qmin - torch.round(lo / scale)
    q = torch.clamp(torch.round(x * (1.0 / scale)) + zero, qmin, qmax)
    return (q - zero) * scale


def fake_quantize_activation_per_block(x: torch.Tensor, block: int, bits: int = 8) -> torch.Tensor:
    """Dynamic symmetric quantisation in blocks of `block` along the last axis, as ONNX Runtime's MatMulNBits
    does with accuracy_level 4 (MLAS's CompInt8 path): per block, scale = absmax / qmax, codes rounded to
    nearest in [-qmax, qmax]. Its integer dot products are exact, so the result equals this simulation to
    float32 round-off (tests/test_onnx_lowering.py)."""
    qmax = 2 ** (bits - 1) - 1
    width = x.shape[-1]
    if width % block:
        raise ValueError(f"input width {width} is not a multiple of the activation block {block}")
    blocks = x.reshape(*x.shape[:-1], width // block, block)
    scale = blocks.abs().amax(dim=-1, keepdim=True) / qmax
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(blocks / safe), -qmax, qmax)
    return (q * scale).reshape(x.shape)


def fake_quantize_input(x: torch.Tensor, fmt: QuantFormat) -> torch.Tensor:
    """A quantised layer's input as its runtime computes with it: unchanged for float activations, per token
    for XNNPACK's 8da* formats, per block of the weight's group for ORT's int8-compute MatMulNBits."""
    if fmt.is_float or fmt.activation == "float":
        return x
    if fmt.activation == "dynamic_int8_per_token":
        return fake_quantize_activation_per_token(x, 8)
    if fmt.activation == "dynamic_int8_per_block":
        return fake_quantize_activation_per_block(x, fmt.group_size, 8)
    raise ValueError(f"format {fmt.name}: activation {fmt.activation!r} is not quantised dynamically")


def fake_quantize_activation_static(x: torch.Tensor, absmax: float, bits: int = 8) -> torch.Tensor:
    """Static symmetric per-tensor quantisation with a calibrated range (the paper's A8)."""
    qmax = 2 ** (bits - 1) - 1
    scale = max(absmax, _TINY) / qmax
    return torch.clamp(torch.round(x / scale), -qmax - 1, qmax) * scale
