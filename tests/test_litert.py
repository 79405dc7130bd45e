"""LiteRT: the ladder's numerics, the LayerNorm fold, and (marked `litert`, run in .venv-litert by `make test`)
tiny.en exported, read back, transcribed and benchmarked through ai-edge-litert."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

from exporter.quant.fold import fold_layernorm_affine
from exporter.quant.formats import QuantFormat
from exporter.quant.primitives import quantize_weight
from exporter.quant.targets import get_target
from runtimes.errors import EdgeAsrError

HAS_CONVERTER = importlib.util.find_spec("litert_torch") is not None


def test_litert_ladder_uses_the_quantisers_rule():
    target = get_target("litert")
    assert [f.name for f in target.ladder("linear")] == ["fp32", "lrt8_pc", "lrt4_g32", "lrt4_g64", "lrt4_g128"]
    assert target.shares_tied_weights and target.folds_layernorms
    weight = torch.randn(8, 64) * 3
    int4 = target.format_by_name("lrt4_g32")
    codes, scales = quantize_weight(weight, int4)
    # ai-edge-quantizer: scale = absmax / 7 rounded to bfloat16 first, codes in [-7, 7] against that scale
    absmax = weight.reshape(-1, 32).abs().amax(dim=1, keepdim=True)
    expected_scale = (absmax / 7).to(torch.bfloat16).float()
    assert torch.equal(scales, expected_scale)
    assert torch.equal(codes.float(), torch.clamp(torch.round(weight.reshape(-1, 32) / expected_scale), -7, 7))
    assert int(codes.abs().max()) == 7
    # the plan JSON of the earlier targets does not change: the default rule is not written out
    assert "scale_rule" not in get_target("android").format_by_name("8da4_g32").to_dict()
    assert QuantFormat.from_dict(int4.to_dict()) == int4


def test_layernorm_fold_keeps_the_model_function(tiny_en):
    import copy

    folded = copy.deepcopy(tiny_en.model).eval()
    fold_layernorm_affine(folded)
    fold_layernorm_affine(folded)  # a second fold finds nothing left to fold
    assert not folded.model.encoder.layers[0].self_attn_layer_norm.elementwise_affine
    assert folded.model.decoder.layer_norm.elementwise_affine  # the tied output projection is left alone
    assert folded.proj_out.weight is folded.model.decoder.embed_tokens.weight
    features = torch.randn(1, 80, 3000)
    tokens = torch.tensor([[50257, 50362, 440, 1110]])
    with torch.no_grad():
        a = tiny_en.model(input_features=features, decoder_input_ids=tokens).logits
        b = folded(input_features=features, decoder_input_ids=tokens).logits
    assert torch.allclose(a, b, atol=2e-3, rtol=1e-4), float((a - b).abs().max())


@pytest.mark.skipif(HAS_CONVERTER, reason="the converter is installed here; this checks the error without it")
def test_litert_target_without_the_converter_names_the_extra(tiny_en, tmp_path, capsys):
    from exporter.cli import main
    from exporter.lower.litert import lower_litert
    from exporter.quant.pipeline import PlanOptions, make_plan

    plan = make_plan(tiny_en, None, PlanOptions(target="litert", budget="30MB", order="uniform", calibration="minmax"))
    with pytest.raises(EdgeAsrError, match=r"pip install 'edgeasr\[litert\]'"):
        lower_litert(tiny_en, plan, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written
    # the command says so before loading or planning anything
    assert (
        main(["export", "--model", "tiny.en", "--target", "litert", "--budget", "30MB", "--out", str(tmp_path / "x")])
        == 2
    )
    err = capsys.readouterr().err
    assert "edgeasr[litert]" in err and "loading" not in err and "planning" not in err


# ------------------------------------------------------------------------------------------------------
# With the LiteRT stack (.venv-litert)

litert = pytest.mark.litert


@pytest.fixture(scope="module")
def litert_export(tmp_path_factory, tiny_en, shared_data):
    """tiny.en exported to LiteRT at 30 MB, calibrated on 6 english_misc clips: a mixed int8 / int4 plan."""
    from exporter.export import ExportOptions, export

    out = tmp_path_factory.mktemp("litert") / "tiny-30MB"
    summary = export(
        ExportOptions(
            model="tiny.en",
            target="litert",
            budget="30MB",
            calib=shared_data / "english_misc" / "manifest.jsonl",
            n_calib=6,
        ),
        out,
        progress=False,
    )
    return out, summary


@litert
def test_litert_export_is_mixed_within_budget_and_read_back(litert_export, capsys):
    from exporter.cli import main
    from runtimes.artifact import read_plan

    out, _ = litert_export
    summary = json.loads((out / "export.json").read_text())
    files = sorted(p.name for p in out.iterdir())
    assert {"encoder.tflite", "decoder.tflite", "tokenizer.json", "plan.json"} <= set(files)
    size = (out / "encoder.tflite").stat().st_size + (out / "decoder.tflite").stat().st_size
    assert size <= 30_000_000
    entry, plan = read_plan(out)
    assert entry.name == "encoder.tflite" and plan["target"] == "litert"
    formats = {layer["format"]["name"] for layer in plan["layers"]}
    assert {"lrt8_pc", "lrt4_g32"} <= formats  # mixed
    assert main(["inspect", str(out)]) == 0
    assert "lrt4_g32" in capsys.readouterr().out
    assert summary  # the export wrote its summary


@litert
def test_litert_runner_transcribes_real_clips_like_the_simulated_plan(litert_export, tiny_en, shared_data):
    from exporter.data import load_dataset
    from exporter.normalize import normalize
    from exporter.quant.plan import QuantPlan
    from exporter.quant.simulate import simulate
    from runtimes.artifact import open_artifact
    from runtimes.audio import load_audio
    from runtimes.litert_runner import LiteRTRunner
    from runtimes.torch_runner import TorchRunner

    out, _ = litert_export
    runner = open_artifact(out, threads=1)
    assert isinstance(runner, LiteRTRunner)
    simulated = TorchRunner(simulate(tiny_en, QuantPlan.load(out / "plan.json")))
    clips = list(load_dataset(shared_data / "english_misc" / "manifest.jsonl"))[6:10]  # not the calibration clips
    same = 0
    for utt in clips:
        samples = load_audio(utt.audio_path)
        text = runner.transcribe(samples).text
        assert text.strip()
        same += normalize(text) == normalize(simulated.transcribe(samples).text)
    assert same >= 3, f"{same} of {len(clips)} transcripts equal the simulated plan's"
    # a second clip through the same runner starts from a clean cache: same text again
    samples = load_audio(clips[0].audio_path)
    assert runner.transcribe(samples).text == runner.transcribe(samples).text


@litert
def test_truncated_tflite_is_a_clear_error(litert_export, tmp_path):
    from runtimes.artifact import open_artifact
    from runtimes.litert_runner import LiteRTRunner, read_litert_metadata

    out, _ = litert_export
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    data = (broken / "decoder.tflite").read_bytes()
    (broken / "decoder.tflite").write_bytes(data[: len(data) // 3])
    with pytest.raises(EdgeAsrError, match="checksum|sha256|changed"):
        open_artifact(broken)  # the export's checksums catch it first
    (broken / "checksums.json").unlink()
    with pytest.raises(EdgeAsrError, match="decoder.tflite"):
        LiteRTRunner(broken)
    (broken / "encoder.tflite").write_bytes(b"TFL3" + bytes(100))
    with pytest.raises(EdgeAsrError, match="not a readable LiteRT model|no edgeasr metadata"):
        read_litert_metadata(broken / "encoder.tflite")


@litert
def test_bench_runs_the_litert_artifact(litert_export, shared_data):
    from exporter.bench import BenchOptions, bench

    out, _ = litert_export
    result = bench(BenchOptions(artifact=out, data=shared_data / "english_misc" / "manifest.jsonl", limit=2))
    names = {(r["runtime"]["name"], r["metric"]["name"]) for r in result.records}
    assert ("litert", "latency_median") in names and ("litert", "wer") in names


def test_litert_runner_needs_its_files(tmp_path):
    from runtimes.litert_runner import LiteRTRunner

    with pytest.raises(EdgeAsrError, match="not found"):
        LiteRTRunner(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------------
# tflite-runtime, in its own environment and process (EDGEASR_TFLITE_VENV, set by `make test`)


@pytest.fixture(scope="module")
def tflite_runtime_export(tmp_path_factory, shared_data):
    """tiny.en for tflite-runtime at 60 MB: fp32 and int8-per-tensor layers, a 10 s audio context (cheaper)."""
    from exporter.export import ExportOptions, export

    out = tmp_path_factory.mktemp("tflite-runtime") / "tiny-60MB"
    summary = export(
        ExportOptions(
            model="tiny.en",
            target="tflite-runtime",
            budget="60MB",
            calib=shared_data / "english_misc" / "manifest.jsonl",
            n_calib=4,
            calibration="minmax",
            parity_clips=2,
            max_audio_seconds=10,
        ),
        out,
        progress=False,
    )
    return out, summary


@litert
def test_tflite_runtime_export_is_checked_through_tflite_runtime(tflite_runtime_export):
    from runtimes.artifact import read_plan

    out, _ = tflite_runtime_export
    summary = json.loads((out / "export.json").read_text())
    size = (out / "encoder.tflite").stat().st_size + (out / "decoder.tflite").stat().st_size
    assert size <= 60_000_000
    _, plan = read_plan(out)
    assert plan["target"] == "tflite-runtime"
    assert {layer["format"]["name"] for layer in plan["layers"]} == {"fp32", "lrt8_pt"}  # mixed
    client = summary["artifacts"][0]["parity"]["clients"]["tflite-runtime"]  # the export ran the client itself
    assert client["matching"] == client["clips"] > 0


@litert
def test_tflite_runtime_and_ai_edge_litert_transcribe_real_clips_alike(tflite_runtime_export, shared_data):
    import os

    from exporter.data import load_dataset
    from exporter.export.parity import disagreement
    from exporter.normalize import normalize
    from runtimes.artifact import open_artifact
    from runtimes.audio import load_audio
    from runtimes.litert_runner import LiteRTRunner
    from runtimes.tflite_process import TfliteRuntimeRunner

    out, _ = tflite_runtime_export
    legacy = open_artifact(out, runtime="tflite-runtime")
    assert isinstance(legacy, TfliteRuntimeRunner)
    assert legacy.engine.process.pid != os.getpid() and legacy.engine.version == "2.14.0"
    current = open_artifact(out)
    assert isinstance(current, LiteRTRunner)
    clips = list(load_dataset(shared_data / "english_misc" / "manifest.jsonl"))[6:10]  # not calibration clips
    legacy_texts, current_texts = [], []
    for utt in clips:
        samples = load_audio(utt.audio_path)
        legacy_texts.append(legacy.transcribe(samples).text)
        current_texts.append(current.transcribe(samples).text)
    assert all(text.strip() for text in legacy_texts)
    # The two interpreters quantise activations with kernels of their own (2.14 and 2.3), so a word may flip on
    # a clip; an engine computing something else would disagree on most words.
    same = sum(normalize(a) == normalize(b) for a, b in zip(legacy_texts, current_texts))
    assert same >= 2 and disagreement(current_texts, legacy_texts) <= 0.15, (legacy_texts, current_texts)
    legacy.close()
    assert legacy.engine.process.poll() is not None  # the process ends with its runner


@litert
def test_tflite_runtime_refuses_formats_it_computes_wrongly(litert_export):
    from runtimes.artifact import open_artifact

    out, _ = litert_export  # int8 per channel and int4 blocks
    with pytest.raises(EdgeAsrError, match="does not compute .*lrt4_g32.*--target tflite-runtime"):
        open_artifact(out, runtime="tflite-runtime")


@litert
def test_bench_runs_tflite_runtime_and_counts_its_process(tflite_runtime_export, shared_data):
    from exporter.bench import BenchOptions, bench

    out, _ = tflite_runtime_export
    result = bench(
        BenchOptions(
            artifact=out,
            data=shared_data / "english_misc" / "manifest.jsonl",
            limit=2,
        )
    )  # no runtimes named: a pair exported for tflite-runtime is measured there and through ai-edge-litert
    records = {r["metric"]["name"]: r for r in result.records if r["runtime"]["name"] == "tflite-runtime"}
    assert {"latency_median", "wer", "memory_run_peak"} <= set(records)
    assert records["memory_run_peak"]["metric"]["value"] > 20e6  # the interpreter's process holds the ~58 MB of weights
    assert any(r["runtime"]["name"] == "litert" for r in result.records)
