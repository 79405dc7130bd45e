"""Memory model, memory-budget controls, ONNX liveness and the shorter audio context."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from exporter.memory import (
    MemoryEstimate,
    WhisperShape,
    cross_cache_bytes,
    executorch_memory_plan,
    format_estimate,
    kv_cache_bytes,
    predict_before_lowering,
    self_cache_bytes,
)
from exporter.memory_budget import candidates, choose_settings, frames_for_seconds
from exporter.onnx_liveness import live_peak_bytes
from runtimes.errors import EdgeAsrError


def test_kv_cache_bytes_of_tiny_en(tiny_en):
    shape = WhisperShape.from_config(tiny_en.model.config)  # 4 decoder layers, d_model 384
    assert shape == WhisperShape(d_model=384, encoder_heads=6, encoder_layers=4, decoder_layers=4)
    assert self_cache_bytes(shape) == 2 * 4 * 448 * 384 * 4 == 5_505_024
    assert cross_cache_bytes(shape) == 2 * 4 * 1500 * 384 * 4 == 18_432_000
    assert cross_cache_bytes(shape, n_frames=1000) == 2 * 4 * 500 * 384 * 4
    assert kv_cache_bytes(shape) == 5_505_024 + 18_432_000


def test_prediction_follows_the_activation_controls(tiny_en):
    config = tiny_en.model.config
    full = predict_before_lowering(config, 40_000_000, 12_000_000, "executorch", 3000, "sdpa")
    eager = predict_before_lowering(config, 40_000_000, 12_000_000, "executorch", 3000, "eager")
    short = predict_before_lowering(config, 40_000_000, 12_000_000, "executorch", 1000, "eager")
    one_map = 6 * 1500 * 1500 * 4
    # eager plans exactly one attention map less per encoder than sdpa
    assert full.activation_bytes - eager.activation_bytes == one_map
    assert short.run_peak_bytes < eager.run_peak_bytes < full.run_peak_bytes
    # the Python runtime shares one arena (the largest method's); the C++ Module has one per method
    android = predict_before_lowering(config, 40_000_000, 12_000_000, "executorch", 3000, "sdpa", host="android")
    assert android.activation_bytes == sum(full.detail["planned_arena_per_method"].values())
    assert full.activation_bytes == max(full.detail["planned_arena_per_method"].values())
    assert full.load_peak_bytes == 40_000_000 + 12_000_000 + full.activation_bytes  # arena allocated at load
    assert android.load_peak_bytes == 40_000_000 + 12_000_000 + android.activation_bytes
    # the self-attention cache is in the plan; the cross keys/values the runner holds are added once
    shape = WhisperShape.from_config(config)
    assert full.run_peak_bytes == (
        40_000_000 + full.activation_bytes + full.workspace_bytes + full.features_bytes + cross_cache_bytes(shape)
    )


def test_onnx_run_peak_is_the_largest_phase_not_every_term(tiny_en):
    """ORT allocates as it runs: the log-mel, the encoder and decoding never hold their memory at once, so the
    run peak is the weights plus the largest phase; the decoding phase holds the whole KV cache."""
    config = tiny_en.model.config
    shape = WhisperShape.from_config(config)
    estimate = predict_before_lowering(config, 40_000_000, 12_000_000, "onnx", 3000, "explicit")
    phases = estimate.run_phases
    assert set(phases) == {"features", "encoder", "decoder"}
    # No decoder graph before lowering: its cache alone, the cross keys and values in half precision.
    assert phases["decoder"] == kv_cache_bytes(shape, cross_value_bytes=2) < kv_cache_bytes(shape)
    assert phases["encoder"] > cross_cache_bytes(shape, value_bytes=2)  # the encoder's outputs, inside its phase
    assert estimate.run_peak_bytes == estimate.weights_bytes + max(phases.values())
    every_term = estimate.weights_bytes + estimate.activation_bytes + estimate.features_bytes
    assert estimate.run_peak_bytes < every_term + estimate.kv_cache_bytes
    assert MemoryEstimate.from_dict(estimate.to_dict()) == estimate
    old = {k: v for k, v in estimate.to_dict().items() if k != "run_phases"}  # a file written before phases
    assert MemoryEstimate.from_dict(old).run_phases == {}
    table = "\n".join(format_estimate(estimate))
    assert "run phase: encoder" in table and "weights + the largest phase" in table


def test_memory_budget_picks_the_longest_context_that_fits(tiny_en):
    config = tiny_en.model.config
    weights, largest = 40_000_000, 12_000_000

    def peak(frames, attention):
        return predict_before_lowering(
            config, weights, largest, "executorch", frames, attention, host="android"
        ).peak_bytes

    settings, _ = choose_settings(config, "pte", weights, largest, peak(3000, "chunked"))
    assert (settings.n_frames, settings.attention, settings.chosen_by) == (3000, "chunked", "default")
    settings, _ = choose_settings(config, "pte", weights, largest, peak(3000, "chunked") - 1)
    assert (settings.n_frames, settings.attention, settings.chosen_by) == (2000, "chunked", "memory budget")
    # the other attentions are only taken when asked for, and then kept while the context shrinks
    settings, _ = choose_settings(config, "pte", weights, largest, peak(2000, "sdpa") + 1, attention="sdpa")
    assert (settings.n_frames, settings.attention, settings.chosen_by) == (2000, "sdpa", "memory budget")
    settings, _ = choose_settings(config, "pte", weights, largest, peak(3000, "eager"), attention="eager")
    assert (settings.n_frames, settings.attention) == (3000, "eager")
    with pytest.raises(EdgeAsrError, match=f"smallest predicted peak is {peak(500, 'chunked') / 1e6:.2f} MB"):
        choose_settings(config, "pte", weights, largest, peak(500, "chunked") - 1)
    # chunked attention saves the planned maps and four fifths of the workspace's one
    saved = peak(3000, "eager") - peak(3000, "chunked")
    shape = WhisperShape.from_config(config)
    assert saved > shape.attention_map_bytes(3000) * (2 + 0.8) - 16 * shape.hidden_bytes(3000)


def test_a_shorter_context_chosen_for_memory_is_warned_about(tiny_en, capsys):
    """Export says so when the memory budget costs the 30 s window (it costs accuracy, measured)."""
    from exporter.export import ExportOptions
    from exporter.export.budgeted import memory_settings
    from exporter.quant.pipeline import PlanOptions, make_plan

    plan = make_plan(
        tiny_en,
        None,
        PlanOptions(target="android", budget="45MB", order="uniform", calibration="minmax"),
        progress=False,
    )
    largest = max(layer.bytes for layer in plan.layers)
    full = predict_before_lowering(
        tiny_en.model.config, plan.total_bytes, largest, "executorch", 3000, "chunked", host="android"
    ).peak_bytes
    for memory_budget, warned in ((full, False), (full - 1, True)):
        settings = memory_settings("pte", tiny_en, plan, ExportOptions(memory_budget=str(memory_budget)))
        assert (settings.n_frames < 3000) == warned
        assert ("warning: the memory budget needs a 20 s audio context" in capsys.readouterr().err) == warned


def test_the_sherpa_layout_keeps_the_30_s_context(tiny_en):
    """sherpa-onnx feeds its encoder up to 3000 frames: the memory budget cannot shorten that layout's context,
    and says which layout can."""
    config = tiny_en.model.config
    weights, largest = 40_000_000, 12_000_000
    assert [c.n_frames for c in candidates("sherpa", None, None)] == [3000]
    assert len(candidates("onnx", None, None)) > 1
    full = predict_before_lowering(config, weights, largest, "onnx", 3000, "explicit", host="python").peak_bytes
    with pytest.raises(EdgeAsrError, match="use --onnx-layout edgeasr"):
        choose_settings(config, "sherpa", weights, largest, full - 1)


def test_user_settings_are_not_varied():
    assert [(c.n_frames, c.attention) for c in candidates("pte", 10, "eager")] == [(1000, "eager")]
    assert {c.attention for c in candidates("onnx", None, None)} == {"explicit"}
    assert {c.attention for c in candidates("pte", None, None)} == {"chunked"}
    from exporter.lower.registry import get_backend
    from exporter.lower.settings import ATTENTIONS, DEFAULT_ATTENTION
    from exporter.memory_budget import MemorySettings

    assert MemorySettings().attention == DEFAULT_ATTENTION == get_backend("pte").attentions[0]
    assert set(ATTENTIONS) == set(get_backend("pte").attentions)
    assert frames_for_seconds(7.5) == 750
    with pytest.raises(EdgeAsrError, match="outside"):
        frames_for_seconds(45)


def test_impossible_memory_budget_fails_before_any_work(tmp_path, run_cli):
    status, _, err = run_cli(
        "export",
        "--model",
        "tiny.en",
        "--budget",
        "45MB",
        "--memory-budget",
        "50MB",
        "--out",
        tmp_path / "x",
        "--calibration",
        "minmax",
        "--no-progress",
    )
    assert status == 2 and "smallest predicted peak" in err and "memory budget of 50.00 MB" in err
    assert not list(tmp_path.iterdir())


def test_corrupt_pte_memory_plan_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pte"
    bad.write_bytes(b"not a flatbuffer" * 64)
    with pytest.raises(EdgeAsrError, match="cannot read the memory plan"):
        executorch_memory_plan(bad)


def _graph(tmp_path):
    # x[1,1000] -> Relu a -> Reshape r (alias of a) -> Relu b -> Add(b, r) c -> Relu y (output)
    # live: a 4000; b +4000 = 8000; c +4000 = 12000 (a and b die after Add) ; y +4000 (output)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1000, 1])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Reshape", ["a", "shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["b"]),
        helper.make_node("Add", ["b", "r"], ["c"]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], [shape]), opset_imports=[helper.make_opsetid("", 17)]
    )
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    return path


def test_onnx_liveness_counts_live_tensors_and_aliases(tmp_path):
    path = _graph(tmp_path)
    assert live_peak_bytes(path, {}, count_outputs=False) == 12_000
    assert live_peak_bytes(path, {}, count_outputs=True) == 12_000  # y comes after a and b are freed
    assert live_peak_bytes(path, {}, count_outputs=True, count_inputs=True) == 16_000


def test_onnx_liveness_rejects_a_corrupt_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(EdgeAsrError, match="not a readable ONNX model"):
        live_peak_bytes(bad, {})


def test_short_audio_context_encoder(tiny_en, shared_data, monkeypatch):
    from runtimes import torch_runner  # encode_frames lives with the reference runner
    from runtimes.audio import load_audio, log_mel
    from runtimes.torch_runner import TorchRunner

    clip = load_audio(shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav")
    features = torch.from_numpy(log_mel(clip, 80))[None]
    encoder = tiny_en.model.model.encoder
    with torch.no_grad():
        reference = encoder(features).last_hidden_state
        explicit = torch_runner.encode_frames(encoder, features[..., :1000])
    assert explicit.shape == (1, 500, 384)
    # the explicit path is HF's computation: forced onto all 3000 frames it reproduces HF's output
    monkeypatch.setattr(torch_runner, "FULL_FRAMES", 10**6)
    with torch.no_grad():
        assert torch.allclose(torch_runner.encode_frames(encoder, features), reference, atol=1e-5)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="even number of frames"):
        torch_runner.encode_frames(encoder, features[..., :999])
    runner = TorchRunner(tiny_en, n_frames=1000)
    assert runner.window_samples == 160_000
    assert "no longer" in runner.transcribe(clip).text.lower()
    assert np.isclose(runner.transcribe(clip).audio_seconds, clip.size / 16000)


def test_runner_feeds_contiguous_features_of_the_artifact_context(tiny_en):
    """ExecuTorch refuses non-contiguous inputs, so a shorter context must not hand it a strided view."""
    import numpy as np

    from runtimes.base import Runner

    seen = []

    class Recorder(Runner):
        def encode(self, features):
            seen.append((features.shape, features.flags.c_contiguous))
            raise StopIteration  # nothing to decode

        def start_decoder(self, encoded):
            raise AssertionError("not reached")

    runner = Recorder(tiny_en.tokenizer, tiny_en.special, 80, n_frames=1000)
    with pytest.raises(StopIteration):
        runner.transcribe(np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32))
    assert seen == [((80, 1000), True)]
