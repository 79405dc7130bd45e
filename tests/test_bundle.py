"""`edgeasr export --bundle`: the .pte artifact's files copied into the Android app's assets, atomically.

The export itself is slow and covered by test_export.py; here the bundling step runs on fake export folders
and the CLI's early checks run before any model is loaded.
"""

from __future__ import annotations

import json

import pytest

from exporter.export import BUNDLE_FILES, bundle_artifacts
from runtimes.errors import EdgeAsrError


def _fake_export(folder, pte_folder=".", content=b"program-1", fmt="pte"):
    target = folder / pte_folder
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.pte").write_bytes(content)
    (target / "tokenizer.json").write_text('{"model": {}}')
    (target / "plan.json").write_text('{"model_id": "tiny.en"}')
    if fmt == "pte-runner":
        (target / "preprocessor.pte").write_bytes(b"front end")
    artifacts = [{"format": fmt, "folder": pte_folder}]
    if pte_folder != ".":
        artifacts.insert(0, {"format": "onnx", "folder": "."})
    (folder / "export.json").write_text(json.dumps({"artifacts": artifacts}))
    return folder


def test_bundle_copies_the_pte_files(tmp_path):
    export_dir = _fake_export(tmp_path / "export")
    assets = tmp_path / "app" / "src" / "main" / "assets"  # created on demand
    copied = bundle_artifacts(export_dir, assets)
    assert sorted(p.name for p in copied) == sorted(BUNDLE_FILES)
    assert (assets / "model.pte").read_bytes() == b"program-1"
    assert sorted(p.name for p in assets.iterdir()) == sorted(BUNDLE_FILES)  # no temporary files left


def test_bundle_finds_the_pte_in_a_subfolder_and_replaces_an_old_bundle(tmp_path):
    assets = tmp_path / "assets"
    bundle_artifacts(_fake_export(tmp_path / "a"), assets)
    bundle_artifacts(_fake_export(tmp_path / "b", pte_folder="pte", content=b"program-2"), assets)
    assert (assets / "model.pte").read_bytes() == b"program-2"


def test_bundle_takes_the_runner_layout_with_its_preprocessor_and_drops_a_stale_one(tmp_path):
    assets = tmp_path / "assets"
    copied = bundle_artifacts(_fake_export(tmp_path / "r", content=b"runner", fmt="pte-runner"), assets)
    assert sorted(p.name for p in copied) == sorted([*BUNDLE_FILES, "preprocessor.pte"])
    assert (assets / "model.pte").read_bytes() == b"runner" and (assets / "preprocessor.pte").is_file()
    bundle_artifacts(_fake_export(tmp_path / "e", content=b"edgeasr"), assets)  # back to edgeasr's layout
    assert sorted(p.name for p in assets.iterdir()) == sorted(BUNDLE_FILES)


def test_bundle_without_a_pte_artifact_fails_clearly(tmp_path):
    export_dir = tmp_path / "onnx-only"
    export_dir.mkdir()
    (export_dir / "export.json").write_text(json.dumps({"artifacts": [{"format": "onnx", "folder": "."}]}))
    with pytest.raises(EdgeAsrError, match="no ExecuTorch"):
        bundle_artifacts(export_dir, tmp_path / "assets")
    with pytest.raises(EdgeAsrError, match="not an edgeasr export"):
        bundle_artifacts(tmp_path, tmp_path / "assets")


def test_incomplete_export_leaves_the_old_bundle_untouched(tmp_path):
    assets = tmp_path / "assets"
    bundle_artifacts(_fake_export(tmp_path / "a"), assets)
    broken = _fake_export(tmp_path / "b", content=b"program-2")
    (broken / "plan.json").unlink()
    with pytest.raises(EdgeAsrError, match="lacks plan.json"):
        bundle_artifacts(broken, assets)
    assert (assets / "model.pte").read_bytes() == b"program-1"


def test_unwritable_bundle_folder_fails_before_any_export_work(tmp_path, run_cli):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    status, _, err = run_cli(
        "export",
        "--model",
        "tiny.en",
        "--budget",
        "45MB",
        "--out",
        tmp_path / "out",
        "--bundle",
        blocker / "assets",
        "--no-progress",
    )
    assert status == 2
    assert "cannot write the Android bundle" in err and "--bundle" in err
    assert not (tmp_path / "out").exists()


def test_bundle_needs_a_pte_format(tmp_path, run_cli):
    status, _, err = run_cli(
        "export",
        "--model",
        "tiny.en",
        "--budget",
        "45MB",
        "--out",
        tmp_path / "out",
        "--target",
        "onnx",
        "--bundle",
        tmp_path / "assets",
        "--no-progress",
    )
    assert status == 2 and "add --formats pte" in err


def test_copy_failing_midway_leaves_the_old_bundle_untouched(tmp_path, monkeypatch):
    import exporter.export.bundle as export_module

    assets = tmp_path / "assets"
    bundle_artifacts(_fake_export(tmp_path / "a"), assets)
    real_copy, calls = export_module.shutil.copyfile, []

    def copy_then_fail(src, dst):
        calls.append(src)
        if len(calls) == 2:  # model.pte already staged, the disk fills up on the tokenizer
            raise OSError(28, "No space left on device")
        return real_copy(src, dst)

    monkeypatch.setattr(export_module.shutil, "copyfile", copy_then_fail)
    with pytest.raises(EdgeAsrError, match="No space left"):
        bundle_artifacts(_fake_export(tmp_path / "b", content=b"program-2"), assets)
    assert (assets / "model.pte").read_bytes() == b"program-1"
    assert sorted(p.name for p in assets.iterdir()) == sorted(BUNDLE_FILES)
