"""The runner interface every runtime implements.

A runner turns audio into text: log-mel features (shared numpy code), the runtime's encoder, then greedy
decoding through the runtime's decoder with a KV cache. Subclasses implement `encode` and `start_decoder`;
the rest (windowing, language detection, prompting, timing) is shared here.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtimes.audio import FRAMES_PER_SECOND, FULL_FRAMES, SAMPLE_RATE, chunks, duration_seconds, log_mel_frames
from runtimes.decoding import DecoderSession, DecodingOptions, detect_language, greedy_decode
from runtimes.tokenizer import SpecialTokens, decode_text


@dataclass
class Transcription:
    text: str
    tokens: list[int]
    language: str
    audio_seconds: float
    timings: dict[str, float] = field(default_factory=dict)  # seconds: features, encode, decode, total

    @property
    def real_time_factor(self) -> float:
        return self.timings["total"] / self.audio_seconds if self.audio_seconds else float("nan")


class Runner(ABC):
    """Load once, then `transcribe(samples)` many times."""

    name: str = "runner"

    def __init__(self, tokenizer, special: SpecialTokens, n_mels: int, n_frames: int = FULL_FRAMES):
        self.tokenizer = tokenizer
        self.special = special
        self.n_mels = n_mels
        # The encoder's input length. Below 3000 (an export with a shorter audio context) audio is cut into
        # windows of n_frames / 100 s, and each window's 30 s features are cut to n_frames.
        self.n_frames = n_frames

    @property
    def window_samples(self) -> int:
        return self.n_frames * SAMPLE_RATE // FRAMES_PER_SECOND

    def features(self, window: np.ndarray) -> np.ndarray:
        """The encoder's input for one window of samples: (n_mels, n_frames) log-mel features."""
        return log_mel_frames(window, self.n_mels, self.n_frames)

    @abstractmethod
    def encode(self, features: np.ndarray) -> Any:
        """Run the encoder on (n_mels, n_frames) features; return whatever `start_decoder` needs."""

    @abstractmethod
    def start_decoder(self, encoded: Any) -> DecoderSession:
        """A fresh decoder session (empty KV cache) attending to `encoded`."""

    def decode_window(
        self, encoded: Any, language: str | None, options: DecodingOptions = DecodingOptions()
    ) -> tuple[list[int], str | None]:
        """Greedy tokens of one encoded window (prompt excluded) and the language they were decoded in:
        `language`, else detected from the window when the model is multilingual."""
        if language is None and self.special.is_multilingual:
            language = detect_language(self.start_decoder(encoded).step([self.special.sot]), self.special)
        prompt = self.special.prompt(language, options.task)
        tokens = greedy_decode(
            self.start_decoder(encoded), prompt, self.special, options.max_new_tokens, options.loop_guard
        )
        return tokens, language

    def transcribe(self, samples: np.ndarray, options: DecodingOptions = DecodingOptions()) -> Transcription:
        """Text of 16 kHz mono `samples`; audio longer than the window (30 s unless the encoder takes fewer
        frames) is decoded window by window."""
        start = time.perf_counter()
        timings = {"features": 0.0, "encode": 0.0, "decode": 0.0}
        texts, tokens, language = [], [], options.language
        for window in chunks(samples, self.window_samples):
            t0 = time.perf_counter()
            features = self.features(window)
            t1 = time.perf_counter()
            encoded = self.encode(features)
            t2 = time.perf_counter()
            window_tokens, language = self.decode_window(encoded, language, options)
            t3 = time.perf_counter()
            timings["features"] += t1 - t0
            timings["encode"] += t2 - t1
            timings["decode"] += t3 - t2
            tokens.extend(window_tokens)
            texts.append(decode_text(self.tokenizer, window_tokens, self.special))
        timings["total"] = time.perf_counter() - start
        return Transcription(
            text=" ".join(t for t in texts if t),
            tokens=tokens,
            language=language or "en",
            audio_seconds=duration_seconds(samples),
            timings=timings,
        )
