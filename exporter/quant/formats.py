"""Quantisation formats as config objects, each with its exact storage cost.

A `QuantFormat` says how one weight matrix is stored: bit width, how scales are shared (one per tensor, per
output channel, or per group of `group_size` input weights in a row), symmetry, scale dtype, and how the
runtime treats activations. `weight_bytes(shape)` is the exact byte count of the stored weight under that
format: codes packed per row (so rows start on a byte), plus scales (plus zero points when asymmetric).
Biases are not part of it; they stay float32 and are counted as unquantised bytes.

NF4 (`kind="nf4"`, see exporter/quant/nf4.py) is block-wise like bitsandbytes and ONNX Runtime's MatMulBnb4:
blocks of `group_size` run over the whole row-major (out, in) matrix, not per row, so the codes take
ceil(numel / 2) bytes and there is one float32 absmax per block, or with double quantisation
(`double_quant_block`) one uint8 per block (padded to whole chunks) plus a float32 (offset, step) pair per
chunk of that many blocks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

# How the runtime treats the layer's input when the weight is quantised.
#   dynamic_int8_per_token: XNNPACK's 8da* kernels, asymmetric int8 per token;
#   dynamic_int8_per_block: ORT's MatMulNBits at accuracy_level 4, symmetric int8 per block of the weight's
#                           group along the input (its only fast kernel for 8-bit weights on CPU).
ACTIVATIONS = ("float", "dynamic_int8_per_token", "dynamic_int8_per_block", "static_int8_per_tensor")
DYNAMIC_ACTIVATIONS = ("dynamic_int8_per_token", "dynamic_int8_per_block")
# How a quantiser turns a group's absmax into a scale and codes (exporter/quant/primitives.py):
#   "half_range": scale = absmax / (qmax + 0.5), codes in [-qmax - 1, qmax] against the float32 scale, which
#                 is then stored in `scale_dtype` (torchao for ExecuTorch, and the ONNX lowering);
#   "narrow":     scale = absmax / qmax rounded to `scale_dtype` first, codes in [-qmax, qmax] against that
#                 stored scale (ai-edge-quantizer for LiteRT);
#   "signed_max": scale = -(the group's largest-magnitude weight, with its sign) / (qmax + 1), so that weight
#                 lands exactly on the code -(qmax + 1) and the rest use the full [-qmax - 1, qmax] at a step
#                 of absmax / (qmax + 1) (ggml's q4_0 rule). The scale may be negative; runtimes that compute
#                 (code - zero point) * scale take it as it is (the onnx target). Same bytes as half_range, and
#                 about 18 % less weight error at 4 bits (docs/design.md, "Scale rules").
SCALE_RULES = ("half_range", "narrow", "signed_max")


@dataclass(frozen=True)
class QuantFormat:
    name: str
    bits: int
    kind: str = "int"  # "float", "int" (uniform affine), "nf4" (NormalFloat code book)
    granularity: str = "per_channel"  # "per_tensor", "per_channel", "group"; ignored for float
    group_size: int | None = None
    symmetric: bool = True
    scale_dtype: str = "float32"
    activation: str = "float"
    double_quant_block: int | None = None  # nf4 only: block absmaxes stored as uint8 in chunks of this many
    scale_rule: str = "half_range"  # int only, see SCALE_RULES

    def __post_init__(self):
        if self.kind not in ("float", "int", "nf4"):
            raise ValueError(f"unknown format kind {self.kind!r}")
        if self.granularity not in ("per_tensor", "per_channel", "group"):
            raise ValueError(f"unknown granularity {self.granularity!r}")
        if self.granularity == "group" and not self.group_size:
            raise ValueError("group granularity needs a group_size")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation handling {self.activation!r}")
        if self.activation == "dynamic_int8_per_block" and self.granularity != "group":
            raise ValueError("per-block activations take their block from the weight's group size")
        if self.kind == "nf4" and (self.bits != 4 or self.granularity != "group"):
            raise ValueError("nf4 formats are 4-bit with group (block) granularity")
        if self.scale_rule not in SCALE_RULES:
            raise ValueError(f"unknown scale rule {self.scale_rule!r}")
        if self.double_quant_block is not None and (self.kind != "nf4" or self.double_quant_block < 1):
            raise ValueError("double_quant_block is a positive block count, for nf4 formats only")

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    def n_scales(self, shape: tuple[int, ...]) -> int:
        rows, cols = matrix_shape(shape)
        if self.granularity == "per_tensor":
            return 1
        if self.granularity == "per_channel":
            return rows
        if self.kind == "nf4":  # blocks run over the flattened matrix
            return math.ceil(rows * cols / self.group_size)
        return rows * math.ceil(cols / self.group_size)

    def weight_bytes(self, shape: tuple[int, ...]) -> int:
        rows, cols = matrix_shape(shape)
        if self.is_float:
            return rows * cols * self.bits // 8
        if self.kind == "nf4":
            return self._nf4_bytes(rows * cols)
        codes = rows * math.ceil(cols * self.bits / 8)
        scales = self.n_scales(shape) * _DTYPE_BYTES[self.scale_dtype]
        zero_points = 0 if self.symmetric else self.n_scales(shape) * math.ceil(self.bits / 8)
        return codes + scales + zero_points

    def _nf4_bytes(self, numel: int) -> int:
        blocks = math.ceil(numel / self.group_size)
        if self.double_quant_block is None:
            scales = blocks * _DTYPE_BYTES[self.scale_dtype]
        else:
            chunks = math.ceil(blocks / self.double_quant_block)  # uint8 codes stored padded to whole chunks
            scales = chunks * self.double_quant_block + chunks * 2 * _DTYPE_BYTES["float32"]
        return math.ceil(numel / 2) + scales

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["double_quant_block"] is None:  # plans without NF4 double quantisation keep their old JSON
            del data["double_quant_block"]
        if data["scale_rule"] == "half_range":  # likewise plans of the targets that came before LiteRT
            del data["scale_rule"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> QuantFormat:
        return cls(**data)


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(output channels, weights per channel): conv kernels (out, in, k) count as rows of in*k."""
    rows = int(shape[0])
    cols = int(math.prod(shape[1:])) if len(shape) > 1 else 1
    return rows, cols


FP32 = QuantFormat("fp32", 32, kind="float")
# Float weights stored as IEEE half and widened to float32 when the runtime loads them (the onnx target):
# half the bytes, and lossless for the bundled models, whose weights are float16 to begin with.
FP16 = QuantFormat("fp16", 16, kind="float")


def int_format(
    bits: int,
    granularity: str = "per_channel",
    group_size: int | None = None,
    scale_dtype: str = "float32",
    activation: str = "float",
    prefix: str = "int",
    scale_rule: str = "half_range",
) -> QuantFormat:
    suffix = {"per_channel": "pc", "per_tensor": "pt"}.get(granularity, f"g{group_size}")
    return QuantFormat(
        f"{prefix}{bits}_{suffix}",
        bits,
        "int",
        granularity,
        group_size,
        True,
        scale_dtype,
        activation,
        scale_rule=scale_rule,
    )


def nf4_format(block_size: int = 64, double_quant_block: int | None = None) -> QuantFormat:
    """Block-wise NormalFloat4 (bitsandbytes / ONNX Runtime MatMulBnb4 layout), float32 block absmax."""
    suffix = f"_dq{double_quant_block}" if double_quant_block else ""
    return QuantFormat(
        f"nf4_b{block_size}{suffix}", 4, "nf4", "group", block_size, True, "float32", "float", double_quant_block
    )
