"""PQM personalisation: LoRA injection, training on real clips, adapter files, and `edgeasr personalize`."""

from __future__ import annotations

import json

import pytest
import torch

from exporter.personalize.lora import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    LoraConfig,
    inject_lora,
    load_adapter,
    load_lora_state,
    lora_state,
    target_layers,
)
from runtimes.errors import EdgeAsrError

DECODER_QV = LoraConfig(rank=4, alpha=8, dropout=0.0, targets=("q", "v"), scope=("decoder",))


@pytest.fixture(scope="module")
def nf4_tiny(tiny_en):
    from exporter.personalize.base import nf4_bundle

    bundle, _ = nf4_bundle(tiny_en)
    return bundle


@pytest.fixture(scope="module")
def an4_clips(shared_data):
    from exporter.data import load_dataset

    return [u for u in load_dataset(shared_data / "an4" / "manifest.jsonl") if u.speaker == "mdms2"][:3]


@pytest.fixture(scope="module")
def examples(tiny_en, an4_clips):
    from exporter.personalize.run import labelled_examples

    return labelled_examples(tiny_en, an4_clips[:2])


def test_nf4_base_plan_quantizes_every_linear(tiny_en, nf4_tiny):
    from exporter.personalize.base import nf4_plan

    plan = nf4_plan(tiny_en)
    kinds = {(layer.kind, layer.format.name) for layer in plan.layers}
    assert kinds == {("linear", "nf4_b64"), ("embedding", "gbq4_g32"), ("conv", "fp32")}
    assert plan.target == "nf4" and plan.total_bytes < 40_000_000  # tiny.en untied fp32 is 230.7 MB
    assert not torch.equal(nf4_tiny.model.proj_out.weight, tiny_en.model.proj_out.weight)


def test_targets_select_projections():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(
        WhisperConfig(
            d_model=16,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            vocab_size=60,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
    )
    names = target_layers(model, LoraConfig(targets=("v", "fc2"), scope=("decoder",)))
    assert names == [
        "model.decoder.layers.0.self_attn.v_proj",
        "model.decoder.layers.0.encoder_attn.v_proj",
        "model.decoder.layers.0.fc2",
        "model.decoder.layers.1.self_attn.v_proj",
        "model.decoder.layers.1.encoder_attn.v_proj",
        "model.decoder.layers.1.fc2",
    ]
    assert len(target_layers(model, LoraConfig(targets=("q",), scope=("encoder", "decoder")))) == 2 + 4
    # only the top encoder layer: its layers below stay frozen (their output is cached once per clip)
    top = LoraConfig(targets=("q",), scope=("encoder", "decoder"), encoder_layers=1)
    assert [n for n in target_layers(model, top) if ".encoder." in n] == ["model.encoder.layers.1.self_attn.q_proj"]
    assert LoraConfig.from_dict(top.to_dict()) == top
    assert "encoder_layers" not in LoraConfig().to_dict()  # adapter.json as before the field existed
    for bad in (LoraConfig(encoder_layers=1), LoraConfig(scope=("encoder",), encoder_layers=0)):
        with pytest.raises(EdgeAsrError, match="encoder_layers"):
            bad.validate()
    with pytest.raises(TypeError, match="encoder_layers"):
        LoraConfig.from_dict({**top.to_dict(), "encoder_layers": "1"})
    with pytest.raises(EdgeAsrError, match="unknown LoRA target"):
        inject_lora(model, LoraConfig(targets=("query",)))


def _adapted(nf4_tiny, config=DECODER_QV, seed=0):
    from exporter.personalize.run import adapted_model

    return adapted_model(nf4_tiny, config, seed)


def test_zero_initialised_lora_leaves_outputs_unchanged(nf4_tiny, examples):
    adapted = _adapted(nf4_tiny, LoraConfig(rank=8, targets=("q", "k", "v", "out", "fc1", "fc2")))
    trainable = {n for n, p in adapted.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) for n in trainable)  # the base is frozen
    with torch.no_grad():
        features = examples[0].features[None]
        ids = torch.tensor([examples[0].tokens])
        ref = nf4_tiny.model(input_features=features, decoder_input_ids=ids).logits
        out = adapted.model(input_features=features, decoder_input_ids=ids).logits
        assert torch.equal(ref, out)


def test_training_reduces_loss_and_is_reproducible(nf4_tiny, examples):
    from exporter.personalize.train import TrainOptions, mean_loss, train_lora

    options = TrainOptions(steps=6, batch_size=2, lr=2e-3, seed=3)
    runs = []
    for _ in range(2):
        adapted = _adapted(nf4_tiny, seed=3)
        before = mean_loss(adapted.model, examples, nf4_tiny.special.eot)
        result = train_lora(adapted.model, examples, nf4_tiny.special.eot, options)
        after = mean_loss(adapted.model, examples, nf4_tiny.special.eot)
        runs.append((before, after, result.curve, lora_state(adapted.model)))
    before, after, curve, state = runs[0]
    assert after < 0.7 * before, (before, after)
    assert [r["step"] for r in curve] == list(range(1, 7))
    assert [r["loss"] for r in curve] == [r["loss"] for r in runs[1][2]]  # same seed: same curve
    assert all(torch.equal(state[k], runs[1][3][k]) for k in state)  # ... and the same adapter, bit for bit


