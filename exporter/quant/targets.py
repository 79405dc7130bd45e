"""Targets: the ladders of formats that each runtime really executes.

A ladder runs from the top rung (float) down; the allocator moves layers down one rung at a time. Each
layer kind has its own ladder because runtimes support different formats per op:

* `executorch` / `android` (XNNPACK): Linear = fp32 -> int8 per channel -> int4 groups of 32, 64, 128, all
  with dynamically quantised int8 activations (8da8w / 8da4w; weight-only int-N on Linear is delegated but
  silently wrong in executorch 1.5.1, so it is not offered). Token embedding = fp32 -> int8 -> int4 (groups
  of 32, 64, 128) (quantized_decomposed.embedding_{byte,4bit}); the int2 kernel works (tested) but is not
  offered: on the smallest plans the 2-bit table alone took WER from 46.6 to 108.9 % (tiny.en) and from 45.3
  to 64.9 % (base) (below). The two encoder convolutions stay fp32: XNNPACK's
  quantised convolution needs a separate static-quantisation flow. Int8 per-channel scales stay float32;
  int4 group scales are stored as bfloat16 (the XNNPACK serialiser casts them after torchao computed the
  codes with float32 scales), which both the byte cost and the simulation account for: the simulated
  output of a single int4 Linear then equals the .pte's to float32 round-off (1e-6; 7e-3 with float32
  scales). Embedding group scales stay float32 (quantized_decomposed embedding kernels, not XNNPACK).
* `onnx` (ONNX Runtime MatMulNBits): Linear = fp16 -> 8 bits in blocks of 32 -> 4 bits in blocks of 32, 64,
  128 -> 2 bits in blocks of 32. The 8-bit and 2-bit rungs compute with int8 activations (accuracy_level 4:
  the input is quantised to int8 per block of 32 at run time), as the simulation does too; the 4-bit rungs
  with float32 ones. Embedding = fp16 -> 8 -> 4 bits in blocks of 32, 64, 128 (GatherBlockQuantized). Convs
  fp16. Codes and scales follow the signed_max rule (ggml's q4_0 rule: each block's largest weight lands
  exactly on the lowest code, the scale carries its sign), not torchao's
  half-range one, and scales are stored as float16 (as ggml's q4_0 stores them: 4.5 bits per weight in blocks
  of 32, not 5). Both contrib ops take scales in the activations' type, float32, so like every other float
  tensor they sit behind a Cast (below); ORT 1.31.1 gives the same output with and without folding it.
  Every float tensor (fp16 layers, norms, biases, positional embeddings, scales) is stored as half behind a Cast
  that ORT folds when the session is created, so the file holds half and the run computes in float32.
  The tied output projection shares the embedding's packed codes and scales (GatherBlockQuantized and
  MatMulNBits read the same bytes; verified on ORT 1.31.1), so on this target the pair moves down the
  ladder together and is stored once: the embedding's ladder, which is the shorter one, bounds both.
* `nf4` (ONNX Runtime MatMulBnb4, the PQM base): Linear = fp32 -> NF4 blocks of 64 -> NF4 blocks of 64 with
  double-quantised block scales (exporter/quant/nf4.py), float activations. Embedding and convs as `onnx`
  (ORT has no NF4 gather). `exporter.personalize.nf4_plan` builds the uniform all-NF4 plan with any block size.
* `litert` (LiteRT's XNNPACK delegate, ai-edge-quantizer): Linear = fp32 -> int8 per channel -> int4 blocks of
  32, 64, 128, all dynamic-range (int8 activations quantised per token at run time, as XNNPACK's 8da*). The
  quantiser's rule, not torchao's: scale = absmax / qmax, codes in [-qmax, qmax]; block scales are rounded to
  bfloat16 precision before the codes are computed and stored as float16 (int8 channel scales: float32).
  The token embedding (EMBEDDING_LOOKUP) takes the same formats, and the tied output projection reads the
  same tensor (litert-torch writes one constant for both ops), so the pair moves together and is stored once.
  The convolutions stay fp32, as do norms, biases and positional embeddings. The converter folds each
  LayerNorm's scale and shift into the Linear layers after it, so the formats apply to those folded weights.
* `tflite-runtime` (the older tflite-runtime 2.14 interpreter, on the same LiteRT pair): fp32 -> int8 with one
  scale per tensor, dynamic-range, for Linear and the tied embedding; the only quantised format of the LiteRT
  quantiser that tflite-runtime 2.14 computes as ai-edge-litert does (runtimes/tflite_process.py says what breaks).
* `sim`: the paper's integer ladder for research, fp32 -> 16 -> 15 -> ... -> 2 bits, per output channel,
  for every kind including the convolutions; simulated only (no runtime executes 11-bit weights).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from exporter.quant.formats import FP16, FP32, QuantFormat, int_format, nf4_format
from runtimes.errors import EdgeAsrError

KINDS = ("linear", "conv", "embedding")
# 4-bit rungs from small to large groups: 5, 4.5 and 4.25 bits per weight with float32 scales (4.5, 4.25,
# 4.125 with 16-bit ones), so a budget between all-4-bit and 2-bit is met by coarser scales, not by 2-bit
# layers, which lose far more accuracy than a coarser grouping does.
INT4_GROUPS = (32, 64, 128)


@dataclass(frozen=True)
class Target:
    name: str
    ladders: dict[str, tuple[QuantFormat, ...]]  # layer kind -> formats, top (float) first
    runtime: str  # what executes the artifact, for messages and reports
    # Whether a quantised tied pair (output projection = token embedding) is stored once, both ops reading
    # the same packed tensor. XNNPACK cannot: its linear repacks weights, the embedding kernel does not.
    shares_tied_weights: bool = False
    # Bits of every float tensor the artifact stores: float-format layers and the unquantised rest (norms,
    # biases, positional embeddings). 16: stored as half, so the simulation rounds them to half too.
    float_bits: int = 32
    # Whether the runtime's converter folds LayerNorm scales and shifts into the next Linear layers, so that
    # its formats apply to the folded weights (exporter/quant/fold.py): the simulation folds first too.
    folds_layernorms: bool = False

    def ladder(self, kind: str) -> tuple[QuantFormat, ...]:
        return self.ladders[kind]

    def format_by_name(self, name: str) -> QuantFormat:
        for ladder in self.ladders.values():
            for fmt in ladder:
                if fmt.name == name:
                    return fmt
        raise EdgeAsrError(f"target {self.name} has no format {name!r}")


def _executorch() -> Target:
    linear = (FP32, int_format(8, "per_channel", activation="dynamic_int8_per_token", prefix="8da")) + tuple(
        int_format(4, "group", g, scale_dtype="bfloat16", activation="dynamic_int8_per_token", prefix="8da")
        for g in INT4_GROUPS
    )
    # No 2-bit rung: every decoder step reads the table, and on the smallest plans moving it from int4 in
    # groups of 128 to int2 (where the allocator ended at the floor) saved 3.1 MB (tiny.en) / 4.1 MB (base)
    # for +62.4 [+46.5, +81.8] / +19.6 [+11.5, +28.8] WER points on 850 words
    # (benchmarks/results/embedding_rungs_android.md). A budget below the new floor gets a clear error; the
    # onnx target, which stores the tied pair once, reaches lower.
    embedding = (FP32, int_format(8, "group", 32)) + tuple(int_format(4, "group", g) for g in INT4_GROUPS)
    return Target("executorch", {"linear": linear, "conv": (FP32,), "embedding": embedding}, "ExecuTorch XNNPACK")


def _onnx() -> Target:
    # The lowering stores the codes and scales computed here, so the rule can be the one with the least
    # error at the same bytes: signed_max (exporter/quant/formats.py), which ORT's kernels compute as written.
    def group(bits: int, size: int, prefix: str) -> QuantFormat:
        return int_format(bits, "group", size, scale_dtype="float16", prefix=prefix, scale_rule="signed_max")

    # The 8-bit and 2-bit rungs compute with int8 activations (accuracy_level 4). At level 0, ORT 1.31.1 has no
    # kernel for 8-bit or 2-bit weights with float inputs and dequantises the whole matrix to float32 on every call:
    # for one token ~30x (8 bits) and 60-110x (2 bits) slower per layer, plus a transient float copy of the weight
    # (80 MB for tiny.en's output projection on 8 bits); whole artifacts with 5-8 layers on 2 bits ran 7-15 % faster
    # at level 4, WER within 0.1 points (benchmarks/results/onnx_int8_compute_w2.md). The 4-bit rungs have a float
    # kernel and keep float inputs: on whole artifacts at q4_0's bytes, level 4 ran 2 % (tiny.en) and 18 % (base)
    # faster but held 8-16 MB more, at +0.0 and +0.9 [-0.4, +3.4] WER points
    # (benchmarks/results/onnx_int8_compute_w4.md).
    def int8_compute(bits: int) -> QuantFormat:
        fmt = group(bits, 32, "mnb")
        return replace(fmt, name=f"{fmt.name}_a8", activation="dynamic_int8_per_block")

    linear = (FP16, int8_compute(8)) + tuple(group(4, g, "mnb") for g in INT4_GROUPS) + (int8_compute(2),)
    embedding = (FP16, group(8, 32, "gbq")) + tuple(group(4, g, "gbq") for g in INT4_GROUPS)
    return Target(
        "onnx",
        {"linear": linear, "conv": (FP16,), "embedding": embedding},
        "ONNX Runtime MatMulNBits",
        shares_tied_weights=True,
        float_bits=16,
    )


def _nf4() -> Target:
    # float32 floats: the PQM base keeps the float tensors its LoRA adapters were trained against.
    linear = (FP32, nf4_format(64), nf4_format(64, double_quant_block=256))
    # The embedding keeps the half_range rule and float32 scales: the PQM base (exporter/personalize/base.py)
    # and its .pte re-quantisation compute those codes, and adapters were trained against them.
    embedding = (FP32,) + tuple(
        replace(f, scale_rule="half_range", scale_dtype="float32") for f in _onnx().ladder("embedding")[1:]
    )
    return Target("nf4", {"linear": linear, "conv": (FP32,), "embedding": embedding}, "ONNX Runtime MatMulBnb4")


def _litert() -> Target:
    linear = (
        FP32,
        int_format(8, "per_channel", activation="dynamic_int8_per_token", prefix="lrt", scale_rule="narrow"),
    )
    linear += tuple(
        int_format(
            4,
            "group",
            g,
            scale_dtype="bfloat16",
            activation="dynamic_int8_per_token",
            prefix="lrt",
            scale_rule="narrow",
        )
        for g in INT4_GROUPS
    )
    # The embedding is the same tensor as the output projection: same formats (its lookups are weight-only).
    embedding = tuple(replace(f, activation="float") for f in linear)
    return Target(
        "litert",
        {"linear": linear, "conv": (FP32,), "embedding": embedding},
        "LiteRT XNNPACK (ai-edge-litert)",
        shares_tied_weights=True,
        folds_layernorms=True,
    )


def _tflite_runtime() -> Target:
    # What tflite-runtime 2.14.0 computes correctly of what ai-edge-quantizer 0.10 writes (runtimes/tflite_process.py):
    # float32, and int8 with one scale per tensor, dynamic-range. Its per-channel and block formats are wrong or
    # refused there, so this ladder has one quantised rung; otherwise as `litert` (same converter and quantiser).
    rung = int_format(8, "per_tensor", activation="dynamic_int8_per_token", prefix="lrt", scale_rule="narrow")
    linear = (FP32, rung)
    embedding = (FP32, replace(rung, activation="float"))
    return Target(
        "tflite-runtime",
        {"linear": linear, "conv": (FP32,), "embedding": embedding},
        "tflite-runtime 2.14 (LiteRT pair, own process)",
        shares_tied_weights=True,
        folds_layernorms=True,
    )


def _sim() -> Target:
    ladder = (FP32,) + tuple(int_format(b, "per_channel") for b in range(16, 1, -1))
    return Target("sim", {"linear": ladder, "conv": ladder, "embedding": ladder}, "PyTorch simulation")


TARGETS = {
    "executorch": _executorch(),
    "onnx": _onnx(),
    "sim": _sim(),
    "nf4": _nf4(),
    "litert": _litert(),
    "tflite-runtime": _tflite_runtime(),
}
TARGETS["android"] = Target("android", TARGETS["executorch"].ladders, TARGETS["executorch"].runtime)


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise EdgeAsrError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]
