"""NF4 + LoRA to ExecuTorch (.pte, XNNPACK), which has no NF4 kernel.

The model trained in PyTorch is the NF4 base plus float LoRA branches. XNNPACK runs Linears in float32 or with
int8 per-channel / int4 group-32 weights and dynamically quantised int8 activations (see quant/targets.py), so
the .pte approximates the trained model. Modes (measured in benchmarks/pqm_export.py):

  branch-int8  base = the NF4-dequantised weights re-quantised to int8 per channel (8da8w); each LoRA branch
               stays as two small float32 Linears beside it (XNNPACK delegates them as fp32 GEMMs);
  branch-int4  the same with int4 groups of 32 (8da4w): the size of NF4, a second 4-bit rounding of the base;
  merged-int8  W_nf4 + s B A merged in float32, then quantised once to int8 per channel: no branch at run time,
  merged-int4  ... or to int4 groups of 32 (the usual "merge in full precision, quantise once" advice).

The token embedding uses the same 4/8-bit groups of 32 as the NF4 plan (quantized embedding kernels), the
convolutions stay float32. The plan stored in the .pte (target android) says which format each base Linear has.
In branch modes the LoRA tensors go to a per-user adapter.ptd beside a base program all users of the base
share (exporter/lower/pte_adapter.py); merged modes make one program per user.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from torch import nn

from exporter.lower.settings import PTE_MODES
from exporter.models import WhisperBundle
from exporter.personalize.lora import lora_modules
from exporter.quant.formats import QuantFormat, int_format
from exporter.quant.plan import QuantPlan
from exporter.quant.simulate import apply_plan
from runtimes.contract import PTE_ADAPTER_FILE
from runtimes.errors import EdgeAsrError


def _linear_format(mode: str) -> QuantFormat:
    if mode.endswith("int8"):
        return int_format(8, "per_channel", activation="dynamic_int8_per_token", prefix="8da")
    return int_format(4, "group", 32, activation="dynamic_int8_per_token", prefix="8da")


def pte_plan(nf4_plan: QuantPlan, mode: str) -> QuantPlan:
    """The android-target plan the .pte runs: base Linears per `mode`, the embedding as in the NF4 plan."""
    if mode not in PTE_MODES:
        raise EdgeAsrError(f"unknown ExecuTorch LoRA mode {mode!r}; choose one of {', '.join(PTE_MODES)}")
    linear = _linear_format(mode)
    layers = []
    for layer in nf4_plan.layers:
        fmt = layer.format
        if layer.kind == "linear" and fmt.kind == "nf4":
            fmt = linear
        elif layer.kind == "embedding" and not fmt.is_float:
            fmt = int_format(fmt.bits, "group", fmt.group_size)  # the android ladder's name, same numerics
        layers.append(dataclasses.replace(layer, format=fmt, bytes=fmt.weight_bytes(tuple(layer.shape)), clip=1.0))
    return dataclasses.replace(
        nf4_plan,
        target="android",
        layers=layers,
        notes=list(nf4_plan.notes) + [f"ExecuTorch LoRA mode {mode}: NF4 base re-quantised to {linear.name}"],
    )


def pte_model(lora_bundle: WhisperBundle, nf4_plan: QuantPlan, mode: str) -> WhisperBundle:
    """The model handed to the ExecuTorch lowering: base Linears hold their NF4-dequantised weights (what the
    adapters were trained against), other layers their float weights (the .pte plan quantises them once), and
    the LoRA branches are kept or merged per `mode`."""
    if not lora_modules(lora_bundle.model):
        raise EdgeAsrError("the model carries no LoRA adapters")
    nf4_linears = dataclasses.replace(
        nf4_plan, layers=[layer for layer in nf4_plan.layers if layer.kind == "linear" and layer.format.kind == "nf4"]
    )
    model = apply_plan(lora_bundle.model, nf4_linears)
    if mode.startswith("merged"):
        for name, module in lora_modules(model).items():
            merged = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            merged.weight = nn.Parameter(module.merged_weight(), requires_grad=False)
            if module.bias is not None:
                merged.bias = nn.Parameter(module.bias.detach().clone(), requires_grad=False)
            model.set_submodule(name, merged)
    bundle = copy.copy(lora_bundle)
    bundle.model = model.eval()
    return bundle


def lower_executorch_lora(
    lora_bundle: WhisperBundle,
    nf4_plan: QuantPlan,
    mode: str,
    out_path: Path,
    lora_info: dict | None = None,
    layout: str = "edgeasr",
) -> QuantPlan:
    """Write the .pte for NF4 + LoRA in `mode`; returns the plan stored in it.

    Branch modes keep the adapter apart (with `lora_info`): `out_path` is a base program any user of this
    base and LoRA configuration shares, and the user's LoRA tensors go to adapter.ptd beside it
    (exporter/lower/pte_adapter.py). Merged modes have no adapter left to keep apart: one program per user.
    """
    from exporter.lower.executorch import lower_executorch

    plan = pte_plan(nf4_plan, mode)
    model = pte_model(lora_bundle, nf4_plan, mode)
    if mode.startswith("branch") and lora_info is not None:
        from exporter.lower.pte_adapter import lower_with_adapter_file

        lower_with_adapter_file(model, plan, out_path, out_path.parent / PTE_ADAPTER_FILE, lora_info, mode, layout)
    else:
        lower_executorch(model, plan, out_path, layout=layout)
    return plan
