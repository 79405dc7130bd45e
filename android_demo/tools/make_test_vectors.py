"""Test vectors from the Python side for the Android app's plain-Kotlin core (android_demo/core).

Two kinds:

* decoder replay (committed, android_demo/core/src/test/resources/decoder_replay.json): real clips run through
  an exported tiny.en `.pte` with the ExecuTorch runner; every decoder step's input tokens and logits are
  recorded (sparsely: the top logits before and after the suppression mask, the rest filled below them,
  which leaves the greedy choice unchanged, checked here). Variants make the rules observable: `adversarial`
  lifts forbidden tokens (end of text on the first step, blank, timestamps, prompt tokens, suppressed ones)
  above every allowed logit, `early_stop` lifts end of text mid-way, `max_new_tokens` caps the length. The
  expected tokens of every variant come from runtimes/decoding.py `greedy_decode` on the same replay, and the
  expected text from runtimes/tokenizer.py `decode_text`. Making them needs an export (minutes):

      python android_demo/tools/make_test_vectors.py replay --export OUT_DIR --data ../shared/data/english_misc

* runtime vectors (made by tests/test_android_core.py into a temporary folder, seconds): real WAVs and the
  float32 samples `load_audio` reads from them (also re-encoded as 8/24/32-bit and float WAVs, and stereo),
  log-mel features from `log_mel`, transformers' mel filter banks, tokenizer cases (real and random id
  sequences, including broken UTF-8) decoded by `decode_text`, and numpy percentiles.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exporter.io import write_json  # noqa: E402
from runtimes.audio import load_audio, log_mel  # noqa: E402
from runtimes.decoding import greedy_decode, suppression_mask  # noqa: E402
from runtimes.tokenizer import SpecialTokens, decode_text  # noqa: E402

REPLAY_CLIPS = ("ls_1089-134691-0000", "arctic_axb_a0006", "whisper_jfk")
REPLAY_PATH = ROOT / "android_demo" / "core" / "src" / "test" / "resources" / "decoder_replay.json"
TOP_K = 8


# ---------------------------------------------------------------- decoder replay (committed)


class _RecordingSession:
    """Wraps a runner's decoder session; keeps each step's input tokens and float32 logits."""

    def __init__(self, session):
        self.session = session
        self.steps: list[tuple[list[int], np.ndarray]] = []

    def step(self, tokens: list[int]) -> np.ndarray:
        logits = np.asarray(self.session.step(tokens), dtype=np.float32)
        self.steps.append((list(tokens), logits))
        return logits


class ReplaySession:
    """Serves stored steps back; fails if the decoder is fed anything other than what was recorded."""

    def __init__(self, steps: list[dict], vocab: int):
        self.steps, self.vocab, self.index = steps, vocab, 0

    def step(self, tokens: list[int]) -> np.ndarray:
        if self.index >= len(self.steps):
            raise AssertionError(f"decoder called {self.index + 1} times; only {len(self.steps)} steps recorded")
        recorded = self.steps[self.index]
        if list(tokens) != recorded["inputs"]:
            raise AssertionError(f"step {self.index}: fed {tokens}, recorded {recorded['inputs']}")
        self.index += 1
        return dense_logits(recorded, self.vocab)


def dense_logits(step: dict, vocab: int) -> np.ndarray:
    logits = np.full(vocab, step["fill"], dtype=np.float32)
    logits[step["ids"]] = np.asarray(step["values"], dtype=np.float32)
    return logits


def _sparse(logits: np.ndarray, mask: np.ndarray) -> dict:
    """Top-k raw logits and top-k allowed ones; everything else set below both (greedy picks the same)."""
    raw_top = np.argsort(-logits, kind="stable")[:TOP_K]
    allowed_top = np.argsort(-np.where(mask, -np.inf, logits), kind="stable")[:TOP_K]
    ids = sorted(set(raw_top.tolist()) | set(allowed_top.tolist()))
    values = logits[ids]
    return {"ids": ids, "values": [float(v) for v in values], "fill": float(np.float32(values.min() - 1.0))}


def _forbidden_cycle(special: SpecialTokens, vocab: int) -> list[int]:
    """Tokens the rules forbid after the first step, one of them lifted per step in the adversarial variant."""
    candidates = [special.timestamp_begin, special.sot, special.no_timestamps, vocab - 1, special.timestamp_begin + 50]
    candidates += [t for t in special.suppress[:3] if t < vocab]
    return [t for t in candidates if t < vocab]


def _lift(step: dict, tokens: list[int]) -> dict:
    """A copy of `step` with `tokens` above every stored logit, the first highest."""
    top = max(step["values"])
    values = dict(zip(step["ids"], step["values"]))
    for rank, token in enumerate(tokens):
        values[token] = float(np.float32(top + 2.0 - 0.25 * rank))
    ids = sorted(values)
    return {**step, "ids": ids, "values": [values[i] for i in ids]}


def _expected(steps: list[dict], prompt: list[int], special: SpecialTokens, vocab: int, max_new_tokens: int):
    return greedy_decode(ReplaySession(steps, vocab), prompt, special, max_new_tokens)


def _clip_case(runner, tokenizer, clip_id: str, audio_path: Path) -> dict:
    special, vocab = runner.special, None
    samples = load_audio(audio_path)
    encoded = runner.encode(log_mel(samples, runner.n_mels))
    recorder = _RecordingSession(runner.start_decoder(encoded))
    prompt = special.prompt("en" if special.is_multilingual else None)
    tokens = greedy_decode(recorder, prompt, special)
    text = decode_text(tokenizer, tokens, special)
    assert runner.transcribe(samples).text == text, "runner and recorded decode disagree"
    vocab = recorder.steps[0][1].shape[-1]
    steps, raw_argmax_masked = [], 0
    for index, (inputs, logits) in enumerate(recorder.steps):
        mask = suppression_mask(special, vocab, first=index == 0)
        raw_argmax_masked += bool(mask[int(np.argmax(logits))])
        steps.append({"inputs": inputs, **_sparse(logits, mask)})
    assert _expected(steps, prompt, special, vocab, 224) == tokens, "sparse replay changes the greedy choice"

    first_forbidden = sorted(set(t for t in special.suppress_begin if t < vocab) | {special.eot})
    cycle = _forbidden_cycle(special, vocab)
    adversarial = [
        _lift(s, first_forbidden + [cycle[0]] if i == 0 else [cycle[i % len(cycle)]]) for i, s in enumerate(steps)
    ]
    stop_at = min(3, len(steps) - 1)
    early_stop = [_lift(s, [special.eot]) if i == stop_at else s for i, s in enumerate(steps)]
    variants = {
        "recorded": (steps, 224),
        "adversarial": (adversarial, 224),
        "early_stop": (early_stop, 224),
        "max_new_tokens": (steps, 5),
    }
    cases = []
    for name, (variant_steps, limit) in variants.items():
        expected = _expected(variant_steps, prompt, special, vocab, limit)
        # only the steps the decoder reaches are stored
        used = variant_steps[: len(expected) + (1 if len(expected) < limit else 0)]
        cases.append(
            {
                "variant": name,
                "max_new_tokens": limit,
                "steps": used,
                "expected_tokens": expected,
                "expected_text": decode_text(tokenizer, expected, special),
            }
        )
    return {
        "clip": clip_id,
        "audio": f"english_misc/{audio_path.relative_to(audio_path.parents[1])}",
        "prompt": prompt,
        "vocab": vocab,
        "python_text": text,
        "raw_argmax_was_forbidden_steps": raw_argmax_masked,
        "cases": cases,
    }


def make_replay(export_dir: Path, data_dir: Path, out: Path = REPLAY_PATH) -> dict:
    from tokenizers import Tokenizer

    from runtimes.artifact import open_artifact
    from runtimes.executorch_runner import constant

    runner = open_artifact(export_dir)
    pte = Path(export_dir) / "model.pte"
    tokenizer = Tokenizer.from_file(str(Path(export_dir) / "tokenizer.json"))
    rows = {json.loads(line)["utt_id"]: json.loads(line) for line in (data_dir / "manifest.jsonl").open()}
    clips = [_clip_case(runner, tokenizer, cid, data_dir / rows[cid]["audio_path"]) for cid in REPLAY_CLIPS]
    replay = {
        "about": "decoder replay vectors for android_demo/core; regenerate with android_demo/tools/"
        "make_test_vectors.py replay (see its docstring)",
        "artifact": {
            "file": pte.name,
            "sha256": hashlib.sha256(pte.read_bytes()).hexdigest(),
            "plan_model_id": json.loads(constant(runner.program, "edgeasr_plan"))["model_id"],
        },
        "special_tokens": json.loads(constant(runner.program, "edgeasr_special_tokens")),
        "max_seq_len": int(constant(runner.program, "get_max_seq_len")),
        "top_k": TOP_K,
        "clips": clips,
    }
    write_json(out, replay)
    return replay


def check_replay(replay: dict) -> None:
    """The stored expectations are what Python's greedy_decode and decode_text give today (no model needed)."""
    special = SpecialTokens.from_dict(replay["special_tokens"])
    for clip in replay["clips"]:
        for case in clip["cases"]:
            got = _expected(case["steps"], clip["prompt"], special, clip["vocab"], case["max_new_tokens"])
            assert got == case["expected_tokens"], f"{clip['clip']}/{case['variant']}: {got}"


