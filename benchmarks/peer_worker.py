"""One peer system transcribing a list of clips in its own process, timed and with its peak memory.

    python benchmarks/peer_worker.py --system whispercpp --model-path ggml-base-q4_0.bin \
        --clips clips.json --out result.json [--threads 1] [--prompt 50258,50259,50360,50364]

Both peers decode as edgeasr's runners do: greedy, no timestamps, no temperature fallback, no context
from earlier clips, English. Each clip gives two texts: the peer's own output, and the same output with
edgeasr's loop guard applied to its tokens (runtimes/decoding.py `repeated_tail`). Greedy decoding is causal,
so cutting a finished sequence where the guard would have stopped gives exactly what a guarded decoder
writes; the guarded text is what edgeasr's runners are compared with (they decode guarded by default). whisper.cpp (pywhispercpp) takes the samples and computes its own features;
CTranslate2 gets the same log-mel features edgeasr's runners compute (runtimes/audio.py) and the prompt
the driver passes (start of transcript, language and task for multilingual models, no timestamps).
The samples are read by edgeasr's loader for every system. The run peak is the process's peak RSS while
transcribing (the mark reset after loading and one warm-up clip), as `edgeasr bench` measures it; the
baseline is the resident set before the model loads, with the clips read and the peer's library imported
(what `edgeasr bench` subtracts from its own peaks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.io import write_json  # noqa: E402
from runtimes.audio import SAMPLE_RATE, load_audio, log_mel_frames  # noqa: E402
from runtimes.decoding import repeated_tail  # noqa: E402
from runtimes.procmem import peak_rss_bytes, reset_peak_rss, rss_bytes  # noqa: E402

PEER_LIBRARIES = {"whispercpp": ("_pywhispercpp", "pywhispercpp.model"), "ct2": ("ctranslate2", "tokenizers")}


def guarded(tokens: list[int]) -> list[int]:
    """The tokens a decoder with edgeasr's loop guard would have written."""
    for end in range(1, len(tokens) + 1):  # the guard looks at the tail after every token, as it is generated
        keep = repeated_tail(tokens[:end])
        if keep is not None:
            return tokens[:keep]
    return tokens


def whispercpp(model_path: str, threads: int):
    import _pywhispercpp as whisper_api
    from pywhispercpp.model import Model

    model = Model(model_path, n_threads=threads, redirect_whispercpp_logs_to=None, print_progress=False)
    eot = whisper_api.whisper_token_eot(model._ctx)

    def text_of(tokens: list[int]) -> str:
        return b"".join(whisper_api.whisper_token_to_bytes(model._ctx, t) for t in tokens).decode("utf-8", "replace")

    def transcribe(samples) -> tuple[str, str]:
        segments = model.transcribe(
            samples,
            language="en",
            no_context=True,
            single_segment=True,
            no_timestamps=True,
            temperature=0.0,
            temperature_inc=0.0,
        )
        raw = " ".join(s.text.strip() for s in segments)
        # single_segment: one segment holds the clip's tokens; text tokens are the ids below end of text
        n = whisper_api.whisper_full_n_tokens(model._ctx, 0) if segments else 0
        tokens = [whisper_api.whisper_full_get_token_id(model._ctx, 0, j) for j in range(n)]
        tokens = [t for t in tokens if t < eot]
        cut = guarded(tokens)
        return raw, (raw if len(cut) == len(tokens) else text_of(cut).strip())

    return transcribe


def ctranslate2(model_path: str, threads: int, prompt: list[int]):
    import ctranslate2 as ct2
    import numpy as np

    model = ct2.models.Whisper(model_path, device="cpu", compute_type="int8", intra_threads=threads)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
    first_special = min(i for i in prompt)

    def transcribe(samples) -> tuple[str, str]:
        features = log_mel_frames(samples, model.n_mels)[None].astype(np.float32)
        result = model.generate(ct2.StorageView.from_array(features), [prompt], beam_size=1, max_length=448)
        ids = [i for i in result[0].sequences_ids[0] if i < first_special]
        return tokenizer.decode(ids), tokenizer.decode(guarded(ids))

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
    for module in PEER_LIBRARIES[args.system]:
        __import__(module)
    baseline = rss_bytes()
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
        text, guarded_text = transcribe(samples)
        rows.append(
            {
                "utt_id": clip["utt_id"],
                "text": guarded_text,
                "raw_text": text,
                "seconds": time.perf_counter() - start,
                "audio_seconds": len(samples) / SAMPLE_RATE,
            }
        )
        if index % 20 == 0 or index == len(clips):
            print(f"[peer] {args.system}: {index}/{len(clips)} clips", file=sys.stderr, flush=True)
    result = {"load_seconds": load_seconds, "baseline_rss_bytes": baseline, "peak_rss_bytes": peak_rss_bytes()}
    write_json(Path(args.out), {**result, "clips": rows})


if __name__ == "__main__":
    main()
