"""Planning on real clips with tiny.en: sensitivity, calibration, plan JSON, simulation, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from exporter.data import load_dataset
from exporter.quant.formats import FP32
from exporter.quant.layers import quantizable_layers
from exporter.quant.pipeline import PlanOptions, make_plan, observe_user
from exporter.quant.plan import QuantPlan
from exporter.quant.primitives import fake_quantize_weight, quantize_weight
from exporter.quant.simulate import apply_plan, simulate
from exporter.quant.targets import get_target
from runtimes.audio import load_audio
from runtimes.errors import EdgeAsrError
from runtimes.torch_runner import TorchRunner


def test_fake_quantization_error_shrinks_with_bits():
    w = torch.randn(64, 96, generator=torch.Generator().manual_seed(0))
    errors = [
        float((fake_quantize_weight(w, get_target("sim").format_by_name(f"int{b}_pc")) - w).abs().mean())
        for b in (2, 4, 8, 16)
    ]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-4
    codes, scale = quantize_weight(w, get_target("android").format_by_name("8da4_g32"))
    assert codes.min() >= -8 and codes.max() <= 7 and scale.shape == (64 * 3, 1)


def test_signed_max_rule_puts_each_peak_on_the_lowest_code_and_errs_less():
    w = torch.randn(96, 256, generator=torch.Generator().manual_seed(1))
    w[0, :32] = 0.0  # an all-zero group gets codes 0, not a division by zero
    stored = get_target("onnx").format_by_name("mnb4_g32")
    assert (stored.scale_rule, stored.scale_dtype) == ("signed_max", "float16")
    signed = replace(stored, scale_dtype="float32")  # the rule itself; float16 scales then round the peak
    codes, scale = quantize_weight(w, signed)
    groups = w.reshape(-1, 32)
    peak = groups.gather(1, groups.abs().argmax(1, keepdim=True))
    nonzero = peak[:, 0] != 0
    assert codes.min() >= -8 and codes.max() <= 7 and bool((codes[0] == 0).all())
    assert bool((codes.gather(1, groups.abs().argmax(1, keepdim=True))[nonzero] == -8).all())
    assert bool(((codes * scale).gather(1, groups.abs().argmax(1, keepdim=True)) == peak)[nonzero].all())
    assert bool((scale < 0).any()) and bool((scale > 0).any())  # the scale carries the peak's sign
    half = replace(signed, scale_rule="half_range")
    signed_error = float(((fake_quantize_weight(w, signed) - w) ** 2).mean())
    assert signed_error < 0.9 * float(((fake_quantize_weight(w, half) - w) ** 2).mean())
    assert signed.weight_bytes((96, 256)) == half.weight_bytes((96, 256))
    # Stored as float16 (ggml's q4_0 does so too), each peak comes back within half's rounding, 2^-11.
    codes16, scale16 = quantize_weight(w, stored)
    assert torch.equal(codes16, codes) and torch.equal(scale16, scale.half().float())
    assert (
        float(((codes16 * scale16).gather(1, groups.abs().argmax(1, keepdim=True)) / peak)[nonzero].sub(1).abs().max())
        <= 2**-11
    )
    assert stored.weight_bytes((96, 256)) == signed.weight_bytes((96, 256)) - 96 * 8 * 2


@pytest.fixture(scope="module")
def user(tiny_en, shared_data):
    an4 = load_dataset(shared_data / "an4" / "manifest.jsonl")
    return observe_user(tiny_en, an4.filter(split="train", gender="female"), n_clips=4, progress=False)


@pytest.mark.slow
def test_sensitivity_uses_real_frames_and_all_layers(tiny_en, user):
    layers = quantizable_layers(tiny_en.model)
    assert len(layers) == 68  # 2 convs + 4*6 encoder + 4*10 decoder linears + embedding + output projection
    obs = user.observations
    first = obs.clips[0]
    conv2_values = obs.per_layer["model.encoder.conv2"].abs_values[0]
    assert conv2_values.numel() == 384 * first.encoder_frames  # padding frames are not in the statistic
    assert all(obs.per_layer[l.name].abs_values for l in layers)


@pytest.mark.slow
@pytest.mark.parametrize("calibration", ["minmax", "cosine", "hessian"])
def test_plan_fits_budget_and_round_trips(tiny_en, user, tmp_path, calibration):
    plan = make_plan(
        tiny_en, user, PlanOptions(target="android", budget="60MB", calibration=calibration), progress=False
    )
    assert plan.total_bytes <= 60_000_000
    assert plan.personalised and plan.calibration_clips == 4
    formats = plan.format_counts()
    assert set(formats) <= {"fp32", "8da8_pc", "8da4_g32", "int8_g32", "int4_g32", "int2_g32"}
    clips = [l.clip for l in plan.layers if not l.format.is_float]
    if calibration == "minmax":
        assert set(clips) == {1.0}
    else:
        assert all(0 < c <= 1 for c in clips) and min(clips) < 1.0
    plan.save(tmp_path / "plan.json")
    again = QuantPlan.load(tmp_path / "plan.json")
    assert again.to_dict() == plan.to_dict()
    assert json.loads((tmp_path / "plan.json").read_text())["totals"]["total"] == plan.total_bytes


@pytest.mark.slow
def test_same_inputs_same_plan(tiny_en, user):
    """The seeded order. The cosine search's repeatability is checked across processes by the fleet test
    (tests/test_fleet.py: a fleet user's files equal the single export's, default calibration)."""
    options = PlanOptions(target="onnx", budget="45MB", order="shuffled", calibration="minmax", seed=5)
    assert (
        make_plan(tiny_en, user, options, progress=False).to_json()
        == make_plan(tiny_en, user, options, progress=False).to_json()
    )


@pytest.mark.slow
def test_simulation_changes_the_model_only_as_planned(tiny_en, user, shared_data):
    plan = make_plan(tiny_en, user, PlanOptions(target="sim", budget="150MB"), progress=False)
    sim = apply_plan(tiny_en.model, plan)
    for layer in plan.layers:
        original = tiny_en.model.get_submodule(layer.name).weight
        simulated = sim.get_submodule(layer.name).weight
        if layer.format == FP32:
            assert torch.equal(original, simulated)
        else:
            assert not torch.equal(original, simulated)
    assert sim.proj_out.weight.data_ptr() != sim.model.decoder.embed_tokens.weight.data_ptr()  # untied
    clip = load_audio(shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav")
    text = TorchRunner(simulate(tiny_en, plan)).transcribe(clip).text
    assert "wait no longer" in text.lower()  # 150 MB of 230 keeps 16/15-bit weights: still hears


@pytest.mark.slow
def test_plan_and_eval_cli(run_cli, tiny_en, shared_data, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for src in sorted((shared_data / "an4" / "wav" / "train").rglob("*.wav"))[:3]:
        (calib / src.name).write_bytes(src.read_bytes())
    plan_path = tmp_path / "plan.json"
    status, out, err = run_cli(
        "plan",
        "--model",
        "tiny.en",
        "--target",
        "android",
        "--budget",
        "50MB",
        "--calib",
        calib,
        "--json",
        plan_path,
        "--no-progress",
    )
    assert status == 0, err
    assert "totals by category" in out and plan_path.is_file()
    status, out, err = run_cli(
        "eval",
        "--model",
        "tiny.en",
        "--plan",
        plan_path,
        "--data",
        shared_data / "an4" / "manifest.jsonl",
        "--split",
        "test",
        "--limit",
        "3",
        "--no-progress",
    )
    assert status == 0, err
    assert "android:myqasr/cosine" in out


def test_plan_errors(run_cli, tmp_path, shared_data):
    status, _, err = run_cli("plan", "--budget", "1MB", "--order", "uniform", "--calibration", "minmax")
    assert status == 2 and "cannot be met" in err and "Reachable" in err
    status, _, err = run_cli("plan", "--budget", "80MB")
    assert status == 2 and "needs calibration clips" in err
    (tmp_path / "bad.json").write_text("{}")
    status, _, err = run_cli("eval", "--data", shared_data / "an4" / "manifest.jsonl", "--plan", tmp_path / "bad.json")
    assert status == 2 and "schema version" in err


@pytest.mark.slow
@pytest.mark.parametrize("target", ["android", "onnx"])
def test_fill_and_knapsack_plans_use_the_budget_and_record_how(tiny_en, user, tmp_path, target):
    """On the real model: fill never ends below myQASR's first fit, knapsack records its measured per-rung
    costs (0 on float, none negative), both fit and round-trip through the plan JSON."""
    budget = {"android": "45MB", "onnx": "33MB"}[target]
    plans = {
        method: make_plan(
            tiny_en,
            user,
            PlanOptions(target=target, budget=budget, calibration="minmax", allocation=method, layer_cost="local"),
            False,
        )
        for method in ("myqasr", "fill", "knapsack")
    }
    for method, plan in plans.items():
        assert plan.allocation == method and plan.total_bytes <= plan.budget_bytes
        plan.save(tmp_path / f"{method}.json")
        assert QuantPlan.load(tmp_path / f"{method}.json").to_dict() == plan.to_dict()
    assert plans["myqasr"].total_bytes <= plans["fill"].total_bytes
    ladders = get_target(target).ladders
    for layer in plans["knapsack"].layers:
        assert len(layer.costs) == len(ladders[layer.kind]) and layer.costs[0] == 0.0
        assert all(c >= 0 for c in layer.costs)
    assert all(layer.costs is None for layer in plans["fill"].layers)
    # auto: fill's plan where that plan keeps every linear layer above the ladder's lowest rung (as here),
    # the knapsack's at a budget that forces some onto it
    lowest = ladders["linear"][-1].name
    assert not any(layer.format.name == lowest for layer in plans["fill"].layers)
    auto = make_plan(tiny_en, user, PlanOptions(target=target, budget=budget, calibration="minmax"), False)
    assert auto.to_dict() == plans["fill"].to_dict()
    tight = {"android": "35MB", "onnx": "20MB"}[target]
    auto = make_plan(tiny_en, user, PlanOptions(target=target, budget=tight, calibration="minmax"), False)
    knapsack = make_plan(
        tiny_en, user, PlanOptions(target=target, budget=tight, calibration="minmax", allocation="knapsack"), False
    )
    assert auto.allocation == "knapsack" and auto.to_dict() == knapsack.to_dict()
    one_rung = PlanOptions(target=target, budget=tight, calibration="minmax", one_rung=True)
    assert make_plan(tiny_en, user, one_rung, False).allocation == "fill"  # the constraint asked for is kept
    with pytest.raises(EdgeAsrError, match="knapsack measures each layer's cost on calibration clips"):
        make_plan(tiny_en, None, PlanOptions(target=target, budget=budget, allocation="knapsack"), False)
