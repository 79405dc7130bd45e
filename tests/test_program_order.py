"""Delegated subgraphs keep the order the module computes in (exporter/lower/program_order.py): ExecuTorch's
breadth-first re-sort made chunked attention hold every slice's scores at once inside XNNPACK."""

from __future__ import annotations

import contextlib
import re

import torch
from torch import nn
from torch.fx.passes.utils.fuser_utils import topo_sort

from exporter.lower.program_order import keep_program_order
from exporter.lower.whisper_modules import chunked_attention


class SlicedAttention(nn.Module):
    """Two chunked attentions behind projections, as in encoder layers, with an op between them that XNNPACK
    does not take (cumsum): two delegates, and ExecuTorch re-sorts the graph after fusing the first."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(32, 32), nn.Linear(32, 32)

    def attend(self, project: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        q = project(x).view(1, 40, 2, 16).transpose(1, 2)
        out, _ = chunked_attention(self, q, q, q, None, scaling=0.25)
        return out.reshape(1, 40, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(self.second, torch.cumsum(self.attend(self.first, x), dim=-1))


def _lowered(program_order: bool):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    module = SlicedAttention().eval()
    example = (torch.randn(1, 40, 32),)
    program = torch.export.export(module, example, strict=False)
    with keep_program_order() if program_order else contextlib.nullcontext():
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return module, example, edge


def _delegate_ops(edge) -> list[list[str]]:
    """Each delegate's aten ops, in the order XNNPACK runs them."""
    graph_module = edge.exported_program().graph_module
    delegates = [child for name, child in graph_module.named_children() if name.startswith("lowered_module")]
    assert len(delegates) == 2
    found = []
    for delegate in delegates:
        names = (re.search(r"aten\.(\w+)\.", str(node.target)) for node in delegate.original_module.graph.nodes)
        found.append([name.group(1) for name in names if name])
    return found


def _score_steps(ops: list[str]) -> list[str]:
    """The attention ops in execution order: bmm (scores or output), mul (scaling), _softmax."""
    return [op for op in ops if op in ("bmm", "mul", "_softmax")]


SLICE_BY_SLICE = ["bmm", "mul", "_softmax", "bmm"] * 5
LEVEL_BY_LEVEL = ["bmm"] * 5 + ["mul"] * 5 + ["_softmax"] * 5 + ["bmm"] * 5


def test_slices_run_one_after_the_other_in_every_delegate():
    delegates = _delegate_ops(_lowered(program_order=True)[2])
    assert [_score_steps(ops) for ops in delegates] == [SLICE_BY_SLICE, SLICE_BY_SLICE]


def test_executorchs_own_sort_runs_them_level_by_level():
    """The behaviour the fix exists for (if ExecuTorch stops re-sorting breadth-first, this fails: drop the fix)."""
    delegates = _delegate_ops(_lowered(program_order=False)[2])
    assert LEVEL_BY_LEVEL in [_score_steps(ops) for ops in delegates]


def test_the_program_computes_what_the_module_computes():
    from executorch.runtime import Runtime

    module, example, edge = _lowered(program_order=True)
    program = Runtime.get().load_program(edge.to_executorch().buffer)  # kept: the method reads from it
    method = program.load_method("forward")
    with torch.no_grad():
        torch.testing.assert_close(method.execute(list(example))[0], module(*example), rtol=1e-5, atol=1e-5)


def test_the_context_restores_executorchs_sort():
    from executorch.exir import lowered_backend_module

    original = lowered_backend_module.legalize_graph
    with keep_program_order():
        assert lowered_backend_module.legalize_graph is not original
    assert lowered_backend_module.legalize_graph is original


def _graph_out_of_order() -> tuple[torch.fx.Graph, list[torch.fx.Node]]:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    a = graph.call_function(torch.relu, (x,))
    b = graph.call_function(torch.neg, (x,))
    c = graph.call_function(torch.add, (a, b))
    graph.output(c)
    return graph, [x, c, b, a, c.next]  # c listed before its inputs


def test_the_sort_used_keeps_a_valid_order_and_repairs_an_invalid_one():
    """legalize_in_program_order relies on torch.fx's topo_sort being stable (fails if torch changes that)."""
    graph, shuffled = _graph_out_of_order()
    nodes = list(graph.nodes)
    assert topo_sort(nodes) == nodes
    repaired = topo_sort(shuffled)
    names = [node.name for node in repaired]
    assert names == ["x", "neg", "relu", "add", "output"]  # b and a keep their listed order, then c
