"""Peak activation bytes of an ONNX graph: shapes from symbolic shape inference, lifetimes from node order.

Walks the nodes in graph order: a node's outputs are allocated when it runs, and a tensor is freed after its
last consumer ran. Reshape-like nodes alias their input (no new memory; the input lives as long as the alias
is used). Initializers (weights) are not activations and never counted. This is the memory a planner that
reuses freed buffers needs at least; ONNX Runtime's arena can hold more (it grows in power-of-two steps).

Shape inference (ONNX Runtime's symbolic one) does not know every com.microsoft quantised op, so for inference
only they are swapped
for the standard op with the same output shape: MatMulNBits(A, packed) -> MatMul(A, W[K, N]) and
GatherBlockQuantized(packed, ids) -> Gather(E[V, blocks, block], ids), with W and E declared as shape-only inputs.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from runtimes.errors import EdgeAsrError

ALIASING_OPS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}
MS_DOMAIN = "com.microsoft"


def _attributes(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _standard_stand_in(node, initializers: dict) -> tuple[onnx.NodeProto, onnx.ValueInfoProto] | None:
    """A standard node with the same output shape as a quantised contrib node, plus its shape-only input."""
    if node.domain != MS_DOMAIN:
        return None
    attrs = _attributes(node)
    stand_in = f"{node.name}/shape_only_weight"
    if node.op_type == "MatMulNBits":
        weight = helper.make_tensor_value_info(stand_in, TensorProto.FLOAT, [attrs["K"], attrs["N"]])
        return helper.make_node("MatMul", [node.input[0], stand_in], list(node.output)), weight
    if node.op_type == "GatherBlockQuantized":
        packed = list(initializers[node.input[0]].dims)  # [rows, ..., packed bytes]: the last axis is quantised
        table_shape = [*packed[:-1], packed[-1] * 8 // attrs["bits"]]
        table = helper.make_tensor_value_info(stand_in, TensorProto.FLOAT, table_shape)
        return helper.make_node("Gather", [stand_in, node.input[1]], list(node.output)), table
    return None


def _fix_dims(values, dims: dict[str, int]) -> None:
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                if dim.dim_param not in dims:
                    raise EdgeAsrError(f"graph dimension {dim.dim_param!r} needs a value to estimate memory")
                dim.dim_value = dims[dim.dim_param]


def _shape_graph(proto: onnx.ModelProto, dims: dict[str, int]) -> onnx.GraphProto:
    graph = proto.graph
    initializers = {i.name: i for i in graph.initializer}
    nodes, stand_in_inputs = [], []
    for node in graph.node:
        swapped = _standard_stand_in(node, initializers)
        if swapped is None:
            nodes.append(node)
        else:
            nodes.append(swapped[0])
            stand_in_inputs.append(swapped[1])
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.extend(stand_in_inputs)
    del graph.value_info[:]  # the exporter's symbolic names would shadow the concrete shapes
    _fix_dims(graph.input, dims)
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    # ORT's symbolic inference follows shapes through Shape/Range arithmetic, which ONNX's own does not.
    return SymbolicShapeInference.infer_shapes(proto, auto_merge=True).graph


def _data_dependent(expression: str, value: int | None) -> int | None:
    """A length shape inference left as an expression of data-dependent symbols (e.g. NonZero's count plus
    1), evaluated with every such symbol set to `value`; None where no value is given."""
    if value is None:
        return None
    import sympy

    try:
        parsed = sympy.sympify(expression)
        return int(parsed.subs({symbol: value for symbol in parsed.free_symbols}))
    except (sympy.SympifyError, TypeError, ValueError):
        return None


def _bytes(value: onnx.ValueInfoProto, data_dim: int | None = None) -> int | None:
    tensor = value.type.tensor_type
    size = helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
    for dim in tensor.shape.dim:
        length = dim.dim_value if dim.HasField("dim_value") else _data_dependent(dim.dim_param, data_dim)
        if length is None:
            return None
        size *= length
    return size


def live_peak_bytes(
    path: Path,
    dims: dict[str, int],
    count_outputs: bool = True,
    count_inputs: bool = False,
    data_dim: int | None = None,
) -> int:
    """Peak bytes of simultaneously live tensors while `path` runs once with dimension values `dims`.
    `data_dim`: the value of every length that depends on a tensor's values rather than its shape (the
    sherpa decoder's count of written cache slots); None: such a length is an error."""
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors of every kind
        raise EdgeAsrError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from exc
    graph = _shape_graph(proto, dims)
    sizes = {v.name: _bytes(v, data_dim) for v in [*graph.value_info, *graph.output, *graph.input]}
    weights = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    root: dict[str, str] = {}
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            if name:
                r = root.get(name, name)
                last_use[r] = index
        if node.op_type in ALIASING_OPS and node.input:
            for name in node.output:
                root[name] = root.get(node.input[0], node.input[0])
    live = sum(sizes.get(i.name) or 0 for i in graph.input if i.name not in weights) if count_inputs else 0
    peak, held, unknown = live, {}, []
    for index, node in enumerate(graph.node):
        for name in node.output:
            if not name or name in root:
                continue
            size = sizes.get(name)
            if size is None:
                unknown.append(name)
                continue
            if name in outputs and not count_outputs:
                continue
            held[name] = size
            live += size
        peak = max(peak, live)
        for name in set(node.input):
            r = root.get(name, name)
            if r in held and r not in outputs and last_use.get(r, -1) <= index:
                live -= held.pop(r)
    if unknown:
        raise EdgeAsrError(
            f"{path}: shape inference left {len(unknown)} tensor sizes unknown "
            f"(e.g. {unknown[0]}); cannot estimate its activation memory"
        )
    return peak


__all__ = ["live_peak_bytes"]
