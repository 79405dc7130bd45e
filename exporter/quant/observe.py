"""Observe the full-precision model on the user's unlabelled clips.

One pass per clip, label-free: the FP model transcribes the clip (its own greedy tokens are the decoder
input, i.e. pseudo-labels) and a teacher-forced forward on them runs with hooks on every quantisable layer
(sharing one encoder pass) that record
  * |output| values, for the sensitivity statistics (median by default);
  * a sample of input rows, for the per-layer scale calibration;
  * the token ids the embedding looked up.

Padding must not dominate: Whisper pads every clip to 30 s, so a 2 s clip is 93 % padding. Encoder-side
outputs (and the decoder's cross-attention key/value projections, which read encoder states) are therefore
cut to the clip's real frames: ceil(samples / 160) mel frames for conv1, ceil(samples / 320) frames after
conv2's stride of 2. Decoder-side outputs use all real token positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from exporter.choices import SENSITIVITY_METRICS
from exporter.models import WhisperBundle
from exporter.quant.layers import QuantLayer
from runtimes.audio import log_mel
from runtimes.decoding import DecodingOptions
from runtimes.torch_runner import TorchRunner

# Bounds that keep memory flat however long the clips are (values per layer; rows per layer).
MAX_VALUES_PER_LAYER = 4_000_000
MAX_ROWS_PER_LAYER = 1024
MAX_CONV_CLIPS = 8


@dataclass
class LayerObservation:
    abs_values: list[torch.Tensor] = field(default_factory=list)  # float16 chunks of |output|
    inputs: list[torch.Tensor] = field(default_factory=list)  # float32 rows (linear) or (C, T) clips (conv)
    row_index: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (clip, rows kept) per chunk
    token_ids: list[torch.Tensor] = field(default_factory=list)  # embedding only

    def values(self) -> torch.Tensor:
        return torch.cat([v.flatten() for v in self.abs_values]).float()


@dataclass
class ClipRecord:
    features: np.ndarray  # (n_mels, 3000)
    tokens: list[int]  # prompt + FP greedy tokens + end of text
    n_samples: int

    @property
    def mel_frames(self) -> int:
        return min(3000, math.ceil(self.n_samples / 160))

    @property
    def encoder_frames(self) -> int:
        return min(1500, math.ceil(self.n_samples / 320))


@dataclass
class Observations:
    layers: list[QuantLayer]
    per_layer: dict[str, LayerObservation]
    clips: list[ClipRecord]


def is_encoder_side(name: str) -> bool:
    """Whether the layer's rows are encoder frames (whose padding must be cut), not decoder tokens."""
    return ".encoder." in f".{name}." or name.endswith(("encoder_attn.k_proj", "encoder_attn.v_proj"))


def _real(tensor: torch.Tensor, layer: QuantLayer, clip: ClipRecord, is_output: bool) -> torch.Tensor:
    """The non-padding part of a hooked tensor, with batch dropped: (positions, features) or (C, T)."""
    x = tensor[0]
    if layer.kind == "conv":
        # conv1 keeps the mel frame rate; conv2 (stride 2) halves it on its output.
        strided_output = is_output and layer.name.endswith("conv2")
        return x[:, : clip.encoder_frames if strided_output else clip.mel_frames]
    if is_encoder_side(layer.name):
        return x[: clip.encoder_frames]
    return x


def _strided(values: torch.Tensor, cap: int) -> torch.Tensor:
    flat = values.flatten()
    if flat.numel() <= cap:
        return flat
    step = math.ceil(flat.numel() / cap)
    return flat[::step]


class _Recorder:
    def __init__(self, layers: list[QuantLayer], n_clips: int):
        self.layers = layers
        self.per_layer = {layer.name: LayerObservation() for layer in layers}
        self.values_per_clip = max(1, MAX_VALUES_PER_LAYER // n_clips)
        self.rows_per_clip = max(1, math.ceil(MAX_ROWS_PER_LAYER / n_clips))
        self.clip: ClipRecord | None = None
        self.clip_index = 0
        self.paused = False  # while the FP model decodes its pseudo-label

    def hook(self, layer: QuantLayer):
        obs = self.per_layer[layer.name]

        def record(module, args, output):
            if self.paused:
                return
            clip = self.clip
            out = _real(output.detach(), layer, clip, is_output=True)
            obs.abs_values.append(_strided(out.abs(), self.values_per_clip).half())
            if layer.kind == "embedding":
                obs.token_ids.append(args[0][0].detach().clone())
                return
            inp = args[0].detach()
            if layer.kind == "conv":
                if self.clip_index < MAX_CONV_CLIPS:
                    obs.inputs.append(inp[0][:, : clip.mel_frames].float().clone())
                return
            rows = _real(inp, layer, clip, is_output=False)
            keep = torch.linspace(0, rows.shape[0] - 1, min(rows.shape[0], self.rows_per_clip)).round().long()
            obs.inputs.append(rows[keep].float().clone())
            obs.row_index.append((self.clip_index, keep))

        return record


@torch.inference_mode()
def observe(
    bundle: WhisperBundle,
    layers: list[QuantLayer],
    clips: list[np.ndarray],
    languages: list[str | None] | None = None,
    progress: bool = True,
) -> Observations:
    """Pseudo-label each clip with the FP model and record every quantisable layer, one encoder pass per clip.

    The encoder runs once with the hooks on; the FP model's greedy transcript of that encoder output (hooks
    paused: the decoding steps are not observations) becomes the pseudo-label; the decoder then runs
    teacher-forced on prompt + pseudo-label + end of text, hooks on. Only the first 30 s window of a clip is
    used. This records exactly what a full forward on the pseudo-label records, without encoding each clip
    twice (the encoder over a padded 30 s window is most of an observation's cost).
    """
    languages = languages or [None] * len(clips)
    recorder = _Recorder(layers, len(clips))
    runner = TorchRunner(bundle)
    handles = [bundle.model.get_submodule(layer.name).register_forward_hook(recorder.hook(layer)) for layer in layers]
    records = []
    try:
        for index, (samples, language) in enumerate(
            tqdm(list(zip(clips, languages)), unit="clip", desc="observing layers (FP model)", disable=not progress)
        ):
            window = samples[: 30 * 16000]
            record = ClipRecord(log_mel(window, bundle.n_mels), [], window.size)
            recorder.clip, recorder.clip_index = record, index
            states = bundle.model.model.encoder(torch.from_numpy(record.features)[None]).last_hidden_state
            recorder.paused = True
            tokens, language = runner.decode_window(states, language, DecodingOptions(language=language))
            recorder.paused = False
            prompt = bundle.special.prompt(language if bundle.special.is_multilingual else None)
            record.tokens = prompt + tokens + [bundle.special.eot]
            bundle.model(encoder_outputs=(states,), decoder_input_ids=torch.tensor([record.tokens]))
            records.append(record)
    finally:
        for handle in handles:
            handle.remove()
    return Observations(layers, recorder.per_layer, records)


def sensitivities(observations: Observations, metric: str = "median") -> dict[str, float]:
    """One scalar per layer: a statistic of |output| pooled over all recorded elements of all clips."""
    if metric not in SENSITIVITY_METRICS:
        raise ValueError(f"unknown sensitivity metric {metric!r}")
    result = {}
    for layer in observations.layers:
        values = observations.per_layer[layer.name].values()
        stat = {
            "median": lambda v: v.median(),
            "mean": lambda v: v.mean(),
            "max": lambda v: v.max(),
            "std": lambda v: v.std(),
        }[metric](values)
        result[layer.name] = float(stat)
    return result
