"""NF4 + LoRA to ONNX: the base through `lower/onnx.py` (MatMulBnb4), each adapter as its own float MatMuls.

A LoRA layer y = x W^T + b + s (x A^T) B^T is lowered to

    MatMulBnb4(x, W) + b + MatMul(MatMul(x, <layer>.lora_a), <layer>.lora_b)

with lora_a = A^T (in, rank) and lora_b = s B^T (rank, out), the scale folded into lora_b. Both are *graph
inputs with a default initializer* ("overridable initializers"), and the rank axis is symbolic:

* run as is, the graphs use the defaults, the adapter they were exported with, so the folder is
  self-contained and any ONNX Runtime client (edgeasr's OnnxRunner included) gets the personalised model;
* another user's adapter for the same base is a pair of small `.onnx_adapter` files (ONNX Runtime's adapter
  format, `onnxruntime.AdapterFormat`), activated per run with `RunOptions.add_active_adapter(LoraAdapter)`
  (ORT >= 1.20), or fed as ordinary inputs. So one base artifact serves many users; the encoder's and the
  decoder's parameters live in separate adapter files because they are separate sessions.

The tracer never sees the adapter weights: a placeholder node (`edgeasr::LoraBranch`) marks the branch and is
rewritten into the two MatMuls, like the QuantLinear placeholders of the base.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from exporter.io import atomic_path, write_bytes
from exporter.lower import onnx as base_onnx
from exporter.models import WhisperBundle
from exporter.personalize.lora import LoRALinear, lora_modules
from exporter.quant.plan import QuantPlan
from runtimes.audio import FULL_FRAMES
from runtimes.contract import (
    DECODER_ADAPTER_FILE,
    DECODER_FILE,
    ENCODER_ADAPTER_FILE,
    ENCODER_FILE,
    META_LORA,
    TOKENIZER_FILE,
)
from runtimes.errors import EdgeAsrError
from runtimes.onnx_runner import read_metadata

_RANK_DIM = "lora_rank"


class _LoraBranchFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lora_a, lora_b, scaling: float, layer: str):
        return F.linear(F.linear(x, lora_a), lora_b) * scaling

    @staticmethod
    def symbolic(g, x, lora_a, lora_b, scaling: float, layer: str):
        # the adapter weights are deliberately unused: the rewrite adds them as named inputs
        return base_onnx.typed_like(
            g.op(f"{base_onnx.MARKER_DOMAIN}::LoraBranch", x, layer_s=layer), x, lora_b.type().sizes()[0]
        )


class _MarkedLoraLinear(nn.Module):
    def __init__(self, name: str, module: LoRALinear, quantized: bool):
        super().__init__()
        self.layer_name = name
        self.weight, self.bias = module.weight, module.bias
        self.lora_A, self.lora_B, self.scaling = module.lora_A, module.lora_B, module.scaling
        self.quantized = quantized

    def forward(self, x):
        if self.quantized:
            y = base_onnx.QuantLinearFn.apply(x, self.weight, self.layer_name)
        else:
            y = F.linear(x, self.weight)
        y = y if self.bias is None else y + self.bias
        return y + _LoraBranchFn.apply(x, self.lora_A, self.lora_B, self.scaling, self.layer_name)


def adapter_arrays(lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> tuple[np.ndarray, np.ndarray]:
    """(A^T, s B^T) as float32 arrays: the graph's parameter layout."""
    a = lora_a.detach().float().T.contiguous().numpy()
    b = (lora_b.detach().float() * scaling).T.contiguous().numpy()
    return a, b


def parameter_names(layer: str) -> tuple[str, str]:
    return f"{layer}.lora_a", f"{layer}.lora_b"


def marked_lora_model(bundle: WhisperBundle, plan: QuantPlan) -> nn.Module:
    """A copy of the LoRA model with the base's quantised layers and the LoRA branches as markers."""
    loras = lora_modules(bundle.model)
    if not loras:
        raise EdgeAsrError("the model carries no LoRA adapters; use lower_onnx for a plain plan")
    model = copy.deepcopy(bundle.model).eval()
    for name, module in lora_modules(model).items():
        model.set_submodule(name, _MarkedLoraLinear(name, module, not plan.layer(name).format.is_float))
    rest = dataclasses.replace(plan, layers=[layer for layer in plan.layers if layer.name not in loras])
    carrier = copy.copy(bundle)
    carrier.model = model
    return base_onnx.marked_model(carrier, rest)


def rewrite_branches(proto: onnx.ModelProto, model: nn.Module, overridable: bool = True) -> dict[str, np.ndarray]:
    """LoraBranch placeholders -> two MatMuls on the adapter's parameters; returns the parameters. `overridable`:
    the parameters are graph inputs with defaults (another user's adapter can be fed); else plain initializers,
    for clients that bind inputs by position (sherpa-onnx)."""
    graph = proto.graph
    nodes, params, firsts, calls = [], {}, {}, {}  # firsts: layer -> (its first placeholder, its branch)
    for node in graph.node:
        if node.domain != base_onnx.MARKER_DOMAIN or node.op_type != "LoraBranch":
            nodes.append(node)
            continue
        layer = base_onnx.marker_layer(node)
        if layer in firsts:  # the layer called again (the encoder's sliced feed-forward blocks)
            calls[layer] = calls.get(layer, 0) + 1
            nodes.extend(base_onnx.repeated_call(firsts[layer][1], firsts[layer][0], node, calls[layer]))
            continue
        name_a, name_b = parameter_names(layer)
        hidden = f"{layer}/lora_hidden"
        branch = [
            helper.make_node("MatMul", [node.input[0], name_a], [hidden], name=f"{layer}/LoraA"),
            helper.make_node("MatMul", [hidden, name_b], list(node.output), name=f"{layer}/LoraB"),
        ]
        firsts[layer] = (node, branch)
        marked = model.get_submodule(layer)
        params[name_a], params[name_b] = adapter_arrays(marked.lora_A, marked.lora_B, marked.scaling)
        nodes.extend(branch)
    del graph.node[:]
    graph.node.extend(nodes)
    for name, value in params.items():
        graph.initializer.append(numpy_helper.from_array(value, name))
        if overridable:
            shape = [value.shape[0], _RANK_DIM] if name.endswith(".lora_a") else [_RANK_DIM, value.shape[1]]
            graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    return params


