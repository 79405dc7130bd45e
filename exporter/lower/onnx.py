"""Lower a Whisper model plus a quantisation plan to two self-contained ONNX graphs for ONNX Runtime.

`lower_onnx(bundle, plan, out_dir)` writes

* `encoder.onnx`: input_features[1, n_mels, 3000] -> cross_k, cross_v [L, 1, H, 1500, D] float16 (F frames
  and F / 2 positions for an export with a shorter audio context). The encoder also
  projects its output through every decoder layer's cross-attention k/v, because those keys and values are
  the same for every decoding step: computing them once here keeps them out of the per-token decoder.
* `decoder.onnx` (decoder with past): tokens[1, T] int64, self_k, self_v [L, 1, H, P, D], cross_k, cross_v
  -> logits[1, V] (last token only), new_self_k, new_self_v [L, 1, H, P+T, D]. The position offset is P, the
  length of the cache passed in, so it cannot disagree with the cache. The first step passes P = 0.
* `tokenizer.json`, so the folder is everything a runner needs.

How quantised layers get into the graph: the model is traced with the legacy TorchScript exporter, with every
layer whose plan format is an integer format swapped for a marker whose ONNX symbolic is a placeholder node
(`edgeasr::QuantLinear` / `edgeasr::QuantEmbedding`, carrying the layer name). A rewrite pass then replaces
each placeholder by `com.microsoft::MatMulNBits` / `GatherBlockQuantized` with codes and scales from
`quantize_weight`, the same function the simulation dequantises, so the stored weights are bit-identical to
the simulated plan. The placeholders keep the float weights of quantised layers out of the trace entirely.

Codes are stored unsigned (code + 2^(bits-1)) with no zero-point input: both contrib ops then use their
default zero point 2^(bits-1), which makes the stored values symmetric codes again. Packing puts element i of
a byte-group in bits [i*bits, (i+1)*bits) (low bits first), checked by round-trip tests against ORT.

Both graphs carry the whole plan (`edgeasr.plan`), the special tokens and n_mels in `metadata_props`.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from transformers import AttentionInterface

from exporter.io import write_bytes
from exporter.lower.whisper_modules import attend, cross_keys_values, split_heads
from exporter.models import WhisperBundle
from exporter.quant.plan import LayerPlan, QuantPlan
from exporter.quant.primitives import quantize_weight
from exporter.quant.simulate import check_float_widths, round_stored_floats
from exporter.quant.targets import get_target
from runtimes.audio import FULL_FRAMES
from runtimes.contract import (
    DECODER_FILE,
    ENCODER_FILE,
    META_GRAPH,
    META_MODEL_ID,
    META_N_FRAMES,
    META_N_MELS,
    META_PLAN,
    META_SPECIAL,
    TOKENIZER_FILE,
)
from runtimes.errors import EdgeAsrError
from runtimes.torch_runner import encode_unchecked

OPSET = 17
IR_VERSION = 8  # what the exporter writes; ORT 1.31.1 loads IR <= 13
MS_DOMAIN = "com.microsoft"
MARKER_DOMAIN = "edgeasr"
_PROTOBUF_LIMIT = 2**31 - 1  # a single .onnx file cannot exceed 2 GB
_EMBEDDING_BITS = (4, 8)  # GatherBlockQuantized on the CPU EP (verified on ORT 1.31.1)
_LINEAR_BITS = (2, 4, 8)  # MatMulNBits
# The encoder's outputs, every decoder layer's cross-attention keys and values, leave the encoder in half
# precision (as whisper.cpp keeps its cross cache) and each layer's are widened to float32 as that layer reads
# them. They are the largest tensors a run holds (base, 13.6 s clip with sherpa's tail: 29 MB in float32),
# held from the encoder's end through the last token; the encoder's final concatenations also hold the
# per-layer pieces beside the stacked outputs. Rounding them to half moves logits by about 1e-3 relative.
CROSS_DTYPE = torch.float16


@dataclass(frozen=True)
class OnnxArtifacts:
    folder: Path
    encoder: Path
    decoder: Path
    tokenizer: Path

    def sizes(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in (self.encoder, self.decoder)}

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes().values())


# ---------------------------------------------------------------------------------------------------------
# Markers: traced as placeholder nodes, replaced by the real quantised ops after export.


# The eager `forward`s below only give the tracer correctly shaped values; what the graph computes is
# decided by the symbolic and the rewrite.
class QuantLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, layer: str):
        return F.linear(x, weight)

    @staticmethod
    def symbolic(g, x, weight, layer: str):
        # `weight` is deliberately unused, so the float copy never reaches the graph.
        return typed_like(g.op(f"{MARKER_DOMAIN}::QuantLinear", x, layer_s=layer), x, weight.type().sizes()[0])


class _QuantEmbeddingFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ids, weight, layer: str):
        return F.embedding(ids, weight)

    @staticmethod
    def symbolic(g, ids, weight, layer: str):
        out = g.op(f"{MARKER_DOMAIN}::QuantEmbedding", ids, layer_s=layer)
        sizes = ids.type().varyingSizes() or []
        out.setType(weight.type().with_sizes(list(sizes) + [weight.type().sizes()[1]]))
        return out


def typed_like(value, like, last_dim: int):
    # Give the placeholder's output a type so the exporter's shape inference keeps working downstream.
    sizes = like.type().varyingSizes()
    if sizes is not None:
        value.setType(like.type().with_sizes(list(sizes[:-1]) + [last_dim]))
    return value


class _MarkedLinear(nn.Module):
    def __init__(self, name: str, linear: nn.Linear):
        super().__init__()
        self.layer_name = name
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, x):
        y = QuantLinearFn.apply(x, self.weight, self.layer_name)
        return y if self.bias is None else y + self.bias  # the bias stays a float Add


class _MarkedEmbedding(nn.Module):
    def __init__(self, name: str, embedding: nn.Embedding):
        super().__init__()
        self.layer_name = name
        self.weight = embedding.weight

    def forward(self, ids):
        return _QuantEmbeddingFn.apply(ids, self.weight, self.layer_name)


def marked_model(bundle: WhisperBundle, plan: QuantPlan) -> nn.Module:
    """A float copy of the model with every integer-format layer swapped for its marker."""
    model = copy.deepcopy(bundle.model).eval().requires_grad_(False)  # the graph must not depend on the caller's flags
    # Untie the output projection: the plan gives it its own format, and ONNX stores it separately anyway.
    model.proj_out.weight = nn.Parameter(model.proj_out.weight.detach().clone(), requires_grad=False)
    round_stored_floats(model, plan)  # exactly representable in the width store_half_floats writes
    for layer in plan.layers:
        if layer.format.is_float:
            continue
        module = model.get_submodule(layer.name)
        if layer.kind == "linear" and isinstance(module, nn.Linear):
            model.set_submodule(layer.name, _MarkedLinear(layer.name, module))
        elif layer.kind == "embedding" and isinstance(module, nn.Embedding):
            model.set_submodule(layer.name, _MarkedEmbedding(layer.name, module))
        else:
            raise EdgeAsrError(
                f"the onnx target cannot lower {layer.kind} layer {layer.name} in format {layer.format.name}"
            )
    return model


# ---------------------------------------------------------------------------------------------------------
# Export wrappers around the HF modules.


class _FusedAttention(torch.autograd.Function):
    """The encoder's self-attention as one `com.microsoft::MultiHeadAttention` node in the ONNX graph.

    ONNX Runtime's CPU kernel for it computes attention block by block (flash attention) when there is no
    mask, bias or cache, as in Whisper's encoder: the [heads, 1500, 1500] score and probability maps that
    MatMul -> Softmax -> MatMul materialise (54 MB each for tiny.en, 72 MB for base, per layer) never exist,
    and it runs faster (measured on one 1500-position layer of tiny.en's shape: 13 MB instead of 63 MB of
    run peak, 44 ms instead of 68 ms; outputs equal to 2e-7). The traced forward is plain attention, so the
    PyTorch side of the export is unchanged."""

    @staticmethod
    def forward(ctx, query, key, value, heads: int, scale: float):  # [B, H, S, D] each -> [B, S, H, D]
        weights = torch.softmax(torch.matmul(query, key.transpose(2, 3)) * scale, dim=-1)
        return torch.matmul(weights, value).transpose(1, 2)

    @staticmethod
    def symbolic(g, query, key, value, heads: int, scale: float):
        def merged(x):  # [B, H, S, D] -> [B, S, H * D], the layout the contrib op takes
            x = g.op("Transpose", x, perm_i=[0, 2, 1, 3])
            return g.op("Reshape", x, g.op("Constant", value_t=torch.tensor([0, 0, -1], dtype=torch.int64)))

        out = g.op(
            "com.microsoft::MultiHeadAttention",
            merged(query),
            merged(key),
            merged(value),
            num_heads_i=heads,
            scale_f=scale,
        )
        split = torch.tensor([0, 0, heads, -1], dtype=torch.int64)
        return g.op("Reshape", out, g.op("Constant", value_t=split))


def _fused_encoder_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention-function interface (registered as FUSED_ATTENTION) for the encoder's layers."""
    if attention_mask is not None:
        raise ValueError("the fused ONNX attention is for Whisper's encoder, which has no attention mask")
    scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
    return _FusedAttention.apply(query, key, value, int(module.num_heads), scale), None


