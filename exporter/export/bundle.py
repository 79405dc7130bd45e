"""`--bundle`: copy an export's .pte artifact into an app's assets folder, all files or none."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from exporter.io import umask
from runtimes.contract import PLAN_FILE, PTE_FILE, PTE_PREPROCESSOR_FILE, SUMMARY_FILE, TOKENIZER_FILE
from runtimes.errors import EdgeAsrError

# What the Android app loads from its assets folder (android_demo/): the program, the tokenizer it decodes
# with, and the plan for display (the app reads the plan it runs from the .pte itself).
BUNDLE_FILES = (PTE_FILE, TOKENIZER_FILE, PLAN_FILE)
# The .pte formats the app runs: edgeasr's layout, and the ASR-runner layout (`--pte-layout runner`), whose
# `encoder` returns one tensor that the app passes to `text_decoder` as it passes edgeasr's 2L: positionally,
# between the token and the cache position. The runner layout's preprocessor.pte travels with it.
BUNDLE_FORMATS = ("pte", "pte-runner")
OPTIONAL_FILES = (PTE_PREPROCESSOR_FILE,)


def check_bundle_folder(bundle_dir: Path) -> Path:
    """Create `bundle_dir` if needed and prove it is writable, before any expensive stage runs."""
    bundle_dir = Path(bundle_dir)
    try:
        bundle_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgeasr-bundle-probe.", dir=bundle_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EdgeAsrError(
            f"cannot write the Android bundle to {bundle_dir}: {exc.strerror or exc}; pass a "
            "writable folder to --bundle (e.g. android_demo/app/src/main/assets/)"
        ) from exc
    return bundle_dir


def pte_folder(export_dir: Path) -> Path:
    summary_path = export_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise EdgeAsrError(f"{export_dir} is not an edgeasr export folder (no export.json)")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    folders = [a["folder"] for a in summary.get("artifacts", []) if a.get("format") in BUNDLE_FORMATS]
    if not folders:
        raise EdgeAsrError(f"{export_dir} holds no ExecuTorch (.pte) artifact to bundle; export with --formats pte")
    return export_dir / folders[0]


def bundle_artifacts(export_dir: Path, bundle_dir: Path) -> list[Path]:
    """Copy the .pte artifact's files into an app's assets folder (e.g. android_demo/app/src/main/assets/).

    Every file is first copied beside its destination under a temporary name; only when all copies
    succeeded are they renamed into place, so the app never sees a new model.pte with an old tokenizer.
    Returns the destination paths.
    """
    source = pte_folder(Path(export_dir))
    missing = [name for name in BUNDLE_FILES if not (source / name).is_file()]
    if missing:
        raise EdgeAsrError(f"{source} lacks {', '.join(missing)}; re-run the export")
    bundle_dir = check_bundle_folder(bundle_dir)
    names = [*BUNDLE_FILES, *(name for name in OPTIONAL_FILES if (source / name).is_file())]
    staged: list[tuple[Path, Path]] = []
    try:
        for name in names:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=bundle_dir)
            os.close(fd)
            staged.append((Path(tmp), bundle_dir / name))
            shutil.copyfile(source / name, tmp)
            Path(tmp).chmod(0o666 & ~umask())
        for tmp, final in staged:
            os.replace(tmp, final)
    except OSError as exc:
        raise EdgeAsrError(f"cannot write the Android bundle to {bundle_dir}: {exc.strerror or exc}") from exc
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    for name in OPTIONAL_FILES:  # an older program's preprocessor must not stay beside a new program
        if name not in names:
            (bundle_dir / name).unlink(missing_ok=True)
    return [final for _, final in staged]
