"""The decoder's in-place cache writes share their buffers' storage in the plan (exporter/lower/memory_planning.py)."""

from __future__ import annotations

import torch
from torch import nn

from exporter.lower.memory_planning import AliasedOutputsPlanning

HEADS, POSITIONS, DIM = 2, 64, 16


class CachedAttention(nn.Module):
    """A decoder step's shape: write this position's key into a cache buffer in place, attend over the cache."""

    def __init__(self):
        super().__init__()
        self.project = nn.Linear(HEADS * DIM, HEADS * DIM)
        self.register_buffer("keys", torch.zeros(HEADS, POSITIONS, DIM), persistent=False)

    def forward(self, x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        self.keys[:, position] = self.project(x).reshape(HEADS, 1, DIM)
        scores = torch.bmm(x.reshape(HEADS, 1, DIM), self.keys.transpose(1, 2))
        return torch.bmm(torch.softmax(scores, dim=-1), self.keys).reshape(1, HEADS * DIM)


def _lowered(planning_class):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    torch.manual_seed(0)
    module = CachedAttention().eval().requires_grad_(False)
    example = (torch.randn(1, HEADS * DIM), torch.tensor([0]))
    program = torch.export.export(module, example, strict=False)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    config = ExecutorchBackendConfig(
        run_reinplace_pass=True, memory_planning_pass=planning_class(alloc_graph_input=False)
    )
    return edge.to_executorch(config).buffer


def _plan_bytes(data: bytes) -> int:
    from executorch.exir._serialize._program import deserialize_pte_binary

    plan = deserialize_pte_binary(data).program.execution_plan[0]
    return sum(plan.non_const_buffer_sizes[1:])


def _steps(data: bytes) -> list[torch.Tensor]:
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(data)  # kept: the method reads from it
    method = program.load_method("forward")
    torch.manual_seed(1)
    return [method.execute([torch.randn(1, HEADS * DIM), torch.tensor([step])])[0] for step in range(5)]


def test_the_plan_holds_one_cache_and_the_steps_compute_the_same():
    from executorch.exir.passes import MemoryPlanningPass

    cache = HEADS * POSITIONS * DIM * 4
    ours, theirs = _lowered(AliasedOutputsPlanning), _lowered(MemoryPlanningPass)
    assert _plan_bytes(theirs) >= 2 * cache  # ExecuTorch's own: the cache and a copy reserved for the output
    assert cache <= _plan_bytes(ours) < cache + cache // 4
    for got, expected in zip(_steps(ours), _steps(theirs), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
