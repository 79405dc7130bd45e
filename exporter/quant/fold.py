"""Folding each LayerNorm's scale and shift into the Linear layers that read it.

LiteRT's converter folds a LayerNorm's multiply-add into the following fully connected layers (even with its
`disable_fuse_mul_and_fc` flag), so the weights it hands the quantiser are W * gamma, not W. Folding first,
the same way for the plan's simulation and for the lowering, makes both quantise the same matrices; the float
model computes the same function (up to float32 rounding of the products). The output projection is left
alone: it reads the same tensor as the token embedding, and folding would untie them.

    norm(x) = n(x) * gamma + beta  ->  Linear(norm(x)) = (W * gamma) n(x) + (W beta + b)
"""

from __future__ import annotations

import torch
from torch import nn


def _folds(model) -> list[tuple[nn.Module, str, list[nn.Linear]]]:
    """(parent, LayerNorm attribute, the Linear layers that read it)."""
    encoder, decoder = model.model.encoder, model.model.decoder
    folds = []
    for layer in list(encoder.layers) + list(decoder.layers):
        attn = layer.self_attn
        folds.append((layer, "self_attn_layer_norm", [attn.q_proj, attn.k_proj, attn.v_proj]))
        folds.append((layer, "final_layer_norm", [layer.fc1]))
    for layer in decoder.layers:
        folds.append((layer, "encoder_attn_layer_norm", [layer.encoder_attn.q_proj]))
    # the encoder's last norm feeds every decoder layer's cross-attention keys and values
    cross = [p for layer in decoder.layers for p in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)]
    folds.append((encoder, "layer_norm", cross))
    return folds


@torch.no_grad()
def fold_layernorm_affine(model) -> None:
    """In place: each LayerNorm (but the decoder's last) loses its scale and shift to the Linears after it."""
    for parent, attribute, linears in _folds(model):
        norm = getattr(parent, attribute)
        if not norm.elementwise_affine:
            continue  # folded already
        gamma, beta = norm.weight.detach().float(), norm.bias.detach().float()
        for linear in linears:
            weight = linear.weight.detach().float()
            bias = weight @ beta + (linear.bias.detach().float() if linear.bias is not None else 0.0)
            linear.weight = nn.Parameter(weight * gamma, requires_grad=False)
            linear.bias = nn.Parameter(bias, requires_grad=False)
        setattr(parent, attribute, nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False))


__all__ = ["fold_layernorm_affine"]
