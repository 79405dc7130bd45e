"""The tflite-runtime backend: the LiteRT pair (exporter/lower/litert.py) planned on the formats that
tflite-runtime 2.14 computes correctly, and checked through tflite-runtime itself at export."""

from __future__ import annotations

from exporter.lower import litert_backend
from exporter.lower.backend import Backend


def preflight() -> None:
    """The converter, and tflite-runtime's own environment (the export's parity check runs it)."""
    from runtimes.tflite_process import worker_python

    litert_backend.preflight()
    worker_python()


BACKEND = Backend(
    format="tflite-runtime",
    target="tflite-runtime",
    description="LiteRT pair for tflite-runtime 2.14 (.tflite, fp32 / int8 per tensor)",
    lower=litert_backend.lower,
    lower_lora=litert_backend.lower_lora,
    attentions=("explicit",),
    memory_host="python",
    memory_model="litert",  # the memory model fitted to ai-edge-litert's interpreter, the export's own runner
    clients=("tflite-runtime",),
    preflight=preflight,
)
