"""Teacher-forced LoRA training on CPU: a few dozen steps on a speaker's clips.

An example is one clip's log-mel window (the same numpy features every runner uses, padded to 30 s) and its
target tokens: the decoding prompt, the text tokens, end of text. The loss is the cross-entropy of the text
tokens and end of text given everything before them; the prompt itself is not a target. Text comes either from
a transcript (tokenised with a leading space, as Whisper writes text after the prompt) or from the
full-precision model's own greedy transcript, whose tokens are used as generated (label-free mode).

The encoder below the first LoRA-carrying encoder layer is frozen, so its output is computed once per clip
(`cache_frozen_encoder`) and training runs only the layers above it: with decoder-only adapters the whole
encoder runs once per clip instead of once per step, which is what makes CPU training of dozens of steps cheap.
The cached prefix is computed in eval mode (Whisper checkpoints use no encoder dropout).

Optimiser: AdamW on the LoRA parameters only, linear warm-up over the first 10 % of steps then constant, grad
norm clipped to 1. Batches are drawn by walking a seeded shuffle of the examples, reshuffled every epoch.
With the same seed, data and thread count, runs are bit-for-bit reproducible.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from exporter.models import WhisperBundle
from exporter.personalize.lora import LoRALinear, lora_modules
from runtimes.audio import CHUNK_SAMPLES, log_mel
from runtimes.errors import EdgeAsrError

IGNORE = -100


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 30
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise EdgeAsrError("--steps and --batch-size must be >= 1")
        if not self.lr > 0:
            raise EdgeAsrError(f"--lr must be positive, not {self.lr}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Example:
    utt_id: str
    features: torch.Tensor  # (n_mels, 3000)
    tokens: list[int]  # prompt + text + end of text
    prompt_length: int
    text: str
    encoder_prefix: torch.Tensor | None = None  # (1500, d) output of the frozen encoder layers, once cached
    # the encoder module and layer count the prefix was computed with (a strong reference, so an identity
    # check cannot be fooled by a new module reusing a freed one's id); another encoder recomputes it
    prefix_owner: object = field(default=None, repr=False, compare=False)
    prefix_start: int | None = None


@dataclass
class TrainResult:
    curve: list[dict] = field(default_factory=list)  # per step: step, loss, lr, seconds
    seconds: float = 0.0

    @property
    def first_loss(self) -> float:
        return self.curve[0]["loss"]

    @property
    def last_loss(self) -> float:
        return self.curve[-1]["loss"]


def text_tokens(bundle: WhisperBundle, text: str) -> list[int]:
    return bundle.tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids


def check_one_window(utt_id: str, samples: np.ndarray) -> None:
    if samples.size > CHUNK_SAMPLES:
        raise EdgeAsrError(f"{utt_id}: clips for personalisation must be at most 30 s (one Whisper window)")


def make_example(
    bundle: WhisperBundle, utt_id: str, samples: np.ndarray, text_ids: list[int], text: str, language: str | None
) -> Example:
    check_one_window(utt_id, samples)
    prompt = bundle.special.prompt(language if bundle.special.is_multilingual else None)
    features = torch.from_numpy(log_mel(samples, bundle.n_mels))
    return Example(utt_id, features, prompt + list(text_ids) + [bundle.special.eot], len(prompt), text)


def _batch(examples: list[Example], eot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features, decoder inputs, targets with IGNORE on the prompt and padding)."""
    length = max(len(e.tokens) for e in examples) - 1
    inputs = torch.full((len(examples), length), eot, dtype=torch.long)
    targets = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        tokens = torch.tensor(e.tokens, dtype=torch.long)
        n = len(e.tokens) - 1
        inputs[row, :n] = tokens[:-1]
        targets[row, :n] = tokens[1:]
        targets[row, : e.prompt_length - 1] = IGNORE  # predicting the rest of the prompt is not learned
    return torch.stack([e.features for e in examples]), inputs, targets


def first_adapted_encoder_layer(model) -> int:
    """Index of the lowest encoder layer holding a LoRA module (the layer count when none does)."""
    layers = model.model.encoder.layers
    for index, layer in enumerate(layers):
        if any(isinstance(m, LoRALinear) for m in layer.modules()):
            return index
    return len(layers)


def encoder_prefix(model, features: torch.Tensor, upto: int) -> torch.Tensor:
    """Convolutions, positions and encoder layers [0, upto): the frozen part (as WhisperEncoder.forward)."""
    encoder = model.model.encoder
    h = F.gelu(encoder.conv2(F.gelu(encoder.conv1(features)))).permute(0, 2, 1)
    h = h + encoder.embed_positions.weight[: h.shape[1]]
    for layer in encoder.layers[:upto]:
        h = layer(h, None)
    return h


