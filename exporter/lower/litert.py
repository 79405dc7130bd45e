"""Lowering a plan to LiteRT: encoder.tflite + decoder.tflite for ai-edge-litert's interpreter (XNNPACK).

Stages:
1. prepare   a float copy with the plan's clipping applied to each weight; the output projection stays tied
             to the token embedding, so the converter writes one constant that both ops read;
2. convert   litert-torch converts the encoder (`WhisperEncoderModule`, which ends with the decoder's
             cross-attention keys and values) and the stateless decoder (`StatelessTextDecoderModule`: the
             self-attention cache goes in, each step's new keys and values come out) to float flatbuffers;
3. name      every FULLY_CONNECTED and EMBEDDING_LOOKUP op whose weight is a planned layer gets its output
             tensor renamed `edgeasr:<layer>`. Ops are matched to layers by weight content (float32 equality
             with the clipped weight; a query projection the converter folded the attention scale into,
             by that exact power of two), so the quantiser's recipe addresses layers by the plan's names
             whatever the converter called them. A planned layer that matches no op is an error;
4. quantise  ai-edge-quantizer with one recipe entry per quantised layer (dynamic-range int8 per channel or
             int4 blocks), every other op left float;
5. verify    each quantised weight's codes and scales must equal exporter.quant.primitives' for the plan's
             format and clip, bit for bit (the simulation the allocator and parity check rely on);
6. write     the plan, special tokens and shapes go into the flatbuffer's metadata (`edgeasr`, JSON),
             then an atomic write of each file.

litert-torch, ai-edge-quantizer and ai-edge-litert are the `litert` extra; without them this stage fails
naming it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from exporter.io import atomic_path
from exporter.lower.whisper_modules import StatelessTextDecoderModule, WhisperEncoderModule
from exporter.models import WhisperBundle
from exporter.quant.fold import fold_layernorm_affine
from exporter.quant.plan import LayerPlan, QuantPlan
from exporter.quant.primitives import clip_weight, quantize_weight
from runtimes.audio import FULL_FRAMES
from runtimes.contract import LITERT_METADATA, TFLITE_DECODER_FILE, TFLITE_ENCODER_FILE
from runtimes.errors import EdgeAsrError

MAX_SEQ_LEN = 448
LITERT_TARGETS = ("litert", "tflite-runtime")  # the planning ladders whose formats this lowering writes
_NAME_PREFIX = "edgeasr:"
_EXTRA = "pip install 'edgeasr[litert]'"
_MISSING = f"--target litert needs the LiteRT converter stack: {_EXTRA}"


def converter_missing() -> str | None:
    """The error to give when the converter stack is not installed (without importing it), else None."""
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("litert_torch", "ai_edge_quantizer")):
        return _MISSING
    return None


def _import_converter():
    try:
        import litert_torch
        from ai_edge_litert.tools import flatbuffer_utils
        from ai_edge_quantizer import quantizer
    except ImportError as exc:
        raise EdgeAsrError(_MISSING) from exc
    return litert_torch, quantizer, flatbuffer_utils


def _check_target(plan: QuantPlan) -> None:
    if plan.target not in LITERT_TARGETS:
        raise EdgeAsrError(
            f"plan target {plan.target!r} cannot be lowered to LiteRT (its formats are not what the LiteRT "
            "quantiser writes); make the plan with --target litert"
        )


def prepare_model(bundle: WhisperBundle, plan: QuantPlan) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """(a float copy with each planned weight clipped to its calibrated range, each planned layer's folded
    weight before clipping: what the plan's formats quantise); the original bundle is not touched.
    The tied pair shares one clip (the plan calibrates it on the output projection) and one tensor."""
    model = copy.deepcopy(bundle.model).float().eval()
    model.requires_grad_(False)
    model.config._attn_implementation = "eager"
    fold_layernorm_affine(model)  # what the converter would do; done first, as the simulation does
    unclipped = {layer.name: model.get_submodule(layer.name).weight.detach() for layer in plan.layers}
    for layer in plan.layers:
        if layer.tied_to is not None:
            continue  # the follower reads its leader's tensor
        module = model.get_submodule(layer.name)
        module.weight = nn.Parameter(clip_weight(module.weight.detach(), layer.format, layer.clip), requires_grad=False)
    followers = {layer.name: layer.tied_to for layer in plan.layers if layer.tied_to}
    if "proj_out" not in followers:
        raise EdgeAsrError("a LiteRT plan ties the output projection to the token embedding; re-make the plan")
    model.proj_out.weight = model.get_submodule(followers["proj_out"]).weight
    return model, unclipped


@dataclass
class _Graph:
    name: str  # encoder | decoder
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]


def _graphs(model: nn.Module, n_frames: int) -> list[_Graph]:
    config = model.config
    heads, head_dim = config.decoder_attention_heads, config.d_model // config.decoder_attention_heads
    layers, positions = config.decoder_layers, n_frames // 2
    features = torch.zeros(1, config.num_mel_bins, n_frames)
    self_cache = [torch.zeros(heads, MAX_SEQ_LEN, head_dim) for _ in range(2 * layers)]
    cross = [torch.zeros(heads, positions, head_dim) for _ in range(2 * layers)]
    start = torch.tensor([[config.decoder_start_token_id]])
    return [
        _Graph("encoder", WhisperEncoderModule(model).eval(), (features,)),
        _Graph(
            "decoder",
            StatelessTextDecoderModule(model, MAX_SEQ_LEN).eval(),
            (start, torch.tensor([0]), *self_cache, *cross),
        ),
    ]


def _digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float32).tobytes()).hexdigest()


def _weight_index(model: nn.Module, plan: QuantPlan) -> dict[tuple[str, str], tuple[LayerPlan, float]]:
    """(weight digest, op kind) -> (planned layer, factor the converter may have folded into it)."""
    head_dim = model.config.d_model // model.config.decoder_attention_heads
    index = {}
    for layer in plan.layers:
        weight = model.get_submodule(layer.name).weight.detach().float().numpy()
        op = "EMBEDDING_LOOKUP" if layer.kind == "embedding" else "FULLY_CONNECTED"
        index[(_digest(weight), op)] = (layer, 1.0)
        if layer.name.endswith("q_proj"):  # `q_proj(h) * scaling` may come out as one FC with scaled weights
            factor = head_dim**-0.5  # a power of two for Whisper's 64-wide heads: folding it is exact
            index.setdefault((_digest(weight * np.float32(factor)), op), (layer, factor))
    return index


def _name_layers(model_t, weights: dict, flatbuffer_utils) -> dict[str, float]:
    """Rename the output tensor of each op whose weight is a planned layer; returns {layer: folded factor}."""
    from ai_edge_litert import schema_py_generated as schema

    weighted = {
        schema.BuiltinOperator.FULLY_CONNECTED: "FULLY_CONNECTED",
        schema.BuiltinOperator.EMBEDDING_LOOKUP: "EMBEDDING_LOOKUP",
    }
    found: dict[str, float] = {}
    for subgraph in model_t.subgraphs:
        for op in subgraph.operators:
            code = flatbuffer_utils.get_builtin_code_from_operator_code(model_t.operatorCodes[op.opcodeIndex])
            kind = weighted.get(code)
            if kind is None:
                continue
            # FULLY_CONNECTED takes (input, weight, bias); EMBEDDING_LOOKUP takes (ids, table)
            tensor = subgraph.tensors[op.inputs[1]]
            data = model_t.buffers[tensor.buffer].data
            if data is None or tensor.type != 0:  # 0: FLOAT32; activations and non-float constants are no weights
                continue
            values = np.frombuffer(bytes(data), dtype=np.float32).reshape(tensor.shape)
            match = weights.get((_digest(values), kind))
            if match is None:
                continue
            layer, factor = match
            subgraph.tensors[op.outputs[0]].name = (_NAME_PREFIX + layer.name).encode()
            found[layer.name] = factor
    return found


# edgeasr granularity -> the quantiser's name for it
_GRANULARITY = {"per_tensor": "TENSORWISE", "per_channel": "CHANNELWISE", "group": "BLOCKWISE_{group_size}"}


def _recipe(layers: list[LayerPlan], op_of: dict[str, str]) -> list[dict]:
    entries = []
    for layer in layers:
        fmt = layer.format
        granularity = _GRANULARITY[fmt.granularity].format(group_size=fmt.group_size)
        entries.append(
            {
                "regex": f"(^|;){re.escape(_NAME_PREFIX + layer.name)}(;|$)",
                "operation": op_of[layer.name],
                "algorithm_key": "min_max_uniform_quantize",
                "op_config": {
                    "weight_tensor_config": {
                        "num_bits": fmt.bits,
                        "symmetric": True,
                        "granularity": granularity,
                        "dtype": "INT",
                    },
                    "compute_precision": "INTEGER",  # dynamic range: int8 activations quantised at run time
                    "explicit_dequantize": False,
                },
            }
        )
    return entries


def _check_litert_formats(plan: QuantPlan) -> None:
    for layer in plan.layers:
        fmt = layer.format
        if fmt.is_float:
            if fmt.bits != 32:
                raise EdgeAsrError(f"layer {layer.name}: LiteRT lowering keeps float layers as float32, not {fmt.name}")
            continue
        if fmt.kind != "int" or fmt.scale_rule != "narrow" or fmt.granularity not in _GRANULARITY:
            raise EdgeAsrError(f"layer {layer.name}: format {fmt.name} is not one the LiteRT quantiser writes")


def _verify(quantised: bytes, layers: list[LayerPlan], original: dict[str, torch.Tensor], factors: dict, graph: str):
    """Every quantised weight's codes and scales equal the simulation's, bit for bit."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=quantised)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    by_output = {}
    for op in interpreter._get_ops_details():  # the public API has no per-op view; this one is stable since 2.x
        for out in op["outputs"]:
            if out in tensors:
                by_output[tensors[out]["name"]] = op
    for layer in layers:
        name = _NAME_PREFIX + layer.name
        op = next((o for key, o in by_output.items() if name in key.split(";")), None)
        if op is None:
            raise EdgeAsrError(f"LiteRT {graph}: layer {layer.name} vanished during quantisation")
        detail = tensors[op["inputs"][1]]
        codes = np.asarray(interpreter.get_tensor(detail["index"])).astype(np.int32)
        scales = np.asarray(detail["quantization_parameters"]["scales"], dtype=np.float32)
        expected_codes, expected_scales = quantize_weight(original[layer.name], layer.format, layer.clip)
        expected_scales = expected_scales.reshape(-1).numpy() * np.float32(factors[layer.name])
        if not np.array_equal(codes.reshape(expected_codes.shape), expected_codes.numpy().astype(np.int32)) or not (
            np.array_equal(scales, expected_scales)
        ):
            raise EdgeAsrError(
                f"LiteRT {graph}: the quantiser stored layer {layer.name} ({layer.format.name}) differently from "
                "edgeasr's simulation of that format; the installed ai-edge-quantizer is not the version this "
                f"lowering was verified with ({_EXTRA})"
            )


def _metadata(bundle: WhisperBundle, plan: QuantPlan, graph: str, n_frames: int) -> bytes:
    config = bundle.model.config
    return json.dumps(
        {
            "graph": graph,
            "model_id": bundle.model_id,
            "plan": plan.to_dict(),
            "special_tokens": bundle.special.to_dict(),
            "n_mels": config.num_mel_bins,
            "n_frames": n_frames,
            "max_seq_len": MAX_SEQ_LEN,
            "decoder_layers": config.decoder_layers,
            "heads": config.decoder_attention_heads,
            "head_dim": config.d_model // config.decoder_attention_heads,
        },
        sort_keys=True,
    ).encode()


def _add_metadata(model_t, payload: bytes) -> None:
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model_t.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = LITERT_METADATA.encode()
    entry.buffer = len(model_t.buffers) - 1
    model_t.metadata = [m for m in (model_t.metadata or []) if m.name != entry.name] + [entry]


def lower_litert(bundle: WhisperBundle, plan: QuantPlan, out_dir: str | Path, n_frames: int = FULL_FRAMES) -> dict:
    """Write encoder.tflite and decoder.tflite for `plan` into `out_dir`; returns {file: bytes}."""
    _check_target(plan)
    _check_litert_formats(plan)
    litert_torch, quantizer, flatbuffer_utils = _import_converter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, unclipped = prepare_model(bundle, plan)
    weights = _weight_index(model, plan)
    placed: set[str] = set()
    sizes = {}
    for graph in _graphs(model, n_frames):
        with tempfile.TemporaryDirectory(prefix="edgeasr-litert-") as tmp:
            float_path = Path(tmp) / f"{graph.name}.tflite"
            with torch.no_grad():
                # Folding a constant multiplication into the next FC would change the weights the plan quantises
                converted = litert_torch.convert(
                    graph.module, graph.inputs, _litert_converter_flags={"disable_fuse_mul_and_fc": True}
                )
                converted.export(str(float_path))
            model_t = flatbuffer_utils.read_model(str(float_path))
        factors = _name_layers(model_t, weights, flatbuffer_utils)
        _add_metadata(model_t, _metadata(bundle, plan, graph.name, n_frames))
        named = bytes(flatbuffer_utils.convert_object_to_bytearray(model_t))
        in_graph = [layer for layer in plan.layers if layer.name in factors]
        placed.update(layer.name for layer in in_graph)
        quantised_layers = [layer for layer in in_graph if not layer.format.is_float and layer.tied_to is None]
        op_of = {
            layer.name: "EMBEDDING_LOOKUP" if layer.kind == "embedding" else "FULLY_CONNECTED" for layer in in_graph
        }
        entries = _recipe(quantised_layers, op_of)
        # the follower reads the leader's tensor: the quantiser sees one tensor used by two ops, both configured alike
        entries += _recipe([layer for layer in in_graph if layer.tied_to and not layer.format.is_float], op_of)
        if entries:
            result = quantizer.Quantizer(bytearray(named), entries).quantize()
            data = bytes(result.quantized_model)
        else:
            data = named
        _verify(data, quantised_layers, unclipped, factors, graph.name)
        path = out_dir / (TFLITE_ENCODER_FILE if graph.name == "encoder" else TFLITE_DECODER_FILE)
        with atomic_path(path) as tmp_path:
            Path(tmp_path).write_bytes(data)
        sizes[path.name] = len(data)
    # convolutions are not matched (CONV_2D keeps its own weight layout); they are float on this target
    missing = [layer.name for layer in plan.layers if layer.name not in placed and layer.kind != "conv"]
    if missing:
        raise EdgeAsrError(
            f"LiteRT lowering could not find the planned layer(s) {', '.join(missing[:4])} in the converted graphs "
            "(the converter changed their weights); this litert-torch version is not supported"
        )
    return sizes


__all__ = ["LITERT_TARGETS", "lower_litert", "prepare_model"]
