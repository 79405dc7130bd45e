"""The NF4 base model that LoRA adapters are trained on and exported with.

PQM quantises the model to 4-bit NormalFloat and adapts it with LoRA. Here the base is a uniform plan on the
`nf4` target: every Linear (encoder, decoder and the output projection) in block-wise NF4, the token embedding
in 4-bit (or 8-bit) integer groups of 32 because no runtime we target gathers NF4 rows, the two encoder
convolutions in float32 (XNNPACK and ORT have no low-bit convolution here). The plan is an ordinary QuantPlan,
so `edgeasr inspect`, the ONNX lowering and the simulation read it like any other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from exporter.choices import DEFAULT_EMBEDDING
from exporter.models import WhisperBundle
from exporter.quant.formats import FP32, QuantFormat, int_format, nf4_format
from exporter.quant.layers import quantizable_layers, unquantised_bytes
from exporter.quant.plan import LayerPlan, QuantPlan
from exporter.quant.simulate import simulate
from runtimes.errors import EdgeAsrError

EMBEDDING_FORMATS = {
    "int4": int_format(4, "group", 32, prefix="gbq"),
    "int8": int_format(8, "group", 32, prefix="gbq"),
    "fp32": FP32,
}


@dataclass(frozen=True)
class Nf4Options:
    block_size: int = 64
    double_quant_block: int | None = None  # e.g. 256: block absmaxes as uint8 per 256 blocks
    embedding: str = DEFAULT_EMBEDDING  # one of EMBEDDINGS

    def validate(self) -> None:
        if self.block_size < 2 or self.block_size % 2:
            raise EdgeAsrError(f"NF4 block size must be an even number >= 2, not {self.block_size}")
        if self.double_quant_block is not None and self.double_quant_block < 1:
            raise EdgeAsrError("the double-quantisation chunk must be a positive number of blocks")
        if self.embedding not in EMBEDDING_FORMATS:
            raise EdgeAsrError(f"unknown embedding format {self.embedding!r}; choose {', '.join(EMBEDDING_FORMATS)}")

    @property
    def linear_format(self) -> QuantFormat:
        return nf4_format(self.block_size, self.double_quant_block)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Nf4Options:
        return cls(**data)


def nf4_plan(bundle: WhisperBundle, options: Nf4Options = Nf4Options()) -> QuantPlan:
    """Every Linear NF4, the embedding in `options.embedding`, convolutions float32."""
    options.validate()
    formats = {"linear": options.linear_format, "embedding": EMBEDDING_FORMATS[options.embedding], "conv": FP32}
    layers = quantizable_layers(bundle.model)
    planned = []
    for layer in layers:
        fmt = formats[layer.kind]
        planned.append(
            LayerPlan(
                name=layer.name,
                kind=layer.kind,
                category=layer.category,
                shape=list(layer.shape),
                format=fmt,
                sensitivity=None,
                bytes=fmt.weight_bytes(layer.shape),
            )
        )
    return QuantPlan(
        model_id=bundle.model_id,
        target="nf4",
        budget_bytes=None,
        order="uniform",
        calibration="minmax",
        sensitivity_metric="none",
        calibration_clips=0,
        calibration_source="none",
        personalised=False,
        layers=planned,
        unquantised_bytes=unquantised_bytes(bundle.model, layers),
        notes=[f"PQM NF4 base: {options.linear_format.name} Linears, {options.embedding} embedding, fp32 convs"],
    )


def nf4_bundle(bundle: WhisperBundle, options: Nf4Options = Nf4Options()) -> tuple[WhisperBundle, QuantPlan]:
    """(the simulated NF4 model, its plan); the full-precision bundle is not modified."""
    plan = nf4_plan(bundle, options)
    return simulate(bundle, plan), plan
