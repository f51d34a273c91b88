"""2-D convolution networks run channels-last in the generated code (workbench/onnx_to_jax/layout.py).

The values a convolution writes stay NHWC through the ops that work in any layout and are read back on
ONNX's axes by the first op that needs them; what the user sees (params, inputs, outputs) is unchanged.
Every test compares with onnxruntime (or, for gradients, with XLA's NCHW convolution).
"""

from __future__ import annotations

import jax
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import run_onnx
from workbench.onnx_to_jax.generator import HELPERS_MARKER

TO_NCHW = "(0, 3, 1, 2)"


def _init(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float = 0.3) -> onnx.TensorProto:
    return numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name)


def _network() -> onnx.ModelProto:
    """Conv, BatchNorm, Relu, MaxPool, depthwise Conv, Clip, 1x1 Conv, residual Add, a per-channel Mul
    by a rank-3 initializer, Concat over channels, AveragePool, GlobalAveragePool, Flatten, Gemm; the
    Concat is also a graph output and feeds a Reshape (both read it on ONNX's axes)."""
    rng = np.random.default_rng(0)
    inits = [
        _init(rng, "w0", (8, 3, 3, 3)), _init(rng, "b0", (8,)),
        _init(rng, "bn.scale", (8,)), _init(rng, "bn.bias", (8,)), _init(rng, "bn.mean", (8,)),
        numpy_helper.from_array(np.abs(rng.standard_normal(8)).astype(np.float32) + 0.5, "bn.var"),
        _init(rng, "dw", (8, 1, 3, 3)), _init(rng, "pw", (8, 8, 1, 1)), _init(rng, "gate", (8, 1, 1)),
        _init(rng, "fc.w", (5, 16)), _init(rng, "fc.b", (5,)),
        numpy_helper.from_array(np.array([0.0], np.float32), "lo"),
        numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
        numpy_helper.from_array(np.array([2, -1], np.int64), "flat_shape"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c0", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["n0"]),
        helper.make_node("Relu", ["n0"], ["r0"]),
        helper.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p0", "dw"], ["d0"], group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["d0", "", "hi"], ["d1"]),
        helper.make_node("Conv", ["d1", "pw"], ["c1"]),
        helper.make_node("Add", ["c1", "p0"], ["a0"]),
        helper.make_node("Mul", ["a0", "gate"], ["m0"]),
        helper.make_node("Max", ["m0", "lo"], ["m1"]),
        helper.make_node("Concat", ["m1", "p0"], ["cat"], axis=1),
        helper.make_node("AveragePool", ["cat"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["ap"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1),
        helper.make_node("Reshape", ["cat", "flat_shape"], ["flat"]),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 12, 12])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
         for name, shape in (("logits", [2, 5]), ("cat", [2, 16, 6, 6]), ("flat", [2, 576]))], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def test_network_runs_channels_last_and_matches_onnxruntime():
    model = _network()
    source = wb.to_jax_source(model)
    # the three convolutions run channels-last; the held values go back to ONNX's axes only where
    # ONNX's axes are needed: the Concat as a graph output and as the Reshape's input (not the pools,
    # the norm, the elementwise ops, or the Flatten of the global pool's (N, 1, 1, C))
    forward_source = source.split(HELPERS_MARKER)[0]
    # (each reads its weight as HWIO, laid out by prepare(); test_prepared_params.py)
    assert forward_source.count("auto_pad='NOTSET', channels_last=True, hwio=True") == 3
    assert "_depthwise_conv_nhwc(" in source
    assert forward_source.count(TO_NCHW) == 2, forward_source
    x = np.random.default_rng(1).standard_normal((2, 3, 12, 12)).astype(np.float32)
    expected = run_onnx(model, [x])
    forward, params = wb.to_jax(model)
    assert {k: v.shape for k, v in params.items() if k in ("w0", "dw", "pw")} == {
        "w0": (8, 3, 3, 3), "dw": (8, 1, 3, 3), "pw": (8, 8, 1, 1)}  # ONNX's names and layout
    for got in (forward(params, x), jax.jit(forward)(params, x)):
        for g, e in zip(got, expected):
            np.testing.assert_allclose(np.asarray(g), e, rtol=1e-5, atol=1e-5)


def test_gradient_of_a_channels_last_convolution_matches_the_nchw_one():
    rng = np.random.default_rng(2)
    inits = [_init(rng, "w", (4, 3, 3, 3)), _init(rng, "b", (4,))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    forward, params = wb.to_jax(model)
    assert "channels_last=True" in wb.to_jax_source(model)
    x = rng.standard_normal((1, 3, 9, 9)).astype(np.float32)

    def reference(p):
        y = jax.lax.conv_general_dilated(x, p["w"], (2, 2), [(1, 1), (1, 1)]) + p["b"][None, :, None, None]
        return (jax.nn.relu(y) ** 2).sum()

    got = jax.grad(lambda p: (forward(p, x) ** 2).sum())(params)
    want = jax.grad(reference)(params)
    for name in ("w", "b"):
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]), rtol=1e-4, atol=1e-5)