def encoder_suffix(model, h: torch.Tensor, start: int) -> torch.Tensor:
    encoder = model.model.encoder
    for layer in encoder.layers[start:]:
        h = layer(h, None)
    return encoder.layer_norm(h)


def _same_weights(cached: list | None, params: list) -> bool:
    """Whether a cached prefix came from these encoder weights. The storage, not the module, identifies them:
    adapted copies share their base's encoder storage (personalize.run.adapted_model). The cache holds the
    tensors it was made from, so their storage cannot be freed and its address reused by other weights."""
    return (
        cached is not None
        and len(cached) == len(params)
        and all(a.data_ptr() == b.data_ptr() for a, b in zip(cached, params))
    )


@torch.no_grad()
def cache_frozen_encoder(model, examples: list[Example], batch_size: int = 4) -> int:
    """Store each example's frozen-encoder output; returns the first encoder layer that still trains."""
    start = first_adapted_encoder_layer(model)
    owner = list(model.model.encoder.parameters())
    was_training = model.training
    model.eval()
    for i in range(0, len(examples), batch_size):
        chunk = [
            e
            for e in examples[i : i + batch_size]
            if not _same_weights(e.prefix_owner, owner) or e.prefix_start != start
        ]
        if chunk:
            states = encoder_prefix(model, torch.stack([e.features for e in chunk]), start)
            for e, h in zip(chunk, states):
                e.encoder_prefix, e.prefix_owner, e.prefix_start = h.clone(), owner, start
    model.train(was_training)
    return start


def batch_loss(model, examples: list[Example], eot: int, start: int | None = None) -> torch.Tensor:
    """Mean token cross-entropy; `start` = first trained encoder layer when prefixes are cached."""
    features, inputs, targets = _batch(examples, eot)
    if start is None:
        encoder_states = model.model.encoder(features).last_hidden_state
    else:
        encoder_states = encoder_suffix(model, torch.stack([e.encoder_prefix for e in examples]), start)
    hidden = model.model.decoder(
        input_ids=inputs, encoder_hidden_states=encoder_states, use_cache=False
    ).last_hidden_state
    logits = model.proj_out(hidden)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


class _BatchOrder:
    """Batches from a seeded walk over the examples, reshuffled at every epoch boundary."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, min(batch_size, n)
        self.rng = random.Random(seed)
        self.queue: list[int] = []

    def next(self) -> list[int]:
        if len(self.queue) < self.batch_size:
            order = list(range(self.n))
            self.rng.shuffle(order)
            self.queue += order
        batch, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        return batch


def _lr_at(step: int, options: TrainOptions) -> float:
    warmup = max(1, int(round(options.warmup_fraction * options.steps)))
    return options.lr * min(1.0, (step + 1) / warmup)


def train_lora(
    model, examples: list[Example], eot: int, options: TrainOptions, on_step: Callable[[dict], None] | None = None
) -> TrainResult:
    """Train the LoRA parameters of `model` in place; returns the loss curve."""
    options.validate()
    if not examples:
        raise EdgeAsrError("no training examples")
    params = [p for m in lora_modules(model).values() for p in (m.lora_A, m.lora_B)]
    if not params:
        raise EdgeAsrError("the model has no LoRA adapters to train (inject_lora first)")
    for p in params:
        p.requires_grad_(True)
    start = cache_frozen_encoder(model, examples)
    torch.manual_seed(options.seed)  # dropout masks
    optimiser = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    order = _BatchOrder(len(examples), options.batch_size, options.seed)
    result = TrainResult()
    started = time.perf_counter()
    model.train()
    try:
        for step in range(options.steps):
            lr = _lr_at(step, options)
            for group in optimiser.param_groups:
                group["lr"] = lr
            batch = [examples[i] for i in order.next()]
            loss = batch_loss(model, batch, eot, start)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, options.max_grad_norm)
            optimiser.step()
            record = {
                "step": step + 1,
                "loss": round(loss.item(), 5),
                "lr": lr,
                "seconds": round(time.perf_counter() - started, 2),
            }
            result.curve.append(record)
            if on_step:
                on_step(record)
    finally:
        model.eval()
        for p in params:
            p.requires_grad_(False)
    result.seconds = round(time.perf_counter() - started, 2)
    return result


@torch.no_grad()
def mean_loss(model, examples: list[Example], eot: int, batch_size: int = 4) -> float:
    """Token-weighted mean loss over `examples` in eval mode (for checks and reports)."""
    model.eval()
    start = cache_frozen_encoder(model, examples)
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        n = sum(len(e.tokens) - e.prompt_length for e in chunk)
        total += float(batch_loss(model, chunk, eot, start)) * n
        count += n
    return total / count
