"""The lowering backends, by export format. Adding one is its own files plus one entry here
(see exporter/lower/backend.py for the list of files)."""

from __future__ import annotations

from exporter.lower import (
    litert_backend,
    onnx_backend,
    pte_backend,
    pte_runner_backend,
    sherpa_backend,
    tflite_runtime_backend,
)
from exporter.lower.backend import Backend
from runtimes.errors import EdgeAsrError

BACKENDS: dict[str, Backend] = {
    b.format: b
    for b in (
        pte_backend.BACKEND,
        pte_runner_backend.BACKEND,
        onnx_backend.BACKEND,
        sherpa_backend.BACKEND,
        litert_backend.BACKEND,
        tflite_runtime_backend.BACKEND,
    )
}
FORMATS = tuple(BACKENDS)

# `edgeasr export --target` -> the formats it makes when --formats is not given.
TARGET_FORMATS = {
    "android": ("pte",),
    "executorch": ("pte",),
    "onnx": ("onnx",),
    "litert": ("tflite",),
    "tflite-runtime": ("tflite-runtime",),
}
EXPORT_TARGETS = tuple(TARGET_FORMATS)


def get_backend(fmt: str) -> Backend:
    if fmt not in BACKENDS:
        raise EdgeAsrError(f"unknown artifact format {fmt!r}; choose from {', '.join(FORMATS)}")
    return BACKENDS[fmt]


def resolve_formats(target: str, formats: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The formats an export makes: `formats` if given (deduplicated, in order), else the target's."""
    if target not in TARGET_FORMATS:
        raise EdgeAsrError(
            f"unknown export target {target!r}; choose {', '.join(EXPORT_TARGETS[:-1])} or {EXPORT_TARGETS[-1]}"
        )
    chosen = formats or TARGET_FORMATS[target]
    unknown = [f for f in chosen if f not in BACKENDS]
    if unknown:
        raise EdgeAsrError(f"unknown artifact format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(chosen))