def test_subgraph_reads_a_channels_last_value_on_onnx_axes():
    rng = np.random.default_rng(3)
    then_graph = helper.make_graph([helper.make_node("Relu", ["c"], ["t"])], "then", [],
                                   [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_graph = helper.make_graph([helper.make_node("Neg", ["c"], ["e"])], "else", [],
                                   [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("If", ["flag"], ["y"], then_branch=then_graph, else_branch=else_graph)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 6]),
                     helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_init(rng, "w", (3, 2, 3, 3))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    forward, params = wb.to_jax(model)
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    for flag in (np.array(True), np.array(False)):
        np.testing.assert_allclose(np.asarray(forward(params, x, flag)), run_onnx(model, [x, flag])[0],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op, attrs", [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [2, 3], "dilations": [2, 1], "pads": [1, 0, 1, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1, "pads": [0, 1, 1, 0]}),
    ("AveragePool", {"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER", "strides": [2, 1]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 0, 1], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 0, 1], "ceil_mode": 1,
                     "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("AveragePool", {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [4, 4], "strides": [3, 2], "pads": [2, 1, 1, 2]}),
    ("GlobalMaxPool", {}),
], ids=["max-ceil", "max-dilated", "max-same", "avg-include-pad", "avg-ceil", "avg-same-lower", "max-ceil-pads",
        "avg-ceil-include-pad", "avg-2x2", "avg-dilated", "max-4x4-window", "global-max"])
def test_pooling_of_a_channels_last_value_matches_onnxruntime(op, attrs):
    """Each pool after a 1x1 convolution (so its input is held channels-last), against onnxruntime: up to
    3x3 windows as their taps written out (``_pool_taps``), the 4x4 one as ``lax.reduce_window``."""
    channels = 3
    weight = numpy_helper.from_array(np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node(op, ["c"], ["y"], **attrs)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, channels, 9, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    source = wb.to_jax_source(model)
    assert source.split(HELPERS_MARKER)[0].count(TO_NCHW) == 1  # only the graph output goes back
    x = np.random.default_rng(4).standard_normal((2, channels, 9, 10)).astype(np.float32)
    forward, params = wb.to_jax(model)
    np.testing.assert_allclose(np.asarray(jax.jit(forward)(params, x)), run_onnx(model, [x])[0], rtol=1e-5, atol=1e-5)


def test_channels_last_max_pool_gradient_goes_to_one_of_equal_inputs():
    """The max pool written as taps (``_pool_taps``) gives a window's gradient to one input when several hold
    the maximum (the zeros a Relu leaves), as ``lax.reduce_window`` does on ONNX's axes, not split among them."""
    channels = 4
    weight = numpy_helper.from_array(np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1), "w")

    def model(with_conv: bool) -> onnx.ModelProto:
        first = helper.make_node("Conv", ["x", "w"], ["c"]) if with_conv else helper.make_node("Identity", ["x"], ["c"])
        nodes = [first, helper.make_node("Relu", ["c"], ["r"]),
                 helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)]
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, channels, 7, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight] if with_conv else [],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    x = np.random.default_rng(5).standard_normal((2, channels, 7, 8)).astype(np.float32)
    x[0, 1, :4, :4] = 0.0  # windows whose inputs are all equal
    grads = []
    for with_conv in (True, False):
        onnx_model = model(with_conv)
        code = wb.to_jax_source(onnx_model).split(HELPERS_MARKER)[0]
        pool_line = next(line for line in code.splitlines() if "_pool(" in line)
        assert ("channels_last=True" in pool_line) == with_conv  # taps after the convolution, else reduce_window
        forward, params = wb.to_jax(onnx_model)
        grads.append(np.asarray(jax.jit(jax.grad(lambda v, f=forward, p=params: f(p, v).sum()))(x)))
    np.testing.assert_allclose(grads[0], grads[1], rtol=0, atol=0)
    assert set(np.unique(grads[0])) <= {0.0, 1.0, 2.0, 3.0, 4.0}  # whole window gradients, never halves


