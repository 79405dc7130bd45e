"""`--bundle`: copy an export's .pte artifact into an app's assets folder, all files or none.

A base program that keeps its users' LoRA adapters apart (`edgeasr export --lora`, a branch
`--lora-pte-mode`) travels with its user's `adapter.ptd` as `adapters/<user>.ptd`; `edgeasr adapter
--bundle` adds further users beside it. The app runs such a program through ExecuTorch's AsrModule, the
Android entry point that takes a data file, so only the ASR-runner layout (`--pte-layout runner`) is bundled
that way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from exporter.io import umask
from runtimes.contract import (
    PLAN_FILE,
    PTE_ADAPTER_FILE,
    PTE_FILE,
    PTE_PREPROCESSOR_FILE,
    SUMMARY_FILE,
    TOKENIZER_FILE,
)
from runtimes.errors import EdgeAsrError

# What the Android app loads from its assets folder (android_demo/): the program, the tokenizer it decodes
# with, and the plan for display (the app reads the plan it runs from the .pte itself).
BUNDLE_FILES = (PTE_FILE, TOKENIZER_FILE, PLAN_FILE)
# The .pte formats the app runs: edgeasr's layout, and the ASR-runner layout (`--pte-layout runner`), whose
# `encoder` returns one tensor that the app passes to `text_decoder` as it passes edgeasr's 2L: positionally,
# between the token and the cache position. The runner layout's preprocessor.pte travels with it.
BUNDLE_FORMATS = ("pte", "pte-runner")
OPTIONAL_FILES = (PTE_PREPROCESSOR_FILE,)
# Per-user adapter files in the assets: adapters/<user>.ptd (android_demo's BundledAssets reads this folder).
ADAPTERS_DIR = "adapters"
ADAPTER_SUFFIX = ".ptd"
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The only format whose adapter file the app can hand to ExecuTorch (AsrModule's dataPath).
ADAPTER_FORMAT = "pte-runner"
SEPARATE_ADAPTER_HINT = (
    "the app loads a per-user adapter file only through ExecuTorch's AsrModule, which runs the ASR-runner "
    "layout: export with --pte-layout runner, or with a merged --lora-pte-mode (merged-int8) for a single-file "
    "program per user"
)


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


def check_user_name(name: str) -> str:
    """A user's name as it appears in the app and in the asset file name."""
    if not _USER_NAME.fullmatch(name):
        raise EdgeAsrError(
            f"user name {name!r} cannot name a bundled adapter file: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def check_bundle_formats(formats: tuple[str, ...]) -> None:
    """An export with --bundle must make a .pte, the only artifact the Android app runs."""
    if not set(BUNDLE_FORMATS) & set(formats):
        raise EdgeAsrError(
            f"--bundle copies the ExecuTorch (.pte) artifact into the Android app, but this export makes only "
            f"{', '.join(formats)}; add --formats pte"
        )


def check_lora_bundle(options) -> None:
    """Before an NF4 + LoRA export with --bundle lowers anything: the app must be able to load what it makes
    (a single-file program, or the ASR-runner layout with the user's file apart) and the user's name must fit."""
    formats = options.resolved_formats()
    check_bundle_formats(formats)
    if options.lora_pte_mode.startswith("branch") and ADAPTER_FORMAT not in formats:
        raise EdgeAsrError(f"--lora-pte-mode {options.lora_pte_mode} keeps the adapter apart; {SEPARATE_ADAPTER_HINT}")
    check_user_name(Path(options.lora).name)


def _summary(export_dir: Path) -> dict:
    summary_path = export_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise EdgeAsrError(f"{export_dir} is not an edgeasr export folder (no export.json)")
    return json.loads(summary_path.read_text(encoding="utf-8"))


def _pte_artifact(export_dir: Path) -> tuple[Path, str]:
    """(folder, format) of the export's .pte artifact."""
    found = [a for a in _summary(export_dir).get("artifacts", []) if a.get("format") in BUNDLE_FORMATS]
    if not found:
        raise EdgeAsrError(f"{export_dir} holds no ExecuTorch (.pte) artifact to bundle; export with --formats pte")
    return export_dir / found[0]["folder"], found[0]["format"]


def pte_folder(export_dir: Path) -> Path:
    return _pte_artifact(export_dir)[0]


def _export_user(export_dir: Path) -> str:
    """The bundled user of an NF4 + LoRA export: the name of the adapter folder it was exported with."""
    lora = (_summary(export_dir).get("options") or {}).get("lora")
    if not lora:
        raise EdgeAsrError(f"{export_dir} keeps an adapter apart but its export.json names no --lora folder")
    return check_user_name(Path(lora).name)


def _stage_copies(pairs: list[tuple[Path, Path]]) -> list[Path]:
    """Copy each (source, destination) beside its destination under a temporary name; only when every copy
    succeeded are they renamed into place. Returns the destinations."""
    staged: list[tuple[Path, Path]] = []
    try:
        for source, final in pairs:
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            os.close(fd)
            staged.append((Path(tmp), final))
            shutil.copyfile(source, tmp)
            Path(tmp).chmod(0o666 & ~umask())
        for tmp, final in staged:
            os.replace(tmp, final)
    except OSError as exc:
        raise EdgeAsrError(f"cannot write the Android bundle to {final.parent}: {exc.strerror or exc}") from exc
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [final for _, final in staged]


def _adapters_folder(bundle_dir: Path) -> Path:
    folder = bundle_dir / ADAPTERS_DIR
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise EdgeAsrError(f"cannot write the Android bundle to {folder}: {exc.strerror or exc}") from exc
    return folder


def _drop_other_programs_adapters(bundle_dir: Path) -> None:
    """Remove bundled adapter files written for another program than the bundled model.pte: ExecuTorch
    finds a user's tensors by key, and the keys are the same for every base, so one would load silently."""
    from runtimes.pte_adapter import read_adapter_file

    folder = bundle_dir / ADAPTERS_DIR
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"*{ADAPTER_SUFFIX}")):
        try:
            read_adapter_file(path, bundle_dir / PTE_FILE)
        except EdgeAsrError:
            path.unlink(missing_ok=True)


