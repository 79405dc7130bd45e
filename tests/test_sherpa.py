"""The sherpa layout (exporter/lower/onnx_sherpa.py), run by sherpa-onnx itself and by edgeasr's ONNX runner.

The slow tests lower one mixed 8/4-bit plan of tiny.en once per module, load the pair in
`sherpa_onnx.OfflineRecognizer.from_whisper` (the client apps link), and check its transcripts of real
clips against edgeasr's runner on the same files, and edgeasr's runner against the simulated plan.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from exporter.lower.onnx_sherpa import lower_onnx_sherpa, sherpa_metadata, tokens_txt
from exporter.normalize import normalize
from runtimes.allocator import _glibc
from runtimes.audio import FULL_FRAMES, load_audio
from runtimes.contract import DECODER_FILE, ENCODER_FILE, META_LAYOUT, SHERPA_TOKENS_FILE, TOKENIZER_FILE
from runtimes.errors import EdgeAsrError
from runtimes.tokenizer import byte_decoder

# Every key sherpa-onnx 2.0.1 reads from the encoder's metadata; it exits when one is missing.
SHERPA_REQUIRED = (
    "n_mels n_text_layer n_text_ctx n_text_state n_vocab sot eot blank_id translate transcribe is_multilingual "
    "no_timestamps no_speech sot_sequence"
).split()


def test_byte_decoder_is_a_bijection_onto_the_256_bytes():
    mapping = byte_decoder()
    assert sorted(mapping.values()) == list(range(256))
    assert mapping["A"] == ord("A") and mapping["Ġ"] == ord(" ")  # GPT-2's stand-in for the space


def test_tokens_txt_spells_every_token_below_end_of_text(tiny_en):
    lines = tokens_txt(tiny_en).decode("ascii").splitlines()
    assert len(lines) == tiny_en.special.eot
    pieces = {}
    for line in lines:
        encoded, token_id = line.split(" ")
        pieces[int(token_id)] = base64.b64decode(encoded)
    assert sorted(pieces) == list(range(tiny_en.special.eot))
    ids = tiny_en.tokenizer.encode(" He could wait no longer.", add_special_tokens=False).ids
    assert b"".join(pieces[i] for i in ids).decode("utf-8") == " He could wait no longer."


@pytest.mark.parametrize("model", ["tiny_en", "base"])
def test_metadata_has_every_key_sherpa_requires(model, request):
    bundle = request.getfixturevalue(model)
    metadata = sherpa_metadata(bundle)
    assert all(key in metadata for key in SHERPA_REQUIRED)
    assert metadata["is_multilingual"] == str(int(bundle.special.is_multilingual))
    assert metadata["sot_sequence"].split(",")[0] == str(bundle.special.sot)
    if bundle.special.is_multilingual:
        codes = metadata["all_language_codes"].split(",")
        tokens = [int(t) for t in metadata["all_language_tokens"].split(",")]
        assert len(codes) == len(tokens) == len(bundle.special.languages) and codes[0] == "en"
        assert tokens == sorted(tokens) and tokens[codes.index("de")] == bundle.special.languages["de"]
    else:
        assert "all_language_codes" not in metadata


def test_a_shorter_audio_context_is_refused(tiny_en, tmp_path):
    with pytest.raises(EdgeAsrError, match="needs the full 30 s audio context|takes up to 30 s"):
        lower_onnx_sherpa(tiny_en, None, tmp_path, n_frames=1000)
    assert not any(tmp_path.iterdir())


def test_sherpa_runner_refuses_a_folder_without_the_sherpa_layout(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from runtimes.sherpa_runner import SherpaOnnxRunner

    with pytest.raises(EdgeAsrError, match="has no encoder.onnx: sherpa-onnx runs the sherpa layout"):
        SherpaOnnxRunner(tmp_path)
    # A pair without the layout mark (edgeasr's own layout): refused before sherpa-onnx would exit on it.
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [value], [value])
    for name in (ENCODER_FILE, DECODER_FILE):
        onnx.save(helper.make_model(graph), tmp_path / name)
    (tmp_path / SHERPA_TOKENS_FILE).write_text("IQ== 0\n")
    with pytest.raises(EdgeAsrError, match="edgeasr's own ONNX layout, which sherpa-onnx cannot load"):
        SherpaOnnxRunner(tmp_path)


# --- one mixed 8/4-bit plan of tiny.en, lowered once ------------------------------------------------------


@pytest.fixture(scope="module")
def sherpa_plan(tiny_en, shared_data):
    """myQASR + fill on the onnx ladder at 39 MB: Linears on 8 and 4 bits, a 4-bit embedding."""
    from exporter.data import load_dataset
    from exporter.quant.pipeline import PlanOptions, make_plan, observe_user

    user = observe_user(tiny_en, load_dataset(shared_data / "english_misc" / "manifest.jsonl"), 4, 0)
    options = PlanOptions(target="onnx", budget="39MB", calibration="minmax", allocation="fill")
    plan = make_plan(tiny_en, user, options, progress=False)
    assert {layer.format.bits for layer in plan.layers if layer.kind == "linear"} >= {4, 8}
    return plan


@pytest.fixture(scope="module")
def sherpa_pair(tiny_en, sherpa_plan, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sherpa")
    lower_onnx_sherpa(tiny_en, sherpa_plan, folder)
    return folder


@pytest.mark.slow
def test_the_pair_is_the_sherpa_layout_and_near_plan_size(sherpa_pair, sherpa_plan):
    from runtimes.onnx_runner import read_metadata, read_plan_from_onnx

    names = sorted(p.name for p in sherpa_pair.iterdir())
    assert names == sorted([ENCODER_FILE, DECODER_FILE, SHERPA_TOKENS_FILE, TOKENIZER_FILE])
    metadata = read_metadata(sherpa_pair / ENCODER_FILE)
    assert metadata[META_LAYOUT] == "sherpa" and all(key in metadata for key in SHERPA_REQUIRED)
    assert read_plan_from_onnx(sherpa_pair / DECODER_FILE) == sherpa_plan.artifact_plan().to_dict()
    graphs = sum((sherpa_pair / name).stat().st_size for name in (ENCODER_FILE, DECODER_FILE))
    assert sherpa_plan.total_bytes <= graphs <= sherpa_plan.total_bytes * 1.01


@pytest.mark.slow
def test_cross_keys_are_half_and_each_layer_widens_its_own_as_it_runs(sherpa_pair, tmp_path):
    """The encoder hands over half-precision cross keys and values (CROSS_DTYPE); the decoder widens a layer's
    own when that layer reaches its cross-attention. ORT orders nodes by a walk back from the outputs, and a
    widening traced after the query ran every layer's at the start of the step, all alive at once: in ORT's
    execution order a self-attention softmax must run before the first widening and between any two."""
    import json

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "decoder")
    session = ort.InferenceSession(str(sherpa_pair / DECODER_FILE), options, providers=["CPUExecutionProvider"])
    tokens, self_k, _, cross_k, _, _ = session.get_inputs()
    assert cross_k.type == "tensor(float16)" and self_k.type == "tensor(float)"
    layers, _, heads, _, head_size = cross_k.shape
    cache = np.zeros([layers, 1, self_k.shape[2], self_k.shape[3]], dtype=np.float32)
    cross = np.zeros([layers, 1, heads, 40, head_size], dtype=np.float16)
    feeds = {"in_self_k": cache, "in_self_v": cache, "cross_k": cross, "cross_v": cross}
    session.run(None, {**feeds, tokens.name: np.array([[50257]], dtype=np.int64), "offset": np.array([2])})
    with open(session.end_profiling()) as f:
        ran = [
            e["args"]["op_name"] for e in json.load(f) if e.get("cat") == "Node" and e["name"].endswith("kernel_time")
        ]
    # Cast runs on float32 tensors only for the widening (the half initializers' Casts are folded at load).
    order = "".join("C" if op == "Cast" else "S" for op in ran if op in ("Cast", "Softmax"))
    assert order.count("C") == 2 * layers and order.startswith("S") and "CCC" not in order, order


@pytest.mark.slow
def test_edgeasr_runner_on_the_pair_matches_the_simulated_plan(tiny_en, sherpa_plan, sherpa_pair, shared_data):
    """Prompt in one call at offset 0, then single tokens: the fixed cache is written where it should be.

    The plan's 8-bit layers quantise their inputs to int8 at run time (the onnx target's 8-bit rung), so a
    float32 round-off difference upstream can move an input across a rounding boundary: one code step, which
    the layers after it carry on. Measured: up to 0.1 on logits of 8-16, the same argmax; a cache written at the
    wrong position changes the logits by whole units."""
    from exporter.quant.simulate import simulate
    from runtimes.audio import log_mel_frames
    from runtimes.onnx_runner import OnnxRunner
    from runtimes.torch_runner import TorchRunner

    simulated, runner = TorchRunner(simulate(tiny_en, sherpa_plan)), OnnxRunner(sherpa_pair)
    assert runner.freed_memory_returned == (_glibc() is not None)  # runtimes/allocator.py, on by default
    samples = load_audio(shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav")
    # The 30 s window, the client's shorter framing, and 501 positions (feed-forward slices of unequal length).
    for frames in (FULL_FRAMES, 1208, 1002):
        features = log_mel_frames(samples, tiny_en.n_mels, frames)
        reference = simulated.start_decoder(simulated.encode(features))
        session = runner.start_decoder(runner.encode(features))
        for tokens in (tiny_en.special.prompt(None), [679], [714], [339]):
            expected, got = reference.step(tokens), session.step(tokens)
            np.testing.assert_allclose(got, expected, atol=0.3, rtol=0)
            assert got.argmax() == expected.argmax()


@pytest.mark.slow
def test_the_runner_frames_a_clip_with_the_client_s_tail_padding(sherpa_pair, shared_data):
    """sherpa-onnx appends `tail_paddings` zero frames (1000 by default, an app's setting); the runner does the
    same, 3000 giving a short clip the full 30 s window. Out-of-range values are refused."""
    from runtimes.onnx_runner import OnnxRunner, client_frame_counts

    samples = load_audio(shared_data / "english_misc" / "audio" / "ls_1089-134691-0000.wav")
    own, with_tail = client_frame_counts(len(samples))
    assert own < with_tail < FULL_FRAMES
    assert OnnxRunner(sherpa_pair).features(samples).shape[1] == with_tail
    full = OnnxRunner(sherpa_pair, tail_frames=FULL_FRAMES).features(samples)
    assert full.shape[1] == FULL_FRAMES and not full[:, own:].any()
    with pytest.raises(EdgeAsrError, match="tail frames"):
        OnnxRunner(sherpa_pair, tail_frames=FULL_FRAMES + 1)


@pytest.mark.slow
def test_sherpa_onnx_itself_transcribes_like_edgeasr_s_runner(sherpa_pair, shared_data):
    """The client apps use, on real clips: the same text as edgeasr's runner, up to near ties. sherpa-onnx
    computes its own log-mel features, so a word whose two readings score almost alike can flip (on 22
    english_misc clips of one 39 MB plan: 3 with half_range blocks, 5 with signed_max); a mis-bound input or
    cache gives "" or nonsense."""
    from exporter.data import load_dataset
    from exporter.scoring import aggregate, count_errors
    from runtimes.artifact import open_artifact

    client = open_artifact(sherpa_pair, runtime="sherpa-onnx")
    ours = open_artifact(sherpa_pair)
    assert client.name == "sherpa-onnx" and ours.name == "onnx"
    clips = load_dataset(shared_data / "english_misc" / "manifest.jsonl").utterances[:12]
    same, wrong_words, between = 0, [], []
    for clip in clips:
        samples = load_audio(clip.audio_path)
        theirs, mine = client.transcribe(samples).text, ours.transcribe(samples).text
        same += normalize(theirs) == normalize(mine)
        assert theirs.strip(), clip.utt_id  # a mis-bound input or missing metadata gives "" in sherpa
        wrong_words.append(normalize(theirs) != normalize(clip.transcript))
        between.append(count_errors(mine, theirs))
    disagreement = aggregate(between).wer  # sherpa-onnx's words against edgeasr's runner's
    assert same >= 0.66 * len(clips) and disagreement <= 0.05, f"{same}/{len(clips)} identical, {disagreement:.3f}"
    assert sum(wrong_words) < len(clips)  # and it hears: not every clip is wrong against the reference


@pytest.mark.slow
def test_lowering_the_same_plan_again_gives_the_same_bytes(tiny_en, sherpa_plan, sherpa_pair, tmp_path):
    lower_onnx_sherpa(tiny_en, sherpa_plan, tmp_path)
    for name in (ENCODER_FILE, DECODER_FILE, SHERPA_TOKENS_FILE, TOKENIZER_FILE):
        assert (tmp_path / name).read_bytes() == (sherpa_pair / name).read_bytes(), name


# --- NF4 + LoRA in the sherpa layout ----------------------------------------------------------------------


@pytest.mark.slow
def test_nf4_lora_export_in_the_sherpa_layout_runs_in_sherpa_onnx(run_cli, tiny_en, shared_data, tmp_path):
    """`edgeasr export --lora --onnx-layout sherpa`: MatMulBnb4 base and the adapter's MatMuls as plain weights
    (sherpa binds six decoder inputs by position), checked by the export against sherpa-onnx itself, then
    sherpa-onnx and edgeasr's runner give the same text on >= 90 % of 12 real clips."""
    import json

    import onnx
    import torch

    from exporter.data import load_dataset
    from exporter.personalize.base import Nf4Options
    from exporter.personalize.lora import AdapterInfo, LoraConfig, lora_modules, lora_state, save_adapter
    from exporter.personalize.run import adapted_model
    from runtimes.artifact import open_artifact

    config = LoraConfig(rank=4, alpha=8, dropout=0.0, targets=("q", "v"), scope=("decoder",))
    adapted = adapted_model(tiny_en, config, 1)
    generator = torch.Generator().manual_seed(1)
    for module in lora_modules(adapted.model).values():  # a small, non-zero adapter: the branch must matter
        module.lora_B.data.normal_(0.0, 0.01, generator=generator)
    # A finer NF4 base than the default (blocks of 32, int8 embedding), as a user may choose. On the default base
    # (64, int4) the two clients agreed on 10 of these 12 clips: edgeasr's runner looped on one where sherpa-onnx
    # stopped, and one hard word differed, the model being that much more fragile, not the layout different.
    base = Nf4Options(block_size=32, embedding="int8").to_dict()
    save_adapter(tmp_path / "adapter", lora_state(adapted.model), AdapterInfo("tiny.en", config, base))
    out = tmp_path / "sherpa-lora"
    status, _, err = run_cli(
        "export", "--model", "tiny.en", "--target", "onnx", "--onnx-layout", "sherpa", "--budget", "55MB",
        "--lora", tmp_path / "adapter", "--calib", shared_data / "english_misc", "--out", out, "--no-progress",
    )  # fmt: skip
    assert status == 0, err
    parity = json.loads((out / "export.json").read_text())["artifacts"][0]["parity"]
    assert parity["clients"]["sherpa-onnx"]["clips"] == parity["clips"]

    encoder, decoder = (onnx.load(str(out / name)) for name in (ENCODER_FILE, DECODER_FILE))
    assert len(decoder.graph.input) == 6 and len(encoder.graph.input) == 1  # sherpa's inputs only
    branches = {
        name: sum(n.name.endswith("/LoraB") for n in g.graph.node) for name, g in (("enc", encoder), ("dec", decoder))
    }
    # q and v of 4 decoder layers: self q, self v and cross q in the decoder graph, cross v in the encoder's
    assert branches == {"enc": 4, "dec": 12}
    assert "MatMulBnb4" in {n.op_type for n in decoder.graph.node}

    client, ours = open_artifact(out, runtime="sherpa-onnx"), open_artifact(out)
    clips = load_dataset(shared_data / "english_misc" / "manifest.jsonl").utterances[:12]
    same = 0
    for clip in clips:
        samples = load_audio(clip.audio_path)
        theirs, mine = client.transcribe(samples).text, ours.transcribe(samples).text
        assert theirs.strip(), clip.utt_id
        same += normalize(theirs) == normalize(mine)
    assert same >= 0.9 * len(clips), f"{same}/{len(clips)} clips identical"
