"""Reading audio: any soundfile format, down-mixed to mono, resampled to 16 kHz, validated.

Every problem with a clip is an `EdgeAsrError` naming the file, so one bad clip in a data set is reported
clearly instead of as a stack trace from a decoder library.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from runtimes.errors import EdgeAsrError

SAMPLE_RATE = 16_000
# Whisper's window: 30 s of audio -> 3000 log-mel frames -> 1500 encoder positions.
CHUNK_SECONDS = 30
CHUNK_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE
FRAMES_PER_SECOND = 100  # log-mel hop of 10 ms
FULL_FRAMES = CHUNK_SECONDS * FRAMES_PER_SECOND  # the encoder input of a full window
# Below this peak amplitude (about -80 dBFS) a clip holds no speech a model could hear.
SILENCE_PEAK = 1e-4
MIN_SAMPLES = SAMPLE_RATE // 100  # 10 ms


def load_audio(path: str | Path, expected_rate: int | None = None) -> np.ndarray:
    """Float32 mono samples at 16 kHz. `expected_rate`, when known (e.g. from a manifest), is checked."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAsrError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise EdgeAsrError(f"audio file is empty (0 bytes): {path}")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise EdgeAsrError(f"cannot decode audio file {path}: {exc} (use wav, flac or ogg)") from exc
    if expected_rate is not None and rate != expected_rate:
        raise EdgeAsrError(
            f"{path}: sample rate is {rate} Hz but the manifest says {expected_rate} Hz; fix the manifest or the file"
        )
    mono = samples.mean(axis=1)
    check_speech_like(mono, path)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def check_speech_like(samples: np.ndarray, source: str | Path = "audio") -> None:
    """Reject clips that are empty, too short, non-finite or silent."""
    if samples.size < MIN_SAMPLES:
        raise EdgeAsrError(f"{source}: clip is empty or shorter than 10 ms ({samples.size} samples)")
    if not np.all(np.isfinite(samples)):
        raise EdgeAsrError(f"{source}: clip contains NaN or infinite samples (corrupt file?)")
    peak = float(np.max(np.abs(samples)))
    if peak < SILENCE_PEAK:
        raise EdgeAsrError(f"{source}: clip is silent (peak amplitude {peak:.2e}); nothing to transcribe")


def duration_seconds(samples: np.ndarray) -> float:
    return samples.size / SAMPLE_RATE


def chunks(samples: np.ndarray, size: int = CHUNK_SAMPLES) -> list[np.ndarray]:
    """Consecutive windows of `size` samples (default 30 s, Whisper's context); the last may be shorter."""
    return [samples[i : i + size] for i in range(0, samples.size, size)]


@functools.cache
def _feature_extractor(n_mels: int):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=SAMPLE_RATE)


def log_mel(samples: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel input for one window, padded to 30 s: float32 array (n_mels, 3000).

    Every runner computes features with this one numpy implementation (transformers' Whisper feature
    extractor), so runtimes are compared on identical inputs.
    """
    if samples.size > CHUNK_SAMPLES:
        raise ValueError("log_mel takes at most one 30 s window; split with chunks() first")
    features = _feature_extractor(n_mels)(
        samples, sampling_rate=SAMPLE_RATE, return_tensors="np", padding="max_length"
    ).input_features
    return features[0].astype(np.float32)


def log_mel_frames(samples: np.ndarray, n_mels: int = 80, n_frames: int = FULL_FRAMES) -> np.ndarray:
    """The first `n_frames` of `log_mel` (a shorter audio context), contiguous: (n_mels, n_frames).

    Computed on the 30 s padded window and then cut, so the values equal the full window's first frames.
    """
    return np.ascontiguousarray(log_mel(samples, n_mels)[:, :n_frames])
