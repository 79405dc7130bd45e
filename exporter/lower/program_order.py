"""Delegated subgraphs that run in the order the program was written, not level by level.

ExecuTorch 1.5.1 fuses each XNNPACK partition into a submodule one at a time and, after each, re-sorts the
whole graph with torch.fx's `legalize_graph`: a breadth-first topological sort that does not keep the
original order. The partitions fused after the first one are cut from that re-sorted graph, and XNNPACK
executes (and plans its workspace for) a subgraph in the order its nodes come. Breadth-first, every
independent branch advances one level at a time: the five query slices of chunked attention all compute
their [heads, T/5, T] scores before the first softmax, so five slices of the attention map are alive at
once where one would do (tiny.en's attention delegates: 67.7 MB of live tensors at their peak instead of
29.9 by a liveness count; the worker's run peak 160 -> 123 MB). ExecuTorch's own memory plan for the ops
outside delegates is made over the same re-sorted graph.

`keep_program_order` replaces that sort, while a lowering runs, by a stable one, torch.fx's own `topo_sort`
(the one ExecuTorch already sorts each partition's nodes with): among the nodes whose inputs are ready, the
one that came first in the graph goes first (the order torch.export wrote, which is
the order of the module's Python code). Any topological order computes the same values op by op, so the
program's outputs are unchanged; only liveness changes. The sort is deterministic, so exports stay
reproducible byte for byte.
"""

from __future__ import annotations

import contextlib

import torch
from torch.fx.passes.utils.fuser_utils import topo_sort


def legalize_in_program_order(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """What `legalize_graph` does (the graph rebuilt in a topological order, in place), keeping program order."""
    old = graph_module.graph
    new = torch.fx.Graph()  # as legalize_graph builds it; assigning it to the module takes ownership
    new._codegen = old._codegen
    copies: dict[torch.fx.Node, torch.fx.Node] = {}
    for node in topo_sort(list(old.nodes)):
        copies[node] = new.node_copy(node, lambda arg: copies[arg])
    graph_module.graph = new
    return graph_module


@contextlib.contextmanager
def keep_program_order():
    """While the block runs, ExecuTorch's partition fusing re-sorts graphs with `legalize_in_program_order`."""
    from executorch.exir import lowered_backend_module

    original = lowered_backend_module.legalize_graph
    lowered_backend_module.legalize_graph = legalize_in_program_order
    try:
        yield
    finally:
        lowered_backend_module.legalize_graph = original
