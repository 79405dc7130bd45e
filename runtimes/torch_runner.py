"""PyTorch reference runner: the Hugging Face model in eager mode, float32 (or with a simulated plan).

It takes a model bundle (`exporter.models.WhisperBundle`, or anything with its `model`, `tokenizer`,
`special` and `n_mels`), so that this module needs torch and transformers but nothing of the exporter.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from runtimes.audio import FULL_FRAMES
from runtimes.base import Runner


def encode_frames(encoder, input_features: torch.Tensor) -> torch.Tensor:
    """HF's Whisper encoder on any even number of frames up to 3000 (a shorter audio context).

    transformers rejects inputs other than 3000 frames; this is the same computation (convolutions, the
    first frames/2 positional embeddings, the layers, the final norm) without that check, so an encoder
    over 10 s of frames attends over 500 positions instead of 1500: attention maps 9x smaller.
    """
    frames = input_features.shape[-1]
    if frames == FULL_FRAMES:
        return encoder(input_features).last_hidden_state
    if frames % 2 or not 0 < frames < FULL_FRAMES:
        raise ValueError(f"the encoder takes an even number of frames up to {FULL_FRAMES}, not {frames}")
    return encode_unchecked(encoder, input_features)


def encode_unchecked(encoder, input_features: torch.Tensor, run_layer=None) -> torch.Tensor:
    """HF's encoder computation on however many frames `input_features` has, with no branch on the count,
    so a trace of it keeps the frame axis dynamic (the sherpa layout's encoder). `run_layer(layer, x)`, when
    given, computes each layer instead of the layer's own forward (the ONNX lowering's, in slices)."""
    x = F.gelu(encoder.conv1(input_features))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    for layer in encoder.layers:
        x = layer(x, None) if run_layer is None else run_layer(layer, x)
    return encoder.layer_norm(x)


class _TorchDecoderSession:
    def __init__(self, model, encoder_states: torch.Tensor):
        self.model = model
        self.encoder_states = encoder_states
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self.position = 0

    @torch.inference_mode()
    def step(self, tokens: list[int]) -> np.ndarray:
        ids = torch.tensor([tokens], dtype=torch.long)
        positions = torch.arange(self.position, self.position + len(tokens))
        out = self.model.model.decoder(
            input_ids=ids,
            encoder_hidden_states=self.encoder_states,
            past_key_values=self.cache,
            use_cache=True,
            cache_position=positions,
        )
        self.position += len(tokens)
        logits = self.model.proj_out(out.last_hidden_state[:, -1])
        return logits[0].float().numpy()


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, bundle, n_frames: int = FULL_FRAMES, framing: str = "window"):
        """`framing` "client": each clip framed as sherpa-onnx frames it (runtimes.onnx_runner.client_features),
        the encoder run on that many frames: the reference for an artifact in the sherpa layout."""
        super().__init__(bundle.tokenizer, bundle.special, bundle.n_mels, n_frames)
        if framing not in ("window", "client"):
            raise ValueError(f"framing is 'window' or 'client', not {framing!r}")
        self.bundle = bundle
        self.model = bundle.model
        self.framing = framing

    def features(self, window: np.ndarray) -> np.ndarray:
        if self.framing == "client":
            from runtimes.onnx_runner import client_features

            return client_features(self, window)
        return super().features(window)

    @torch.inference_mode()
    def encode(self, features: np.ndarray) -> torch.Tensor:
        if self.framing == "client":  # any number of frames, odd ones included, as the client feeds them
            return encode_unchecked(self.model.model.encoder, torch.from_numpy(features)[None])
        return encode_frames(self.model.model.encoder, torch.from_numpy(features)[None])

    def start_decoder(self, encoded: torch.Tensor) -> _TorchDecoderSession:
        return _TorchDecoderSession(self.model, encoded)