def test_cached_encoder_prefix_matches_full_encoder(nf4_tiny, examples):
    from exporter.personalize.train import (
        cache_frozen_encoder,
        encoder_prefix,
        encoder_suffix,
        first_adapted_encoder_layer,
    )

    model = nf4_tiny.model
    features = examples[0].features[None]
    with torch.no_grad():
        full = model.model.encoder(features).last_hidden_state
        for split in (1, 4):
            assert torch.equal(encoder_suffix(model, encoder_prefix(model, features, split), split), full)
    assert first_adapted_encoder_layer(_adapted(nf4_tiny).model) == 4  # decoder-only: the whole encoder cached
    encoder_lora = _adapted(nf4_tiny, LoraConfig(targets=("q",), scope=("encoder",)))
    assert cache_frozen_encoder(encoder_lora.model, examples[:1]) == 0
    top_two = _adapted(nf4_tiny, LoraConfig(targets=("q",), scope=("encoder",), encoder_layers=2))
    assert cache_frozen_encoder(top_two.model, examples[:1]) == 2  # layers 0-1 frozen: computed once per clip


def test_adapter_state_round_trip_and_mismatch(nf4_tiny, tmp_path):
    from exporter.personalize.lora import AdapterInfo, save_adapter

    adapted = _adapted(nf4_tiny)
    for module in adapted.model.modules():
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B, std=0.01)
    state = lora_state(adapted.model)
    save_adapter(tmp_path / "a", state, AdapterInfo("tiny.en", DECODER_QV, {"block_size": 64}))
    loaded, info = load_adapter(tmp_path / "a")
    assert info.lora == DECODER_QV and all(torch.equal(loaded[k], state[k]) for k in state)
    fresh = _adapted(nf4_tiny)
    load_lora_state(fresh.model, loaded)
    assert all(torch.equal(v, lora_state(fresh.model)[k]) for k, v in state.items())
    other = _adapted(nf4_tiny, LoraConfig(rank=4, alpha=8, targets=("q", "k"), scope=("decoder",)))
    with pytest.raises(EdgeAsrError, match="does not match this model's LoRA layers"):
        load_lora_state(other.model, loaded)
    wider = _adapted(nf4_tiny, LoraConfig(rank=8, targets=("q", "v"), scope=("decoder",)))
    with pytest.raises(EdgeAsrError, match="has shape"):
        load_lora_state(wider.model, loaded)


# --- the CLI -------------------------------------------------------------------------------------------------


