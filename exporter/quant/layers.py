"""Which parts of Whisper are quantisable, and how everything else is counted.

Quantisable: every Linear and Conv1d of encoder and decoder, the token embedding, and the output projection.
Whisper ties the output projection to the token embedding. They stay two layers in a plan, each with its
format, because ExecuTorch stores them as two tensors (an embedding table plus an XNNPACK-packed linear) and
their bytes are counted twice there. A target that can share one quantised tensor between the two ops
(`Target.shares_tied_weights`: ONNX) ties them instead: the output projection follows the embedding's rung
and clip, and once quantised it costs no bytes of its own. The float32 size is counted untied, so that
"fp32" means what an unquantised artifact really holds. Norms, biases and positional embeddings stay
float, in the target's float width (`Target.float_bits`: half on onnx).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# (follower, leader): the output projection is the transposed use of the token embedding's matrix.
TIED_PAIRS = (("proj_out", "model.decoder.embed_tokens"),)

CATEGORIES = ("conv", "encoder_linear", "decoder_linear", "embedding", "output_projection", "unquantised")


@dataclass(frozen=True)
class QuantLayer:
    name: str  # module path in WhisperForConditionalGeneration, e.g. model.encoder.layers.0.fc1
    kind: str  # "linear", "conv", "embedding" (selects the target's ladder)
    category: str  # for the byte totals
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _category(name: str, module: nn.Module) -> tuple[str, str] | None:
    if isinstance(module, nn.Conv1d):
        return "conv", "conv"
    if isinstance(module, nn.Embedding) and name.endswith("embed_tokens"):
        return "embedding", "embedding"
    if isinstance(module, nn.Linear):
        if name == "proj_out":
            return "linear", "output_projection"
        return "linear", "encoder_linear" if ".encoder." in f".{name}." else "decoder_linear"
    return None


def quantizable_layers(model: nn.Module) -> list[QuantLayer]:
    """Quantisable layers in module order (the order ties in sensitivity are broken by)."""
    layers = []
    for name, module in model.named_modules():
        found = _category(name, module)
        if found:
            kind, category = found
            layers.append(QuantLayer(name, kind, category, tuple(module.weight.shape)))
    return layers


def tied_followers(layers: list[QuantLayer]) -> dict[str, str]:
    """follower name -> leader name, for the tied pairs both present among `layers`."""
    names = {layer.name for layer in layers}
    return {f: lead for f, lead in TIED_PAIRS if f in names and lead in names}


def unquantised_bytes(model: nn.Module, layers: list[QuantLayer], float_bits: int = 32) -> int:
    """Bytes of every parameter that is not a quantisable weight (biases, norms, positions), stored as
    `float_bits`-bit floats (the target's `float_bits`).

    The tied output projection shares the embedding's Parameter, so iterating parameters counts that
    matrix once; it is a quantisable weight either way and is excluded here.
    """
    weights = {f"{layer.name}.weight" for layer in layers}
    total = 0
    for name, param in model.named_parameters(remove_duplicate=False):
        if name not in weights:
            total += param.numel() * float_bits // 8
    return total


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def weight_of(model: nn.Module, layer: QuantLayer) -> torch.Tensor:
    return get_module(model, layer.name).weight