# ---------------------------------------------------------------- runtime vectors (made at test time)


def _f32(path: Path, values: np.ndarray) -> str:
    np.ascontiguousarray(values, dtype="<f4").tofile(path)
    return path.name


def _wav_variants(out: Path, name: str, samples: np.ndarray) -> list[dict]:
    """The clip re-encoded in every WAV encoding the app reads; the reference is load_audio of each file."""
    import soundfile as sf

    rows = []
    variants = [
        ("PCM_U8", samples[:, None]),
        ("PCM_24", samples[:, None]),
        ("PCM_32", samples[:, None]),
        ("FLOAT", samples[:, None]),
        ("DOUBLE", samples[:, None]),
        ("PCM_16", np.stack([samples, -0.5 * samples], axis=1)),
    ]  # stereo: averaged to mono
    for subtype, data in variants:
        path = out / f"{name}_{subtype.lower()}_{data.shape[1]}ch.wav"
        sf.write(path, data, 16000, subtype=subtype, format="WAV")
        rows.append({"wav": path.name, "samples": _f32(out / f"{path.stem}.f32", load_audio(path))})
    return rows


def _bad_wavs(out: Path, data_dir: Path, rows: dict) -> list[dict]:
    import soundfile as sf

    other_rate = next(r for r in rows.values() if r["sample_rate"] != 16000)
    silent = out / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    text = out / "not_audio.wav"
    text.write_text("this is not audio")
    return [
        {"wav": str(data_dir / other_rate["audio_path"]), "error": "sample rate is"},
        {"wav": silent.name, "error": "silent"},
        {"wav": text.name, "error": "not a WAV file"},
    ]


