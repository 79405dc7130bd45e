"""Regenerate the generic calibration set shipped with edgeasr (used when `export` gets no --calib).

Synthetic speech from Debian's espeak-ng (apt-get install espeak-ng), several male and female voice variants,
8 kHz mono FLAC (telephone band keeps the set a few hundred KB; edgeasr resamples to 16 kHz). It is only a stand-in for "some speech" so that scales are calibrated on speech-like
activations; an export calibrated on it is reported as not personalised. Never use it as evidence of accuracy.

    python exporter/assets/make_generic_calib.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import soundfile as sf
import soxr

HERE = Path(__file__).parent / "generic_calib"
SENTENCES = [
    "Please call Stella and ask her to bring these things from the store.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Set a timer for twenty five minutes and remind me to check the oven.",
    "My phone number is five five five, one two three, four five six seven.",
    "What is the weather going to be like tomorrow morning in Pittsburgh?",
    "Turn off the lights in the kitchen and lock the front door.",
    "She spelled her name for the clerk: J, O, H, N, S, O, N.",
    "We will meet at half past nine on Thursday, the fourteenth of May.",
]
VOICES = ["en-us", "en-us+f3", "en+m3", "en-gb+f2"]


def synthesise(text: str, voice: str, out: Path) -> None:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", tmp.name, text], check=True)
        samples, rate = sf.read(tmp.name, dtype="float32")
    sf.write(out, soxr.resample(samples, rate, 8000), 8000, format="FLAC")


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for old in HERE.glob("*.flac"):
        old.unlink()
    for i, text in enumerate(SENTENCES):
        voice = VOICES[i % len(VOICES)]
        synthesise(text, voice, HERE / f"s{i:02d}_{voice.replace('+', '_')}.flac")


if __name__ == "__main__":
    main()