FUSED_ATTENTION = "edgeasr_onnx_mha"
AttentionInterface.register(FUSED_ATTENTION, _fused_encoder_attention)


# Each encoder layer's feed-forward block runs over this many slices of the positions, one after the other:
# its two [T, 4d] tensors (fc1's output and the activation) are the encoder's largest (base, 30 s: 12 MB
# each), and the block is position-wise, so slices compute the same rows. With FFN_SLICES the run holds a
# slice's pair, plus the finished slices ([T, d] in all) until they are concatenated.
FFN_SLICES = 4


@dataclass(frozen=True)
class ActivationLayout:
    """How the ONNX graphs hold their largest activations. The defaults are every export's; float32 cross
    keys and one slice give the graphs lowered before them, which benchmarks/onnx_activations.py measures
    beside the defaults on the same plans."""

    cross_dtype: torch.dtype = CROSS_DTYPE
    ffn_slices: int = FFN_SLICES

    def run_layer(self):
        """The encoder-layer function for `encode_unchecked`: None (the layer's own forward) for one slice."""
        if self.ffn_slices == 1:
            return None
        return lambda layer, x: sliced_encoder_layer(layer, x, self.ffn_slices)


def sliced_encoder_layer(layer, x: torch.Tensor, slices: int = FFN_SLICES) -> torch.Tensor:
    """HF's WhisperEncoderLayer.forward (eval, float32) with the feed-forward block over `slices` slices of
    positions. `chunk` exports with slice bounds computed from the traced length, so the frame axis stays
    dynamic; a sequence shorter than `slices` positions gives empty slices, which compute nothing."""
    attended, _ = layer.self_attn(hidden_states=layer.self_attn_layer_norm(x), attention_mask=None)
    x = x + attended
    normed = layer.final_layer_norm(x)
    pieces = [layer.fc2(layer.activation_fn(layer.fc1(part))) for part in normed.chunk(slices, dim=1)]
    return x + torch.cat(pieces, dim=1)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


