"""PyTorch reference runner: the Hugging Face model in eager mode, float32 (or with a simulated plan)."""

from __future__ import annotations

import numpy as np
import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from exporter.audio import FULL_FRAMES
from exporter.lower.whisper_modules import encode_frames
from exporter.models import WhisperBundle
from runtimes.base import Runner


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

    def __init__(self, bundle: WhisperBundle, n_frames: int = FULL_FRAMES):
        super().__init__(bundle.tokenizer, bundle.special, bundle.n_mels, n_frames)
        self.bundle = bundle
        self.model = bundle.model

    @torch.inference_mode()
    def encode(self, features: np.ndarray) -> torch.Tensor:
        return encode_frames(self.model.model.encoder, torch.from_numpy(features)[None])

    def start_decoder(self, encoded: torch.Tensor) -> _TorchDecoderSession:
        return _TorchDecoderSession(self.model, encoded)
