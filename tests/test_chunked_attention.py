"""Chunked attention: eager's arithmetic over slices of the queries, so the .pte's encoder holds no whole
attention map (exporter/lower/whisper_modules.chunked_attention, `edgeasr export --attention chunked`)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from exporter.lower.settings import QUERY_CHUNKS
from exporter.memory import WhisperShape, executorch_memory_plan, predict_before_lowering


@pytest.mark.parametrize("length", [1500, 7, 1499])
@pytest.mark.parametrize("masked", [False, True])
def test_chunked_attention_is_eager_attention(length, masked):
    from transformers.models.whisper.modeling_whisper import eager_attention_forward

    from exporter.lower.whisper_modules import chunked_attention

    generator = torch.Generator().manual_seed(length)
    query, key, value = (torch.randn(1, 6, length, 64, generator=generator) for _ in range(3))
    mask = torch.randn(1, 1, length, length, generator=generator) if masked else None
    module = torch.nn.Module().eval()
    expected, _ = eager_attention_forward(module, query, key, value, mask, scaling=0.125)
    got, weights = chunked_attention(module, query, key, value, mask, scaling=0.125)
    assert weights is None and got.shape == expected.shape == (1, length, 6, 64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_encoder_uses_chunks_when_asked(tiny_en):
    """The attention registry falls back to eager for an unknown name, silently: prove the chunks run."""
    from exporter.lower import whisper_modules
    from exporter.lower.executorch import prepare_model

    calls = []
    original = whisper_modules.chunked_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    plan = SimpleNamespace(layers=[])  # no layer clipped: the float model
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(whisper_modules, "chunked_attention", counted)
        model = prepare_model(tiny_en, plan, "chunked")
        features = torch.randn(1, 80, 3000)
        with torch.no_grad():
            chunked = model.model.encoder(features).last_hidden_state
            eager = prepare_model(tiny_en, plan, "eager").model.encoder(features).last_hidden_state
    assert len(calls) == tiny_en.model.config.encoder_layers
    torch.testing.assert_close(chunked, eager, rtol=1e-5, atol=1e-5)


def test_the_default_export_is_chunked_and_plans_no_attention_map(toy_whisper, run_cli, shared_data, tmp_path):
    calib = shared_data / "english_misc" / "manifest.jsonl"
    out = tmp_path / "chunked"
    args = ["export", "--model", toy_whisper.model_id, "--target", "android", "--budget", "30MB"]
    args += ["--formats", "pte", "--n-calib", "4", "--calibration", "minmax", "--calib", calib, "--no-progress"]
    status, _, stderr = run_cli(*args, "--out", out)  # chunked is the default
    assert status == 0, stderr
    from runtimes.executorch_runner import read_pte_info

    assert read_pte_info(out / "model.pte").attention == "chunked"
    summary = json.loads((out / "export.json").read_text())
    assert summary["artifacts"][0]["parity"]["logits_relative_max_error"] < 0.05  # checked by export, too
    config = toy_whisper.model.config
    planned = executorch_memory_plan(out / "model.pte")
    predicted = predict_before_lowering(config, 0, 0, "executorch", 3000, "chunked")
    shape = WhisperShape.from_config(config)
    assert planned["encoder"] == predicted.detail["planned_arena_per_method"]["encoder"] + 64  # + one alignment
    assert planned["encoder"] < shape.attention_map_bytes(3000)  # not one whole map
    eager = predict_before_lowering(config, 0, 0, "executorch", 3000, "eager")
    saved = eager.workspace_bytes - predicted.workspace_bytes
    # one slice's scores and probabilities instead of a map, and no first-run constant (program order)
    assert saved == int(shape.attention_map_bytes(3000) * (1 - 2 / QUERY_CHUNKS)) + 42 * 10**6
