"""The package structure, checked: the layers import downwards only, and no module reaches into another's
private names.

`runtimes/` is the ground floor: an app-side process (a benchmark worker, a phone-side test harness) opens
an ONNX artifact with it without importing edgeasr's exporter or torch. Above it, `exporter/` may import
`runtimes/`, never the other way round; the benchmarks sit on top of both.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtimes", "exporter")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


MODULES = _project_modules()


def _resolve(module: str, name: str | None) -> str | None:
    """The project module an import names: `from a.b import c` is a.b.c when that is a module, else a.b."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module if module in MODULES else None


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(imported project module, imported name or None, line) for every import in the file, lazy ones in
    functions included: a cycle through a deferred import is still a cycle in the design."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    inside = path.is_relative_to(ROOT / "runtimes") or path.is_relative_to(ROOT / "exporter")
    package = (
        ""
        if not inside
        else (_module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0])
    )
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, None)
                if target:
                    found.append((target, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = _resolve(base, alias.name)
                if target:
                    found.append((target, alias.name if target == base else None, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(path) if target != name} for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")  # dunders (__version__) are public


def _private_attributes(path: Path) -> list[tuple[str, str, int]]:
    """(module, attribute, line) for `alias._name` where `alias` is a project module imported as a name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in MODULES:
                    aliases[alias.asname] = alias.name
    return [
        (aliases[node.value.id], node.attr, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and _is_private(node.attr)
    ]


def _is_package_of(importer: str, target: str) -> bool:
    # a package's __init__ re-exporting its own submodule's names is not reaching across modules
    return importer == target.rpartition(".")[0]


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_runtimes_import_nothing_from_exporter():
    offenders = [
        f"{name}:{line} imports {target}"
        for name, path in MODULES.items()
        if name.startswith("runtimes")
        for target, _, line in _imports(path)
        if target.startswith("exporter")
    ]
    assert offenders == []


def test_no_private_names_across_modules():
    offenders = []
    for name, path in MODULES.items():
        for target, imported, line in _imports(path):
            if imported and _is_private(imported) and target != name and not _is_package_of(name, target):
                offenders.append(f"{name}:{line} imports {target}.{imported}")
        offenders += [f"{name}:{line} uses {target}.{attr}" for target, attr, line in _private_attributes(path)]
    assert offenders == []


def test_benchmarks_use_no_private_names():
    offenders = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "android_demo" / "tools").glob("*.py")):
        for target, imported, line in _imports(path):
            if imported and _is_private(imported):
                offenders.append(f"{path.name}:{line} imports {target}.{imported}")
        offenders += [f"{path.name}:{line} uses {target}.{attr}" for target, attr, line in _private_attributes(path)]
    assert offenders == []


def test_runtimes_transcribe_through_an_onnx_artifact_without_exporter_or_torch(tiny_en, tmp_path, shared_data):
    """A fresh interpreter imports `runtimes`, opens an ONNX pair, reads its plan and transcribes a real clip:
    neither the exporter nor torch (nor transformers, which imports torch) may be loaded by that, so a runner
    process holds the runtime and the model, not a training stack (runtimes/audio.py computes the log-mel)."""
    from exporter.lower.onnx import lower_onnx
    from exporter.quant.pipeline import PlanOptions, make_plan

    plan = make_plan(
        tiny_en, None, PlanOptions(target="onnx", budget="45MB", order="uniform", calibration="minmax"), progress=False
    )
    lower_onnx(tiny_en, plan, tmp_path)
    probe = (
        "import json, sys\n"
        "import runtimes\n"
        "from runtimes.artifact import open_artifact, read_plan\n"
        f"runner = open_artifact({str(tmp_path)!r}, threads=1)\n"
        f"entry, plan = read_plan({str(tmp_path)!r})\n"
        "from runtimes.audio import load_audio\n"
        f"text = runner.transcribe(load_audio({str(shared_data / 'english_misc' / 'audio' / 'ls_1089-134691-0000.wav')!r})).text\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'exporter', 'torch', 'transformers'})\n"
        "print(json.dumps({'runner': type(runner).__name__, 'layers': len(plan['layers']), 'loaded': loaded, 'text': text}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "could wait no longer" in result.pop("text").lower()
    assert result == {"runner": "OnnxRunner", "layers": len(plan.layers), "loaded": []}


def test_every_backend_is_registered_consistently():
    from exporter.lower.registry import BACKENDS, TARGET_FORMATS, get_backend
    from exporter.quant.targets import TARGETS
    from runtimes.contract import KINDS
    from runtimes.errors import EdgeAsrError

    assert {b.kind.runtime for b in BACKENDS.values()} == set(KINDS)  # every artifact kind has its backend
    for fmt, backend in BACKENDS.items():
        assert backend.format == fmt and backend.target in TARGETS
        assert backend.kind.entry_file in backend.kind.files
    assert all(f in BACKENDS for formats in TARGET_FORMATS.values() for f in formats)
    for fmt, backend in BACKENDS.items():  # every format's files are found by the kind that runs them
        assert fmt == backend.kind.format or fmt in backend.kind.also_formats
    with pytest.raises(
        EdgeAsrError, match="unknown artifact format 'gguf'; choose from pte, pte-runner, onnx, sherpa, tflite"
    ):
        get_backend("gguf")


def test_the_cli_offers_the_library_choices():
    from exporter.choices import PLAN_TARGETS
    from exporter.cli import build_parser
    from exporter.quant.targets import TARGETS

    assert set(PLAN_TARGETS) == set(TARGETS)
    plan = build_parser()._subparsers._group_actions[0].choices["plan"]
    target = next(a for a in plan._actions if a.dest == "target")
    assert tuple(target.choices) == PLAN_TARGETS


def test_readmes_are_generated_and_short():
    """README.md stays a user's page; benchmarks/README.md and README's headline table are generated
    from the results files (a stale one fails here: run python benchmarks/make_readme.py)."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 220
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_readme.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