def bundle_artifacts(export_dir: Path, bundle_dir: Path) -> list[Path]:
    """Copy the .pte artifact's files into an app's assets folder (e.g. android_demo/app/src/main/assets/).

    Every file is first copied beside its destination under a temporary name; only when all copies
    succeeded are they renamed into place, so the app never sees a new model.pte with an old tokenizer.
    A program whose adapter is apart brings its user's adapter.ptd as adapters/<user>.ptd; adapter files
    left from another program are removed. Returns the destination paths.
    """
    export_dir = Path(export_dir)
    source, fmt = _pte_artifact(export_dir)
    missing = [name for name in BUNDLE_FILES if not (source / name).is_file()]
    if missing:
        raise EdgeAsrError(f"{source} lacks {', '.join(missing)}; re-run the export")
    adapter = source / PTE_ADAPTER_FILE
    if adapter.is_file() and fmt != ADAPTER_FORMAT:
        raise EdgeAsrError(f"{source}'s program keeps its adapter apart ({PTE_ADAPTER_FILE}); {SEPARATE_ADAPTER_HINT}")
    bundle_dir = check_bundle_folder(bundle_dir)
    names = [*BUNDLE_FILES, *(name for name in OPTIONAL_FILES if (source / name).is_file())]
    pairs = [(source / name, bundle_dir / name) for name in names]
    if adapter.is_file():
        from runtimes.pte_adapter import read_adapter_file

        read_adapter_file(adapter, source / PTE_FILE)  # the export's own user file, for its program and intact
        user = _export_user(export_dir)
        pairs.append((adapter, _adapters_folder(bundle_dir) / f"{user}{ADAPTER_SUFFIX}"))
    copied = _stage_copies(pairs)
    for name in OPTIONAL_FILES:  # an older program's preprocessor must not stay beside a new program
        if name not in names:
            (bundle_dir / name).unlink(missing_ok=True)
    _drop_other_programs_adapters(bundle_dir)
    return copied


def bundle_user_adapter(adapter_file: Path, bundle_dir: Path, user: str) -> Path:
    """Add one user's adapter file to a bundle whose model.pte it was written for, as adapters/<user>.ptd."""
    from runtimes.pte_adapter import read_adapter_file

    bundle_dir = check_user_bundle(bundle_dir, user)
    read_adapter_file(adapter_file, bundle_dir / PTE_FILE)  # written for this very program, and intact
    destination = _adapters_folder(bundle_dir) / f"{user}{ADAPTER_SUFFIX}"
    return _stage_copies([(Path(adapter_file), destination)])[0]


def check_user_bundle(bundle_dir: Path, user: str) -> Path:
    """Before a user's adapter file is written for a bundle: the bundle holds an ASR-runner program to add
    users to, the folder is writable and the name fits."""
    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / PTE_FILE).is_file():
        raise EdgeAsrError(
            f"{bundle_dir} holds no bundled {PTE_FILE}: bundle the base first with `edgeasr export --lora ... "
            f"--pte-layout runner --bundle {bundle_dir}`"
        )
    if not (bundle_dir / PTE_PREPROCESSOR_FILE).is_file():
        raise EdgeAsrError(
            f"the program bundled in {bundle_dir} is not in the ASR-runner layout; {SEPARATE_ADAPTER_HINT}"
        )
    check_user_name(user)
    return check_bundle_folder(bundle_dir)