def _tokenizer_cases(tokenizer, special: SpecialTokens, seed: int = 0) -> list[dict]:
    texts = [
        "He could wait no longer.",
        "  Leading and trailing spaces  ",
        "naïve café — “quotes” 日本語 🙂",
        "tab\tand\nnewline",
        "\u00a0no-break\u00a0space\u00a0",
        "numbers 1,234.5 and 50%",
    ]
    sequences = [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    sequences.append([special.sot, special.no_timestamps] + sequences[0] + [special.timestamp_begin + 7, special.eot])
    emoji = tokenizer.encode("🙂", add_special_tokens=False).ids
    sequences.append(sequences[0] + emoji[:-1])  # a character cut in the middle: U+FFFD
    rng = np.random.default_rng(seed)
    for _ in range(30):  # random ids anywhere in the vocabulary
        sequences.append(rng.integers(0, special.eot, size=int(rng.integers(1, 12))).tolist())
    # pieces of multi-byte characters shuffled: mostly invalid UTF-8, one U+FFFD per maximal bad run
    pool = sorted(
        set(tokenizer.encode("日本語の文 中文 한국어 Ελληνικά русский 🙂🎉 naïve", add_special_tokens=False).ids)
    )
    for _ in range(30):
        sequences.append(rng.choice(pool, size=int(rng.integers(1, 8))).tolist())
    return [{"ids": ids, "text": decode_text(tokenizer, ids, special)} for ids in sequences]


def _stats_cases(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    cases = []
    for size in (1, 2, 5, 10, 37):
        values = (rng.random(size) * 1000).tolist()
        for q in (50.0, 90.0):
            cases.append({"values": values, "q": q, "expected": float(np.percentile(values, q))})
    return cases


def make_runtime_vectors(out: Path, tokenizer_json: Path, data_dir: Path) -> dict:
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor

    replay = json.loads(REPLAY_PATH.read_text())
    special = SpecialTokens.from_dict(replay["special_tokens"])
    out.mkdir(parents=True, exist_ok=True)
    rows = {json.loads(line)["utt_id"]: json.loads(line) for line in (data_dir / "manifest.jsonl").open()}
    clips = []
    for clip_id in REPLAY_CLIPS:
        wav = data_dir / rows[clip_id]["audio_path"]
        samples = load_audio(wav)
        clips.append(
            {
                "id": clip_id,
                "wav": str(wav),
                "wav_rate": rows[clip_id]["sample_rate"],
                "samples": _f32(out / f"{clip_id}.f32", samples),
                "mel80": _f32(out / f"{clip_id}.mel80.f32", log_mel(samples, 80)),
            }
        )
    filters = {}
    for n_mels in (80, 128):
        bank = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=16000).mel_filters  # (201, n_mels)
        path = out / f"mel_filters_{n_mels}.f64"
        np.ascontiguousarray(bank.T, dtype="<f8").tofile(path)
        filters[str(n_mels)] = path.name
    short = load_audio(data_dir / rows[REPLAY_CLIPS[0]]["audio_path"])
    manifest = {
        "clips": clips,
        "wav_variants": _wav_variants(out, REPLAY_CLIPS[0], short),
        "bad_wavs": _bad_wavs(out, data_dir, rows),
        "mel_filters": filters,
        "tokenizer_json": str(tokenizer_json),
        "tokenizer_cases": _tokenizer_cases(Tokenizer.from_file(str(tokenizer_json)), special),
        "stats_cases": _stats_cases(),
        "replay": str(REPLAY_PATH),
        "shared_data": str(data_dir.parent),
    }
    write_json(out / "vectors.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("replay", help="record decoder replay vectors from an export folder holding model.pte")
    p.add_argument("--export", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="the english_misc folder of the shared data")
    p.add_argument("--out", type=Path, default=REPLAY_PATH)
    p = sub.add_parser("runtime", help="write the runtime vectors (WAV, log-mel, tokenizer, stats) to a folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tokenizer", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "replay":
        replay = make_replay(args.export, args.data, args.out)
        check_replay(replay)
        for clip in replay["clips"]:
            print(
                f"{clip['clip']}: {len(clip['cases'][0]['steps'])} steps, raw argmax forbidden at "
                f"{clip['raw_argmax_was_forbidden_steps']}: {clip['python_text']!r}"
            )
        print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    else:
        make_runtime_vectors(args.out, args.tokenizer, args.data)
        print(f"wrote {args.out / 'vectors.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
