"""One peer system transcribing a list of clips in its own process, timed and with its peak memory.

    python benchmarks/peer_worker.py --system whispercpp --model-path ggml-base-q4_0.bin \
        --clips clips.json --out result.json [--threads 1] [--prompt 50258,50259,50360,50364]

Both peers decode as edgeasr's runners do: greedy, no timestamps, no temperature fallback, no context
from earlier clips, English. whisper.cpp (pywhispercpp) takes the samples and computes its own features;
CTranslate2 gets the same log-mel features edgeasr's runners compute (runtimes/audio.py) and the prompt
the driver passes (start of transcript, language and task for multilingual models, no timestamps).
The samples are read by edgeasr's loader for every system. The run peak is the process's peak RSS while
transcribing (the mark reset after loading and one warm-up clip), as `edgeasr bench` measures it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.io import write_json  # noqa: E402
from exporter.procmem import peak_rss_bytes, reset_peak_rss  # noqa: E402
from runtimes.audio import SAMPLE_RATE, load_audio, log_mel_frames  # noqa: E402


def whispercpp(model_path: str, threads: int):
    from pywhispercpp.model import Model

    model = Model(model_path, n_threads=threads, redirect_whispercpp_logs_to=None, print_progress=False)

    def transcribe(samples) -> str:
        segments = model.transcribe(
            samples,
            language="en",
            no_context=True,
            single_segment=True,
            no_timestamps=True,
            temperature=0.0,
            temperature_inc=0.0,
        )
        return " ".join(s.text.strip() for s in segments)

    return transcribe


def ctranslate2(model_path: str, threads: int, prompt: list[int]):
    import ctranslate2 as ct2
    import numpy as np

    model = ct2.models.Whisper(model_path, device="cpu", compute_type="int8", intra_threads=threads)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
    first_special = min(i for i in prompt)

    def transcribe(samples) -> str:
        features = log_mel_frames(samples, model.n_mels)[None].astype(np.float32)
        result = model.generate(ct2.StorageView.from_array(features), [prompt], beam_size=1, max_length=448)
        ids = [i for i in result[0].sequences_ids[0] if i < first_special]
        return tokenizer.decode(ids)

    return transcribe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=("whispercpp", "ct2"), required=True)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--clips", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt", default="", help="comma list of prompt token ids (ct2)")
    args = parser.parse_args()
    clips = json.loads(Path(args.clips).read_text())
    audio = [load_audio(c["path"]) for c in clips]
    start = time.perf_counter()
    if args.system == "whispercpp":
        transcribe = whispercpp(args.model_path, args.threads)
    else:
        transcribe = ctranslate2(args.model_path, args.threads, [int(t) for t in args.prompt.split(",")])
    load_seconds = time.perf_counter() - start
    transcribe(audio[0])  # warm-up, untimed
    reset_peak_rss()
    rows = []
    for index, (clip, samples) in enumerate(zip(clips, audio, strict=True), 1):
        start = time.perf_counter()
        text = transcribe(samples)
        rows.append(
            {
                "utt_id": clip["utt_id"],
                "text": text,
                "seconds": time.perf_counter() - start,
                "audio_seconds": len(samples) / SAMPLE_RATE,
            }
        )
        if index % 20 == 0 or index == len(clips):
            print(f"[peer] {args.system}: {index}/{len(clips)} clips", file=sys.stderr, flush=True)
    write_json(Path(args.out), {"load_seconds": load_seconds, "peak_rss_bytes": peak_rss_bytes(), "clips": rows})


if __name__ == "__main__":
    main()