def test_personalize_cli_writes_adapters_with_curve(run_cli, shared_data, tmp_path):
    out = tmp_path / "adapter"
    status, stdout, stderr = run_cli(
        "personalize",
        "--model",
        "tiny.en",
        "--clips",
        shared_data / "an4" / "manifest.jsonl",
        "--speaker",
        "mdms2",
        "--n-clips",
        "2",
        "--transcripts",
        "--targets",
        "q,v",
        "--scope",
        "decoder",
        "--rank",
        "4",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--out",
        out,
    )
    assert status == 0, stderr
    assert (out / ADAPTER_WEIGHTS).is_file() and "loss" in stdout
    info = json.loads((out / ADAPTER_CONFIG).read_text())
    assert info["model_id"] == "tiny.en" and info["lora"]["rank"] == 4 and info["lora"]["alpha"] == 8
    assert info["training"]["labels"] == "transcripts" and len(info["training"]["clips"]) == 2
    assert [r["step"] for r in info["training"]["curve"]] == [1, 2, 3]
    assert info["training"]["texts"][0] == info["training"]["texts"][0].lower()  # all-caps AN4 lower-cased
    assert info["training"]["peak_rss_bytes"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_personalize_cli_errors(run_cli, shared_data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = run_cli("personalize", "--clips", empty, "--out", tmp_path / "o1")
    assert status == 2 and "no audio files" in err

    clips = shared_data / "an4" / "wav" / "test" / "fcaw"  # a folder of audio: no transcripts
    status, _, err = run_cli("personalize", "--clips", clips, "--transcripts", "--out", tmp_path / "o2")
    assert status == 2 and "have no transcript" in err and "--pseudo-labels" in err

    fake = tmp_path / "base_adapter"
    fake.mkdir()
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(fake / ADAPTER_WEIGHTS))
    (fake / ADAPTER_CONFIG).write_text(
        json.dumps(
            {"schema_version": 1, "model_id": "base", "base": {}, "lora": LoraConfig().to_dict(), "training": {}}
        )
    )
    status, _, err = run_cli("personalize", "--clips", clips, "--pretrained-lora", fake, "--out", tmp_path / "o3")
    assert status == 2 and "trained for model 'base'" in err

    status, _, err = run_cli("personalize", "--clips", clips, "--targets", "q,query", "--out", tmp_path / "o4")
    assert status == 2 and "unknown LoRA target" in err
    status, _, err = run_cli("personalize", "--clips", clips, "--encoder-layers", "2", "--out", tmp_path / "o5")
    assert status == 2 and "--scope encoder,decoder" in err and not (tmp_path / "o5").exists()
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()


def _label(text: str, avg_logprob: float = -0.2):
    from exporter.personalize.labels import PseudoLabel, compression_ratio

    return PseudoLabel("u1", text, [1, 2], "en", avg_logprob, compression_ratio(text), "tiny.en")


def test_confidence_filter_drops_unsure_looping_and_empty_labels():
    from exporter.personalize.labels import ConfidenceFilter

    keep_all = ConfidenceFilter(min_avg_logprob=None, max_compression_ratio=None)
    default = ConfidenceFilter()
    assert default.reason_to_drop(_label("we call it bear")) is None
    assert "log-probability" in default.reason_to_drop(_label("we call it bear", avg_logprob=-1.5))
    loop = _label("I'm going to go. " * 20)
    assert loop.compression_ratio > 2.4 and "loop" in default.reason_to_drop(loop)
    assert keep_all.reason_to_drop(loop) is None and keep_all.reason_to_drop(_label("x", -9.0)) is None
    assert "empty" in keep_all.reason_to_drop(_label(" "))
    with pytest.raises(EdgeAsrError, match="log-probability threshold"):
        ConfidenceFilter(min_avg_logprob=0.5).validate()


def test_all_clips_dropped_is_an_error_naming_the_way_out():
    from exporter.personalize.labels import ConfidenceFilter
    from exporter.personalize.run import confident_examples

    labelled = [(_label("a", -2.0), object()), (_label("b", -3.0), object())]
    with pytest.raises(EdgeAsrError, match="dropped all 2 clips.*drop the filter"):
        confident_examples(labelled, ConfidenceFilter())
    kept, dropped = confident_examples(labelled, ConfidenceFilter(min_avg_logprob=-2.5))
    assert len(kept) == 1 and [d["utt_id"] for d in dropped] == ["u1"]


def test_teacher_labels_are_retokenised_for_the_student(tiny_en, base, an4_clips):
    """base (multilingual vocabulary) labels for tiny.en (English-only): the student trains on base's text in
    its own tokens; a model labelling for itself keeps its generated tokens; confidence is a log-probability."""
    from exporter.personalize.run import pseudo_labels
    from exporter.personalize.train import text_tokens

    ((teacher_label, teacher_example),) = pseudo_labels(base, tiny_en, an4_clips[:1])
    ((self_label, self_example),) = pseudo_labels(tiny_en, tiny_en, an4_clips[:1])
    assert teacher_label.labeller == "base" and self_label.labeller == "tiny.en"
    assert teacher_label.text.strip() and teacher_label.avg_logprob < 0 and self_label.avg_logprob < 0
    student_ids = text_tokens(tiny_en, teacher_label.text)
    assert teacher_example.tokens[teacher_example.prompt_length : -1] == student_ids
    assert student_ids != teacher_label.tokens  # the vocabularies really differ
    assert self_example.tokens[self_example.prompt_length : -1] == self_label.tokens
    ((chosen, _),) = pseudo_labels([tiny_en, base], tiny_en, an4_clips[:1])  # the surer labeller's label
    assert chosen == max(teacher_label, self_label, key=lambda label: label.avg_logprob)


def test_personalize_cli_records_the_label_source(run_cli, shared_data, tmp_path):
    clips = shared_data / "an4" / "manifest.jsonl"
    common = ("--model", "tiny.en", "--clips", clips, "--speaker", "mdms2", "--n-clips", "2", "--teacher", "base")
    out = tmp_path / "adapter"
    status, _, err = run_cli("personalize", *common, "--rank", "2", "--steps", "2", "--batch-size", "2", "--out", out)
    assert status == 0, err
    training = json.loads((out / ADAPTER_CONFIG).read_text())["training"]
    assert training["labels"] == "pseudo" and training["labeller"] == "base"
    assert training["confidence_filter"] is None and training["dropped"] == []  # the filter is off by default
    labelled = sorted(p["utt_id"] for p in training["pseudo_labels"])
    assert len(labelled) == 2 and labelled == sorted(training["clips"] + [d["utt_id"] for d in training["dropped"]])

    status, _, err = run_cli("personalize", *common, "--min-logprob", "-0.0001", "--out", tmp_path / "o1")
    assert status == 2 and "dropped all 2 clips" in err and not (tmp_path / "o1").exists()
    status, _, err = run_cli("personalize", *common, "--confidence-filter", "--transcripts", "--out", tmp_path / "o3")
    assert status == 2 and "--pseudo-labels only" in err
    status, _, err = run_cli("personalize", *common, "--transcripts", "--out", tmp_path / "o2")
    assert status == 2 and "--pseudo-labels only" in err
