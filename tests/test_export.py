"""`edgeasr export` end to end on tiny.en: both runtimes, budget, plan read back, atomicity."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from exporter.export import ExportOptions, export
from runtimes.errors import EdgeAsrError


@pytest.fixture(scope="module")
def exported(tiny_export):
    return tiny_export


@pytest.mark.slow
def test_export_writes_both_artifacts_within_budget(exported):
    out, summary = exported
    assert {p.name for p in out.iterdir()} >= {
        "model.pte",
        "plan.json",
        "tokenizer.json",
        "report.md",
        "export.json",
        "sherpa",  # the ONNX pair, in sherpa-onnx's layout (the default)
    }
    assert {p.name for p in (out / "sherpa").iterdir()} >= {"encoder.onnx", "decoder.onnx", "tokens.txt", "plan.json"}
    assert (out / "model.pte").stat().st_size <= 45_000_000
    onnx_bytes = (out / "sherpa" / "encoder.onnx").stat().st_size + (out / "sherpa" / "decoder.onnx").stat().st_size
    assert onnx_bytes <= 45_000_000
    assert summary["personalised"] and summary["calibration_source"].endswith("manifest.jsonl")
    assert "Not personalised" not in (out / "report.md").read_text()
    for artifact in summary["artifacts"]:
        assert artifact["parity"]["transcript_disagreement"] <= 0.35
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".partial")]


# export.json fields that measure the run (seconds, memory peaks) rather than describe what was made
RUN_MEASURES = ("seconds", "stages", "stage_peak_rss_mb")


def _tree_digests(root):
    from runtimes.integrity import sha256_file

    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _described(summary: dict) -> dict:
    """export.json without what measures the run (timings, peaks), which no two runs share."""
    kept = {k: v for k, v in summary.items() if k not in RUN_MEASURES}
    kept["artifacts"] = [{k: v for k, v in a.items() if k not in RUN_MEASURES} for a in summary["artifacts"]]
    for artifact in kept["artifacts"]:
        artifact["parity"] = {k: v for k, v in artifact["parity"].items() if k != "seconds"}
    return kept


# Both formats from a local Hugging Face folder; the ONNX pair in edgeasr's layout, since sherpa-onnx's client
# check compares transcripts, and the toy's are not words.
TOY_EXPORT_ARGS = (
    "--target", "android", "--budget", "30MB", "--formats", "pte,onnx", "--onnx-layout", "edgeasr",
    "--n-calib", "4", "--calibration", "minmax",
)  # fmt: skip


@pytest.mark.slow
def test_console_export_with_calib_is_byte_identical_in_another_process(toy_whisper, run_cli, shared_data, tmp_path):
    """The main job end to end: `edgeasr export --calib <clips>` through the console command in a fresh
    process writes the same files, byte for byte, as the same command in this process: calibration, plan,
    both lowerings and parity, on the toy model (tests/conftest.py; a quarter of tiny.en's lowering time).
    Lowering twice in one process is checked on a toy in test_pte_adapter.py and on tiny.en's ONNX pair in
    test_onnx_lowering.py and test_sherpa.py."""
    from tests.conftest import ROOT

    calib = shared_data / "english_misc" / "manifest.jsonl"
    args = ["export", "--model", toy_whisper.model_id, *TOY_EXPORT_ARGS, "--calib", calib, "--no-progress"]
    first, second = tmp_path / "here", tmp_path / "again"
    status, _, stderr = run_cli(*args, "--out", first)
    assert status == 0, stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", *map(str, args), "--out", str(second)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pte: " in proc.stdout and "onnx: " in proc.stdout and "not personalised" not in proc.stdout
    a, b = _tree_digests(first), _tree_digests(second)
    measured = {"export.json", "report.md"}  # they hold timings; compared below without them
    assert {k: v for k, v in a.items() if k not in measured} == {k: v for k, v in b.items() if k not in measured}
    assert {"model.pte", "plan.json", "checksums.json", "onnx/encoder.onnx", "onnx/decoder.onnx"} <= set(a)
    plan = json.loads((first / "plan.json").read_text())
    assert len(plan["format_counts"]) >= 3  # a mixed plan, not one format throughout
    summaries = [json.loads((root / "export.json").read_text()) for root in (first, second)]
    assert _described(summaries[0]) == _described(summaries[1])


@pytest.mark.slow
def test_export_records_where_its_time_went(exported):
    """export.json times the shared stages and each artifact's own; they add up to no more than the total."""
    out, summary = exported
    stored = json.loads((out / "export.json").read_text())
    assert list(stored["stages"]) == list(stored["stage_peak_rss_mb"]) == ["load", "observe"]
    for artifact in stored["artifacts"]:
        assert list(artifact["stages"]) == list(artifact["stage_peak_rss_mb"]) == ["plan", "lower", "memory", "parity"]
        assert sum(artifact["stages"].values()) <= artifact["seconds"] + 0.5
        assert all(mb > 100 for mb in artifact["stage_peak_rss_mb"].values())  # torch alone is more
    spent = sum(stored["stages"].values()) + sum(a["seconds"] for a in stored["artifacts"])
    assert 0 < spent <= stored["seconds"] + 0.5
    assert "lower " in (out / "report.md").read_text()


@pytest.mark.slow
def test_plan_read_back_from_each_artifact(exported, run_cli):
    out, _ = exported
    plan = json.loads((out / "plan.json").read_text())
    status, text, err = run_cli("inspect", out / "model.pte")
    assert status == 0, err
    assert "totals by category" in text and f"{plan['totals']['total']:,}" in text
    status, text, err = run_cli("inspect", out / "sherpa")
    assert status == 0, err
    assert "mnb" in text


@pytest.mark.slow
def test_transcribe_through_each_artifact(exported, run_cli, shared_data):
    out, _ = exported
    clip = shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav"
    for folder in (out, out / "sherpa"):
        status, text, err = run_cli("transcribe", "--artifact", folder, clip)
        assert status == 0, err
        assert "no longer" in text.lower()


def test_lowering_copies_do_not_carry_the_callers_grad_flags(exported, tiny_en):
    """The .pte records requires_grad per constant: frozen or not, the caller's model must lower the same."""
    from exporter.lower.executorch import prepare_model
    from exporter.lower.onnx import marked_model
    from exporter.quant.plan import QuantPlan

    out, _ = exported
    plan = QuantPlan.load(out / "plan.json")
    encoder = tiny_en.model.model.encoder
    flags = [p.requires_grad for p in encoder.parameters()]
    try:
        for frozen in (False, True):
            encoder.requires_grad_(not frozen)
            for model in (prepare_model(tiny_en, plan), marked_model(tiny_en, plan)):
                assert not any(p.requires_grad for p in model.parameters())
            assert all(p.requires_grad != frozen for p in encoder.parameters())  # the caller's model untouched
    finally:
        for p, flag in zip(encoder.parameters(), flags):
            p.requires_grad_(flag)


def test_impossible_budget_fails_before_any_work(tmp_path, run_cli):
    status, _, err = run_cli(
        "export",
        "--model",
        "tiny.en",
        "--budget",
        "10MB",
        "--out",
        tmp_path / "x",
        "--calibration",
        "minmax",
        "--no-progress",
    )
    assert status == 2 and "cannot be met" in err and "Reachable" in err
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch, tiny_en):
    import exporter.export.budgeted as budgeted

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C while lowering

    monkeypatch.setattr(budgeted, "lower_artifact", crash)
    with pytest.raises(KeyboardInterrupt):
        export(
            ExportOptions(model="tiny.en", budget="45MB", calibration="minmax", n_calib=2, parity_clips=1),
            tmp_path / "out",
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_export_options(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(EdgeAsrError, match="not empty"):
        export(ExportOptions(model="tiny.en", budget="45MB"), tmp_path / "full", progress=False)
    with pytest.raises(EdgeAsrError, match="unknown artifact format"):
        export(ExportOptions(model="tiny.en", budget="45MB", formats=("gguf",)), tmp_path / "y", progress=False)
    # NF4 + LoRA exports keep the 30 s context: the audio-context flags are refused, not ignored
    with pytest.raises(EdgeAsrError, match="--max-audio-seconds, --attention cannot be combined with --lora"):
        export(
            ExportOptions(
                model="tiny.en", budget="45MB", lora=tmp_path / "adapter", max_audio_seconds=10, attention="eager"
            ),
            tmp_path / "z",
            progress=False,
        )
    assert not (tmp_path / "z").exists()


def test_static_cache_decoder_matches_hugging_face(tiny_en, shared_data):
    """The exported decoder (explicit KV cache) computes what the HF decoder computes, step by step."""
    import numpy as np
    import torch

    from exporter.lower.whisper_modules import WhisperEncoderModule, WhisperTextDecoderModule
    from runtimes.audio import load_audio, log_mel
    from runtimes.torch_runner import TorchRunner

    features = log_mel(load_audio(shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav"))
    encoder, decoder = WhisperEncoderModule(tiny_en.model), WhisperTextDecoderModule(tiny_en.model, 32)
    reference = TorchRunner(tiny_en)
    with torch.no_grad():
        states = encoder(torch.from_numpy(features)[None])
        session = reference.start_decoder(reference.encode(features))
        for position, token in enumerate(tiny_en.special.prompt() + [679, 714, 4043]):
            ours = decoder(torch.tensor([[token]]), *states, torch.tensor([position]))[0, -1].numpy()
            np.testing.assert_allclose(ours, session.step([token]), atol=1e-3)


class _ScriptedRunner:
    """Stands in for a runner in the parity check: fixed logits and one transcript per clip."""

    n_mels = 80
    n_frames = 3000
    window_samples = 480000

    def __init__(self, texts, logits_scale=1.0):
        self.texts = iter(texts)
        self.logits = np.linspace(-1, 1, 16) * logits_scale
        self.special = type("Special", (), {"is_multilingual": False, "prompt": staticmethod(lambda lang: [1])})()

    def encode(self, features):
        return None

    def start_decoder(self, encoded):
        logits = self.logits
        return type("Session", (), {"step": staticmethod(lambda tokens: logits)})()

    def transcribe(self, samples):
        return type("T", (), {"text": next(self.texts)})()


def test_parity_check_tells_runtime_bugs_from_unusable_budgets():
    from exporter.export import check_parity

    clips = [np.zeros(16000, dtype=np.float32)] * 3
    good = ["turn left now", "call home", "seven eight nine"]
    options = ExportOptions()
    result = check_parity(_ScriptedRunner(good), _ScriptedRunner(good), clips, options)
    assert result["matching"] == 3 and result["transcript_disagreement"] == 0
    # one looping transcript counts as one wrong clip, not as a WER of thousands of percent
    looping = ["turn left now", "call home", "nine " * 200]
    result = check_parity(_ScriptedRunner(looping), _ScriptedRunner(good), clips, options)
    assert result["transcript_disagreement"] == pytest.approx(1 / 3, abs=1e-3)
    # the artifact computes something else while the plan still transcribes: a runtime problem
    garbage = ["zebra", "quantum", "lorem ipsum"]
    with pytest.raises(EdgeAsrError, match="parity check failed"):
        check_parity(_ScriptedRunner(garbage), _ScriptedRunner(good), clips, options, _ScriptedRunner(good))
    # the plan itself has lost the full-precision transcripts: the budget is the problem
    with pytest.raises(EdgeAsrError, match="raise the budget|Raise the budget"):
        check_parity(
            _ScriptedRunner(garbage),
            _ScriptedRunner(looping[:2] + ["x"]),
            clips,
            options,
            _ScriptedRunner(["a b c d", "e f g", "h i j"]),
        )
    # scales dropped: logits off by orders of magnitude fail even when the words happen to agree
    with pytest.raises(EdgeAsrError, match="parity check failed"):
        check_parity(_ScriptedRunner(good, logits_scale=1e3), _ScriptedRunner(good), clips, options)


def test_client_check_tells_a_front_end_difference_from_a_broken_client():
    """A client (sherpa-onnx) that flips words where edgeasr's runner also strays from the FP model passes,
    with the comparison recorded; one that is far from both fails, with or without the FP model."""
    from exporter.export.parity import check_client

    clips = [np.zeros(16000, dtype=np.float32)] * 3
    fp = ["alpha bravo charlie", "delta echo foxtrot", "golf hotel india"]
    ours = ["alpha bravo xray", "delta echo foxtrot", "golf hotel yankee"]  # 2 words of 9 off the FP model's
    client_named = type("Client", (_ScriptedRunner,), {"name": "sherpa-onnx"})
    flipped = ["alpha zulu charlie", "delta quebec romeo", "golf hotel yankee"]  # 4 of ours flipped
    options = ExportOptions()
    with pytest.raises(EdgeAsrError, match="differ from edgeasr's runner's"):
        check_client(client_named(flipped), clips, ours, options)
    result = check_client(client_named(flipped), clips, ours, options, _ScriptedRunner(fp))
    assert result["transcript_disagreement"] > options.max_transcript_wer
    assert result["disagreement_with_full_precision"] == {
        "client": pytest.approx(4 / 9, abs=1e-3),
        "edgeasr": pytest.approx(2 / 9, abs=1e-3),
    }
    broken = ["zebra", "quantum", "lorem ipsum"]
    with pytest.raises(EdgeAsrError, match="full-precision model's on 100 %"):
        check_client(client_named(broken), clips, ours, options, _ScriptedRunner(fp))


@pytest.mark.slow
def test_gptq_export_lowers_the_rounded_codes_in_both_formats(toy_whisper, run_cli, shared_data, tmp_path):
    """`--rounding gptq`: the .pte and the ONNX pair carry GPTQ's codes (parity against the simulation of the
    rounded model passes, first-step logits within float round-off and int8-activation flips), and each
    plan.json records the rounding with the digest of the weights it wrote."""
    calib = shared_data / "english_misc" / "manifest.jsonl"
    out = tmp_path / "gptq"
    args = ["export", "--model", toy_whisper.model_id, *TOY_EXPORT_ARGS, "--calib", calib, "--no-progress"]
    status, stdout, stderr = run_cli(*args, "--rounding", "gptq", "--out", out)
    assert status == 0, stderr
    summary = json.loads((out / "export.json").read_text())
    assert summary["options"]["rounding"] == "gptq"
    for artifact in summary["artifacts"]:  # a failed parity check would have refused the export
        assert artifact["parity"]["logits_relative_max_error"] < 0.05, artifact["parity"]
    for plan_file in (out / "plan.json", out / "onnx" / "plan.json"):
        plan = json.loads(plan_file.read_text())
        assert plan["rounding"] == "gptq" and len(plan["rounded_weights"]) == 64


@pytest.mark.slow
def test_auto_rounding_runs_gptq_where_the_plan_holds_2_bit_linears(toy_whisper, run_cli, shared_data, tmp_path):
    """The default `--rounding auto`: an onnx budget that puts Linears on 2 bits gets GPTQ's codes when the
    user's clips are given (the same bytes when exported again), nearest ones on the generic clips (never
    measured as GPTQ's inputs)."""
    calib = shared_data / "english_misc" / "manifest.jsonl"
    args = ["export", "--model", toy_whisper.model_id, "--target", "onnx", "--budget", "15MB", "--no-progress"]
    args += ["--calibration", "minmax", "--n-calib", "4"]
    for extra, rounding, out in (
        (["--calib", calib], "gptq", tmp_path / "gptq"),
        (["--calib", calib], "gptq", tmp_path / "gptq-again"),
        ([], "nearest", tmp_path / "nearest"),
    ):
        status, _, stderr = run_cli(*args, *extra, "--out", out)
        assert status == 0, stderr
        plan = json.loads((out / "plan.json").read_text())
        assert any(layer["format"]["bits"] == 2 for layer in plan["layers"] if layer["kind"] == "linear")
        assert plan["rounding"] == rounding
        assert f"auto rounding runs {rounding}" in stderr
    again = json.loads((tmp_path / "gptq-again" / "checksums.json").read_text())
    assert json.loads((tmp_path / "gptq" / "checksums.json").read_text()) == again
