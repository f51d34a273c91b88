"""Which of onnxruntime's integer kernels are off the exact product, measured on the machine the tests run on.

``workbench/analysis/reference_caveats.py`` lists the ops whose onnxruntime CPU kernel is the u8 x s8 matmul
that saturates int16 pairs on x86 CPUs without VNNI. Each case here is one op built with onnx.helper, uint8
(or int8) activations of the largest magnitude against int8 weights of 127/126 (full range) or 64/63 (7-bit),
and compares onnxruntime with the exact integer product (int64 numpy) and, where the reader has an emitter,
the generated JAX with it. The caveat must name every case onnxruntime gets wrong, and, on an x86 CPU without
VNNI (this project's AMD EPYC), only those: the op list is exactly the ops that saturate.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import run_onnx
from workbench.analysis.reference_caveats import SAFE_WEIGHT, U8_S8_MATMULS, reference_caveat
from workbench.onnx_io.tensors import constant_tensors

MS = "com.microsoft"
M, K, N = 4, 64, 16


def _saturating_cpu() -> bool | None:
    """True on an x86 CPU without VNNI (onnxruntime's u8 x s8 kernel saturates), False on one with VNNI or
    another architecture, None where /proc/cpuinfo does not say."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return None
    return "vnni" not in flags


@dataclass(frozen=True)
class Case:
    model: onnx.ModelProto
    feeds: list[np.ndarray]
    exact: np.ndarray
    emitter: bool  # the reader generates the op (QGemm and QAttention: not yet)


def _t(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _model(node: onnx.NodeProto, inputs, output, inits) -> onnx.ModelProto:
    graph = helper.make_graph([node], node.op_type, inputs, [output], initializer=inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _weights(limit: int, shape) -> np.ndarray:
    return np.where(np.random.default_rng(0).random(shape) < 0.5, limit, limit - 1).astype(np.int8)


def _activations(int8: bool, shape) -> np.ndarray:
    return np.full(shape, -128, np.int8) if int8 else np.full(shape, 255, np.uint8)


def _requantized(exact: np.ndarray, y_scale: float, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.rint(exact / np.float32(y_scale)), info.min, info.max)


def _matmul_family(op: str, int8: bool, limit: int) -> Case:
    a, w = _activations(int8, (M, K)), _weights(limit, (K, N))
    adt = TensorProto.INT8 if int8 else TensorProto.UINT8
    x = helper.make_tensor_value_info("a", adt, [M, K])
    exact = a.astype(np.int64) @ w.astype(np.int64)
    zero, one = np.array(0, a.dtype), np.array(1, np.float32)
    if op == "MatMulInteger":
        node = helper.make_node(op, ["a", "w", "az", "wz"], ["y"])
        inits = [_t("w", w), _t("az", zero), _t("wz", np.int8(0))]
        return Case(_model(node, [x], helper.make_tensor_value_info("y", TensorProto.INT32, [M, N]), inits), [a], exact, True)
    if op == "MatMulIntegerToFloat":
        node = helper.make_node(op, ["a", "w", "as", "ws", "az", "wz"], ["y"], domain=MS)
        inits = [_t("w", w), _t("as", one), _t("ws", one), _t("az", zero), _t("wz", np.int8(0))]
        return Case(_model(node, [x], helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N]), inits), [a], exact, True)
    if op == "QGemm":
        node = helper.make_node(op, ["a", "as", "az", "w", "ws", "wz"], ["y"], domain=MS)
        inits = [_t("as", one), _t("az", zero), _t("w", w), _t("ws", one), _t("wz", np.int8(0))]
        return Case(_model(node, [x], helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N]), inits), [a], exact, False)
    assert op == "QLinearMatMul"
    y_scale = float(np.abs(exact).max()) / 100
    node = helper.make_node(op, ["a", "as", "az", "w", "ws", "wz", "ys", "yz"], ["y"])
    inits = [_t("as", one), _t("az", zero), _t("w", w), _t("ws", one), _t("wz", np.int8(0)),
             _t("ys", np.float32(y_scale)), _t("yz", zero)]
    out = helper.make_tensor_value_info("y", adt, [M, N])
    return Case(_model(node, [x], out, inits), [a], _requantized(exact, y_scale, a.dtype), True)


