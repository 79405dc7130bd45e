"""The ASR-runner layout of the .pte (`--pte-layout runner`): the contract of ExecuTorch's own ASR runner.

There is no Python binding of the C++ runner (`extension/asr/runner`, `Seq2SeqRunner`), so its contract is
replicated here and nothing more is used: methods `encoder` (exactly one output) and `text_decoder(ids [1, 1],
encoder_output, cache_position [1])` (exactly one output, the logits, sampled over the last dimension), the
constant method `get_eos_ids`, the start token from the caller's configuration and no forced prompt beyond
it, the tokenizer.json shipped beside the program, and features from the preprocessor program shipped beside
it too (ExecuTorch's own mel-spectrogram front end), so the whole runner pipeline is replayed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtimes.audio import chunks, load_audio, log_mel, log_mel_frames
from runtimes.contract import PTE_FILE, PTE_PREPROCESSOR_FILE, TOKENIZER_FILE

CLIPS = {"ls_1089-134691-0000.wav": "could wait no longer", "ls_1089-134686-0001.wav": "into you"}


@pytest.fixture(scope="module")
def runner_pte(tiny_en, shared_data, tmp_path_factory):
    """tiny.en on the android ladder at 55 MB (myQASR + fill: int8 Linears, a few int4), runner layout."""
    from exporter.data import load_dataset
    from exporter.lower.registry import get_backend
    from exporter.quant.pipeline import PlanOptions, make_plan, observe_user

    user = observe_user(tiny_en, load_dataset(shared_data / "english_misc" / "manifest.jsonl"), 4, 0)
    plan = make_plan(tiny_en, user, PlanOptions(target="android", budget="55MB", calibration="minmax"), False)
    folder = tmp_path_factory.mktemp("pte-runner")
    get_backend("pte-runner").lower(tiny_en, plan, folder, 3000, "eager")
    return folder, plan


def runner_contract_transcribe(program, tokenizer, features: np.ndarray, start_token: int, limit: int = 120):
    """What Seq2SeqRunner does: encoder once, then text_decoder one token at a time from the start token,
    argmax over the last dimension, until a token in get_eos_ids."""
    outputs = program.load_method("encoder").execute((torch.from_numpy(features)[None],))
    assert len(outputs) == 1, "the runner refuses an encoder with more than one output"
    decoder = program.load_method("text_decoder")
    eos = {int(v) for v in program.load_method("get_eos_ids").execute(())}  # a list constant: one value per id
    token, tokens = start_token, []
    for position in range(limit):
        logits = decoder.execute(
            (torch.tensor([[token]], dtype=torch.long), outputs[0], torch.tensor([position], dtype=torch.long))
        )
        assert len(logits) == 1
        token = int(logits[0].reshape(-1, logits[0].shape[-1])[-1].argmax())
        if token in eos:
            break
        tokens.append(token)
    text_tokens = [t for t in tokens if t < min(eos)]  # the runner's tokenizer drops specials the same way
    return tokenizer.decode(text_tokens, skip_special_tokens=True).strip()


@pytest.mark.slow
def test_the_runner_contract_transcribes_real_clips(runner_pte, tiny_en, shared_data):
    from runtimes.executorch_runner import load_program
    from runtimes.tokenizer import load_tokenizer

    folder, _ = runner_pte
    program = load_program(folder / PTE_FILE)
    assert {"encoder", "text_decoder", "get_eos_ids"} <= set(program.method_names)
    tokenizer = load_tokenizer(folder / TOKENIZER_FILE)
    for clip, words in CLIPS.items():
        features = log_mel_frames(load_audio(shared_data / "english_misc" / "audio" / clip), tiny_en.n_mels)
        text = runner_contract_transcribe(program, tokenizer, features, tiny_en.special.sot)
        assert words in text.lower(), (clip, text)


@pytest.mark.slow
def test_the_shipped_preprocessor_feeds_the_runner_contract(runner_pte, tiny_en, shared_data):
    """samples -> preprocessor.pte -> encoder -> text_decoder, nothing of edgeasr's in between: the features
    equal runtimes.audio.log_mel's per 30 s window, and the clips transcribe."""
    from runtimes.executorch_runner import load_program
    from runtimes.tokenizer import load_tokenizer

    folder, _ = runner_pte
    preprocessor = load_program(folder / PTE_PREPROCESSOR_FILE).load_method("forward")
    program, tokenizer = load_program(folder / PTE_FILE), load_tokenizer(folder / TOKENIZER_FILE)
    for clip, words in CLIPS.items():
        samples = load_audio(shared_data / "english_misc" / "audio" / clip)
        features = preprocessor.execute((torch.from_numpy(samples),))[0].numpy()
        assert features.shape == (1, tiny_en.n_mels, 3000)
        assert np.abs(features[0] - log_mel(samples, tiny_en.n_mels)).max() < 1e-4
        text = runner_contract_transcribe(program, tokenizer, np.ascontiguousarray(features[0]), tiny_en.special.sot)
        assert words in text.lower(), (clip, text)
    # Longer audio comes back as 30 s windows stacked on the first axis, but not computed window by window as
    # Whisper's recipe and edgeasr do (the clamp to 8 below the maximum looks clip-wide): past 30 s the two
    # front ends differ (measured 2e-3 in the first window of this 43 s signal, 0.19 in the second).
    long = np.concatenate([load_audio(shared_data / "english_misc" / "audio" / c) for c in sorted(CLIPS)] * 8)
    stacked = preprocessor.execute((torch.from_numpy(long),))[0].numpy()
    assert stacked.shape == (len(chunks(long)), tiny_en.n_mels, 3000) and stacked.shape[0] == 2


@pytest.mark.slow
def test_edgeasr_runner_on_the_runner_layout_matches_the_simulated_plan(runner_pte, tiny_en, shared_data):
    from exporter.quant.simulate import simulate
    from runtimes.artifact import open_artifact
    from runtimes.torch_runner import TorchRunner

    folder, plan = runner_pte
    ours, simulated = open_artifact(folder), TorchRunner(simulate(tiny_en, plan))
    assert ours.name == "executorch"
    samples = load_audio(shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav")
    assert ours.transcribe(samples).text == simulated.transcribe(samples).text
