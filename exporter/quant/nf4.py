"""Block-wise NormalFloat4 (NF4): quantise / dequantise / pack. No module surgery here.

The layout is the one bitsandbytes' 4-bit NF4 and ONNX Runtime's `com.microsoft::MatMulBnb4` (quant_type=1)
share: the (out, in) weight is flattened row-major and cut into blocks of `block_size` values; each block keeps
its absmax, and each value a 4-bit index into the 16 NormalFloat levels below. The value the runtime computes
with is `NF4_LEVELS[index] * absmax`, one float32 multiply (ORT's DequantizeBlockBnb4), which is what
`dequantize_nf4` does, so simulated and exported weights are bit-identical. Two indices share a byte, the first
(even position) in the high nibble.

Quantisation scales each block by the float32 reciprocal of its absmax and takes the nearest level; a value
exactly on the midpoint of two levels goes to the lower one (the strict `>` of the reference decision tree).
These are the codes ORT's own quantiser produces (checked in the tests). A clip ratio c < 1 shrinks absmax to
c * absmax, and values beyond it saturate at the outer levels, so the calibration search works as for int.

Double quantisation (`fmt.double_quant_block`, our variant, not bitsandbytes' dynamic 8-bit map): the block
absmaxes of a layer are stored as uint8 codes in chunks of `double_quant_block` blocks, each chunk with a
float32 offset (its minimum) and step ((max - min) / 255); absmax' = code * step + offset. Weight indices are
then chosen against absmax', the value the runtime really multiplies by. The chunk codes are stored padded to
whole chunks (counted in the format's bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from exporter.quant.formats import QuantFormat

# The NormalFloat4 code book (QLoRA, Dettmers et al. 2023): quantiles of N(0, 1) scaled to [-1, 1], with an
# exact zero; these are the float32 constants of bitsandbytes and of ORT's nf4 map.
NF4_LEVELS = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)
ZERO_CODE = 7  # index of the level 0.0: padding and all-zero blocks
_DQ_LEVELS = 255


def levels() -> torch.Tensor:
    return torch.tensor(NF4_LEVELS, dtype=torch.float32)


def thresholds() -> torch.Tensor:
    """The 15 midpoints between neighbouring levels (computed in float64, stored as float32)."""
    values = torch.tensor(NF4_LEVELS, dtype=torch.float64)
    return ((values[:-1] + values[1:]) / 2).to(torch.float32)


@dataclass
class Nf4Weight:
    """One quantised matrix: what the artifact stores, unpacked."""

    codes: torch.Tensor  # uint8 (numel,), level indices 0..15
    absmax: torch.Tensor  # float32 (blocks,), the per-block scale the runtime multiplies by
    shape: tuple[int, ...]
    block_size: int
    absmax_codes: torch.Tensor | None = None  # double quantisation: uint8 (chunks * chunk,)
    absmax_offset: torch.Tensor | None = None  # float32 (chunks,)
    absmax_step: torch.Tensor | None = None  # float32 (chunks,)


def _blocks(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    flat = weight.detach().reshape(-1).float()
    pad = (-flat.numel()) % block_size
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))  # zeros change no absmax
    return flat.view(-1, block_size)


def quantize_absmax(absmax: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(uint8 codes padded to whole chunks, float32 offsets, float32 steps) of the block absmaxes."""
    pad = (-absmax.numel()) % chunk
    values = absmax
    if pad:  # repeat the last value: padding inside the chunk's range changes neither min nor max
        values = torch.cat([absmax, absmax[-1:].expand(pad)])
    chunks = values.view(-1, chunk)
    offset = chunks.amin(dim=1)
    step = (chunks.amax(dim=1) - offset) / _DQ_LEVELS
    safe = torch.where(step > 0, step, torch.ones_like(step))
    codes = torch.round((chunks - offset[:, None]) * (1.0 / safe)[:, None]).clamp(0, _DQ_LEVELS)
    codes = torch.where(step[:, None] > 0, codes, torch.zeros_like(codes))
    return codes.to(torch.uint8).reshape(-1), offset, step


def dequantize_absmax(codes: torch.Tensor, offset: torch.Tensor, step: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """absmax' = code * step + offset in float32, a multiply then an add (as the ONNX graph computes it)."""
    chunks = codes.to(torch.float32).view(offset.numel(), -1)
    return (chunks * step[:, None] + offset[:, None]).reshape(-1)[:n_blocks]


def _codes_for(blocks: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
    # x * (1 / absmax) in float32, as ORT's quantiser; an all-zero block maps to the zero level
    reciprocal = torch.where(
        absmax > 0, 1.0 / torch.where(absmax > 0, absmax, torch.ones_like(absmax)), torch.zeros_like(absmax)
    )
    scaled = blocks * reciprocal[:, None]
    # bucketize(right=False): index i with t[i-1] < x <= t[i], so a midpoint goes to the lower level
    return torch.bucketize(scaled, thresholds(), right=False).to(torch.uint8)


def quantize_nf4(weight: torch.Tensor, fmt: QuantFormat, clip: float = 1.0) -> Nf4Weight:
    if fmt.kind != "nf4":
        raise ValueError(f"quantize_nf4 handles nf4 formats, not {fmt.kind}")
    blocks = _blocks(weight, fmt.group_size)
    absmax = blocks.abs().amax(dim=1)
    if clip != 1.0:
        absmax = absmax * torch.tensor(clip, dtype=torch.float32)
    dq = (None, None, None)
    if fmt.double_quant_block:
        dq = quantize_absmax(absmax, fmt.double_quant_block)
        absmax = dequantize_absmax(*dq, n_blocks=absmax.numel())
    codes = _codes_for(blocks, absmax).reshape(-1)[: weight.numel()]
    return Nf4Weight(codes, absmax, tuple(weight.shape), fmt.group_size, *dq)


def dequantize_nf4(q: Nf4Weight) -> torch.Tensor:
    """The float32 weight the runtime computes with: level[code] * absmax of the code's block."""
    numel = q.codes.numel()
    values = levels()[q.codes.long()]
    pad = (-numel) % q.block_size
    if pad:
        values = torch.cat([values, torch.zeros(pad)])
    return (values.view(-1, q.block_size) * q.absmax[:, None]).reshape(-1)[:numel].reshape(q.shape)


def fake_quantize_nf4(weight: torch.Tensor, fmt: QuantFormat, clip: float = 1.0) -> torch.Tensor:
    return dequantize_nf4(quantize_nf4(weight, fmt, clip)).to(weight.dtype)


def pack_nf4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 (ceil(n / 2),): even positions in the high nibble; an odd tail is padded with the zero level."""
    codes = codes.to(torch.uint8).reshape(-1)
    if codes.numel() % 2:
        codes = torch.cat([codes, torch.tensor([ZERO_CODE], dtype=torch.uint8)])
    pairs = codes.view(-1, 2)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def unpack_nf4(packed: torch.Tensor, numel: int) -> torch.Tensor:
    packed = packed.to(torch.uint8).reshape(-1)
    return torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)[:numel]


__all__ = [
    "NF4_LEVELS",
    "Nf4Weight",
    "dequantize_absmax",
    "dequantize_nf4",
    "fake_quantize_nf4",
    "levels",
    "pack_nf4",
    "quantize_absmax",
    "quantize_nf4",
    "thresholds",
    "unpack_nf4",
]
