"""NF4 Linears in ONNX: `com.microsoft::MatMulBnb4` (quant_type 1) with the codes and absmaxes of nf4.py.

MatMulBnb4 computes A x dequant(B) where B is the torch weight (N, K) flattened row-major in blocks of
`block_size`: exactly the layout of `quantize_nf4`, so the packed codes and float32 absmaxes go in unchanged and
ORT multiplies with the same float32 values the simulation uses (bit-identical, tested on single layers).

With double quantisation the absmax input is computed in the graph from the stored uint8 codes:
Cast -> Reshape(chunks, chunk) -> Mul(step) -> Add(offset) -> Reshape(-1) -> Slice(n_blocks). All inputs are
initializers, so ONNX Runtime folds this into a constant when the session is created: the file keeps the
small codes and the run costs nothing extra.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from exporter.quant.nf4 import Nf4Weight, pack_nf4, quantize_nf4
from exporter.quant.plan import LayerPlan
from runtimes.errors import EdgeAsrError

MS_DOMAIN = "com.microsoft"
NF4_QUANT_TYPE = 1


def _doc(layer: LayerPlan) -> str:
    return json.dumps({"layer": layer.name, "format": layer.format.to_dict(), "clip": layer.clip}, sort_keys=True)


def _absmax_nodes(q: Nf4Weight, prefix: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """Nodes computing the float32 absmax from the double-quantised codes; returns its value name."""
    chunks = q.absmax_offset.numel()
    n_blocks = q.absmax.numel()
    inits = [
        numpy_helper.from_array(q.absmax_codes.numpy().astype(np.uint8), f"{prefix}.absmax_codes"),
        numpy_helper.from_array(q.absmax_step.numpy().astype(np.float32).reshape(chunks, 1), f"{prefix}.absmax_step"),
        numpy_helper.from_array(
            q.absmax_offset.numpy().astype(np.float32).reshape(chunks, 1), f"{prefix}.absmax_offset"
        ),
        numpy_helper.from_array(np.array([chunks, -1], dtype=np.int64), f"{prefix}.absmax_grid"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{prefix}.absmax_flat"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), f"{prefix}.absmax_start"),
        numpy_helper.from_array(np.array([n_blocks], dtype=np.int64), f"{prefix}.absmax_end"),
    ]
    v = lambda suffix: f"{prefix}.absmax_{suffix}"  # noqa: E731
    nodes = [
        helper.make_node("Cast", [v("codes")], [v("float")], to=TensorProto.FLOAT, name=v("Cast")),
        helper.make_node("Reshape", [v("float"), v("grid")], [v("chunks")], name=v("Reshape")),
        helper.make_node("Mul", [v("chunks"), v("step")], [v("scaled")], name=v("Mul")),
        helper.make_node("Add", [v("scaled"), v("offset")], [v("shifted")], name=v("Add")),
        helper.make_node("Reshape", [v("shifted"), v("flat")], [v("padded")], name=v("Flatten")),
        helper.make_node("Slice", [v("padded"), v("start"), v("end")], [v("value")], name=v("Slice")),
    ]
    return nodes, inits, v("value")


def matmul_bnb4(
    node: onnx.NodeProto, layer: LayerPlan, weight: torch.Tensor
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Replace a QuantLinear placeholder (input x, output y = x W^T) by MatMulBnb4 for an NF4 layer."""
    fmt = layer.format
    if fmt.kind != "nf4" or weight.dim() != 2:
        raise EdgeAsrError(f"{layer.name}: MatMulBnb4 takes 2-D NF4 weights, not format {fmt.name}")
    q = quantize_nf4(weight, fmt, layer.clip)
    n, k = weight.shape
    prefix = layer.name
    packed = numpy_helper.from_array(pack_nf4(q.codes).numpy(), f"{prefix}.weight_nf4")
    inits = [packed]
    nodes = []
    if fmt.double_quant_block:
        nodes, absmax_inits, absmax_name = _absmax_nodes(q, prefix)
        inits += absmax_inits
    else:
        absmax_name = f"{prefix}.weight_absmax"
        inits.append(numpy_helper.from_array(q.absmax.numpy().astype(np.float32), absmax_name))
    nodes.append(
        helper.make_node(
            "MatMulBnb4",
            [node.input[0], packed.name, absmax_name],
            list(node.output),
            name=f"{layer.name}/MatMulBnb4",
            domain=MS_DOMAIN,
            K=k,
            N=n,
            block_size=fmt.group_size,
            quant_type=NF4_QUANT_TYPE,
            doc_string=_doc(layer),
        )
    )
    return nodes, inits
