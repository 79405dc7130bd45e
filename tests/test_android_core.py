"""The Android app's plain-Kotlin core (android_demo/core), checked against the Python side.

The core is compiled with Debian's `kotlinc` and its JVM tests run with `java`, fed by vectors the Python code
makes here (WAV samples, log-mel features, mel filters, tokenizer cases, numpy percentiles) and by the
committed decoder replay recorded from a tiny.en `.pte` (android_demo/tools/make_test_vectors.py). The app's
Android sources are compiled in the same run against signature stubs of the Android and ExecuTorch classes
they use (android_demo/tools/api_stubs): a type check of the app against the core's API and the stubs'
signatures, not a build (no Android SDK here). Without kotlinc/javac the test skips on a developer machine
and fails under CI (.ci/run installs them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runtimes.errors import EdgeAsrError

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "android_demo" / "core"
APP_SOURCES = ROOT / "android_demo" / "app" / "src" / "main" / "kotlin"
STUBS = ROOT / "android_demo" / "tools" / "api_stubs"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "android_demo" / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vectors_module():
    return _tool("make_test_vectors")


def _kotlin_stdlib(kotlinc: str) -> Path:
    """The stdlib jar beside the compiler (a kotlinc distribution) or Debian's."""
    candidates = [
        Path(kotlinc).resolve().parent.parent / "lib" / "kotlin-stdlib.jar",
        Path("/usr/share/java/kotlin-stdlib.jar"),
    ]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        pytest.fail(f"kotlinc is installed but no kotlin-stdlib.jar was found in {candidates}")
    return found


@pytest.fixture(scope="module")
def kotlin_tools():
    kotlinc, java, javac = shutil.which("kotlinc"), shutil.which("java"), shutil.which("javac")
    if not (kotlinc and java and javac):
        what = "kotlinc, java and javac (apt-get install kotlin default-jdk-headless)"
        if os.environ.get("CI"):
            pytest.fail(f"{what} are required in CI; .ci/run installs them")
        pytest.skip(f"{what} not available")
    return kotlinc, java, javac


@pytest.fixture(scope="module")
def replay():
    return json.loads(_vectors_module().REPLAY_PATH.read_text())


def test_replay_expectations_are_what_python_decodes_today(replay, tiny_en):
    """The committed vectors still hold: same special tokens as tiny.en, and greedy_decode gives their tokens."""
    assert replay["special_tokens"] == tiny_en.special.to_dict()
    _vectors_module().check_replay(replay)
    variants = {case["variant"] for clip in replay["clips"] for case in clip["cases"]}
    assert variants == {"recorded", "adversarial", "early_stop", "max_new_tokens"}


def test_kotlin_core_matches_python(kotlin_tools, tiny_en, shared_data, tmp_path):
    kotlinc, java, javac = kotlin_tools
    vectors = tmp_path / "vectors"
    _vectors_module().make_runtime_vectors(vectors, tiny_en.folder / "tokenizer.json", shared_data / "english_misc")
    stubs, classes = tmp_path / "stubs", tmp_path / "classes"
    stub_sources = sorted(str(p) for p in STUBS.rglob("*.java"))
    built = subprocess.run([javac, "-d", str(stubs), *stub_sources], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-4000:]
    # A short compiler run is mostly JIT warm-up: the client compiler alone makes kotlinc 2-3x faster.
    env = {**os.environ, "JAVA_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}
    compiled = subprocess.run(
        [
            kotlinc,
            "-cp",
            str(stubs),
            str(CORE / "src" / "main" / "kotlin"),
            str(CORE / "src" / "test" / "kotlin"),
            str(APP_SOURCES),
            "-d",
            str(classes),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert compiled.returncode == 0, compiled.stderr[-4000:]
    for app_class in ("ExecutorchWhisper", "ExecutorchAsr"):  # single-file programs; per-user adapter files
        assert (classes / "org" / "edgeasr" / "demo" / f"{app_class}.class").is_file()
    run = subprocess.run(
        [
            java,
            "-cp",
            f"{classes}{os.pathsep}{_kotlin_stdlib(kotlinc)}",
            "org.edgeasr.core.CoreTestsKt",
            str(vectors / "vectors.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = run.stdout + run.stderr
    print(report)  # shown by pytest -s or on failure: every check and the log-mel differences
    assert run.returncode == 0, report[-4000:]
    summary = report.strip().splitlines()[-1]
    passed, failed = (int(part.split()[0]) for part in summary.split(", "))
    assert failed == 0 and passed >= 45, summary

    # The results the Kotlin benchmark wrote follow the harness's schema (the same validator `edgeasr bench`
    # output passes), use its metric names, and the collector adds WER per group in that schema too.
    from exporter.bench_schema import load_results

    results = load_results(vectors / "kotlin_records.json")
    metrics = {r["metric"]["name"] for r in results["records"]}
    assert {
        "load_time",
        "latency_median",
        "latency_p90",
        "real_time_factor",
        "artifact_bytes",
        "clip_latency",
    } <= metrics
    assert {r["runtime"]["name"] for r in results["records"]} == {"executorch-android"}
    collect = _tool("collect_results")
    clips = tmp_path / "clips.jsonl"
    clips.write_text('{"id": "a", "text": "hello"}\n{"id": "b", "text": "hello world"}\n{"id": "c"}\n')
    collected = collect.collect([vectors / "kotlin_records.json"], clips)
    wer = {r["group"]: r for r in collected["records"] if r["metric"]["name"] == "wer"}
    assert {g: (round(r["metric"]["value"], 4), r["n"]) for g, r in wer.items()} == {
        "all": (0.3333, 2),
        "male": (0.0, 1),
        "female": (0.5, 1),
    }
    assert all(r["runtime"]["name"] == "executorch-android" and r["metric"]["unit"] == "ratio" for r in wer.values())
    broken = tmp_path / "broken.json"
    record = dict(results["records"][0])
    del record["run_id"]
    broken.write_text(json.dumps({"schema_version": 1, "records": [record]}))
    with pytest.raises(EdgeAsrError, match="run_id"):
        collect.load_records(broken)