def _convolution(op: str, int8: bool, limit: int) -> Case:
    channels, out_channels = 32, 8
    x, w = _activations(int8, (1, channels, 6, 6)), _weights(limit, (out_channels, channels, 3, 3))
    adt = TensorProto.INT8 if int8 else TensorProto.UINT8
    columns = np.stack([x[0, :, i:i + 4, j:j + 4] for i in range(3) for j in range(3)], axis=1)
    exact = np.einsum("ckhw,ock->ohw", columns.astype(np.int64),
                      w.reshape(out_channels, channels, 9).astype(np.int64))[None]
    inputs = [helper.make_tensor_value_info("x", adt, list(x.shape))]
    zero = np.array(0, x.dtype)
    if op == "ConvInteger":
        node = helper.make_node(op, ["x", "w", "xz", "wz"], ["y"])
        out = helper.make_tensor_value_info("y", TensorProto.INT32, [1, out_channels, 4, 4])
        return Case(_model(node, inputs, out, [_t("w", w), _t("xz", zero), _t("wz", np.int8(0))]), [x], exact, True)
    assert op == "QLinearConv"
    y_scale = float(np.abs(exact).max()) / 100
    node = helper.make_node(op, ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    inits = [_t("xs", np.float32(1)), _t("xz", zero), _t("w", w), _t("ws", np.float32(1)), _t("wz", np.int8(0)),
             _t("ys", np.float32(y_scale)), _t("yz", zero)]
    out = helper.make_tensor_value_info("y", adt, [1, out_channels, 4, 4])
    return Case(_model(node, inputs, out, inits), [x], _requantized(exact, y_scale, x.dtype), True)


def _dynamic_quantize_matmul(int8: bool, limit: int) -> Case:
    """Float activations of 1.0, which the op quantizes to uint8 255 (scale 1/255); weight scale 1."""
    del int8  # the op quantizes to uint8 itself
    w = _weights(limit, (K, N))
    node = helper.make_node("DynamicQuantizeMatMul", ["x", "w", "ws", "wz"], ["y"], domain=MS)
    inits = [_t("w", w), _t("ws", np.ones(N, np.float32)), _t("wz", np.zeros(N, np.int8))]
    model = _model(node, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N]), inits)
    exact = np.full((M, K), 255, np.int64) @ w.astype(np.int64) / 255
    return Case(model, [np.ones((M, K), np.float32)], exact, True)


def _attention(int8: bool, limit: int) -> Case:
    """QAttention over identical tokens: the attention averages equal values, so the output is the V
    projection, the int8 matmul's third of the columns."""
    del int8  # onnxruntime's CPU kernel takes uint8 input only
    batch, seq, hidden = 1, 3, 32
    x, w = np.full((batch, seq, hidden), 255, np.uint8), _weights(limit, (hidden, 3 * hidden))
    node = helper.make_node("QAttention", ["x", "w", "b", "xs", "ws", "", "xz", "wz"], ["y"], domain=MS, num_heads=2)
    inits = [_t("w", w), _t("b", np.zeros(3 * hidden, np.float32)), _t("xs", np.float32(1)), _t("ws", np.float32(1)),
             _t("xz", np.uint8(0)), _t("wz", np.int8(0))]
    model = _model(node, [helper.make_tensor_value_info("x", TensorProto.UINT8, [batch, seq, hidden])],
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, seq, hidden]), inits)
    exact = (x.astype(np.int64) @ w.astype(np.int64))[..., 2 * hidden:]
    return Case(model, [x], exact, False)


