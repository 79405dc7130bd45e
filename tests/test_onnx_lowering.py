"""ONNX lowering: packing against ORT's kernels, parity with the simulated plan, metadata, determinism.

The fast tests check the packing on single contrib-op graphs. The slow ones lower one mixed plan of tiny.en
(fp16 / 8 / 4 / 2-bit Linears, 4-bit groups of 32, 64 and 128, an 8-bit embedding, clip ratios below 1) once per module and compare it with
`apply_plan`, the simulation every WER number comes from.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from exporter.lower.onnx import FFN_SLICES, lower_onnx, pack_codes, quantized_nodes, store_half_floats
from exporter.quant.formats import FP16
from exporter.quant.targets import get_target
from runtimes.contract import DECODER_FILE, ENCODER_FILE, TOKENIZER_FILE
from runtimes.errors import EdgeAsrError
from runtimes.onnx_runner import read_metadata, read_plan_from_onnx

CLIPS = ["ls_1089-134691-0000.wav", "ls_1089-134686-0001.wav", "ls_1089-134686-0000.wav"]


# --- packing, checked against ORT itself -------------------------------------------------------------------


def _run_single(node, inputs, initializers, feeds):
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializers
    )
    model = helper.make_model(
        graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _random_codes(bits, rows, blocks, rng, block=32):
    codes = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=(rows, blocks, block))
    # both signs: the onnx target's signed_max rule stores negative scales, which ORT must take as they are
    sign = rng.choice([-1.0, 1.0], size=(rows, blocks))
    scales = (sign * (rng.random((rows, blocks)) + 0.1)).astype(np.float32)
    weight = (codes * scales[..., None]).reshape(rows, blocks * block).astype(np.float32)
    return codes, scales, weight


# Every (bits, block) pair the onnx ladders use.
@pytest.mark.parametrize(("bits", "block"), [(2, 32), (4, 32), (4, 64), (4, 128), (8, 32)])
def test_matmul_nbits_packing_matches_ort(bits, block):
    rng = np.random.default_rng(bits)
    n, k = 48, 384
    codes, scales, weight = _random_codes(bits, n, k // block, rng, block)
    node = helper.make_node(
        "MatMulNBits", ["A", "B", "S"], ["Y"], domain="com.microsoft", K=k, N=n, bits=bits, block_size=block
    )
    x = rng.standard_normal((1, 3, k)).astype(np.float32)
    y = _run_single(
        node,
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, 3, k])],
        [numpy_helper.from_array(pack_codes(codes, bits), "B"), numpy_helper.from_array(scales.reshape(-1), "S")],
        {"A": x},
    )
    # Exact weights; only float summation order differs.
    np.testing.assert_allclose(y, x @ weight.T, rtol=1e-5, atol=1e-5 * np.abs(weight).max() * k)


# Every rung of the onnx target that computes with int8 activations (8 and 2 bits).
@pytest.mark.parametrize(
    "name", [f.name for f in get_target("onnx").ladder("linear") if f.activation == "dynamic_int8_per_block"]
)
def test_int8_compute_matches_the_simulated_per_block_activations(name):
    """The onnx target's 8-bit and 2-bit rungs run MatMulNBits at accuracy_level 4, which quantises the input
    to int8 per block of 32 at run time: the simulation's per-block fake quantisation gives ORT's
    output to float32 round-off, while the float-input product is off by far more (so the test can tell the
    two apart)."""
    import torch

    from exporter.quant.primitives import fake_quantize_input

    fmt = get_target("onnx").format_by_name(name)
    bits, block = fmt.bits, fmt.group_size
    rng = np.random.default_rng(bits * block)
    n, k = 48, 384
    codes, scales, weight = _random_codes(bits, n, k // block, rng, block)
    node = helper.make_node(
        "MatMulNBits", ["A", "B", "S"], ["Y"], domain="com.microsoft", K=k, N=n, bits=bits, block_size=block,
        accuracy_level=4,
    )  # fmt: skip
    # heavy-tailed inputs with a zero block, as real activations have outlier channels
    x = (rng.standard_normal((1, 5, k)) * np.exp(rng.standard_normal((1, 5, k)))).astype(np.float32)
    x[0, 0, :block] = 0.0
    y = _run_single(
        node,
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, 5, k])],
        [numpy_helper.from_array(pack_codes(codes, bits), "B"), numpy_helper.from_array(scales.reshape(-1), "S")],
        {"A": x},
    )
    simulated = fake_quantize_input(torch.from_numpy(x), fmt).numpy().astype(np.float64) @ weight.T
    span = np.abs(x @ weight.T).max()
    assert np.abs(y - simulated).max() < 1e-5 * span
    assert np.abs(y - x @ weight.T).max() > 1e-3 * span


def _gather_node(inputs: list[str], output: str, block: int, bits: int):
    """GatherBlockQuantized as the onnx lowering writes it: rows gathered, blocks on their own axis (the
    shape MatMulNBits takes its codes in, so a tied projection shares the table)."""
    return helper.make_node(
        "GatherBlockQuantized",
        inputs,
        [output],
        domain="com.microsoft",
        gather_axis=0,
        quantize_axis=2,
        block_size=block,
        bits=bits,
    )


@pytest.mark.parametrize(("bits", "block"), [(4, 32), (4, 64), (4, 128), (8, 32)])
def test_gather_block_quantized_packing_matches_ort(bits, block):
    rng = np.random.default_rng(bits)
    codes, scales, weight = _random_codes(bits, 40, 2, rng, block)
    node = _gather_node(["B", "I", "S"], "Y", block, bits)
    ids = np.array([[0, 5, 39]], dtype=np.int64)
    y = _run_single(
        node,
        [helper.make_tensor_value_info("I", TensorProto.INT64, [1, 3])],
        [numpy_helper.from_array(pack_codes(codes, bits), "B"), numpy_helper.from_array(scales[:, :, None], "S")],
        {"I": ids},
    )
    np.testing.assert_array_equal(y.reshape(1, 3, -1), weight[ids])  # a gather + one multiply: bit-exact


@pytest.mark.parametrize("level", ["ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"])
def test_float16_scales_behind_a_cast_match_float32_ones(level):
    """The onnx target stores float16 scales behind a Cast to float32 (both contrib ops take scales in the
    activations' type): same outputs whether or not ORT folds the Cast (sherpa-onnx apps pick their level),
    here with the tied pair's shapes: one table of codes [rows, blocks, blob] read by both, the embedding's
    scales [rows, blocks, 1], reshaped flat for MatMulNBits."""
    rng = np.random.default_rng(3)
    n, k, block, bits = 40, 128, 32, 4
    codes, scales, _ = _random_codes(bits, n, k // block, rng, block)
    half = scales.astype(np.float16)
    cast = helper.make_node("Cast", ["S16"], ["S3"], to=TensorProto.FLOAT)
    flat = helper.make_node("Reshape", ["S3", "flat"], ["S1"])
    matmul = helper.make_node(
        "MatMulNBits", ["A", "B", "S1"], ["Y"], domain="com.microsoft", K=k, N=n, bits=bits, block_size=block
    )
    gather = _gather_node(["B", "I", "S3"], "Z", block, bits)
    packed = pack_codes(codes, bits)
    graph = helper.make_graph(
        [cast, flat, matmul, gather],
        "g",
        [
            helper.make_tensor_value_info("A", TensorProto.FLOAT, [2, k]),
            helper.make_tensor_value_info("I", TensorProto.INT64, [3]),
        ],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("Y", "Z")],
        [
            numpy_helper.from_array(packed, "B"),
            numpy_helper.from_array(half[:, :, None], "S16"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
        ],
    )
    model = helper.make_model(
        graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x, ids = rng.standard_normal((2, k)).astype(np.float32), np.array([0, 7, 39], dtype=np.int64)
    y, z = session.run(None, {"A": x, "I": ids})
    weight = (codes * half.astype(np.float32)[..., None]).reshape(n, k)
    np.testing.assert_allclose(y, x @ weight.T, rtol=1e-5, atol=1e-5 * np.abs(weight).max() * k)
    np.testing.assert_array_equal(z.reshape(3, k), weight[ids])


def test_half_storage_keeps_exact_values_and_leaves_the_rest():
    """A weight half holds exactly is stored as float16 behind a Cast and gives the same output; one it
    cannot hold (float32's minimum, as in the attention mask) and the contrib op's scales stay float32."""
    exact = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    inexact = np.full((3, 4), np.finfo(np.float32).min, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["T"]), helper.make_node("Max", ["T", "M"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, 4])],
        [numpy_helper.from_array(exact, "W"), numpy_helper.from_array(inexact, "M")],
    )
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})
    assert store_half_floats(model) == exact.size * 2
    onnx.checker.check_model(model)
    kinds = {init.name: init.data_type for init in model.graph.initializer}
    assert kinds == {"W.fp16": TensorProto.FLOAT16, "M": TensorProto.FLOAT}
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})
    np.testing.assert_array_equal(after[0], before[0])


def test_runner_sessions_leave_ort_s_memory_caches_off_unless_asked(tmp_path):
    """edgeasr's ONNX runner turns ORT's CPU arena and memory patterns off (less run memory, about as fast:
    benchmarks/onnx_memory.py); memory_arena=True restores ORT's defaults."""
    from runtimes.onnx_runner import runner_session

    graph = helper.make_graph(
        [helper.make_node("Identity", ["X"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    lean = runner_session(path, 1).get_session_options()
    assert (lean.enable_cpu_mem_arena, lean.enable_mem_pattern) == (False, False)
    default = runner_session(path, 1, memory_arena=True).get_session_options()
    assert (default.enable_cpu_mem_arena, default.enable_mem_pattern) == (True, True)


def test_pack_codes_low_bits_first():
    assert pack_codes(np.array([[-8, 7]]), 4).tolist() == [[0xF0]]  # -8 -> 0 (low nibble), 7 -> 15 (high)
    assert pack_codes(np.array([[-2, -1, 0, 1]]), 2).tolist() == [[0b11100100]]


# --- loading errors (no model needed) ---------------------------------------------------------------------


def test_missing_folder_is_a_clear_error(tmp_path):
    from runtimes.onnx_runner import OnnxRunner

    with pytest.raises(EdgeAsrError, match="not found"):
        OnnxRunner(tmp_path / "nowhere")
    with pytest.raises(EdgeAsrError, match="not found"):
        OnnxRunner(tmp_path)


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    from runtimes.onnx_runner import OnnxRunner

    (tmp_path / ENCODER_FILE).write_bytes(b"\x08\x07garbage, not a protobuf")
    (tmp_path / DECODER_FILE).write_bytes(b"")
    # a readable tokenizer.json (the runner reads it first), so the error is the graph's
    tokenizer = {"model": {"type": "BPE", "vocab": {"a": 0}}, "decoder": {"type": "ByteLevel"}}
    (tmp_path / TOKENIZER_FILE).write_text(json.dumps(tokenizer))
    with pytest.raises(EdgeAsrError, match="not a loadable ONNX model"):
        OnnxRunner(tmp_path)
    with pytest.raises(EdgeAsrError):
        read_plan_from_onnx(tmp_path / ENCODER_FILE)


# --- one mixed plan of tiny.en, lowered once --------------------------------------------------------------


# Layers given float32 scales, as plans made before the onnx target's float16 scales have: still lowered.
_FLOAT32_SCALED = ("model.encoder.layers.2.fc1",)


def _set(plan, name, bits, clip, prefix="mnb", group=32, scale_dtype=None):
    layer = plan.layer(name)
    kind = "embedding" if prefix == "gbq" else "linear"
    ladder = get_target("onnx").ladder(kind)
    layer.format = next(f for f in ladder if (f.bits, f.group_size) == (bits, group)) if bits else FP16
    if scale_dtype:
        layer.format = replace(layer.format, scale_dtype=scale_dtype)
    layer.clip = clip
    shared = layer.tied_to is not None and bits  # a quantised tied follower reads its leader's tensor
    layer.bytes = 0 if shared else layer.format.weight_bytes(tuple(layer.shape))


@pytest.fixture(scope="module")
def mixed_plan(tiny_en):
    """4-bit everywhere (uniform allocation), then a few layers moved to 8, 2 bits, 4 bits in coarser
    groups and fp32, with clips < 1."""
    from exporter.quant.pipeline import PlanOptions, make_plan

    plan = make_plan(
        tiny_en, None, PlanOptions(target="onnx", budget="40MB", order="uniform", calibration="minmax"), progress=False
    )
    _set(plan, "model.decoder.embed_tokens", 8, 0.95, prefix="gbq")
    _set(plan, "proj_out", 8, 0.95)  # tied to the embedding on this target: same rung, same clip
    _set(plan, "model.encoder.layers.0.fc1", 2, 0.8)
    _set(plan, "model.decoder.layers.1.fc2", 2, 0.9)
    _set(plan, "model.encoder.layers.3.self_attn.k_proj", 8, 0.9)
    _set(plan, "model.decoder.layers.0.self_attn.q_proj", None, 1.0)
    _set(plan, "model.decoder.layers.2.encoder_attn.k_proj", None, 1.0)
    _set(plan, "model.encoder.layers.1.fc2", 4, 0.9, group=64)
    _set(plan, "model.decoder.layers.3.fc1", 4, 1.0, group=128)
    for name in _FLOAT32_SCALED:
        _set(plan, name, 4, 0.95, scale_dtype="float32")
    assert {layer.format.bits for layer in plan.layers} == {2, 4, 8, 16}
    assert {layer.format.group_size for layer in plan.layers if layer.format.bits == 4} == {32, 64, 128}
    return plan


@pytest.fixture(scope="module")
def lowered(tiny_en, mixed_plan, tmp_path_factory):
    return lower_onnx(tiny_en, mixed_plan, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def runners(tiny_en, mixed_plan, lowered):
    from exporter.quant.simulate import simulate
    from runtimes.onnx_runner import OnnxRunner
    from runtimes.torch_runner import TorchRunner

    return TorchRunner(simulate(tiny_en, mixed_plan)), OnnxRunner(lowered.folder)


@pytest.mark.slow
def test_artifact_is_self_contained_and_near_plan_size(lowered, mixed_plan):
    assert sorted(p.name for p in lowered.folder.iterdir()) == [DECODER_FILE, ENCODER_FILE, TOKENIZER_FILE]
    # Weights are exactly the plan's bytes, each stored once (a layer called once per slice of the encoder's
    # feed-forward blocks included), beside a few scalar constants; the rest of the files is graph structure,
    # per-node doc strings and the plan as metadata in both graphs (about 1 % for tiny.en).
    stored = sum(
        len(init.raw_data) for path in (lowered.encoder, lowered.decoder) for init in onnx.load(path).graph.initializer
    )
    assert mixed_plan.total_bytes <= stored <= mixed_plan.total_bytes + 4096
    assert mixed_plan.total_bytes <= lowered.total_bytes <= mixed_plan.total_bytes * 1.015


@pytest.mark.slow
def test_logits_match_the_simulated_plan(runners, tiny_en, shared_data):
    from runtimes.audio import load_audio, log_mel

    torch_runner, onnx_runner = runners
    features = log_mel(load_audio(shared_data / "english_misc" / "audio" / CLIPS[0]), tiny_en.n_mels)
    reference = torch_runner.start_decoder(torch_runner.encode(features))
    session = onnx_runner.start_decoder(onnx_runner.encode(features))
    steps = [tiny_en.special.prompt(None), [679], [714], [339]]  # prompt, then single tokens
    for tokens in steps:
        expected, got = reference.step(tokens), session.step(tokens)
        # Same weights bit for bit, but the 8-bit and 2-bit layers quantise their inputs to int8 at run
        # time, so a float32 round-off difference upstream (kernels, fused attention) can move an input
        # across a rounding boundary: one code step, which the layers after it carry on. Measured: 0.014 on
        # logits of 5-15 with this plan; 0.25 with every Linear on int8 inputs, where a 1e-6 relative
        # perturbation of the log-mel moves the simulation itself as much (mean 0.08-0.25). Exactness is
        # checked per op (test_int8_compute_...) and by the nodes' levels (test_every_int_layer_...).
        np.testing.assert_allclose(got, expected, atol=0.3, rtol=0)
        assert got.argmax() == expected.argmax()


@pytest.mark.slow
def test_transcripts_match_the_simulated_plan(runners, shared_data):
    from runtimes.audio import load_audio

    torch_runner, onnx_runner = runners
    for clip in CLIPS:
        samples = load_audio(shared_data / "english_misc" / "audio" / clip)
        expected, got = torch_runner.transcribe(samples), onnx_runner.transcribe(samples)
        assert got.tokens == expected.tokens, clip
        assert got.text == expected.text
    assert (
        "could wait no longer"
        in onnx_runner.transcribe(load_audio(shared_data / "english_misc" / "audio" / CLIPS[0])).text.lower()
    )


@pytest.mark.slow
def test_plan_and_tokens_in_metadata(lowered, mixed_plan, tiny_en):
    from exporter.quant.plan import QuantPlan

    for path in (lowered.encoder, lowered.decoder):
        data = read_plan_from_onnx(path)  # the plan's decisions (QuantPlan.artifact_plan), not its observations
        assert data == json.loads(mixed_plan.artifact_json())
        assert QuantPlan.from_dict(data) == mixed_plan.artifact_plan()
        assert QuantPlan.from_dict(data).plan_id == mixed_plan.plan_id
        metadata = read_metadata(path)
        assert json.loads(metadata["edgeasr.special_tokens"]) == json.loads(json.dumps(tiny_en.special.to_dict()))
        assert metadata["edgeasr.n_mels"] == str(tiny_en.n_mels)


@pytest.mark.slow
def test_every_int_layer_is_a_labelled_contrib_node(lowered, mixed_plan):
    nodes = quantized_nodes(lowered.encoder) + quantized_nodes(lowered.decoder)
    by_layer = {node["layer"]: node for node in nodes}
    calls = Counter(node["layer"] for node in nodes)
    # One node per layer, but one per slice for the encoder's feed-forward layers (sliced_encoder_layer).
    assert calls == {
        name: FFN_SLICES if re.fullmatch(r"model\.encoder\.layers\.\d+\.fc[12]", name) else 1 for name in calls
    }
    int_layers = [layer for layer in mixed_plan.layers if not layer.format.is_float]
    assert set(by_layer) == {layer.name for layer in int_layers}
    for layer in int_layers:
        node = by_layer[layer.name]
        assert node["op"] == ("GatherBlockQuantized" if layer.kind == "embedding" else "MatMulNBits")
        assert node["bits"] == layer.format.bits
        if node["op"] == "MatMulNBits":  # int8 inputs at level 4, as simulated; 0 computes on float inputs
            assert node["accuracy_level"] == (4 if layer.format.activation == "dynamic_int8_per_block" else 0)
        assert node["format"] == layer.format.to_dict()
        assert node["clip"] == layer.clip


@pytest.mark.slow
def test_stored_weights_are_the_simulated_weights(lowered, mixed_plan, tiny_en):
    """Dequantising the stored codes gives exactly the weight apply_plan computes with."""
    from exporter.quant.primitives import fake_quantize_weight

    proto = onnx.load(str(lowered.decoder))
    weights = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for name in ("model.decoder.layers.1.fc2", "proj_out", "model.decoder.layers.3.fc1"):
        layer = mixed_plan.layer(name)
        bits, (rows, cols) = layer.format.bits, layer.shape
        stored = layer.tied_to or name  # the output projection reads the embedding's tensor
        packed = weights[f"{stored}.weight_packed"].reshape(rows, -1)
        per_byte = 8 // bits
        unpacked = np.stack([(packed >> (bits * i)) & ((1 << bits) - 1) for i in range(per_byte)], axis=-1)
        codes = unpacked.reshape(rows, -1, layer.format.group_size).astype(np.float32) - 2 ** (bits - 1)
        scales = weights.get(f"{stored}.weight_scales.fp16", weights.get(f"{stored}.weight_scales"))
        scales = scales.astype(np.float32).reshape(rows, -1, 1)
        expected = fake_quantize_weight(tiny_en.model.get_submodule(name).weight, layer.format, layer.clip)
        np.testing.assert_array_equal((codes * scales).reshape(rows, cols), expected.numpy())


@pytest.mark.slow
def test_tied_output_projection_is_stored_once(lowered, mixed_plan):
    assert mixed_plan.layer("proj_out").tied_to == "model.decoder.embed_tokens"
    assert mixed_plan.layer("proj_out").bytes == 0
    proto = onnx.load(str(lowered.decoder))
    names = {init.name for init in proto.graph.initializer}
    assert "model.decoder.embed_tokens.weight_packed" in names
    assert not [n for n in names if n.startswith("proj_out.weight")]
    matmul = next(n for n in proto.graph.node if n.name == "proj_out/MatMulNBits")
    gather = next(n for n in proto.graph.node if n.op_type == "GatherBlockQuantized")
    producers = {out: n for n in proto.graph.node for out in n.output}
    # The codes as stored, no Reshape (ORT would fold one into a second copy of the table); the scales
    # through a Reshape, as the two ops take them in different ranks.
    assert matmul.input[1] == gather.input[0] == "model.decoder.embed_tokens.weight_packed"
    assert producers[matmul.input[2]].input[0] == gather.input[2] == "model.decoder.embed_tokens.weight_scales"


@pytest.mark.slow
def test_lowering_is_byte_identical(lowered, mixed_plan, tiny_en, tmp_path):
    again = lower_onnx(tiny_en, mixed_plan, tmp_path)
    for first, second in (
        (lowered.encoder, again.encoder),
        (lowered.decoder, again.decoder),
        (lowered.tokenizer, again.tokenizer),
    ):
        assert first.read_bytes() == second.read_bytes(), first.name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


@pytest.mark.slow
def test_float_tensors_are_stored_half(lowered):
    """The onnx target stores floats as half, the contrib ops' float16 scales included (behind a Cast to the
    activations' float32); only constants half cannot hold stay float32: here the scales of the one layer
    whose format has float32 scales (as plans made before float16 scales have)."""
    float32_scaled = {f"{name}.weight_scales" for name in _FLOAT32_SCALED}
    seen = set()
    for path in (lowered.encoder, lowered.decoder):
        proto = onnx.load(str(path))
        floats = [init for init in proto.graph.initializer if init.data_type == TensorProto.FLOAT]
        halves = {init.name for init in proto.graph.initializer if init.data_type == TensorProto.FLOAT16}
        assert halves
        for init in floats:
            array = numpy_helper.to_array(init)
            assert array.size < 2 or not np.array_equal(array.astype(np.float16), array), init.name
        seen |= float32_scaled & {init.name for init in floats}
        for node in proto.graph.node:
            if node.op_type == "MatMulNBits" and not node.input[2].startswith("proj_out"):
                assert (node.input[2] in float32_scaled) != (f"{node.input[2]}.fp16" in halves), node.name
    assert seen == float32_scaled


@pytest.mark.slow
def test_float32_layer_in_an_onnx_plan_is_refused(tiny_en, mixed_plan, tmp_path):
    import copy

    from exporter.quant.formats import FP32

    plan = copy.deepcopy(mixed_plan)
    plan.layer("model.decoder.layers.0.self_attn.q_proj").format = FP32
    with pytest.raises(EdgeAsrError, match="stores floats in 16 bits"):
        lower_onnx(tiny_en, plan, tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_truncated_artifact_gives_edgeasr_error(lowered, tmp_path):
    from runtimes.onnx_runner import OnnxRunner

    broken = tmp_path / "broken"
    shutil.copytree(lowered.folder, broken)
    data = (broken / DECODER_FILE).read_bytes()
    (broken / DECODER_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeAsrError, match="decoder.onnx"):
        OnnxRunner(broken)


@pytest.mark.slow
def test_plan_for_another_target_is_refused(tiny_en, tmp_path):
    from exporter.quant.pipeline import PlanOptions, make_plan

    plan = make_plan(
        tiny_en,
        None,
        PlanOptions(target="executorch", budget="60MB", order="uniform", calibration="minmax"),
        progress=False,
    )
    with pytest.raises(EdgeAsrError, match="target"):
        lower_onnx(tiny_en, plan, tmp_path)
    assert not list(tmp_path.iterdir())
