"""LoRA adapters on Whisper's projections, and the adapter files.

`LoRALinear` is an `nn.Linear` (same name in the module tree, same `weight` / `bias`, so plans, the simulation
and the torchao/ONNX lowerings find the base layer where they expect it) plus a low-rank branch:

    y = x W^T + b + s * (dropout(x) A^T) B^T,    A: (rank, in), B: (out, rank), s = alpha / rank

B starts at zero, so an injected adapter leaves the model's outputs unchanged until it is trained; A starts
uniform in +-1/sqrt(in) (kaiming-uniform with a = sqrt(5), peft's default), drawn from a seeded generator.
The base weight is frozen; only A and B train.

Targets name projections by short names: q, k, v, out (attention) and fc1, fc2 (MLP), in the encoder's
self-attention and the decoder's self- and cross-attention, limited by `scope` (encoder, decoder).

An adapter folder holds `adapter.safetensors` (tensors `<layer>.lora_A`, `<layer>.lora_B`) and `adapter.json`
(schema, model id, the NF4 base it was trained on, the LoRA config, training settings and curve).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from exporter.io import atomic_path, json_type, read_json, write_json
from runtimes.errors import EdgeAsrError

TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "out": "out_proj", "fc1": "fc1", "fc2": "fc2"}
SCOPES = ("encoder", "decoder")
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
SCHEMA_VERSION = 1
_LAYER = re.compile(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(?:self_attn\.|encoder_attn\.)?(\w+)$")


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q", "v")
    # decoder only by default: the encoder then runs once per clip instead of once per step (train.py), which
    # made training ~5x cheaper in benchmarks/pqm_pilot.py without a measurable WER loss there
    scope: tuple[str, ...] = ("decoder",)
    # With the encoder in scope: adapt only its last N layers (None: all). The layers below stay frozen, so
    # their output is computed once per clip (train.cache_frozen_encoder) and a step runs only the top N.
    encoder_layers: int | None = None

    def validate(self) -> None:
        if self.rank < 1:
            raise EdgeAsrError(f"LoRA rank must be >= 1, not {self.rank}")
        if self.alpha <= 0:
            raise EdgeAsrError(f"LoRA alpha must be positive, not {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise EdgeAsrError(f"LoRA dropout must be in [0, 1), not {self.dropout}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise EdgeAsrError(
                f"unknown LoRA target(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TARGETS)}"
            )
        bad_scope = [s for s in self.scope if s not in SCOPES]
        if bad_scope or not self.scope:
            raise EdgeAsrError(f"unknown LoRA scope {', '.join(bad_scope) or '(none)'}; choose encoder, decoder")
        if self.encoder_layers is not None:
            if isinstance(self.encoder_layers, bool) or not isinstance(self.encoder_layers, int):
                raise EdgeAsrError(f"LoRA encoder_layers must be a whole number, not {self.encoder_layers!r}")
            if self.encoder_layers < 1 or "encoder" not in self.scope:
                raise EdgeAsrError(
                    f"LoRA encoder_layers={self.encoder_layers} (--encoder-layers) needs the encoder in scope "
                    "(--scope encoder,decoder) and at least 1 layer"
                )

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.encoder_layers is None:  # adapter.json files written before the field read the same
            del data["encoder_layers"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LoraConfig:
        data = dict(data)
        for key in ("targets", "scope"):
            if not isinstance(data.get(key), list | tuple) or not all(isinstance(v, str) for v in data[key]):
                raise TypeError(f"{key!r} must be a list of names")
            data[key] = tuple(data[key])
        for key, kind in (("rank", int), ("alpha", int | float), ("dropout", int | float), ("encoder_layers", int)):
            if key in data and (isinstance(data[key], bool) or not isinstance(data[key], kind)):
                raise TypeError(f"{key!r} must be a number")
        return cls(**data)


def parse_targets(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


class LoRALinear(nn.Linear):
    """A frozen Linear plus a trainable low-rank branch (see the module docstring)."""

    def __init__(
        self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0, generator: torch.Generator | None = None
    ):
        nn.Module.__init__(self)  # not nn.Linear.__init__: reuse the base's tensors, allocate nothing
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank = rank
        self.scaling = alpha / rank
        bound = 1.0 / math.sqrt(self.in_features)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features).uniform_(-bound, bound, generator=generator))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def lora_delta(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + self.lora_delta(x)

    def merged_weight(self) -> torch.Tensor:
        """W + s B A in float32: the single matrix with the same outputs (without dropout)."""
        return (self.weight.detach().float() + self.scaling * (self.lora_B @ self.lora_A).detach()).to(
            self.weight.dtype
        )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def target_layers(model: nn.Module, config: LoraConfig) -> list[str]:
    """Names of the Linears `config` adapts, in module order."""
    wanted = {TARGETS[t] for t in config.targets}
    n_encoder = len(model.model.encoder.layers)
    lowest_encoder = 0 if config.encoder_layers is None else max(0, n_encoder - config.encoder_layers)
    names = []
    for name, module in model.named_modules():
        match = _LAYER.match(name)
        if not (match and isinstance(module, nn.Linear) and match.group(1) in config.scope):
            continue
        if match.group(3) in wanted and (match.group(1) == "decoder" or int(match.group(2)) >= lowest_encoder):
            names.append(name)
    return names


def inject_lora(model: nn.Module, config: LoraConfig, seed: int = 0) -> list[str]:
    """Wrap the targeted Linears of `model` in place and freeze everything else; returns the wrapped names."""
    config.validate()
    for param in model.parameters():
        param.requires_grad_(False)
    names = target_layers(model, config)
    if not names:
        raise EdgeAsrError(f"no layer of this model matches LoRA targets {config.targets} in {config.scope}")
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        module = model.get_submodule(name)
        if isinstance(module, LoRALinear):
            raise EdgeAsrError(f"{name} already carries a LoRA adapter")
        model.set_submodule(name, LoRALinear(module, config.rank, config.alpha, config.dropout, generator))
    return names


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {}
    for name, module in lora_modules(model).items():
        state[f"{name}.lora_A"] = module.lora_A.detach().clone().contiguous()
        state[f"{name}.lora_B"] = module.lora_B.detach().clone().contiguous()
    return state


def load_lora_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "adapter") -> None:
    """Copy adapter tensors into the model's LoRA modules; every mismatch is an EdgeAsrError."""
    modules = lora_modules(model)
    expected = {f"{n}.lora_{p}" for n in modules for p in "AB"}
    missing, extra = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or extra:
        detail = (f"missing {', '.join(missing[:2])}" if missing else "") + (
            f"{'; ' if missing else ''}unexpected {', '.join(extra[:2])}" if extra else ""
        )
        raise EdgeAsrError(
            f"{source} does not match this model's LoRA layers ({detail}); was it trained for "
            "another model or other --targets?"
        )
    pairs = [
        (state[f"{n}.lora_{p}"], getattr(m, f"lora_{p}"), f"{n}.lora_{p}") for n, m in modules.items() for p in "AB"
    ]
    for tensor, param, key in pairs:  # every tensor is checked before any is copied: never half-applied
        if tuple(tensor.shape) != tuple(param.shape):
            raise EdgeAsrError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, the model "
                f"expects {tuple(param.shape)} (another model size or rank?)"
            )
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise EdgeAsrError(f"{source}: {key} is not finite floating-point data (a corrupt adapter?)")
    with torch.no_grad():
        for tensor, param, _ in pairs:
            param.copy_(tensor.float())


