"""executorch-native: the .pte through ExecuTorch's C++ runtime in a torch-free worker (runtimes/pte_native.py).

The worker is compiled against the executorch wheel once per test session (into a temporary cache), then it
must give the Python runtime's transcripts and logits on real clips, hold no torch, and refuse what it cannot
run with one clear error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from runtimes.audio import load_audio
from runtimes.errors import EdgeAsrError

CLIPS = ("english_misc/audio/ls_1089-134691-0000.wav", "english_misc/audio/ls_1089-134691-0001.wav")


@pytest.fixture(scope="module")
def pte(tiny_export):
    return tiny_export[0] / "model.pte"


def test_the_worker_transcribes_as_the_python_runtime_does(native_cache, pte, shared_data):
    from runtimes.executorch_runner import ExecutorchRunner
    from runtimes.pte_native import NativePteRunner

    native = NativePteRunner(pte, threads=1)
    python = ExecutorchRunner.open(pte)  # the process's pool as it is: resizing it would not matter here
    try:
        assert (native.n_mels, native.n_frames, native.special) == (python.n_mels, python.n_frames, python.special)
        for clip in CLIPS:
            samples = load_audio(shared_data / clip)
            ours, theirs = native.transcribe(samples), python.transcribe(samples)
            assert ours.tokens == theirs.tokens and ours.text == theirs.text and ours.text
        features = native.features(load_audio(shared_data / CLIPS[0]))
        prompt = native.special.prompt(None, "transcribe")
        ours = native.start_decoder(native.encode(features)).step(prompt)
        theirs = python.start_decoder(python.encode(features)).step(prompt)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
        memory = native.engine.memory()
        assert memory["hwm"] >= memory["rss"] > native.engine.baseline_rss
    finally:
        native.close()
    assert native.engine.process.poll() is not None  # closing ends the worker


def test_the_worker_process_holds_no_torch(native_cache, pte):
    from runtimes.pte_native import NativePteRunner, build_worker

    runner = NativePteRunner(pte)
    try:
        maps = open(f"/proc/{runner.engine.process.pid}/maps").read()
        assert "libexecutorch.so" in maps and "libtorch" not in maps and "libpython" not in maps
    finally:
        runner.close()
    assert build_worker() == build_worker()  # built once, then reused from the cache
    assert [p.name for p in native_cache.iterdir()] == [build_worker().name]


def test_open_artifact_and_bench_name_the_native_runtime(native_cache, tiny_export):
    from runtimes.artifact import open_artifact

    runner = open_artifact(tiny_export[0], runtime="executorch-native")
    try:
        assert runner.name == "executorch-native"
    finally:
        runner.close()
    with pytest.raises(EdgeAsrError, match="adapter file not found"):  # checked before the worker sees it
        open_artifact(tiny_export[0], runtime="executorch-native", adapters=tiny_export[0])


def test_a_corrupt_program_is_one_clear_error(native_cache, pte, tmp_path):
    from runtimes.pte_native import NativePteRunner

    broken = tmp_path / "model.pte"
    broken.write_bytes(pte.read_bytes()[:5000])
    shutil.copy(pte.parent / "tokenizer.json", tmp_path)
    with pytest.raises(EdgeAsrError, match="could not load (the program|method encoder of) .*model.pte"):
        NativePteRunner(broken)
    with pytest.raises(EdgeAsrError, match="ExecuTorch program not found"):
        NativePteRunner(tmp_path / "absent.pte")
    with pytest.raises(EdgeAsrError, match="unknown load mode 'swap'"):
        NativePteRunner(pte, load_mode="swap")


def test_no_compiler_and_a_failed_build_are_clear_errors_that_leave_nothing(tmp_path, monkeypatch):
    from runtimes import pte_native

    monkeypatch.setenv("EDGEASR_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-compiler"))
    with pytest.raises(EdgeAsrError, match="compiling the executorch-native worker with .*no-compiler failed"):
        pte_native.build_worker()
    assert list(tmp_path.iterdir()) == []
    monkeypatch.delenv("CXX")
    monkeypatch.setattr(pte_native.shutil, "which", lambda name: None)
    with pytest.raises(EdgeAsrError, match="found no C\\+\\+ compiler: install one"):
        pte_native.build_worker()


def test_xnnpack_workspace_sharing_is_the_memory_saver_it_claims(native_cache, pte, shared_data):
    """ExecuTorch shares one XNNPACK workspace across a program's delegates by default; without sharing each
    delegate keeps its own, and the worker's run peak grows by hundreds of MB (measured: tiny.en 45 MB .pte,
    156 vs 448 MB above the worker's baseline)."""
    from runtimes.pte_native import NativePteRunner

    samples = load_audio(shared_data / CLIPS[0])
    peaks = {}
    for mode in (None, 0):
        runner = NativePteRunner(pte, workspace_sharing=mode)
        try:
            runner.transcribe(samples)
            peaks[mode] = runner.engine.memory()["hwm"] - runner.engine.baseline_rss
        finally:
            runner.close()
    assert peaks[0] > peaks[None] + 100_000_000
    with pytest.raises(EdgeAsrError, match="XNNPACK refused workspace sharing mode 7"):
        NativePteRunner(pte, workspace_sharing=7)


def test_bench_measures_the_native_runtime_with_both_processes(native_cache, tiny_export, shared_data):
    from exporter.bench import BenchOptions, bench
    from exporter.memory import WhisperShape, cross_cache_bytes, estimate_artifact, model_config
    from runtimes.contract import PTE_FILE
    from runtimes.executorch_runner import read_pte_info

    hosts = ("native", "android", "python")

    manifest = shared_data / "english_misc" / "manifest.jsonl"
    options = BenchOptions(artifact=tiny_export[0], data=manifest, runtimes=("executorch-native",), limit=1)
    result = bench(options)
    metrics = {r["metric"]["name"]: r for r in result.records}
    assert metrics["wer"]["runtime"]["name"] == "executorch-native" and metrics["wer"]["n"] == 1
    assert metrics["wer"]["runtime"]["backend"].endswith("(memory: both processes)")
    assert metrics["memory_run_peak"]["metric"]["value"] > metrics["artifact_bytes"]["metric"]["value"]
    # the C++ Module keeps an arena per method and maps the file, as on Android, but the worker reads the
    # encoder's outputs (the cross-attention keys and values) in place: the native host's estimate
    config = model_config("tiny.en")
    native, android, python = (estimate_artifact(tiny_export[0], "executorch", config, h) for h in hosts)
    assert metrics["predicted_memory_run_peak"]["metric"]["value"] == native.run_peak_bytes
    assert android.run_peak_bytes - native.run_peak_bytes == cross_cache_bytes(WhisperShape.from_config(config))
    # the embedding lookup table is read in place from the mapped file: resident for the Python runtime only
    table = next(
        layer["bytes"]
        for layer in read_pte_info(tiny_export[0] / PTE_FILE).plan["layers"]
        if layer["kind"] == "embedding"
    )
    assert python.weights_bytes - android.weights_bytes == table > 0
