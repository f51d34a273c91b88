"""Forms tf2onnx writes that no other exporter in the corpus did (tests/onnx_to_jax/test_corpus_tf2onnx.py).

Each case is a small graph built with onnx.helper in the form tf2onnx 1.17 writes it, run by onnxruntime;
the generated JAX code must give the same outputs, eagerly and under ``wb.jit_forward``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from tests.support.harness import run_onnx


def _model(nodes, inputs, outputs, *, opset: int, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _check(model: onnx.ModelProto, inputs: list[np.ndarray]) -> None:
    expected = run_onnx(model, inputs)
    forward, params = wb.to_jax(model)
    for run in (lambda *xs: forward(params, *xs), wb.jit_forward(forward, params)):
        got = run(*inputs)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected)
        for want, have in zip(expected, got, strict=True):
            have = np.asarray(have)
            assert have.shape == want.shape, (have.shape, want.shape)
            np.testing.assert_allclose(have, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("size", [(7, 11), (32, 32), (3, 5)])
def test_resize_nearest_tf_half_pixel_for_nn(opset, size):
    """``tf.image.resize(method="nearest")``: Resize-11's coordinate mode tf_half_pixel_for_nn, which tf2onnx
    writes at every opset (ONNX dropped it from Resize-13's text; onnxruntime reads it at 13+)."""
    x = np.arange(1 * 2 * 16 * 12, dtype=np.float32).reshape(1, 2, 16, 12)
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 2, *size])
    roi = helper.make_tensor("roi", TensorProto.FLOAT, [0], [])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [0], [])
    node = helper.make_node("Resize", ["x", "roi", "scales", "sizes"], ["y"], mode="nearest",
                            coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor")
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], opset=opset,
                   inits=[roi, scales, sizes])
    _check(model, [x])


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("box", [(0.1, 0.2, 0.7, 0.9), (0.5, 0.4, 0.6, 0.8), (-0.2, 0.3, 1.1, 0.6)])
def test_resize_tf_crop_and_resize(mode, box):
    """``tf.image.crop_and_resize``: tf2onnx writes each box as a Resize with coordinate mode tf_crop_and_resize,
    its roi from the box. Nearest mode rounds source coordinates such as 0.1 * 15, a tie in float32 (as
    onnxruntime computes it) and not in float64, where the reader computed it and picked the next row."""
    x = np.arange(1 * 3 * 16 * 16, dtype=np.float32).reshape(1, 3, 16, 16)
    y1, x1, y2, x2 = box
    roi = helper.make_tensor("roi", TensorProto.FLOAT, [8], [0, 0, y1, x1, 1, 1, y2, x2])
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 3, 6, 4])
    node = helper.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], mode=mode,
                            coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=0.0)
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], opset=13, inits=[roi, sizes])
    _check(model, [x])


def test_loop_without_trip_count_jits():
    """``tf.while_loop`` as tf2onnx writes it: Loop with no trip count (M empty), ended by the condition the
    body computes. Under jax.jit the counter limit was int64's maximum, which overflowed int32 (x64 off)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["i_in", "one"], ["i_out"]),
         helper.make_node("Sin", ["v_in"], ["sin"]),
         helper.make_node("Mul", ["v_in", "decay"], ["scaled"]),
         helper.make_node("Add", ["scaled", "sin"], ["v_out"]),
         helper.make_node("Less", ["i_out", "five"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("i_in", TensorProto.INT32, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("i_out", TensorProto.INT32, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [3, 4])],
        initializer=[helper.make_tensor("one", TensorProto.INT32, [], [1]),
                     helper.make_tensor("five", TensorProto.INT32, [], [5]),
                     helper.make_tensor("decay", TensorProto.FLOAT, [], [0.9])])
    loop = helper.make_node("Loop", ["", "start_cond", "zero", "x"], ["i_final", "y"], body=body)
    model = _model([loop], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                   [helper.make_tensor_value_info("i_final", TensorProto.INT32, []),
                    helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])], opset=13,
                   inits=[helper.make_tensor("start_cond", TensorProto.BOOL, [], [True]),
                          helper.make_tensor("zero", TensorProto.INT32, [], [0])])
    _check(model, [np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)])
