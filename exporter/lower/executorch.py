"""Lowering a plan to one ExecuTorch program (.pte) for XNNPACK, in explicit stages.

1. prepare   copy the float model, untie the output projection from the token embedding, clip each weight
             to the plan's calibrated range (so torchao's absmax-based scale equals the plan's scale);
2. quantise  torchao configs mapped per layer name with FqnToConfig: Linear -> 8da8w per channel or 8da4w
             groups of 32 (int8 dynamic activations; never weight-only int-N on Linear, which XNNPACK
             delegates and silently computes wrong in executorch 1.5.1), token embedding -> weight-only
             int8/4/2 groups of 32 (quantized embedding kernels), fp32 layers untouched;
3. capture   torch.export of the `encoder` and the KV-cache `text_decoder` (whisper_modules.py);
4. lower     to_edge_transform_and_lower with the XNNPACK partitioner, delegated subgraphs kept in the
             modules' order (program_order.py), plus constant methods carrying the plan JSON, the special
             tokens and the config (read back by runners and the Android app);
5. serialise to_executorch, then an atomic write of the bytes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from exporter.choices import PTE_LAYOUTS
from exporter.io import atomic_path
from exporter.lower.program_order import keep_program_order
from exporter.lower.settings import ATTENTIONS, DEFAULT_ATTENTION
from exporter.lower.whisper_modules import (
    RunnerEncoderModule,
    RunnerTextDecoderModule,
    WhisperEncoderModule,
    WhisperTextDecoderModule,
    register_chunked_attention,
)
from exporter.models import WhisperBundle
from exporter.quant.formats import QuantFormat
from exporter.quant.plan import QuantPlan
from exporter.quant.primitives import clip_weight
from runtimes.audio import FULL_FRAMES
from runtimes.contract import PTE_EOS_IDS, PTE_LAYOUT
from runtimes.errors import EdgeAsrError

MAX_SEQ_LEN = 448
EXECUTORCH_TARGETS = ("android", "executorch")
# HF attention implementations the encoder can be captured with, the default first. Eager: XNNPACK takes
# every op of it; sdpa decomposes with a "safe softmax" (eq / any / where over each attention map) that runs
# as portable kernels between delegates, and plans one attention map more (README: runtime comparison).


def _check_target(plan: QuantPlan) -> None:
    if plan.target not in EXECUTORCH_TARGETS:
        raise EdgeAsrError(
            f"plan target {plan.target!r} cannot be lowered to ExecuTorch (its formats are not "
            f"what XNNPACK runs); make the plan with --target android"
        )


def prepare_model(bundle: WhisperBundle, plan: QuantPlan, attention: str = DEFAULT_ATTENTION) -> nn.Module:
    """A float copy, untied, with the plan's clipping applied; the original bundle is not touched.

    `attention` picks the attention implementation for the capture: the same arithmetic each way, but the
    memory plans differ (chunked plans no attention map, eager two, sdpa three; exporter/memory.py).
    """
    if attention not in ATTENTIONS:
        raise EdgeAsrError(f"unknown attention {attention!r}; choose one of {', '.join(ATTENTIONS)}")
    model = copy.deepcopy(bundle.model).eval()
    # The .pte records each constant's requires_grad flag; an inference artifact must not depend on whether
    # the caller's parameters were frozen (LoRA training freezes a shared encoder, for one).
    model.requires_grad_(False)
    # the deep copy has its own config; "chunked" is edgeasr's own entry in transformers' registry
    model.config._attn_implementation = register_chunked_attention() if attention == "chunked" else attention
    model.proj_out.weight = nn.Parameter(model.proj_out.weight.detach().clone(), requires_grad=False)
    model.model.decoder.embed_tokens.padding_idx = None  # padding_idx blocks the quantised-embedding fusion
    for layer in plan.layers:
        module = model.get_submodule(layer.name)
        module.weight = nn.Parameter(clip_weight(module.weight.detach(), layer.format, layer.clip), requires_grad=False)
    return model


def torchao_config(fmt: QuantFormat, kind: str):
    """The torchao config that makes XNNPACK run `fmt` for a layer of `kind`; None keeps it float."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerAxis, PerGroup

    if fmt.is_float:
        return None
    dtype = getattr(torch, f"int{fmt.bits}")
    granularity = PerGroup(fmt.group_size) if fmt.granularity == "group" else PerAxis(0)
    if kind == "embedding":
        return IntxWeightOnlyConfig(weight_dtype=dtype, granularity=granularity)
    if kind == "linear" and fmt.activation == "dynamic_int8_per_token":
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=dtype, weight_granularity=granularity)
    raise EdgeAsrError(f"format {fmt.name} on a {kind} layer has no XNNPACK lowering")


def quantize_model(model: nn.Module, plan: QuantPlan) -> None:
    from torchao.quantization import FqnToConfig, quantize_

    mapping = OrderedDict((layer.name, torchao_config(layer.format, layer.kind)) for layer in plan.layers)
    quantize_(model, FqnToConfig(mapping), filter_fn=None)