def _nhwc_graph(opset: int) -> onnx.ModelProto:
    """What exporters from JAX and TensorFlow write: an NHWC input made NCHW by a Transpose before the first Conv,
    then reductions over the image axes and Transposes back of the convolution's output; each output on its own."""
    rng = np.random.default_rng(6)
    axes_as_input = opset >= 18

    def reduce(op: str, source: str, out: str, axes: list[int], keepdims: int) -> list[onnx.NodeProto]:
        if op == "ReduceSum" and opset >= 13 or axes_as_input:
            return [helper.make_node("Constant", [], [f"{out}.axes"], value=numpy_helper.from_array(
                np.array(axes, np.int64), f"{out}.axes")),
                helper.make_node(op, [source, f"{out}.axes"], [out], keepdims=keepdims)]
        return [helper.make_node(op, [source], [out], axes=axes, keepdims=keepdims)]

    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        *reduce("ReduceMean", "r", "pooled", [2, 3], 0),  # (N, C): the classifier head's mean over H and W
        *reduce("ReduceMax", "r", "peak", [-1, -2], 1),  # (N, C, 1, 1), held channels-last
        *reduce("ReduceSum", "r", "rows", [1, 2], 0),  # (N, W): kept axes in the same order either way
        *reduce("ReduceL2", "r", "cols", [3], 0),  # (N, C, H): not in NHWC's order, runs on ONNX's axes
        helper.make_node("Transpose", ["r"], ["back"], perm=[0, 2, 3, 1]),  # to NHWC: the held value itself
        helper.make_node("Transpose", ["r"], ["reversed"]),
        helper.make_node("Transpose", ["r"], ["swapped"], perm=[0, 1, 3, 2]),
    ]
    outputs = ["pooled", "peak", "rows", "cols", "back", "reversed", "swapped"]
    graph = helper.make_graph(nodes, "nhwc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 7, 6, 3])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
                              [_init(rng, "w", (4, 3, 3, 3))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_nhwc_input_transposes_and_reductions_of_channels_last_values_match_onnxruntime(opset):
    model = _nhwc_graph(opset)
    forward_source = wb.to_jax_source(model).split(HELPERS_MARKER)[0]
    # the input's Transpose to NCHW and the Transpose back to NHWC are the held value itself; the
    # reversal and the swap are one transpose each of it; of the reductions only ReduceL2 (which keeps C
    # with H) and the held ReduceMax (a graph output) read ONNX's axes
    assert "t = x\n" in forward_source and "back = r\n" in forward_source, forward_source
    assert forward_source.count("jnp.transpose(") == 4, forward_source
    assert "'mean', r, (1, 2), False" in forward_source and "'sum', r, (0, 1), False" not in forward_source
    x = np.random.default_rng(7).standard_normal((2, 7, 6, 3)).astype(np.float32)
    expected = run_onnx(model, [x])
    forward, params = wb.to_jax(model)
    for got in (forward(params, x), jax.jit(forward)(params, x)):
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            np.testing.assert_allclose(np.asarray(g), e, rtol=1e-5, atol=1e-5)
