"""Measured, label-free cost of each layer on each rung by its effect on the model's output.

For a layer and a rung, the cost is how far the model's next-token distributions move when only that layer
(with its tied partner where the target stores the pair once) is quantised to the rung's format: the mean
KL(FP || quantised) over the pseudo-label's positions of the user's clips, teacher-forced on the FP model's
own transcript (observe.py recorded it; no transcript of the user is read). Where the weight is quantised
the input is too, as the runtime does (8da* formats), with min/max scales.

Why, beside the per-layer cosine (costs.py): a layer's own output error says nothing about how far it
travels. The token embedding on int2 has a small row-wise cosine error yet takes WER from 47 % to 81 %
(benchmarks/results/allocation_tiny_en_android.md, 35 MB), because every decoder step reads it. The output
measure sees that; the knapsack then adds costs across layers, the usual first-order assumption.

Cost: one partial model pass per layer and rung on `n_clips` clips. The FP encoder states entering every
block are computed once, so an encoder layer re-runs only the blocks from its own onward, and a decoder
layer only the decoder (benchmarks/allocation_groups.py records the measured seconds).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from exporter.models import WhisperBundle
from exporter.quant.fold import fold_layernorm_affine
from exporter.quant.formats import QuantFormat
from exporter.quant.layers import QuantLayer, tied_followers
from exporter.quant.observe import Observations
from exporter.quant.primitives import fake_quantize_weight
from exporter.quant.simulate import dynamic_input_hook
from exporter.quant.targets import Target

DEFAULT_OUTPUT_COST_CLIPS = 4
_ENCODER_BLOCK = re.compile(r"^model\.encoder\.layers\.(\d+)\.")


@contextmanager
def _quantised(model: nn.Module, layers: list[tuple[QuantLayer, QuantFormat]]) -> Iterator[None]:
    """`model` with these layers' weights (and, for 8da* formats, inputs) quantised; restored on exit.
    A new Parameter per layer, so a tied partner keeps the float weight unless it is listed too."""
    saved, handles = [], []
    try:
        for layer, fmt in layers:
            module = model.get_submodule(layer.name)
            saved.append((module, module.weight))
            module.weight = nn.Parameter(fake_quantize_weight(module.weight, fmt), requires_grad=False)
            hook = dynamic_input_hook(fmt, layer.kind)
            if hook is not None:
                handles.append(module.register_forward_pre_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, weight in reversed(saved):
            module.weight = weight


class _OutputProbe:
    """The FP model's encoder block inputs and output distributions on a few clips, and the KL of a variant."""

    def __init__(self, model: nn.Module, observations: Observations, n_clips: int, no_timestamps: int):
        self.model = model
        clips = observations.clips[:n_clips]
        self.features = torch.stack([torch.from_numpy(c.features) for c in clips]).float()
        # Teacher forcing on prompt + pseudo-label + end of text, padded to one batch: the decoder is causal,
        # so padding after a clip's end changes none of its real positions, which alone are scored.
        length = max(len(c.tokens) for c in clips)
        self.tokens = torch.tensor([c.tokens + [c.tokens[-1]] * (length - len(c.tokens)) for c in clips])
        self.scored = torch.zeros(len(clips), length, dtype=torch.bool)
        for row, clip in enumerate(clips):
            # position p predicts token p + 1: score the predictions of the transcript and end of text
            self.scored[row, clip.tokens.index(no_timestamps) : len(clip.tokens) - 1] = True
        encoder = model.model.encoder
        self.block_inputs = [self._embed(self.features)]
        for block in encoder.layers:
            self.block_inputs.append(_block(block, self.block_inputs[-1]))
        self.states = encoder.layer_norm(self.block_inputs[-1])
        self.reference = self._log_probs(self.states)
        self.reference_probs = self.reference.exp()

    def _embed(self, features: torch.Tensor) -> torch.Tensor:
        encoder = self.model.model.encoder
        x = F.gelu(encoder.conv1(features))
        x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
        return x + encoder.embed_positions.weight[: x.shape[1]]

    def _log_probs(self, states: torch.Tensor) -> torch.Tensor:
        logits = self.model(encoder_outputs=(states,), decoder_input_ids=self.tokens).logits
        return F.log_softmax(logits.float()[self.scored], dim=-1)

    def encoder_states(self, start: int | None) -> torch.Tensor:
        """The encoder's output re-run from block `start` on (None: from the convolutions; past the last
        block: the FP output, nothing to re-run)."""
        encoder = self.model.model.encoder
        if start is not None and start >= len(encoder.layers):
            return self.states
        x = self._embed(self.features) if start is None else self.block_inputs[start]
        for block in encoder.layers[start or 0 :]:
            x = _block(block, x)
        return encoder.layer_norm(x)

    def kl(self, states: torch.Tensor) -> float:
        """Mean KL(FP || variant) per scored position, in nats."""
        variant = self._log_probs(states)
        return max(0.0, float((self.reference_probs * (self.reference - variant)).sum(-1).mean()))


def _block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = block(x, None)
    return out[0] if isinstance(out, tuple) else out


def _start_block(name: str, kind: str, n_blocks: int) -> int | None:
    """The first encoder block a change to `name` alters: its own block; None for the convolutions
    (whole encoder); n_blocks for decoder-side layers (the FP encoder output stands)."""
    if kind == "conv":
        return None
    found = _ENCODER_BLOCK.match(name)
    return int(found.group(1)) if found else n_blocks


@torch.no_grad()
def output_costs(
    bundle: WhisperBundle,
    observations: Observations,
    target: Target,
    n_clips: int = DEFAULT_OUTPUT_COST_CLIPS,
    progress: bool = True,
) -> dict[str, list[float]]:
    """{layer: [cost on rung 0, rung 1, ...]} along the layer kind's ladder on `target`; float rungs cost 0.
    A tied pair the target stores once is measured together and its cost put on the leader (the follower's
    costs are 0: the allocator sums a unit's costs)."""
    model = bundle.model
    if target.folds_layernorms:
        model = copy.deepcopy(model)  # its converter folds each LayerNorm into the next Linear layers
        fold_layernorm_affine(model)
    probe = _OutputProbe(model, observations, n_clips, bundle.special.no_timestamps)
    n_blocks = len(model.model.encoder.layers)
    tied = tied_followers(observations.layers) if target.shares_tied_weights else {}
    partners = {
        leader: [layer for layer in observations.layers if tied.get(layer.name) == leader] for leader in tied.values()
    }
    costs = {layer.name: [0.0] * len(target.ladder(layer.kind)) for layer in observations.layers}
    work = [
        (layer, rung)
        for layer in observations.layers
        if layer.name not in tied
        for rung, fmt in enumerate(target.ladder(layer.kind))
        if not fmt.is_float
    ]
    for layer, rung in tqdm(work, unit="rung", desc="measuring layer costs on the output", disable=not progress):
        members = [(layer, target.ladder(layer.kind)[rung])]
        members += [(p, target.ladder(p.kind)[rung]) for p in partners.get(layer.name, [])]
        starts = [_start_block(m.name, m.kind, n_blocks) for m, _ in members]
        with _quantised(model, members):
            states = probe.encoder_states(None if None in starts else min(starts))
            costs[layer.name][rung] = probe.kl(states)
    return costs
