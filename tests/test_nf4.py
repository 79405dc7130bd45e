"""NF4: byte cost, round trip, and agreement with ONNX Runtime's own NF4 quantiser and MatMulBnb4 kernel."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from exporter.quant.formats import QuantFormat, nf4_format
from exporter.quant.nf4 import (
    NF4_LEVELS,
    dequantize_nf4,
    fake_quantize_nf4,
    pack_nf4,
    quantize_nf4,
    thresholds,
    unpack_nf4,
)
from exporter.quant.primitives import fake_quantize_weight


def _weight(rows, cols, seed=0, scale=0.05):
    return torch.from_numpy((np.random.default_rng(seed).standard_normal((rows, cols)) * scale).astype(np.float32))


# --- byte cost -----------------------------------------------------------------------------------------------


def test_nf4_byte_cost_is_exact():
    # 384 x 1536 = 589,824 weights: 294,912 bytes of codes, 9,216 blocks x 4-byte absmax
    assert nf4_format(64).weight_bytes((384, 1536)) == 294_912 + 36_864
    # odd count, last block short: 63 weights -> 32 bytes of codes, one block
    assert nf4_format(64).weight_bytes((7, 9)) == 32 + 4
    # double quantisation: 9,216 uint8 codes (36 whole chunks of 256) + 36 x (offset, step) float32
    assert nf4_format(64, 256).weight_bytes((384, 1536)) == 294_912 + 9_216 + 36 * 8
    # 1,000 blocks -> padded to 4 chunks of 256 codes = 1,024 bytes + 4 x 8
    assert nf4_format(64, 256).weight_bytes((1000, 64)) == 32_000 + 1_024 + 32


def test_nf4_format_json_round_trip_and_old_plans_unchanged():
    fmt = nf4_format(128, 256)
    assert QuantFormat.from_dict(fmt.to_dict()) == fmt
    assert "double_quant_block" not in nf4_format(64).to_dict()  # formats without it keep their old JSON
    with pytest.raises(ValueError):
        QuantFormat("bad", 4, "int", "group", 32, double_quant_block=256)


# --- round trip ----------------------------------------------------------------------------------------------


def test_nf4_round_trip_error_and_idempotence():
    w = _weight(64, 256)
    w[5, :64] = 0.0  # an all-zero block
    fmt = nf4_format(64)
    q = quantize_nf4(w, fmt)
    deq = dequantize_nf4(q)
    assert deq.shape == w.shape and deq.dtype == torch.float32
    assert torch.equal(deq[5, :64], torch.zeros(64))
    # every value lands on the nearest level: error at most half the widest gap (0.304 / 2) of its block absmax
    absmax = q.absmax.repeat_interleave(64).view(64, 256)
    assert bool(((deq - w).abs() <= 0.1520 * absmax + 1e-7).all())
    rel = float((deq - w).norm() / w.norm())
    assert 0.05 < rel < 0.15  # 4-bit: far from exact, far from broken
    assert torch.equal(fake_quantize_nf4(deq, fmt), deq)  # quantising NF4 values again changes nothing
    assert torch.equal(fake_quantize_weight(w, fmt), deq)  # the planner's dispatch


def test_nf4_clip_saturates_and_pack_round_trip():
    w = _weight(8, 64, seed=3)
    q = quantize_nf4(w, nf4_format(64), clip=0.5)
    assert torch.allclose(q.absmax, w.abs().amax(dim=1) * 0.5)
    assert int((q.codes == 0).sum() + (q.codes == 15).sum()) > 8  # the clipped tails sit on +-1
    codes = torch.randint(0, 16, (33,), dtype=torch.uint8)
    assert torch.equal(unpack_nf4(pack_nf4(codes), 33), codes)
    assert pack_nf4(torch.tensor([1, 2], dtype=torch.uint8)).tolist() == [0x12]  # first value in the high nibble


def test_double_quantized_absmax_is_close_and_positive():
    w = _weight(300, 128, seed=4)
    q = quantize_nf4(w, nf4_format(64, 256))
    true_absmax = _blocks_absmax(w, 64)
    assert q.absmax_codes.dtype == torch.uint8 and q.absmax_codes.numel() == 3 * 256
    step = float(q.absmax_step.max())
    assert float((q.absmax - true_absmax).abs().max()) <= step / 2 + 1e-7
    assert bool((q.absmax > 0).all())


def _blocks_absmax(w, block):
    return w.reshape(-1, block).abs().amax(dim=1)


# --- against ONNX Runtime ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(48, 192), (7, 9)])
def test_codes_and_absmax_equal_ort_quantizer(shape):
    from onnxruntime.capi._pybind_state import quantize_matmul_bnb4

    w = _weight(*shape, seed=sum(shape))
    n, k = shape
    packed = np.zeros((n * k + 1) // 2, dtype=np.uint8)
    absmax = np.zeros(-(-n * k // 64), dtype=np.float32)
    quantize_matmul_bnb4(packed, w.numpy().copy(), absmax, 64, 1, k, n)  # ORT's NF4 quantiser (quant_type 1)
    q = quantize_nf4(w, nf4_format(64))
    np.testing.assert_array_equal(pack_nf4(q.codes).numpy(), packed)
    np.testing.assert_array_equal(q.absmax.numpy(), absmax)


def test_thresholds_are_the_reference_decision_tree():
    reference = torch.tensor(
        [
            -0.8480964004993439,
            -0.6106329262256622,
            -0.4599952697753906,
            -0.33967943489551544,
            -0.23460740596055984,
            -0.13791173323988914,
            -0.045525018125772476,
            0.03979014977812767,
            0.1202552504837513,
            0.2035212516784668,
            0.2920137718319893,
            0.3893125355243683,
            0.5016634166240692,
            0.6427869200706482,
            0.8614784181118011,
        ],
        dtype=torch.float32,
    )
    assert torch.equal(thresholds(), reference)  # the float32 pivots of ORT's / bitsandbytes' NF4 tree
    assert len(NF4_LEVELS) == 16 and NF4_LEVELS[7] == 0.0


def _run_bnb4(layer_fmt, weight, x):
    from exporter.lower.onnx_nf4 import matmul_bnb4
    from exporter.quant.plan import LayerPlan

    n, k = weight.shape
    placeholder = helper.make_node("QuantLinear", ["A"], ["Y"])
    layer = LayerPlan("layer", "linear", "encoder_linear", [n, k], layer_fmt, None)
    nodes, inits = matmul_bnb4(placeholder, layer, weight)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(
        graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"A": x})[0]


@pytest.mark.parametrize("fmt", [nf4_format(64), nf4_format(32), nf4_format(64, 256)], ids=lambda f: f.name)
def test_matmul_bnb4_dequantizes_bit_identically(fmt):
    weight = _weight(96, 128, seed=7)
    weight[0, :64] = 0.0
    k = weight.shape[1]
    # x = identity: every output element is one weight times 1 plus exact zeros, so Y is ORT's dequantised B
    y = _run_bnb4(fmt, weight, np.eye(k, dtype=np.float32))
    expected = dequantize_nf4(quantize_nf4(weight, fmt)).numpy().T
    np.testing.assert_array_equal(y.view(np.uint32), (expected + 0.0).view(np.uint32))
    # and an ordinary input agrees to float rounding
    x = np.random.default_rng(1).standard_normal((3, k)).astype(np.float32)
    np.testing.assert_allclose(_run_bnb4(fmt, weight, x), x @ expected, rtol=1e-5, atol=1e-5)