@dataclass
class AdapterInfo:
    """What adapter.json records."""

    model_id: str
    lora: LoraConfig
    base: dict  # Nf4Options.to_dict() of the NF4 base the adapter was trained on
    training: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "model_id": self.model_id,
            "lora": self.lora.to_dict(),
            "base": self.base,
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "adapter.json") -> AdapterInfo:
        """adapter.json's content, checked field by field; anything else is an `EdgeAsrError` naming `source`."""
        if not isinstance(data, dict):
            raise EdgeAsrError(f"{source} is not an adapter description: it holds a JSON {json_type(data)}")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise EdgeAsrError(
                f"adapter schema version {data.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})"
            )
        expected = {"model_id": str, "lora": dict, "base": dict}
        for key, kind in expected.items():
            if not isinstance(data.get(key), kind):
                raise EdgeAsrError(
                    f"{source}: {key!r} must be a JSON {json_type(kind())}, not {json_type(data.get(key))}; "
                    "write the adapter again with `edgeasr personalize`"
                )
        try:
            lora = LoraConfig.from_dict(data["lora"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgeAsrError(f"{source}: 'lora' is not a LoRA configuration ({type(exc).__name__}: {exc})") from exc
        lora.validate()
        training = data.get("training", {})
        return cls(data["model_id"], lora, data["base"], training if isinstance(training, dict) else {})


def save_adapter(folder: Path, state: dict[str, torch.Tensor], info: AdapterInfo) -> None:
    """Write adapter.safetensors and adapter.json into `folder`, each atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / ADAPTER_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"model_id": info.model_id, "format": "edgeasr-lora"})
    write_json(folder / ADAPTER_CONFIG, info.to_dict())


_REWRITE = "write the adapter again with `edgeasr personalize --out`"


def load_adapter(folder: Path) -> tuple[dict[str, torch.Tensor], AdapterInfo]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    weights, config = folder / ADAPTER_WEIGHTS, folder / ADAPTER_CONFIG
    if not weights.is_file() or not config.is_file():
        raise EdgeAsrError(
            f"{folder} is not an adapter folder (needs {ADAPTER_WEIGHTS} and {ADAPTER_CONFIG}; "
            "write one with `edgeasr personalize --out`)"
        )
    info = AdapterInfo.from_dict(read_json(config, "an adapter description", _REWRITE), str(config))
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise EdgeAsrError(f"{weights} is not a readable safetensors file ({exc})") from exc
    return state, info


def check_adapter_matches(info: AdapterInfo, model_id: str, base: dict, source: str) -> None:
    if info.model_id != model_id:
        raise EdgeAsrError(
            f"{source} was trained for model {info.model_id!r}, not {model_id!r}; pass --model {info.model_id}"
        )
    if info.base != base:
        raise EdgeAsrError(
            f"{source} was trained on NF4 base {info.base}, not {base}; use the same "
            "--block-size / --double-quant / --embedding"
        )


def adapter_parameters(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() for t in state.values())
