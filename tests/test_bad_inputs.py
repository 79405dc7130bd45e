"""The bad-input corpus: every kind of wrong input a user can give the CLI ends in one line that says what is
wrong and what to do, exit status 2, no traceback, and nothing written.

Each row of CORPUS is one kind: the arguments (with {placeholders} for the files `corpus` makes) and a piece of
the message it must print. The rows that damage an artifact copy the session's tiny.en export first.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from exporter.cli import main
from runtimes.errors import EdgeAsrError

CLIP = "english_misc/audio/ls_1089-134691-0000.wav"
EXPORT = ["export", "--model", "tiny.en", "--budget", "45MB", "--no-progress"]
PLAN = ["plan", "--budget", "45MB", "--order", "uniform", "--calibration", "minmax", "--no-progress"]
EVAL = ["eval", "--data", "{misc}", "--limit", "1", "--no-progress"]
PERSONALIZE = ["personalize", "--clips", "{misc}", "--no-progress"]
BENCH = ["bench", "--artifact", "{art}", "--data", "{misc}", "--limit", "1"]
TRANSCRIBE = ["transcribe", "{clip}"]
FLEET = ["fleet", "--model", "tiny.en", "--budget", "45MB", "--no-progress", "--users"]

# (kind, argv, a piece of the one-line message). Outputs named in argv ({t}/new...) must not exist afterwards.
CORPUS = [
    # where outputs go
    ("out-is-a-file", [*EXPORT, "--out", "{t}/a_file"], "exists and is a file"),
    ("out-not-empty", [*EXPORT, "--out", "{t}/not_empty"], "exists and is not empty"),
    ("out-under-a-file", [*EXPORT, "--out", "{t}/a_file/new"], "is a file, not a folder"),
    ("out-unwritable-place", [*EXPORT, "--out", "/proc/edgeasr-new"], "cannot write /proc/edgeasr-new"),
    ("out-permission-denied", [*EXPORT, "--out", "/sys/edgeasr-new"], "cannot write /sys/edgeasr-new"),
    ("personalize-out-is-a-file", [*PERSONALIZE, "--out", "{t}/a_file"], "exists and is a file"),
    ("personalize-out-unwritable", [*PERSONALIZE, "--out", "/proc/edgeasr-new"], "cannot write"),
    ("bundle-is-a-file", [*EXPORT, "--out", "{t}/new_b", "--bundle", "{t}/a_file"], "cannot write the Android bundle"),
    ("eval-json-is-a-folder", [*EVAL, "--json", "{t}/a_folder"], "--json {t}/a_folder is a folder"),
    ("eval-json-unwritable", [*EVAL, "--json", "/proc/edgeasr.json"], "cannot write /proc/edgeasr.json"),
    ("eval-json-device", [*EVAL, "--json", "/dev/null"], "exists and is not a regular file"),
    ("plan-json-unwritable", [*PLAN, "--json", "/proc/plan.json"], "cannot write /proc/plan.json"),
    ("plan-json-is-a-folder", [*PLAN, "--json", "{t}/a_folder"], "is a folder"),
    ("bench-json-is-a-folder", [*BENCH, "--json", "{t}/a_folder"], "is a folder"),
    ("bench-md-unwritable", [*BENCH, "--json", "{t}/new.json", "--md", "/proc/b.md"], "cannot write /proc/b.md"),
    # numbers
    ("n-calib-zero", [*EXPORT, "--out", "{t}/new", "--n-calib", "0"], "--n-calib: '0' is not a whole number >= 1"),
    ("n-calib-negative", ["plan", "--budget", "45MB", "--n-calib", "-3"], "'-3' is not a whole number >= 1"),
    ("max-audio-nan", [*EXPORT, "--out", "{t}/new", "--max-audio-seconds", "nan"], "'nan' is not a finite number"),
    ("max-audio-inf", [*EXPORT, "--out", "{t}/new", "--max-audio-seconds", "inf"], "'inf' is not a finite number"),
    ("max-audio-too-long", [*EXPORT, "--out", "{t}/new", "--max-audio-seconds", "45"], "outside (0, 30]"),
    ("budget-400-digits", ["plan", "--budget", "9" * 400], "is larger than 10 TB"),
    ("budget-400-digits-mb", ["plan", "--budget", "9" * 400 + "MB"], "is larger than 10 TB"),
    ("budget-not-a-size", ["plan", "--budget", "big"], "cannot read budget 'big'"),
    ("budget-zero", ["plan", "--budget", "0"], "is not a positive size"),
    ("budget-negative", ["plan", "--budget", "-5MB"], "--budget: expected one argument"),
    ("memory-budget-not-a-size", [*EXPORT, "--out", "{t}/new", "--memory-budget", "lots"], "cannot read budget"),
    ("budget-impossible", [*EXPORT, "--out", "{t}/new", "--budget", "1MB"], "cannot be met"),
    (
        "budget-below-the-pte-floor",
        [*EXPORT, "--out", "{t}/new", "--budget", "30MB"],
        "or use --target onnx, which stores the tied embedding once",
    ),
    ("export-speaker-without-calib", [*EXPORT, "--out", "{t}/new", "--speaker", "0001"], "give --calib too"),
    ("fleet-users-missing", [*FLEET, "{t}/none.jsonl", "--out", "{t}/new"], "users file {t}/none.jsonl not found"),
    ("fleet-users-not-json", [*FLEET, "{t}/a_file", "--out", "{t}/new"], "not JSON"),
    ("fleet-workers-zero", [*FLEET, "{t}/none.jsonl", "--out", "{t}/new", "--workers", "0"], "--workers: '0'"),
    ("eval-limit-zero", ["eval", "--data", "{misc}", "--limit", "0"], "--limit: '0' is not a whole number >= 1"),
    ("eval-limit-negative", ["eval", "--data", "{misc}", "--limit", "-2"], "'-2' is not a whole number >= 1"),
    ("bench-threads-zero", [*BENCH, "--json", "{t}/new.json", "--threads", "0"], "--threads: '0'"),
    ("bench-warmup-negative", [*BENCH, "--json", "{t}/new.json", "--warmup", "-1"], "whole number >= 0"),
    ("personalize-steps-zero", [*PERSONALIZE, "--out", "{t}/new", "--steps", "0"], "--steps: '0'"),
    ("personalize-lr-nan", [*PERSONALIZE, "--out", "{t}/new", "--lr", "nan"], "--lr: 'nan'"),
    ("personalize-dropout-too-big", [*PERSONALIZE, "--out", "{t}/new", "--dropout", "2"], "dropout must be in [0, 1)"),
    ("personalize-block-odd", [*PERSONALIZE, "--out", "{t}/new", "--block-size", "7"], "block size must be an even"),
    ("personalize-unknown-target", [*PERSONALIZE, "--out", "{t}/new", "--targets", "q,zz"], "unknown LoRA target"),
    ("knapsack-without-clips", [*PLAN, "--allocation", "knapsack"], "knapsack measures each layer's cost"),
    ("unknown-allocation", [*PLAN, "--allocation", "greedy"], "argument --allocation: invalid choice"),
    ("unknown-format", [*EXPORT, "--out", "{t}/new", "--formats", "gguf"], "unknown artifact format"),
    ("unknown-onnx-layout", [*EXPORT, "--out", "{t}/new", "--onnx-layout", "ort"], "argument --onnx-layout"),
    (
        "sherpa-short-context",
        [*EXPORT, "--out", "{t}/new", "--target", "onnx", "--onnx-layout", "sherpa", "--max-audio-seconds", "10"],
        "the sherpa layout needs the full 30 s audio context",
    ),
    ("unknown-pte-layout", [*EXPORT, "--out", "{t}/new", "--pte-layout", "asr"], "argument --pte-layout"),
    (
        "pte-runner-lora-not-an-adapter",
        [*EXPORT, "--out", "{t}/new", "--pte-layout", "runner", "--lora", "{t}"],
        "is not an adapter folder",
    ),
    (
        "sherpa-lora-not-an-adapter",
        [*EXPORT, "--out", "{t}/new", "--formats", "sherpa", "--lora", "{t}"],
        "is not an adapter folder",
    ),
    ("unknown-flag", [*EXPORT, "--out", "{t}/new", "--bugdet", "4MB"], "unrecognized arguments"),
    # data sets and clips
    ("manifest-not-utf8", ["eval", "--data", "{t}/not_utf8.jsonl"], "line 2: bytes that are not UTF-8"),
    ("manifest-sample-rate-text", ["eval", "--data", "{t}/rate_16k.jsonl"], "sample_rate must be a whole number"),
    (
        "manifest-sample-rate-wrong",
        ["eval", "--data", "{t}/rate_8k.jsonl", "--no-progress"],
        "the manifest says 8000 Hz",
    ),
    (
        "manifest-row-not-object",
        ["eval", "--data", "{t}/array_row.jsonl"],
        "expected a JSON object, found a JSON array",
    ),
    ("manifest-not-json", ["eval", "--data", "{t}/not_json.jsonl"], "line 1: not valid JSON"),
    ("manifest-empty", ["eval", "--data", "{t}/empty.jsonl"], "manifest has no rows"),
    ("manifest-path-not-text", ["eval", "--data", "{t}/path_number.jsonl"], "'audio_path' must be text"),
    ("manifest-transcript-list", ["eval", "--data", "{t}/transcript_list.jsonl"], "'transcript' must be text"),
    ("manifest-escapes-folder", ["eval", "--data", "{t}/outside.jsonl"], "outside the manifest's folder"),
    ("manifest-audio-missing", ["eval", "--data", "{t}/missing_audio.jsonl"], "audio file not found"),
    ("csv-without-audio-path", ["eval", "--data", "{t}/no_column.csv"], "must include an 'audio_path' column"),
    ("data-missing", ["eval", "--data", "{t}/nothing.jsonl"], "data not found"),
    ("data-folder-without-audio", ["eval", "--data", "{t}/a_folder"], "no audio files"),
    ("data-unsupported-file", ["eval", "--data", "{t}/notes.txt"], "unsupported data file"),
    ("calib-corrupt-clip", [*EXPORT, "--out", "{t}/new", "--calib", "{t}/calib_corrupt"], "cannot decode audio"),
    ("plan-calib-corrupt-clip", ["plan", "--budget", "45MB", "--calib", "{t}/calib_corrupt"], "cannot decode"),
    ("personalize-corrupt-clip", ["personalize", "--clips", "{t}/calib_corrupt", "--out", "{t}/new"], "cannot decode"),
    ("clip-missing", ["transcribe", "{t}/nothing.wav"], "audio file not found"),
    ("clip-empty", ["transcribe", "{t}/empty.wav"], "is empty (0 bytes)"),
    ("clip-not-audio", ["transcribe", "{t}/notes.txt"], "cannot decode audio file"),
    ("clip-silent", ["transcribe", "{t}/silent.wav"], "clip is silent"),
    ("clip-nan", ["transcribe", "{t}/nan.wav"], "NaN or infinite samples"),
    ("clip-is-a-folder", ["transcribe", "{t}/a_folder"], "audio file not found"),
    (
        "transcripts-missing",
        ["personalize", "--clips", "{t}/no_transcripts.jsonl", "--out", "{t}/new", "--transcripts"],
        "have no transcript",
    ),
    # plans
    ("plan-json-array", [*EVAL, "--plan", "{t}/plan_array.json"], "holds a JSON array, not an object"),
    ("plan-without-layers", [*EVAL, "--plan", "{t}/plan_no_layers.json"], "is not a whole plan: it lacks"),
    ("plan-layers-not-list", [*EVAL, "--plan", "{t}/plan_layers_text.json"], "'layers' must be a non-empty list"),
    ("plan-layer-format-text", [*EVAL, "--plan", "{t}/plan_format_text.json"], "layer 0 (model.encoder.conv1)"),
    ("plan-not-json", [*EVAL, "--plan", "{t}/plan_truncated.json"], "is not a plan JSON file"),
    ("plan-not-utf8", [*EVAL, "--plan", "{t}/plan_not_utf8.json"], "is not UTF-8 text"),
    ("plan-future-version", [*EVAL, "--plan", "{t}/plan_v99.json"], "schema version 99 is not supported"),
    (
        "plan-gptq-without-its-weights",
        [*EVAL, "--plan", "{t}/plan_gptq.json"],
        "this model does not hold those rounded weights",
    ),
    ("gptq-on-litert", [*EXPORT, "--out", "{t}/new", "--target", "litert", "--rounding", "gptq"], "not available"),
    ("gptq-with-lora", [*EXPORT, "--out", "{t}/new", "--lora", "{t}", "--rounding", "gptq"], "drop --rounding gptq"),
    ("plan-other-model", [*EVAL, "--plan", "{art}/plan.json", "--model", "base"], "was made for model 'tiny.en'"),
    ("plan-for-another-shape", [*EVAL, "--plan", "{t}/plan_other_shape.json"], "the plan was made for another model"),
    ("plan-missing", [*EVAL, "--plan", "{t}/nothing.json"], "not found: {t}/nothing.json"),
    # adapters
    ("adapter-json-array", [*EXPORT, "--out", "{t}/new", "--lora", "{t}/adapter_array"], "holds a JSON array"),
    (
        "adapter-lora-text",
        [*EXPORT, "--out", "{t}/new", "--lora", "{t}/adapter_lora_text"],
        "'lora' must be a JSON object",
    ),
    ("adapter-not-utf8", [*EXPORT, "--out", "{t}/new", "--lora", "{t}/adapter_not_utf8"], "is not UTF-8 text"),
    (
        "adapter-weights-corrupt",
        [*EXPORT, "--out", "{t}/new", "--lora", "{t}/adapter_bad_weights"],
        "not a readable safetensors",
    ),
    (
        "adapter-other-model",
        [*EXPORT, "--out", "{t}/new", "--lora", "{t}/adapter_for_base"],
        "trained for model 'base'",
    ),
    ("adapter-rank-zero", [*EXPORT, "--out", "{t}/new", "--lora", "{t}/adapter_rank_zero"], "LoRA rank must be >= 1"),
    ("adapter-folder-empty", [*EXPORT, "--out", "{t}/new", "--lora", "{t}/a_folder"], "is not an adapter folder"),
    (
        "pretrained-adapter-array",
        [*PERSONALIZE, "--out", "{t}/new", "--pretrained-lora", "{t}/adapter_array"],
        "holds a JSON array",
    ),
    # artifacts
    ("pte-structure-damaged", [*TRANSCRIBE, "--artifact", "{t}/pte_scrambled"], "the file is damaged or not a .pte"),
    ("pte-truncated", [*TRANSCRIBE, "--artifact", "{t}/pte_truncated"], "the file is damaged or not a .pte"),
    (
        "pte-weight-bit-flipped",
        [*TRANSCRIBE, "--artifact", "{t}/pte_weight_flip"],
        "model.pte is not the file the export wrote",
    ),
    (
        "onnx-weight-bit-flipped",
        [*TRANSCRIBE, "--artifact", "{t}/onnx_weight_flip"],
        "decoder.onnx is not the file the export wrote",
    ),
    ("onnx-truncated", [*TRANSCRIBE, "--artifact", "{t}/onnx_truncated"], "is not a loadable ONNX model"),
    ("artifact-file-missing", [*TRANSCRIBE, "--artifact", "{t}/pte_no_tokenizer"], "lacks tokenizer.json"),
    ("checksums-damaged", [*TRANSCRIBE, "--artifact", "{t}/checksums_damaged"], "is not a checksum list"),
    ("artifact-folder-empty", [*TRANSCRIBE, "--artifact", "{t}/a_folder"], "holds no edgeasr artifact"),
    ("inspect-not-an-artifact", ["inspect", "{t}/notes.txt"], "holds no edgeasr artifact"),
    ("inspect-truncated-pte", ["inspect", "{t}/pte_truncated/model.pte"], "cannot load ExecuTorch program"),
    (
        "bench-artifact-missing",
        ["bench", "--artifact", "{t}/nothing", "--data", "{misc}", "--json", "{t}/new.json"],
        "holds no edgeasr artifact",
    ),
    # models
    ("model-pickle-only", [*TRANSCRIBE, "--model", "{t}/model_pickle"], "refusing to unpickle"),
    (
        "model-config-not-json",
        [*TRANSCRIBE, "--model", "{t}/model_bad_config"],
        "config.json is not a model configuration",
    ),
    ("model-not-whisper", [*TRANSCRIBE, "--model", "{t}/model_bert"], "holds a 'bert' model"),
    ("model-no-weights", [*TRANSCRIBE, "--model", "{t}/model_no_weights"], "has no weights"),
    ("model-folder-missing", [*TRANSCRIBE, "--model", "{t}/nothing/"], "model folder not found"),
    (
        "english-only-model-on-other-languages",
        ["eval", "--data", "{shared}/multilingual/manifest.jsonl"],
        "English-only",
    ),
    # results given back
    (
        "compare-not-an-eval",
        ["eval", "--compare", "{t}/plan_array.json", "{t}/plan_array.json"],
        "not an edgeasr eval result",
    ),
    ("eval-without-data", ["eval"], "eval needs --data"),
]


def _jsonl(path: Path, *rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _flip(path: Path, where: float) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))


def _adapter(folder: Path, config: bytes | dict, weights: bytes | None = None) -> None:
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "adapter.json").write_bytes(config if isinstance(config, bytes) else json.dumps(config).encode())
    if weights is None:
        save_file({"x": __import__("torch").zeros(2)}, str(folder / "adapter.safetensors"))
    else:
        (folder / "adapter.safetensors").write_bytes(weights)


def _damaged_artifacts(t: Path, art: Path) -> None:
    def copy(name: str, source: Path = art) -> Path:
        shutil.copytree(source, t / name, ignore=shutil.ignore_patterns("sherpa"))
        return t / name

    scrambled = copy("pte_scrambled")  # without its checksums: ExecuTorch's own verifier must refuse it
    data = bytearray((scrambled / "model.pte").read_bytes())
    data[:64] = bytes(64)  # the flatbuffer header
    (scrambled / "model.pte").write_bytes(bytes(data))
    (scrambled / "checksums.json").unlink()
    truncated = copy("pte_truncated")
    (truncated / "model.pte").write_bytes((art / "model.pte").read_bytes()[:5000])
    (truncated / "checksums.json").unlink()
    _flip(copy("pte_weight_flip") / "model.pte", 0.5)  # a weight byte: only the checksum can tell
    _flip(copy("onnx_weight_flip", art / "sherpa") / "decoder.onnx", 0.5)
    onnx = copy("onnx_truncated", art / "sherpa")
    (onnx / "encoder.onnx").write_bytes((art / "sherpa" / "encoder.onnx").read_bytes()[:100_000])
    (onnx / "checksums.json").unlink()
    (copy("pte_no_tokenizer") / "tokenizer.json").unlink()
    (copy("checksums_damaged") / "checksums.json").write_text("[1]")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data, tiny_export) -> dict[str, str]:
    """The bad files, in one folder ({t}); returns the placeholders."""
    t = tmp_path_factory.mktemp("bad")
    art, _ = tiny_export
    clip = shared_data / CLIP
    speech, rate = sf.read(clip, dtype="float32")
    (t / "a_file").write_text("x")
    (t / "a_folder").mkdir()
    (t / "not_empty").mkdir()
    (t / "not_empty" / "x").write_text("x")
    (t / "notes.txt").write_text("hello")
    (t / "empty.wav").write_bytes(b"")
    sf.write(t / "speech.wav", speech, rate)
    sf.write(t / "silent.wav", np.zeros(16000, np.float32), 16000)
    nan = speech.copy()
    nan[100] = np.nan
    sf.write(t / "nan.wav", nan, rate, subtype="FLOAT")
    (t / "calib_corrupt").mkdir()
    sf.write(t / "calib_corrupt" / "a.wav", speech, rate)
    (t / "calib_corrupt" / "b.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    # manifests
    (t / "not_utf8.jsonl").write_bytes(b'{"audio_path": "speech.wav"}\n{"audio_path": "sp\xffeech.wav"}\n')
    _jsonl(t / "rate_16k.jsonl", {"audio_path": "speech.wav", "sample_rate": "16k"})
    _jsonl(t / "rate_8k.jsonl", {"audio_path": "speech.wav", "sample_rate": 8000})
    _jsonl(t / "array_row.jsonl", [1, 2])
    _jsonl(t / "not_json.jsonl", "{audio_path: speech.wav}")
    (t / "empty.jsonl").write_text("")
    _jsonl(t / "path_number.jsonl", {"audio_path": 5})
    _jsonl(t / "transcript_list.jsonl", {"audio_path": "speech.wav", "transcript": ["he", "could"]})
    _jsonl(t / "outside.jsonl", {"audio_path": str(clip)})
    _jsonl(t / "missing_audio.jsonl", {"audio_path": "gone.wav"})
    _jsonl(t / "no_transcripts.jsonl", {"audio_path": "speech.wav"})
    (t / "no_column.csv").write_text("path,transcript\nspeech.wav,hello\n")
    # plans
    plan = json.loads((art / "plan.json").read_text())
    (t / "plan_array.json").write_text("[1, 2]")
    (t / "plan_no_layers.json").write_text(json.dumps({"schema_version": 1, "model_id": "tiny.en"}))
    (t / "plan_layers_text.json").write_text(json.dumps({**plan, "layers": "all int8"}))
    layers = [{**plan["layers"][0], "format": "int8"}, *plan["layers"][1:]]
    (t / "plan_format_text.json").write_text(json.dumps({**plan, "layers": layers}))
    (t / "plan_truncated.json").write_text(json.dumps(plan)[:500])
    (t / "plan_not_utf8.json").write_bytes(b'{"model_id": "\xff"}')
    reshaped = [{**plan["layers"][0], "shape": [1, 2, 3]}, *plan["layers"][1:]]
    (t / "plan_other_shape.json").write_text(json.dumps({**plan, "layers": reshaped}))
    (t / "plan_v99.json").write_text(json.dumps({**plan, "schema_version": 99}))
    (t / "plan_gptq.json").write_text(json.dumps({**plan, "rounding": "gptq", "rounded_weights": "0" * 64}))
    # adapters
    lora = {"rank": 8, "alpha": 16.0, "dropout": 0.0, "targets": ["q", "v"], "scope": ["decoder"]}
    base = {"block_size": 64, "double_quant_block": None, "embedding": "int8"}
    info = {"schema_version": 1, "model_id": "tiny.en", "lora": lora, "base": base}
    _adapter(t / "adapter_array", b"[1]")
    _adapter(t / "adapter_lora_text", {**info, "lora": "rank 8"})
    _adapter(t / "adapter_not_utf8", b'{"model_id": "\xff"}')
    _adapter(t / "adapter_bad_weights", info, weights=b"\x00" * 16)
    _adapter(t / "adapter_for_base", {**info, "model_id": "base"})
    _adapter(t / "adapter_rank_zero", {**info, "lora": {**lora, "rank": 0}})
    # model folders
    for name, config in (("model_pickle", "whisper"), ("model_bert", "bert"), ("model_no_weights", "whisper")):
        (t / name).mkdir()
        (t / name / "config.json").write_text(json.dumps({"model_type": config}))
    (t / "model_pickle" / "pytorch_model.bin").write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")
    (t / "model_bad_config").mkdir()
    (t / "model_bad_config" / "config.json").write_text("{")
    _damaged_artifacts(t, art)
    return {
        "t": str(t),
        "art": str(art),
        "misc": str(shared_data / "english_misc"),
        "clip": str(clip),
        "shared": str(shared_data),
    }


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's refusals
        status = exc.code
    return status, capsys.readouterr().err


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_the_corpus_covers_forty_kinds():
    assert len({kind for kind, _, _ in CORPUS}) == len(CORPUS) >= 40


@pytest.mark.parametrize("argv, message", [row[1:] for row in CORPUS], ids=[row[0] for row in CORPUS])
def test_bad_input_is_one_clear_line_and_writes_nothing(corpus, argv, message, capsys):
    folder = Path(corpus["t"])
    before = _tree(folder)
    status, err = _run([a.format(**corpus) for a in argv], capsys)
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert status == 2, err
    assert "Traceback" not in err and len(errors) == 1, err
    assert errors[0] == err.splitlines()[-1] and errors[0].startswith("edgeasr: error: "), err
    assert message.format(**corpus) in errors[0], err
    assert _tree(folder) == before, "the refused command wrote into the corpus folder"


def test_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    """ENOSPC in the middle of writing a result: the error names the file; no temporary file is left."""
    from exporter.io import write_json

    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(EdgeAsrError, match=f"cannot write {tmp_path}/c.json: No space left on device"):
        write_json(tmp_path / "c.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_file_system_error_no_stage_expected_is_one_line(monkeypatch, capsys):
    import exporter.cli

    def failing(args):
        raise OSError(errno.EIO, "Input/output error", "/data/clip.wav")

    monkeypatch.setattr(exporter.cli, "_cmd_inspect", failing)
    status, err = _run(["inspect", "x.pte"], capsys)
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith("edgeasr: error: file system error /data/clip.wav: Input/output error; check the path")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(EdgeAsrError, match="audio file not found"):
        main(["--debug", "transcribe", str(tmp_path / "missing.wav")])


def test_impossible_plan_budget_is_refused_before_any_clip_is_observed(corpus, monkeypatch, capsys):
    import exporter.quant.pipeline as pipeline

    def observe(*args, **kwargs):
        raise AssertionError("observed clips before checking the budget")

    monkeypatch.setattr(pipeline, "observe_user", observe)
    status, err = _run(["plan", "--budget", "1MB", "--calib", corpus["misc"], "--no-progress"], capsys)
    assert status == 2 and "cannot be met" in err and "Reachable" in err, err


@pytest.mark.parametrize(
    "argv",
    [
        [*EXPORT, "--out", "{t}/new", "--calib", "{t}/calib_corrupt"],
        ["plan", "--budget", "45MB", "--calib", "{t}/calib_corrupt"],
        ["personalize", "--clips", "{t}/calib_corrupt", "--out", "{t}/new"],
    ],
    ids=["export", "plan", "personalize"],
)
def test_a_corrupt_clip_is_refused_before_the_model_loads(corpus, monkeypatch, capsys, argv):
    import exporter.models

    def load(*args, **kwargs):
        raise AssertionError("loaded the model before reading the clips")

    monkeypatch.setattr(exporter.models, "load_whisper", load)
    for module in ("exporter.export.run", "exporter.personalize.run"):
        monkeypatch.setattr(f"{module}.load_whisper", load)
    status, err = _run([a.format(**corpus) for a in argv], capsys)
    assert status == 2 and "cannot decode audio file" in err and "b.wav" in err, err
