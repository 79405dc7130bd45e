"""benchmarks/peers.py keeps each measured row, so a run stopped after hours resumes instead of starting over.

The measuring functions are replaced by counters here: what is under test is which rows a resumed run measures
again (none it already has), and that a checkpoint from another run is never taken for this one's.
"""

from __future__ import annotations

import argparse
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

IDENTITY = {"model": "tiny.en", "clips": ["a", "b"], "threads": 1, "lowering": "abc", "edgeasr": "0"}


def _row(system: str, fmt: str = "ggml", texts=True):
    from peers import Row

    return Row(system, fmt, 100, {"a": system} if texts else None, [0.5], 1.0, 10)


def test_rows_are_kept_and_taken_back_only_for_the_same_run(tmp_path):
    from peers import RowCheckpoint

    path = tmp_path / "rows.partial.json"
    calls = []

    def measure(name):
        calls.append(name)
        return _row(name)

    first = RowCheckpoint(path, IDENTITY)
    assert first.row("x", lambda: measure("x")).texts == {"a": "x"}
    assert path.is_file()  # written after each row, before the next one is measured

    again = RowCheckpoint(path, IDENTITY)
    assert again.row("x", lambda: measure("x again")) == first.rows["x"]
    assert calls == ["x"]

    other = RowCheckpoint(path, {**IDENTITY, "clips": ["a"]})  # another clip set: nothing is reused
    other.row("x", lambda: measure("x other"))
    fresh = RowCheckpoint(path, {**IDENTITY, "clips": ["a"]}, fresh=True)
    fresh.row("x", lambda: measure("x fresh"))
    assert calls == ["x", "x other", "x fresh"]

    path.write_text("{not json")
    RowCheckpoint(path, IDENTITY).row("x", lambda: measure("x after corruption"))
    assert calls[-1] == "x after corruption"

    fresh.finish()
    assert not path.exists()


class _Stopped(Exception):
    pass


def test_a_stopped_run_resumes_with_the_rows_it_lacks(tmp_path, monkeypatch):
    import peers

    monkeypatch.setattr(peers, "load_whisper", lambda model: argparse.Namespace(special=None))
    monkeypatch.setattr(peers, "decoder_prompt", lambda special: [1])
    files = {f"whisper.cpp {q}": tmp_path / f"ggml-{q}.bin" for q in ("q4_0", "q8_0")}
    monkeypatch.setattr(peers, "peer_artifacts", lambda *args: files)
    monkeypatch.setattr(peers, "artifact_bytes", lambda path: 1000 if "q4_0" in path.name else 2000)
    monkeypatch.setattr(peers, "exported", lambda model, target, fmt, budget: tmp_path)
    measured, stop_at = [], {"android 1000"}

    def run_peer(system, path, clips, threads, prompt):
        measured.append(system)
        return _row(system)

    def target_row(args, clips, target, fmt, runtime, budget):
        if f"{target} {budget}" in stop_at:
            raise _Stopped
        measured.append(f"{target} {budget}")
        if target == "android" and budget == 1000:
            return _row("edgeasr pte", "pte", texts=False)  # the export could not meet the budget
        return _row(f"edgeasr {fmt}", fmt)

    monkeypatch.setattr(peers, "run_peer", run_peer)
    monkeypatch.setattr(peers, "target_row", target_row)
    monkeypatch.setattr(peers, "run_edgeasr", lambda *args: measured.append("fp") or _row("fp", "fp32"))
    args = argparse.Namespace(model="tiny.en", quants=["q4_0", "q8_0"], no_ct2=True, threads=1)
    args.targets = ["onnx", "android"]
    path = tmp_path / "rows.partial.json"

    with pytest.raises(_Stopped):
        peers.measure(args, None, peers.RowCheckpoint(path, IDENTITY))
    assert measured == ["whisper.cpp q4_0", "onnx 1000", "fp"]

    stop_at.clear()
    rows = peers.measure(args, None, peers.RowCheckpoint(path, IDENTITY))
    assert measured[3:] == ["android 1000", "whisper.cpp q8_0", "onnx 2000", "android 2000"]
    systems = [row.system for row, _ in rows]
    assert systems == ["whisper.cpp q4_0", "edgeasr onnx", "Whisper FP", "edgeasr pte"] + systems[4:]
    assert len(rows) == 7
    # an edgeasr row is compared with the whisper.cpp file of its size; a failed export with nothing
    assert rows[1][1].system == "whisper.cpp q4_0" and rows[3][1] is None


def test_a_remeasured_size_replaces_only_its_own_rows():
    """`--remeasure q8_0` puts the new whisper.cpp q8_0 row and edgeasr's re-measured rows at its bytes where
    the old ones were; the other sizes, FP, CT2 and another target's row at q8_0 stay as measured."""
    from peers import replace_size

    def rows(*systems, tag="old"):
        return [{"system": system, "tag": tag} for system in systems]

    stored = rows(
        "whisper.cpp q4_0", "edgeasr onnx", "Whisper FP", "whisper.cpp q8_0", "edgeasr onnx", "edgeasr pte", "ct2 int8"
    )
    fresh = rows("whisper.cpp q8_0", "edgeasr onnx", tag="new")
    merged = replace_size(stored, fresh, "q8_0")
    assert [(r["system"], r["tag"]) for r in merged] == [
        ("whisper.cpp q4_0", "old"),
        ("edgeasr onnx", "old"),
        ("Whisper FP", "old"),
        ("whisper.cpp q8_0", "new"),
        ("edgeasr onnx", "new"),
        ("edgeasr pte", "old"),
        ("ct2 int8", "old"),
    ]
    # a size the file did not have goes after the others
    assert replace_size(stored[:3], fresh, "q8_0") == stored[:3] + fresh
