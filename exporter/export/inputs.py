"""What an export reads before its first expensive stage: calibration clips, and where it may write."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from exporter.data import Dataset, load_dataset
from runtimes.errors import EdgeAsrError


def generic_calibration_set() -> Dataset:
    folder = Path(str(resources.files("exporter").joinpath("assets/generic_calib")))
    return load_dataset(folder)


def check_output_folder(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise EdgeAsrError(f"output folder {out_dir} exists and is not empty; choose a new one or remove it")
    return out_dir