class _EncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.model.encoder
        self.layers = model.model.decoder.layers
        self.n_heads = model.config.decoder_attention_heads

    def forward(self, input_features):
        states = encode_unchecked(self.encoder, input_features, sliced_encoder_layer)
        pairs = cross_keys_values(self.layers, states, self.n_heads, CROSS_DTYPE)
        return torch.stack([k for k, _ in pairs]), torch.stack([v for _, v in pairs])


def layer_index_zero(tokens: torch.Tensor) -> torch.Tensor:
    """A zero ORT cannot fold (computed from the input ids), to index a stacked per-layer input with.

    Each layer's slice of a stacked input is a copy in ORT. With constant indices ORT fuses the per-layer
    gathers into one Split that copies every layer's slice at the start of the step, all alive at once (base's
    cross keys and values: 25 MB at 20 s of audio, 37 MB at 30 s); with a computed index each layer's copy
    lives only while that layer runs.
    """
    return (tokens[0, 0] * 0).long()


class DecoderGraph(nn.Module):
    """edgeasr's ONNX decoder with past; its pieces are shared by the sherpa layout (onnx_sherpa.py)."""

    def __init__(self, model):
        super().__init__()
        decoder = model.model.decoder
        self.embed_tokens = decoder.embed_tokens
        self.embed_positions = decoder.embed_positions
        self.layers = decoder.layers
        self.layer_norm = decoder.layer_norm
        self.proj_out = model.proj_out
        self.n_heads = model.config.decoder_attention_heads
        self.scaling = (model.config.d_model // self.n_heads) ** -0.5

    def _causal_mask(self, length: int, past: int) -> torch.Tensor:
        # Query i sits at absolute position past + i and may see keys 0 .. past + i.
        query = torch.arange(length).unsqueeze(1) + past
        key = torch.arange(length + past).unsqueeze(0)
        blocked = torch.full((1,), torch.finfo(torch.float32).min)
        return torch.where(key > query, blocked, torch.zeros(1))

    def _self_attention(self, layer, h, past_k, past_v, mask):
        attn = layer.self_attn
        q = split_heads(attn.q_proj(h) * self.scaling, self.n_heads)
        k = torch.cat([past_k, split_heads(attn.k_proj(h), self.n_heads)], dim=2)
        v = torch.cat([past_v, split_heads(attn.v_proj(h), self.n_heads)], dim=2)
        return attn.out_proj(merge_heads(attend(q, k, v, mask))), k, v

    def _cross_attention(self, layer, h, cross_k, cross_v):
        attn = layer.encoder_attn
        # This layer's half-precision keys and values (CROSS_DTYPE) widened, per step. Traced before the query:
        # ORT orders nodes by a depth-first walk back from the outputs that takes a node's inputs in order of
        # their producers' indices, and a Cast traced after the query was walked first, which ran every
        # layer's widening at the start of the step, all alive at once (tiny.en: +7 MB per step).
        keys, values = (t if t.dtype == torch.float32 else t.float() for t in (cross_k, cross_v))
        q = split_heads(attn.q_proj(h) * self.scaling, self.n_heads)
        return attn.out_proj(merge_heads(attend(q, keys, values)))

    def forward(self, tokens, self_k, self_v, cross_k, cross_v):
        length, past = tokens.shape[1], self_k.shape[3]
        positions = torch.arange(length) + past
        x = self.embed_tokens(tokens) + self.embed_positions.weight.index_select(0, positions).unsqueeze(0)
        mask = self._causal_mask(length, past)
        zero = layer_index_zero(tokens)
        new_k, new_v = [], []
        for index, layer in enumerate(self.layers):
            at = zero + index
            out, k, v = self._self_attention(layer, layer.self_attn_layer_norm(x), self_k[at], self_v[at], mask)
            x = x + out
            new_k.append(k)
            new_v.append(v)
            x = x + self._cross_attention(layer, layer.encoder_attn_layer_norm(x), cross_k[at], cross_v[at])
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        last = self.layer_norm(x[:, -1])
        return self.proj_out(last), torch.stack(new_k), torch.stack(new_v)


def export_graph(
    module: nn.Module, args: tuple, inputs: list[str], outputs: list[str], dynamic: dict[str, dict[int, str]]
) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter is deprecated but is the one that writes a single file and takes symbolics.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def _cache_shape(model, length: int) -> tuple[int, ...]:
    config = model.config
    heads = config.decoder_attention_heads
    return (config.decoder_layers, 1, heads, length, config.d_model // heads)


def fused_encoder_attention(model) -> None:
    """Trace the encoder's self-attention as MultiHeadAttention nodes (`_FusedAttention`). On a copy only:
    the decoder graphs write their attention out themselves, so this changes the encoder alone."""
    model.config._attn_implementation = FUSED_ATTENTION


def export_encoder(model, n_mels: int, n_frames: int = FULL_FRAMES) -> onnx.ModelProto:
    features = torch.zeros(1, n_mels, n_frames)
    fused_encoder_attention(model)
    return export_graph(_EncoderGraph(model), (features,), ["input_features"], ["cross_k", "cross_v"], {})


def _fix_logits_shape(proto: onnx.ModelProto, vocab: int) -> None:
    # Shape inference stops at the placeholder nodes and names the batch dim after them; it is always 1.
    output = next(o for o in proto.graph.output if o.name == "logits")
    dims = output.type.tensor_type.shape.dim
    del dims[:]
    for size in (1, vocab):
        dims.add().dim_value = size


def export_decoder(model, n_frames: int = FULL_FRAMES) -> onnx.ModelProto:
    # Trace with a non-empty cache and several tokens so neither length is specialised to a constant.
    tokens = torch.zeros(1, 3, dtype=torch.long)
    past = torch.zeros(_cache_shape(model, 2))
    cross = torch.zeros(_cache_shape(model, n_frames // 2), dtype=CROSS_DTYPE)  # one position per two frames
    dynamic = {
        "tokens": {1: "tokens"},
        "self_k": {3: "past"},
        "self_v": {3: "past"},
        "new_self_k": {3: "total"},
        "new_self_v": {3: "total"},
    }
    proto = export_graph(
        DecoderGraph(model),
        (tokens, past, past, cross, cross),
        ["tokens", "self_k", "self_v", "cross_k", "cross_v"],
        ["logits", "new_self_k", "new_self_v"],
        dynamic,
    )
    _fix_logits_shape(proto, model.config.vocab_size)
    return proto


# ---------------------------------------------------------------------------------------------------------
# Packing and the rewrite of placeholders into contrib ops.


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Signed codes (..., n) -> uint8 (..., n * bits / 8): stored as code + 2^(bits-1), low bits first."""
    per_byte = 8 // bits
    unsigned = (codes.astype(np.int16) + (1 << (bits - 1))).astype(np.uint8)
    unsigned = unsigned.reshape(*unsigned.shape[:-1], -1, per_byte)
    packed = np.zeros(unsigned.shape[:-1], dtype=np.uint8)
    for i in range(per_byte):
        packed |= unsigned[..., i] << np.uint8(bits * i)
    return packed


def _quantized(weight: torch.Tensor, layer: LayerPlan) -> tuple[np.ndarray, np.ndarray, int]:
    """(packed uint8 [rows, blocks, blob], scales float32 [rows, blocks], blocks) of a 2-D weight.

    Scales of a float16 format hold float16 values (quantize_weight rounded them); store_half_floats then
    stores them as half, behind the Cast every other float tensor sits behind.
    """
    fmt = layer.format
    if fmt.granularity != "group" or not fmt.symmetric or fmt.scale_dtype not in ("float32", "float16"):
        raise EdgeAsrError(
            f"{layer.name}: the onnx target stores symmetric groups with float32 or float16 scales, "
            f"not format {fmt.name}"
        )
    codes, scale = quantize_weight(weight, fmt, layer.clip)
    rows = weight.shape[0]
    blocks = codes.shape[0] // rows
    packed = pack_codes(codes.numpy().reshape(rows, blocks, fmt.group_size), fmt.bits)
    return packed, scale.numpy().astype(np.float32).reshape(rows, blocks), blocks


def _doc(layer: LayerPlan) -> str:
    return json.dumps({"layer": layer.name, "format": layer.format.to_dict(), "clip": layer.clip}, sort_keys=True)


# MatMulNBits' accuracy_level for each activation handling it can compute (the attribute's minimum compute
# type: 0 = as the input, float32 here; 4 = int8).
_ACCURACY_LEVELS = {"float": 0, "dynamic_int8_per_block": 4}


def _matmul_nbits_node(node, layer: LayerPlan, codes: str, scales: str, n: int, k: int) -> onnx.NodeProto:
    """MatMulNBits for `layer` in place of the marker `node`, reading its packed codes and scales by name."""
    fmt = layer.format
    if fmt.bits not in _LINEAR_BITS:
        raise EdgeAsrError(f"{layer.name}: MatMulNBits takes {_LINEAR_BITS} bits, not {fmt.bits}")
    if fmt.activation not in _ACCURACY_LEVELS:
        raise EdgeAsrError(f"{layer.name}: MatMulNBits cannot compute format {fmt.name}'s {fmt.activation} inputs")
    return helper.make_node(
        "MatMulNBits",
        [node.input[0], codes, scales],
        list(node.output),
        name=f"{layer.name}/MatMulNBits",
        domain=MS_DOMAIN,
        K=k,
        N=n,
        bits=fmt.bits,
        block_size=fmt.group_size,
        doc_string=_doc(layer),
        # 4: int8 activations per block (the format's dynamic_int8_per_block); 0 leaves them float32.
        accuracy_level=_ACCURACY_LEVELS[fmt.activation],
    )


def _matmul_nbits(node, layer: LayerPlan, weight: torch.Tensor) -> tuple[onnx.NodeProto, list]:
    n, k = weight.shape
    names = (f"{layer.name}.weight_packed", f"{layer.name}.weight_scales")
    new = _matmul_nbits_node(node, layer, *names, n, k)
    packed, scales, _ = _quantized(weight, layer)
    return new, [numpy_helper.from_array(packed, names[0]), numpy_helper.from_array(scales.reshape(-1), names[1])]


def _gather_block_quantized(node, layer: LayerPlan, weight: torch.Tensor) -> tuple[list[onnx.NodeProto], list]:
    """GatherBlockQuantized over the table stored as [rows, blocks, blob], then a Reshape of the gathered
    rows to [..., cols].

    The blocks get their own axis because that is the shape MatMulNBits takes its codes in: a tied output
    projection then reads this very initializer (_tied_matmul_nbits). Stored [rows, cols * bits / 8], the
    projection needed a Reshape of it, which ORT folds into a second copy of the table when it creates the
    session (13 MB for base's 4-bit table). The Reshape after the gather aliases its input: no copy.
    """
    fmt = layer.format
    if fmt.bits not in _EMBEDDING_BITS:
        raise EdgeAsrError(f"{layer.name}: GatherBlockQuantized takes {_EMBEDDING_BITS} bits, not {fmt.bits}")
    if weight.shape[1] % fmt.group_size:
        # Padded blocks would widen every gathered row; Whisper's widths are multiples of 32.
        raise EdgeAsrError(f"{layer.name}: width {weight.shape[1]} is not a multiple of {fmt.group_size}")
    packed, scales, _ = _quantized(weight, layer)
    names = (f"{layer.name}.weight_packed", f"{layer.name}.weight_scales")
    blocks, ids, rows_shape = f"{layer.name}/blocks", node.input[0], f"{layer.name}/rows_shape"
    nodes = [
        helper.make_node(
            "GatherBlockQuantized",
            [names[0], ids, names[1]],
            [blocks],
            name=f"{layer.name}/GatherBlockQuantized",
            domain=MS_DOMAIN,
            gather_axis=0,
            quantize_axis=2,
            block_size=fmt.group_size,
            bits=fmt.bits,
            doc_string=_doc(layer),
        ),
        # The gathered rows' shape: the ids' shape, then the row width (blocks x block).
        helper.make_node("Shape", [ids], [f"{layer.name}/ids_shape"], name=f"{layer.name}/ids_shape"),
        helper.make_node(
            "Concat", [f"{layer.name}/ids_shape", f"{layer.name}.width"], [rows_shape], name=rows_shape, axis=0
        ),
        helper.make_node("Reshape", [blocks, rows_shape], list(node.output), name=f"{layer.name}/rows"),
    ]
    initializers = [
        numpy_helper.from_array(packed, names[0]),
        numpy_helper.from_array(scales[:, :, None], names[1]),  # GatherBlockQuantized: the data's rank
        numpy_helper.from_array(np.array([weight.shape[1]], dtype=np.int64), f"{layer.name}.width"),
    ]
    return nodes, initializers


def _tied_matmul_nbits(node, layer: LayerPlan, leader: LayerPlan) -> tuple[list[onnx.NodeProto], list]:
    """MatMulNBits reading the leader embedding's packed codes as they are stored, and its scales through
    a Reshape.

    The embedding's table is stored in the [rows, blocks, blob] shape MatMulNBits takes (see
    _gather_block_quantized), so the matrix is stored and held once. Its scales are [rows, blocks, 1] for
    GatherBlockQuantized (the data's rank) and MatMulNBits takes [rows * blocks]: ORT folds that Reshape into
    a copy of the scales when it creates the session, 1/8 of the table's bytes at blocks of 32 with
    float16 scales widened to float32.
    """
    fmt, lead = layer.format, leader.format
    if (fmt.bits, fmt.group_size, layer.clip) != (lead.bits, lead.group_size, leader.clip):
        raise EdgeAsrError(
            f"{layer.name} is tied to {leader.name} but the plan gives them different formats "
            f"or clips ({fmt.name} x{layer.clip} vs {lead.name} x{leader.clip}); re-make the plan"
        )
    n, k = layer.shape
    shape_name, s_name = f"{layer.name}.tied_scales_shape", f"{layer.name}.tied_scales"
    nodes = [
        helper.make_node(
            "Reshape", [f"{leader.name}.weight_scales", shape_name], [s_name], name=f"{layer.name}/tied_scales"
        ),
        _matmul_nbits_node(node, layer, f"{leader.name}.weight_packed", s_name, n, k),
    ]
    return nodes, [numpy_helper.from_array(np.array([-1], dtype=np.int64), shape_name)]


def _quant_linear(node, layer: LayerPlan, weight: torch.Tensor):
    if layer.format.kind == "nf4":  # the nf4 target: MatMulBnb4 (exporter/lower/onnx_nf4.py)
        from exporter.lower.onnx_nf4 import matmul_bnb4

        return matmul_bnb4(node, layer, weight)
    return _matmul_nbits(node, layer, weight)


_REWRITES = {"QuantLinear": _quant_linear, "QuantEmbedding": _gather_block_quantized}


def marker_layer(node) -> str:
    """The layer name a placeholder node carries."""
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == "layer").decode()


def repeated_call(
    nodes: list[onnx.NodeProto], first: onnx.NodeProto, marker: onnx.NodeProto, call: int
) -> list[onnx.NodeProto]:
    """`nodes`, what a layer's first placeholder `first` was rewritten to, again for its `call`-th placeholder
    `marker` (call >= 1; the encoder's sliced feed-forward blocks call fc1 and fc2 once per slice): the nodes
    that read `first`'s inputs, directly or through each other, re-pointed at `marker`'s inputs and outputs,
    their other outputs and their names suffixed. Nodes that read only constants are left out, since the
    first call's (same names) already compute them, and so are the initializers, added once with the first
    call. Each copy keeps its doc string (the layer's format)."""
    renamed = dict(zip(first.input, marker.input)) | dict(zip(first.output, marker.output))
    varying, kept = set(first.input), []
    for node in nodes:  # a rewrite's nodes are in topological order
        if not any(name in varying for name in node.input):
            continue
        copy_ = onnx.NodeProto()
        copy_.CopyFrom(node)
        copy_.name = f"{node.name}/call{call}"
        copy_.input[:] = [renamed.get(name, name) for name in node.input]
        for index, name in enumerate(node.output):
            renamed.setdefault(name, f"{name}/call{call}")
            copy_.output[index] = renamed[name]
            varying.add(name)
        kept.append(copy_)
    return kept


def replace_markers(proto: onnx.ModelProto, plan: QuantPlan, model: nn.Module) -> None:
    """Swap every placeholder node for its contrib op and add the packed initializers, in place. A layer
    called more than once (one placeholder per call) gets its initializers and constant helpers once."""
    graph = proto.graph
    nodes, firsts, calls = [], {}, {}  # firsts: layer -> (its first placeholder, what that was rewritten to)
    for node in graph.node:
        if node.domain != MARKER_DOMAIN:
            nodes.append(node)
            continue
        name = marker_layer(node)
        if name in firsts:  # called again: the first call's rewrite, re-pointed (no second quantisation)
            calls[name] = calls.get(name, 0) + 1
            nodes.extend(repeated_call(firsts[name][1], firsts[name][0], node, calls[name]))
            continue
        layer = plan.layer(name)
        if layer.tied_to is not None and not layer.format.is_float and layer.format.kind != "nf4":
            new, initializers = _tied_matmul_nbits(node, layer, plan.layer(layer.tied_to))
        else:
            new, initializers = _REWRITES[node.op_type](node, layer, model.get_submodule(name).weight.detach())
        new = new if isinstance(new, list) else [new]  # a rewrite may need helper nodes
        firsts[name] = (node, new)
        nodes.extend(new)
        graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend(nodes)
    imports = [op for op in proto.opset_import if op.domain not in (MARKER_DOMAIN, MS_DOMAIN)]
    del proto.opset_import[:]
    proto.opset_import.extend(imports + [helper.make_opsetid(MS_DOMAIN, 1)])
    if get_target(plan.target).float_bits == 16:
        store_half_floats(proto)


def store_half_floats(proto: onnx.ModelProto) -> int:
    """Store every float32 weight initializer as float16 behind a Cast back to float32, in place; returns
    the bytes saved.

    The graph still computes in float32 (ORT folds each Cast of a constant when it creates the session), so
    a weight whose values half holds exactly (round_stored_floats made them so) gives the same outputs. That
    includes the contrib ops' scales of float16 formats: both ops take float32 scales (the activations'
    type), which the Cast gives them. Left in float32: single values and any constant half cannot hold
    exactly (the attention mask's float32 minimum, the scales of float32-scaled formats).
    """
    graph = proto.graph
    kept, casts, saved = [], [], 0
    for init in graph.initializer:
        array = numpy_helper.to_array(init) if init.data_type == TensorProto.FLOAT else None
        if array is None or array.size < 2:
            kept.append(init)
            continue
        with np.errstate(over="ignore"):  # an overflow is not exact either, and is caught just below
            half = array.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), array):
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(half, f"{init.name}.fp16"))
        casts.append(helper.make_node("Cast", [f"{init.name}.fp16"], [init.name], name=f"{init.name}/to_float", to=1))
        saved += 2 * array.size
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)  # the casts feed everything else, so they go first
    del graph.node[:]
    graph.node.extend(nodes)
    return saved


# ---------------------------------------------------------------------------------------------------------
# Metadata, writing, reading back.


def graph_metadata(bundle: WhisperBundle, plan: QuantPlan, graph: str, n_frames: int) -> dict[str, str]:
    return {
        META_N_FRAMES: str(n_frames),
        META_PLAN: plan.artifact_json(),
        META_SPECIAL: json.dumps(bundle.special.to_dict(), sort_keys=True),
        META_N_MELS: str(bundle.n_mels),
        META_MODEL_ID: bundle.model_id,
        META_GRAPH: graph,
    }


def serialise_graph(proto: onnx.ModelProto, metadata: dict[str, str]) -> bytes:
    proto.ir_version = IR_VERSION
    proto.producer_name = "edgeasr"
    proto.producer_version = ""  # no library versions in the bytes: same inputs give the same file
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(proto)
    data = proto.SerializeToString(deterministic=True)
    if len(data) > _PROTOBUF_LIMIT:
        raise EdgeAsrError(
            f"the {metadata[META_GRAPH]} graph is {len(data):,} bytes; a single .onnx file "
            "holds at most 2 GB (pick a smaller model or a smaller budget)"
        )
    return data


def tokenizer_json(bundle: WhisperBundle) -> bytes:
    if bundle.folder is not None and (bundle.folder / TOKENIZER_FILE).is_file():
        return (bundle.folder / TOKENIZER_FILE).read_bytes()
    return bundle.tokenizer.to_str().encode("utf-8")


def check_plan(bundle: WhisperBundle, plan: QuantPlan) -> None:
    if plan.target not in ("onnx", "nf4"):
        raise EdgeAsrError(
            f"this plan was made for target {plan.target!r}; lowering to ONNX needs a plan "
            "made with --target onnx (or nf4)"
        )
    if plan.activation_bits is not None:
        raise EdgeAsrError(
            f"ONNX lowering runs float activations; the plan asks for simulated {plan.activation_bits}-bit activations"
        )
    check_float_widths(plan)
    names = {name for name, _ in bundle.model.named_modules()}
    missing = [layer.name for layer in plan.layers if layer.name not in names]
    if missing:
        raise EdgeAsrError(
            f"the plan names layers this model lacks ({', '.join(missing[:3])}); was it made for {plan.model_id}?"
        )


def lower_onnx(
    bundle: WhisperBundle, plan: QuantPlan, out_dir: str | Path, n_frames: int = FULL_FRAMES
) -> OnnxArtifacts:
    """Write encoder.onnx, decoder.onnx and tokenizer.json for `plan` into `out_dir`.

    `n_frames` < 3000 exports a shorter audio context: the encoder takes that many frames and the decoder
    attends over n_frames / 2 positions.
    """
    check_plan(bundle, plan)
    out_dir = Path(out_dir)
    model = marked_model(bundle, plan)
    graphs = {"encoder": export_encoder(model, bundle.n_mels, n_frames), "decoder": export_decoder(model, n_frames)}
    files = {"encoder": out_dir / ENCODER_FILE, "decoder": out_dir / DECODER_FILE}
    for graph, proto in graphs.items():
        replace_markers(proto, plan, model)
        write_bytes(files[graph], serialise_graph(proto, graph_metadata(bundle, plan, graph, n_frames)))
    write_bytes(out_dir / TOKENIZER_FILE, tokenizer_json(bundle))
    return OnnxArtifacts(out_dir, files["encoder"], files["decoder"], out_dir / TOKENIZER_FILE)


def quantized_nodes(path: str | Path) -> list[dict]:
    """Per quantised node: op type, the layer/format it was lowered from, its bits attribute and, for
    MatMulNBits, its accuracy_level (4: int8 inputs, 0: float)."""
    proto = onnx.load(str(path))
    found = []
    for node in proto.graph.node:
        if node.domain == MS_DOMAIN and node.op_type in ("MatMulNBits", "MatMulBnb4", "GatherBlockQuantized"):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            found.append({"op": node.op_type, "bits": attrs.get("bits"), **json.loads(node.doc_string)})
            if node.op_type == "MatMulNBits":
                found[-1]["accuracy_level"] = attrs.get("accuracy_level", 0)
    return found


__all__ = ["OnnxArtifacts", "lower_onnx", "pack_codes", "quantized_nodes"]
