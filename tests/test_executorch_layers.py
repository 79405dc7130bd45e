"""Single layers through XNNPACK against the simulation: the numerical contract the parity check relies on."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from exporter.lower.executorch import lower, torchao_config
from exporter.quant.formats import int_format
from exporter.quant.primitives import clip_weight, fake_quantize_activation_per_token, fake_quantize_weight
from exporter.quant.targets import get_target


def _run_pte(module: nn.Module, example: torch.Tensor) -> torch.Tensor:
    from runtimes.executorch_runner import executorch_runtime

    program = torch.export.export(module, (example,), strict=False)
    # Keep the program's buffer referenced while it runs (in ad-hoc probes, passing a temporary bytes object
    # to load_program made later executions fail now and then).
    data, _ = lower({"forward": program}, {})
    loaded = executorch_runtime().load_program(data)
    return loaded.load_method("forward").execute((example,))[0]


@pytest.mark.parametrize("clip", [1.0, 0.9])
@pytest.mark.parametrize("fmt_name", ["8da8_pc", "8da4_g32", "8da4_g64", "8da4_g128"])
def test_quantized_linear_matches_simulation(fmt_name, clip):
    """int8 per channel and int4 groups (bf16 scales, codes from float32 scales) equal the simulation to
    float round-off; simulating int4 with float32 scales instead is off by ~1e-3 relative. With a
    calibrated clip ratio the lowering clamps the weights before torchao quantises them; the simulation
    must take its codes from the clamped weights too (a clamped negative weight lands on -7, not -8), or
    it is off by one code step (~1e-1 relative) wherever a weight was clipped."""
    from torchao.quantization import FqnToConfig, quantize_

    torch.manual_seed(0)
    fmt = get_target("android").format_by_name(fmt_name)
    module = nn.Sequential(nn.Linear(512, 384)).eval()
    weight, bias = module[0].weight.detach().clone(), module[0].bias.detach().clone()
    with torch.no_grad():
        module[0].weight.copy_(clip_weight(weight, fmt, clip))  # what prepare_model hands torchao
    x = torch.randn(1, 9, 512) * 2
    quantize_(module, FqnToConfig(OrderedDict([("0", torchao_config(fmt, "linear"))])), filter_fn=None)
    got = _run_pte(module, x)
    simulated = nn.functional.linear(
        fake_quantize_activation_per_token(x), fake_quantize_weight(weight, fmt, clip), bias
    )
    scale = simulated.abs().max()
    assert (got - simulated).abs().max() / scale < 1e-5


@pytest.mark.parametrize("fmt_name", ["8da8_pc", "8da4_g32", "8da4_g128"])
def test_gptq_grid_weights_keep_their_codes_through_xnnpack(fmt_name):
    """GPTQ's grid weights (exporter/quant/gptq.py), handed to torchao as a plan's weights are, give the .pte
    GPTQ's codes: its output equals the simulation of those codes to float round-off, not the nearest ones."""
    from torchao.quantization import FqnToConfig, quantize_

    from exporter.quant.gptq import GptqOptions, gptq_codes, grid_weight

    torch.manual_seed(1)
    fmt = get_target("android").format_by_name(fmt_name)
    module = nn.Sequential(nn.Linear(512, 384)).eval()
    weight, bias = module[0].weight.detach().clone(), module[0].bias.detach().clone()
    inputs = torch.randn(2000, 512) @ torch.randn(512, 512) * 0.1
    codes = gptq_codes(weight, inputs.T @ inputs / len(inputs), fmt, 0.9, GptqOptions())
    grid = grid_weight(weight, codes, fmt, 0.9)
    with torch.no_grad():
        module[0].weight.copy_(clip_weight(grid, fmt, 1.0))
    x = torch.randn(1, 9, 512) * 2
    quantize_(module, FqnToConfig(OrderedDict([("0", torchao_config(fmt, "linear"))])), filter_fn=None)
    got = _run_pte(module, x)
    simulated = nn.functional.linear(fake_quantize_activation_per_token(x), fake_quantize_weight(grid, fmt, 1.0), bias)
    nearest = nn.functional.linear(fake_quantize_activation_per_token(x), fake_quantize_weight(weight, fmt, 0.9), bias)
    scale = simulated.abs().max()
    assert (got - simulated).abs().max() / scale < 1e-5
    assert (got - nearest).abs().max() / scale > 1e-3


# The android ladder's embedding rungs, and int2 in groups of 32: no longer offered (its cost in WER,
# benchmarks/results/embedding_rungs_android.md), still lowered for a plan that names it.
EMBEDDING_FORMATS = {f.name: f for f in get_target("android").ladder("embedding") if not f.is_float}
EMBEDDING_FORMATS["int2_g32"] = int_format(2, "group", 32)


@pytest.mark.parametrize("clip", [1.0, 0.8])
@pytest.mark.parametrize("fmt_name", sorted(EMBEDDING_FORMATS))
def test_quantized_embedding_matches_simulation(fmt_name, clip):
    from torchao.quantization import FqnToConfig, quantize_

    torch.manual_seed(0)
    fmt = EMBEDDING_FORMATS[fmt_name]
    module = nn.Sequential(nn.Embedding(1000, 384)).eval()
    weight = module[0].weight.detach().clone()
    with torch.no_grad():
        module[0].weight.copy_(clip_weight(weight, fmt, clip))
    ids = torch.tensor([[1, 5, 999, 17]])
    quantize_(module, FqnToConfig(OrderedDict([("0", torchao_config(fmt, "embedding"))])), filter_fn=None)
    assert torch.equal(_run_pte(module, ids), fake_quantize_weight(weight, fmt, clip)[ids])
