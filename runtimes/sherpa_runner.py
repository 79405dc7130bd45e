"""sherpa-onnx itself as a runner: the client an app links (Kotlin, Swift, C), here through its Python API.

It runs a sherpa-layout ONNX pair (`edgeasr export --onnx-layout sherpa`, exporter/lower/onnx_sherpa.py)
with sherpa-onnx's own feature extraction, framing and greedy search, so what it transcribes is what an app
using `OfflineRecognizer` gets. It decodes whole clips (no step API), so it has no `encode` / `start_decoder`
of its own: audio longer than 30 s is cut into 30 s windows, as the other runners do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from runtimes.audio import SAMPLE_RATE, chunks, duration_seconds
from runtimes.base import Runner, Transcription
from runtimes.contract import DECODER_FILE, ENCODER_FILE, META_LAYOUT, META_N_MELS, META_SPECIAL, SHERPA_TOKENS_FILE
from runtimes.decoding import DecodingOptions
from runtimes.errors import EdgeAsrError
from runtimes.onnx_runner import CLIENT_TAIL_FRAMES, read_metadata
from runtimes.tokenizer import SpecialTokens

SHERPA_VERSION = "2.0.1"


def import_sherpa_onnx():
    try:
        import sherpa_onnx
    except ImportError as exc:  # an optional client: say how to get it
        raise EdgeAsrError(
            f"the sherpa-onnx runtime needs sherpa-onnx (pip install sherpa-onnx=={SHERPA_VERSION})"
        ) from exc
    return sherpa_onnx


class SherpaOnnxRunner(Runner):
    name = "sherpa-onnx"

    def __init__(self, artifact_dir: str | Path, threads: int | None = None, tail_frames: int = CLIENT_TAIL_FRAMES):
        folder = Path(artifact_dir)
        for name in (ENCODER_FILE, DECODER_FILE, SHERPA_TOKENS_FILE):
            if not (folder / name).is_file():
                raise EdgeAsrError(
                    f"{folder} has no {name}: sherpa-onnx runs the sherpa layout (edgeasr export --onnx-layout sherpa)"
                )
        metadata = read_metadata(folder / ENCODER_FILE)
        if metadata.get(META_LAYOUT) != "sherpa":
            raise EdgeAsrError(
                f"{folder / ENCODER_FILE} is edgeasr's own ONNX layout, which sherpa-onnx cannot load; export "
                "with --onnx-layout sherpa"
            )
        try:
            special = SpecialTokens.from_dict(json.loads(metadata[META_SPECIAL]))
            n_mels = int(metadata[META_N_MELS])
        except (KeyError, ValueError, TypeError) as exc:
            raise EdgeAsrError(f"{folder / ENCODER_FILE} has malformed edgeasr metadata ({exc})") from exc
        super().__init__(None, special, n_mels)
        self.folder = folder
        self.threads = threads or 1
        self.tail_frames = tail_frames
        self._recognizers = {}  # (language, task) -> OfflineRecognizer: both are fixed when one is made
        import_sherpa_onnx()

    def recognizer(self, language: str, task: str):
        key = (language, task)
        if key not in self._recognizers:
            sherpa_onnx = import_sherpa_onnx()
            self._recognizers[key] = sherpa_onnx.OfflineRecognizer.from_whisper(
                encoder=str(self.folder / ENCODER_FILE),
                decoder=str(self.folder / DECODER_FILE),
                tokens=str(self.folder / SHERPA_TOKENS_FILE),
                language=language,
                task=task,
                num_threads=self.threads,
                tail_paddings=self.tail_frames,
            )
        return self._recognizers[key]

    def encode(self, features: np.ndarray):
        raise EdgeAsrError("sherpa-onnx decodes whole clips; it has no separate encoder step to call")

    def start_decoder(self, encoded):
        raise EdgeAsrError("sherpa-onnx decodes whole clips; it has no decoder session to start")

    def transcribe(self, samples: np.ndarray, options: DecodingOptions = DecodingOptions()) -> Transcription:
        if not self.special.is_multilingual:
            self.special.prompt(options.language, options.task)  # refuses a language or task it cannot do
        language = options.language or ""  # "": sherpa detects it (multilingual models)
        recognizer = self.recognizer(language if self.special.is_multilingual else "", options.task)
        start = time.perf_counter()
        texts, detected = [], options.language
        for window in chunks(samples, self.window_samples):
            stream = recognizer.create_stream()
            stream.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(window, dtype=np.float32))
            recognizer.decode_stream(stream)
            texts.append(stream.result.text.strip())
            detected = detected or (getattr(stream.result, "lang", "") or "").strip("<|>") or None
        total = time.perf_counter() - start
        return Transcription(
            text=" ".join(t for t in texts if t),
            tokens=[],  # sherpa returns token strings, not ids
            language=detected or "en",
            audio_seconds=duration_seconds(samples),
            timings={"features": 0.0, "encode": 0.0, "decode": total, "total": total},
        )