def write_onnx_adapter(path: Path, params: dict[str, np.ndarray]) -> None:
    """One `.onnx_adapter` file (ONNX Runtime's format) holding `params`, written atomically."""
    import onnxruntime as ort

    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for k, v in params.items()})
    with atomic_path(path) as tmp:
        adapter.export_adapter(str(tmp))


def lora_metadata(lora_info: dict, params: dict[str, np.ndarray]) -> str:
    return json.dumps({**lora_info, "parameters": sorted(params)}, sort_keys=True)


def lower_onnx_lora(bundle: WhisperBundle, plan: QuantPlan, out_dir: str | Path, lora_info: dict) -> dict[str, dict]:
    """Write encoder/decoder .onnx (base + LoRA inputs with defaults), their .onnx_adapter files and the
    tokenizer. `bundle.model` is the full-precision model with LoRA modules (the plan quantises the base).
    Returns the adapter parameters per graph."""
    base_onnx.check_plan(bundle, plan)
    out_dir = Path(out_dir)
    model = marked_lora_model(bundle, plan)
    graphs = {"encoder": base_onnx.export_encoder(model, bundle.n_mels), "decoder": base_onnx.export_decoder(model)}
    files = {"encoder": out_dir / ENCODER_FILE, "decoder": out_dir / DECODER_FILE}
    adapters = {"encoder": out_dir / ENCODER_ADAPTER_FILE, "decoder": out_dir / DECODER_ADAPTER_FILE}
    written = {}
    for graph, proto in graphs.items():
        params = rewrite_branches(proto, model)
        base_onnx.replace_markers(proto, plan, model)
        metadata = base_onnx.graph_metadata(bundle, plan, graph, FULL_FRAMES)  # LoRA exports keep the 30 s context
        metadata[META_LORA] = lora_metadata(lora_info, params)
        write_bytes(files[graph], base_onnx.serialise_graph(proto, metadata))
        write_onnx_adapter(adapters[graph], params)
        written[graph] = params
    write_bytes(out_dir / TOKENIZER_FILE, base_onnx.tokenizer_json(bundle))
    return written


def graph_adapter_names(path: str | Path) -> dict[str, list]:
    """The LoRA parameter inputs of an exported graph: name -> shape (rank symbolic)."""
    proto = onnx.load(str(path), load_external_data=False)
    found = {}
    for value in proto.graph.input:
        if value.name.endswith((".lora_a", ".lora_b")):
            found[value.name] = [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]
    return found


def write_adapters_for_artifact(
    artifact_dir: str | Path, state: dict[str, torch.Tensor], lora_info: dict, out_dir: str | Path
) -> list[Path]:
    """Another user's adapter (trained for the same model and NF4 base, any rank) as .onnx_adapter files for an
    existing NF4 + LoRA artifact; run them with OnnxRunner(artifact, adapters=out_dir)."""

    artifact_dir, out_dir = Path(artifact_dir), Path(out_dir)
    per_graph, covered = {}, set()
    for graph, adapter_file in (("encoder", ENCODER_ADAPTER_FILE), ("decoder", DECODER_ADAPTER_FILE)):
        path = artifact_dir / f"{graph}.onnx"
        metadata = read_metadata(path)
        if META_LORA not in metadata:
            raise EdgeAsrError(f"{path} has no LoRA inputs; export it with `edgeasr export --lora`")
        artifact = json.loads(metadata[META_LORA])
        for key in ("model_id", "base"):
            if artifact[key] != lora_info[key]:
                raise EdgeAsrError(
                    f"the adapter was trained for {key} {lora_info[key]!r}, the artifact is {artifact[key]!r}"
                )
        scaling = lora_info["lora"]["alpha"] / lora_info["lora"]["rank"]
        params = {}
        for name, shape in graph_adapter_names(path).items():
            layer, part = name.rsplit(".", 1)
            key = f"{layer}.lora_{'A' if part == 'lora_a' else 'B'}"
            if f"{layer}.lora_A" not in state or f"{layer}.lora_B" not in state:
                raise EdgeAsrError(
                    f"the artifact has LoRA inputs for {layer}, which this adapter lacks (trained "
                    "with other --targets / --scope?)"
                )
            a, b = adapter_arrays(state[f"{layer}.lora_A"], state[f"{layer}.lora_B"], scaling)
            value = a if part == "lora_a" else b
            fixed = shape[0] if part == "lora_a" else shape[1]
            if value.shape[0 if part == "lora_a" else 1] != fixed:
                raise EdgeAsrError(f"{key}: adapter shape {tuple(value.shape)} does not fit the artifact ({shape})")
            params[name] = value
        covered.update(name.rsplit(".", 1)[0] for name in params)
        per_graph[out_dir / adapter_file] = params
    unused = sorted({key.rsplit(".", 1)[0] for key in state} - covered)
    if unused:
        raise EdgeAsrError(
            f"the adapter adapts layers the artifact has no LoRA inputs for ({unused[0]}, ...): "
            "it was trained with other --targets / --scope"
        )
    for path, params in per_graph.items():  # written only once both graphs are known to fit
        write_onnx_adapter(path, params)
    return list(per_graph)
