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


N_FFT = 400  # 25 ms analysis window
HOP = SAMPLE_RATE // FRAMES_PER_SECOND  # 160 samples
STFT_BLOCK_FRAMES = 500  # frames transformed at once by log_mel (3.8 MB of float64 frames and spectrum)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (as Whisper's filters use): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3.0)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


@functools.cache
def mel_filters(n_mels: int) -> np.ndarray:
    """(n_fft/2 + 1, n_mels) triangular filters on Slaney's mel scale from 0 to 8 kHz, each scaled by 2 /
    its width in Hz (Slaney's area normalisation), as Whisper was trained with."""
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), n_mels + 2))
    widths = np.diff(edges)
    offsets = edges[None, :] - bins[:, None]  # (bins, n_mels + 2): how far each edge lies above each bin
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


@functools.cache
def _hann() -> np.ndarray:
    """The periodic Hann window of N_FFT samples (the STFT's, as in torch.hann_window)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)


def log_mel(samples: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel input for one window, padded to 30 s: float32 array (n_mels, 3000).

    Every runner (and the exporter's observation) computes features with this one numpy implementation, so
    runtimes are compared on identical inputs, and a runner process needs neither torch nor transformers for
    them. It computes what Whisper's own front end does: zero-pad to 30 s, a centred STFT (reflect-padded,
    periodic Hann window of 400, hop 160) whose last frame is dropped, power through Slaney mel filters,
    log10 floored at 1e-10, clamped to 8 below its maximum, then (x + 4) / 4. It matches transformers'
    WhisperFeatureExtractor to float round-off (tests/test_audio_and_data.py).
    """
    return log_mel_frames(samples, n_mels, FULL_FRAMES)


def log_mel_frames(samples: np.ndarray, n_mels: int = 80, n_frames: int = FULL_FRAMES) -> np.ndarray:
    """The first `n_frames` of `log_mel` (a shorter audio context, or a client's framing), contiguous:
    (n_mels, n_frames), the values of the 30 s window's first frames."""
    if samples.size > CHUNK_SAMPLES:
        raise ValueError("log_mel takes at most one 30 s window; split with chunks() first")
    if not 0 < n_frames <= FULL_FRAMES:
        raise ValueError(f"n_frames must be 1 to {FULL_FRAMES}, not {n_frames}")
    log_spec = _log_mel_rows(samples, n_mels)  # (computed frames, n_mels), float64
    # Every later frame sees only the window's zero padding: power 0, floored to 1e-10, then clamped like
    # the rest. So they all hold one value, which the computed frames' maximum decides (it is never below
    # log10(1e-10)); writing it is exact, and a short clip skips most of the STFT and its buffers.
    lowest = log_spec.max() - 8.0
    floor = max(np.log10(np.float64(1e-10)), lowest)
    features = np.full((n_mels, n_frames), (floor + 4.0) / 4.0, dtype=np.float32)
    kept = log_spec[: min(n_frames, len(log_spec))]
    np.maximum(kept, lowest, out=kept)  # in place: the same values, no copies
    kept += 4.0
    kept /= 4.0
    features[:, : len(kept)] = kept.T
    return features


def _computed_frames(n_samples: int) -> int:
    """How many of the window's frames overlap the clip's samples or its reflected edges; the rest are zeros."""
    edge = N_FFT // 2
    if n_samples + 2 * edge + 1 >= CHUNK_SAMPLES:  # the end's reflection reaches the clip: every frame
        return FULL_FRAMES
    # Frame j reads padded[j * HOP : j * HOP + N_FFT]; the clip ends at padded index edge + n_samples.
    return min(FULL_FRAMES, -(-(edge + n_samples) // HOP))


def _log_mel_rows(samples: np.ndarray, n_mels: int) -> np.ndarray:
    """log10 mel power, floored at 1e-10, of the frames `_computed_frames` names: (frames, n_mels) float64."""
    edge = N_FFT // 2
    n_computed = _computed_frames(samples.size)
    # The 30 s window's start (or all of it), zero-padded, reflect-padded by N_FFT // 2 at both ends.
    full = n_computed == FULL_FRAMES
    padded = np.zeros(CHUNK_SAMPLES + 2 * edge if full else (n_computed - 1) * HOP + N_FFT, dtype=np.float64)
    padded[edge : edge + samples.size] = samples
    padded[:edge] = padded[2 * edge : edge : -1]
    if full:
        padded[-edge:] = padded[-edge - 2 : -2 * edge - 2 : -1]
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_computed]
    filters = mel_filters(n_mels)
    # A block of frames at a time: each frame's transform is independent, and the whole (3000, 400) float64
    # frame matrix with its complex spectrum held 27 MB at once; with the in-place steps below the 30 s log-mel
    # peaks at 12-14 MB (benchmarks/results/onnx_memory_base.md, phases).
    mel = np.empty((len(frames), n_mels))
    for start in range(0, len(frames), STFT_BLOCK_FRAMES):
        block = frames[start : start + STFT_BLOCK_FRAMES]
        power = np.abs(np.fft.rfft(block * _hann(), axis=-1)) ** 2  # (block, 201)
        mel[start : start + len(block)] = power @ filters
    return np.log10(np.maximum(mel, 1e-10, out=mel), out=mel)  # in place: the same values, no copies
