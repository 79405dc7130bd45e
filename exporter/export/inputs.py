"""What an export reads before its first expensive stage: calibration and parity clips, where it may write."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from exporter.data import Dataset, load_dataset
from exporter.quant.pipeline import select_clips
from runtimes.audio import load_audio
from runtimes.errors import EdgeAsrError


def generic_calibration_set() -> Dataset:
    folder = Path(str(resources.files("exporter").joinpath("assets/generic_calib")))
    return load_dataset(folder)


def check_output_folder(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise EdgeAsrError(f"output folder {out_dir} exists and is not empty; choose a new one or remove it")
    return out_dir


def parity_clips(clips: Dataset, count: int, seed: int) -> list[np.ndarray]:
    """The clips the artifact's parity is checked on: a seeded sample of the calibration set (seed + 1, so a
    different draw from the clips the plan observed where the set is larger than both)."""
    return [load_audio(u.audio_path, expected_rate=u.sample_rate) for u in select_clips(clips, count, seed + 1)]