def constant_methods(
    bundle: WhisperBundle,
    plan: QuantPlan,
    n_frames: int = FULL_FRAMES,
    attention: str = DEFAULT_ATTENTION,
    layout: str = "edgeasr",
) -> dict:
    config = bundle.model.config
    extra = {PTE_LAYOUT: layout, PTE_EOS_IDS: [bundle.special.eot]} if layout == "runner" else {}
    return extra | {
        "get_n_frames": n_frames,  # the encoder's input length: the runner windows audio to n_frames / 100 s
        "edgeasr_attention": attention,  # how the encoder was captured (for the memory model and reports)
        "edgeasr_plan": plan.artifact_json(),
        "edgeasr_special_tokens": json.dumps(bundle.special.to_dict(), sort_keys=True),
        "get_max_seq_len": MAX_SEQ_LEN,
        "decoder_start_token_id": bundle.special.sot,
        "get_eos_id": bundle.special.eot,
        "get_vocab_size": config.vocab_size,
        "get_n_mels": config.num_mel_bins,
        "use_kv_cache": True,
    }


# ExecuTorch's external-constant tag for per-user LoRA tensors (exporter/lower/pte_adapter.py). The runtime
# never reads it: the data file is whatever path the caller loads beside the program.
ADAPTER_TAG = "adapter"


def is_adapter_tensor(name: str) -> bool:
    return name.endswith(("lora_A", "lora_B"))


def tag_adapter_constants(program: torch.export.ExportedProgram, example_inputs: tuple):
    """`program` re-captured with its LoRA parameters tagged for the `.ptd` (ExecuTorch's pass works on the
    unlifted module, whose constants are get_attr nodes named by their module path)."""
    from executorch.exir.passes.external_constants_pass import delegate_external_constants_pass_unlifted

    unlifted = program.module()
    delegate_external_constants_pass_unlifted(
        unlifted, lambda node: ADAPTER_TAG if is_adapter_tensor(str(node.target)) else None
    )
    return torch.export.export(unlifted, example_inputs, strict=False)


def capture(
    model: nn.Module, n_mels: int, n_frames: int = FULL_FRAMES, layout: str = "edgeasr", adapter_apart: bool = False
) -> dict:
    """The two methods, exported. `adapter_apart`: LoRA parameters tagged for a separate data file."""
    if layout not in PTE_LAYOUTS:
        raise EdgeAsrError(f"unknown .pte layout {layout!r}; choose {' or '.join(PTE_LAYOUTS)}")
    runner = layout == "runner"
    encoder = (RunnerEncoderModule if runner else WhisperEncoderModule)(model).eval()
    decoder = (RunnerTextDecoderModule if runner else WhisperTextDecoderModule)(model, MAX_SEQ_LEN).eval()
    features = torch.zeros(1, n_mels, n_frames)
    with torch.no_grad():
        encoded = encoder(features)
        cross = (encoded,) if runner else tuple(encoded)
        inputs = {
            "encoder": (features,),
            "text_decoder": (torch.tensor([[0]], dtype=torch.long), *cross, torch.tensor([0], dtype=torch.long)),
        }
        modules = {"encoder": encoder, "text_decoder": decoder}
        programs = {name: torch.export.export(modules[name], inputs[name], strict=False) for name in modules}
        if adapter_apart:
            programs = {name: tag_adapter_constants(program, inputs[name]) for name, program in programs.items()}
    return programs


def lower(programs: dict, constants: dict, program_order: bool = True) -> tuple[bytes, dict[str, bytes]]:
    """(the program's bytes, its separate data files by name: empty unless constants were tagged).

    `program_order`: delegated subgraphs keep the order the modules compute in (exporter/lower/program_order.py);
    False leaves ExecuTorch's breadth-first re-sort, which holds more tensors alive (kept to measure that)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower

    from exporter.lower.memory_planning import AliasedOutputsPlanning

    with keep_program_order() if program_order else contextlib.nullcontext():
        edge = to_edge_transform_and_lower(
            programs,
            partitioner=[XnnpackPartitioner()],
            compile_config=EdgeCompileConfig(_check_ir_validity=False, _skip_dim_order=True),
            constant_methods=constants,
        )
    program = edge.to_executorch(
        ExecutorchBackendConfig(
            extract_delegate_segments=True,
            do_quant_fusion_and_const_prop=True,
            run_reinplace_pass=True,  # the decoder's KV-cache writes (index_put) become in-place row writes
            # the decoder's in-place cache writes share their buffers' storage (memory_planning.py)
            memory_planning_pass=AliasedOutputsPlanning(alloc_graph_input=False),
        )
    )
    data = program.buffer
    with tempfile.TemporaryDirectory() as folder:  # the public way to the data files is through a folder
        program.write_tensor_data_to_file(folder)
        files = {path.name: path.read_bytes() for path in sorted(Path(folder).iterdir())}
    return data, files


def lower_executorch(
    bundle: WhisperBundle,
    plan: QuantPlan,
    out_path: Path,
    n_frames: int = FULL_FRAMES,
    attention: str = DEFAULT_ATTENTION,
    layout: str = "edgeasr",
    program_order: bool = True,
) -> Path:
    """Write the .pte for `plan`; returns its path. Nothing is left at `out_path` if any stage fails.

    `n_frames` < 3000 exports a shorter audio context (encoder input frames, see whisper_modules);
    `attention` the encoder's attention implementation. Both only change activation memory, not weights.
    `layout` "runner": the methods ExecuTorch's ASR runner (`Seq2SeqRunner`, Android `AsrModule`) calls: one
    encoder output, text_decoder(ids, encoder_output, cache_position), and `get_eos_ids`.
    """
    _check_target(plan)
    model = prepare_model(bundle, plan, attention)
    quantize_model(model, plan)
    programs = capture(model, bundle.n_mels, n_frames, layout)
    data, _ = lower(programs, constant_methods(bundle, plan, n_frames, attention, layout), program_order)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(data)
    return out_path
