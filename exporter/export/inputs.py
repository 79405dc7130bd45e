"""What an export reads before its first expensive stage: calibration and parity clips, where it may write."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from exporter.data import Dataset, check_audio, load_dataset
from exporter.quant.pipeline import select_clips
from runtimes.audio import load_audio
from runtimes.errors import EdgeAsrError


def user_clips(calib: Path, speaker: str | None = None, clips: Dataset | None = None) -> Dataset:
    """The user's calibration clips: a folder or manifest (`clips`: already read from it), optionally only one
    speaker's rows of it."""
    clips = load_dataset(calib) if clips is None else clips
    if speaker is None:
        return clips
    speakers = sorted({u.speaker for u in clips if u.speaker is not None})
    if speaker not in speakers:
        known = (
            f"its speakers: {', '.join(speakers[:8])}{' ...' if len(speakers) > 8 else ''}"
            if speakers
            else ("it has no speaker column")
        )
        raise EdgeAsrError(f"no clip of speaker {speaker!r} in {calib} ({known}); give a speaker it has")
    return clips.filter(speaker=speaker)


def generic_calibration_set() -> Dataset:
    folder = Path(str(resources.files("exporter").joinpath("assets/generic_calib")))
    return load_dataset(folder)


def parity_clips(clips: Dataset, count: int, seed: int) -> list[np.ndarray]:
    """The clips the artifact's parity is checked on: a seeded sample of the calibration set (seed + 1, so a
    different draw from the clips the plan observed where the set is larger than both)."""
    return [load_audio(u.audio_path, expected_rate=u.sample_rate) for u in select_clips(clips, count, seed + 1)]


def check_clips(clips: Dataset, n_calib: int, n_parity: int, seed: int) -> None:
    """Decode every clip the export will observe or check parity on, before the model loads: a corrupt
    clip or a wrong sample rate is refused in a second, not after the model load and part of the work."""
    check_audio([*select_clips(clips, n_calib, seed), *select_clips(clips, n_parity, seed + 1)])