BUILDERS: dict[str, Callable[[bool, int], Case]] = {
    "MatMulInteger": lambda int8, limit: _matmul_family("MatMulInteger", int8, limit),
    "MatMulIntegerToFloat": lambda int8, limit: _matmul_family("MatMulIntegerToFloat", int8, limit),
    "QLinearMatMul": lambda int8, limit: _matmul_family("QLinearMatMul", int8, limit),
    "QGemm": lambda int8, limit: _matmul_family("QGemm", int8, limit),
    "DynamicQuantizeMatMul": _dynamic_quantize_matmul,
    "ConvInteger": lambda int8, limit: _convolution("ConvInteger", int8, limit),
    "QLinearConv": lambda int8, limit: _convolution("QLinearConv", int8, limit),
    "QAttention": _attention,
}
UINT8_ONLY = {"DynamicQuantizeMatMul", "QAttention"}  # activations the op (or onnxruntime's kernel) makes uint8
CASES = [(op, int8, limit) for op in BUILDERS for int8 in (False, True) for limit in (127, SAFE_WEIGHT)
         if not (int8 and op in UINT8_ONLY)]


def test_every_listed_op_is_measured():
    assert set(U8_S8_MATMULS) <= set(BUILDERS)


@pytest.mark.parametrize(("op", "int8", "limit"), CASES,
                         ids=[f"{op}-{'s8' if s else 'u8'}-w{limit}" for op, s, limit in CASES])
def test_onnxruntime_is_off_exactly_where_the_caveat_says(op, int8, limit):
    case = BUILDERS[op](int8, limit)
    node = case.model.graph.node[0]
    got = np.asarray(run_onnx(case.model, case.feeds)[0], np.float64)
    off = not np.allclose(got, case.exact, rtol=1e-6, atol=1e-3)
    dtypes = {value.name: feed.dtype for value, feed in zip(case.model.graph.input, case.feeds, strict=True)}
    caveat = reference_caveat(node, constant_tensors(case.model.graph), op, dtypes)
    assert caveat is None or f"reach {limit}" in caveat
    if off:  # onnxruntime is wrong only where the caveat warns
        assert caveat is not None, f"onnxruntime's {op} is {np.abs(got - case.exact).max()} off the exact product"
    if _saturating_cpu():  # and on a CPU without VNNI the caveat names only what is wrong
        assert off == (caveat is not None), (op, int8, limit)
    if case.emitter:
        forward, params = wb.to_jax(case.model)
        np.testing.assert_allclose(np.asarray(forward(params, *case.feeds), np.float64), case.exact, rtol=1e-6, atol=1e-3)


def test_a_saturating_quantized_convolution_is_reported_as_the_reference_s_caveat():
    """The locator on a QLinearConv with full-range weights: the generated JAX is exact; where onnxruntime
    saturates, the root cause carries the caveat."""
    case = _convolution("QLinearConv", False, 127)
    report = wb.locate_divergence(case.model, None, case.feeds)
    if report.ok:
        assert report.caveats == [] and not _saturating_cpu()
    else:
        assert report.first_divergent is not None and report.first_divergent.op_type == "QLinearConv"
        assert len(report.caveats) == 1 and report.caveats[0].startswith("QLinearConv")


def test_int8_activations_rule_the_caveat_out():
    """s8 x s8 is exact: the activation's zero point, or its type at run time, says int8."""
    int8 = _matmul_family("MatMulInteger", True, 127).model
    assert reference_caveat(int8.graph.node[0], constant_tensors(int8.graph), "int8") is None
    no_zero_point = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
    weights = {"w": _t("w", np.full((2, 2), 127, np.int8))}
    assert reference_caveat(no_zero_point, weights, "g", {"a": np.dtype(np.int8)}) is None
    assert reference_caveat(no_zero_point, weights, "g", {"a": np.dtype(np.uint8)}) is not None
    assert reference_caveat(no_zero_point, weights, "g") is not None  # unknown: may be uint8
