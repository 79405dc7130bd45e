"""NF4 + LoRA export: ONNX (MatMulBnb4 + LoRA inputs) reproduces the PyTorch model, adapters switch per run;
the ExecuTorch preparation (re-quantised base, float or merged LoRA) is checked without lowering (a .pte
export takes minutes; benchmarks/pqm_export.py lowers and measures every mode)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from exporter.personalize.base import Nf4Options, nf4_plan
from exporter.personalize.lora import AdapterInfo, LoraConfig, lora_modules, lora_state, save_adapter
from runtimes.errors import EdgeAsrError

CONFIG = LoraConfig(rank=4, alpha=8, dropout=0.0, targets=("q", "v"), scope=("decoder",))


def _random_adapter(bundle, config: LoraConfig, seed: int):
    from exporter.personalize.run import adapted_model

    adapted = adapted_model(bundle, config, seed)
    generator = torch.Generator().manual_seed(seed)
    for module in lora_modules(adapted.model).values():
        module.lora_B.data.normal_(0.0, 0.05, generator=generator)
    return adapted


def _first_logits(runner, samples):
    from exporter.export import first_logits as first
    from runtimes.audio import log_mel

    return first(runner, log_mel(samples, runner.n_mels))


def test_onnx_lora_export_parity_and_adapter_switch(run_cli, tiny_en, shared_data, tmp_path):
    from exporter.lower.onnx_lora import graph_adapter_names, write_adapters_for_artifact
    from exporter.quant.simulate import simulate
    from runtimes.audio import load_audio
    from runtimes.onnx_runner import OnnxRunner
    from runtimes.torch_runner import TorchRunner

    base = Nf4Options().to_dict()
    user_a = _random_adapter(tiny_en, CONFIG, seed=1)
    save_adapter(tmp_path / "a", lora_state(user_a.model), AdapterInfo("tiny.en", CONFIG, base))
    calib = tmp_path / "calib"
    calib.mkdir()
    clips = sorted((shared_data / "an4" / "wav" / "test" / "mdms2").glob("*.wav"))[:2]
    for clip in clips:
        (calib / clip.name).symlink_to(clip)

    out = tmp_path / "onnx"
    status, stdout, stderr = run_cli(
        "export",
        "--model",
        "tiny.en",
        "--target",
        "onnx",
        "--onnx-layout",
        "edgeasr",  # the layout whose per-user adapter files swap at run time
        "--budget",
        "45MB",
        "--lora",
        tmp_path / "a",
        "--calib",
        calib,
        "--out",
        out,
        "--no-progress",
    )
    assert status == 0, stderr
    summary = json.loads((out / "export.json").read_text())
    parity = summary["artifacts"][0]["parity"]
    assert parity["matching"] == parity["clips"] == 2 and parity["logits_relative_max_error"] < 1e-3
    assert {"encoder.onnx_adapter", "decoder.onnx_adapter", "adapter.safetensors"} <= {p.name for p in out.iterdir()}
    names = graph_adapter_names(out / "decoder.onnx")
    assert names["model.decoder.layers.0.self_attn.q_proj.lora_a"] == [384, "lora_rank"]

    # another user's adapter, another rank, on the same base artifact
    config_b = LoraConfig(rank=2, alpha=4, dropout=0.0, targets=("q", "v"), scope=("decoder",))
    user_b = _random_adapter(tiny_en, config_b, seed=2)
    info_b = {"model_id": "tiny.en", "base": base, "lora": config_b.to_dict()}
    write_adapters_for_artifact(out, lora_state(user_b.model), info_b, tmp_path / "b")
    samples = load_audio(clips[0])
    plan = nf4_plan(tiny_en)
    expected_b = _first_logits(TorchRunner(simulate(user_b, plan)), samples)
    got_b = _first_logits(OnnxRunner(out, adapters=tmp_path / "b"), samples)
    got_a = _first_logits(OnnxRunner(out), samples)
    scale = np.abs(expected_b).max()
    assert np.abs(got_b - expected_b).max() / scale < 1e-3
    assert np.abs(got_a - expected_b).max() / scale > 1e-2  # the defaults are user A's adapter

    with pytest.raises(EdgeAsrError, match="trained for model_id"):
        write_adapters_for_artifact(out, lora_state(user_b.model), {**info_b, "model_id": "base"}, tmp_path / "c")
    other = _random_adapter(tiny_en, LoraConfig(rank=2, targets=("q", "fc1"), scope=("decoder",)), seed=3)
    with pytest.raises(EdgeAsrError, match="lacks|no LoRA inputs for"):
        write_adapters_for_artifact(out, lora_state(other.model), info_b, tmp_path / "d")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_export_lora_rejects_adapter_of_another_model(run_cli, tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "a").mkdir()
    save_file({"x": torch.zeros(1)}, str(tmp_path / "a" / "adapter.safetensors"))
    (tmp_path / "a" / "adapter.json").write_text(
        json.dumps({"schema_version": 1, "model_id": "base", "base": Nf4Options().to_dict(), "lora": CONFIG.to_dict()})
    )
    status, _, err = run_cli(
        "export",
        "--model",
        "tiny.en",
        "--target",
        "onnx",
        "--budget",
        "45MB",
        "--lora",
        tmp_path / "a",
        "--out",
        tmp_path / "o",
    )
    assert status == 2 and "trained for model 'base'" in err and not (tmp_path / "o").exists()


def test_pte_modes_prepare_the_trained_model(tiny_en):
    from exporter.lower.executorch_lora import pte_model, pte_plan
    from exporter.personalize.lora import LoRALinear
    from exporter.quant.nf4 import fake_quantize_nf4

    plan = nf4_plan(tiny_en)
    user = _random_adapter(tiny_en, CONFIG, seed=1)
    for mode, linear_format in (("branch-int8", "8da8_pc"), ("merged-int4", "8da4_g32")):
        stored = pte_plan(plan, mode)
        assert stored.target == "android"
        assert {lp.format.name for lp in stored.layers if lp.kind == "linear"} == {linear_format}
        assert {lp.format.name for lp in stored.layers if lp.kind == "embedding"} == {"int4_g32"}
    name = "model.decoder.layers.1.self_attn.q_proj"
    fmt = plan.layer(name).format
    w_nf4 = fake_quantize_nf4(tiny_en.model.get_submodule(name).weight, fmt)
    branch = pte_model(user, plan, "branch-int8").model
    assert isinstance(branch.get_submodule(name), LoRALinear)
    assert torch.equal(branch.get_submodule(name).weight, w_nf4)  # the base the adapter was trained on
    assert torch.equal(branch.model.decoder.embed_tokens.weight, tiny_en.model.model.decoder.embed_tokens.weight)
    merged = pte_model(user, plan, "merged-int8").model.get_submodule(name)
    lora = lora_modules(user.model)[name]
    assert type(merged) is torch.nn.Linear
    assert torch.allclose(merged.weight, w_nf4 + lora.scaling * lora.lora_B @ lora.lora_A, atol=1e-6)
    with pytest.raises(EdgeAsrError, match="no LoRA"):
        pte_model(copy.copy(tiny_en), plan, "branch-int8")


@pytest.mark.slow
def test_encoder_feed_forward_adapters_follow_the_sliced_blocks(tiny_en, shared_data, tmp_path):
    """An adapter on the encoder's fc1 / fc2, which the ONNX encoder calls once per position slice
    (exporter/lower/onnx.py, FFN_SLICES): each call gets its own branch on one set of adapter weights, and
    the pair computes what the PyTorch model does (measured: 5e-5 relative)."""
    import onnx

    from exporter.lower.onnx import FFN_SLICES
    from exporter.lower.onnx_sherpa import lower_onnx_sherpa_lora
    from exporter.quant.simulate import simulate
    from runtimes.audio import load_audio
    from runtimes.onnx_runner import OnnxRunner
    from runtimes.torch_runner import TorchRunner

    config = LoraConfig(rank=2, alpha=4, dropout=0.0, targets=("q", "fc1", "fc2"), scope=("encoder", "decoder"))
    user = _random_adapter(tiny_en, config, seed=5)
    plan = nf4_plan(tiny_en)
    lower_onnx_sherpa_lora(user, plan, tmp_path, {"model_id": "tiny.en", "base": {}, "lora": config.to_dict()})
    graph = onnx.load(tmp_path / "encoder.onnx").graph
    branches = [n for n in graph.node if n.name.startswith("model.encoder.layers.0.fc1/LoraA")]
    assert len(branches) == FFN_SLICES and len({n.output[0] for n in branches}) == FFN_SLICES
    assert sum(i.name == "model.encoder.layers.0.fc1.lora_a" for i in graph.initializer) == 1
    samples = load_audio(shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav")
    expected = _first_logits(TorchRunner(simulate(user, plan)), samples)
    got = _first_logits(OnnxRunner(tmp_path), samples)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-3
