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
from tests.support.harness import assert_generated_matches_onnxruntime, run_onnx


def _model(nodes, inputs, outputs, *, opset: int, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _check(model: onnx.ModelProto, inputs: list[np.ndarray]) -> None:
    assert_generated_matches_onnxruntime(model, inputs)


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


def _recurrent_loop(max_trip: int, steps: float, start: float) -> onnx.ModelProto:
    """A Keras recurrent layer as tf2onnx writes it: a Loop with a trip count, an initial condition computed
    from float constants, and a body that computes the next condition from the iteration number and a
    carried int32 time step (``cast(i) < steps and cast(time + 1) < steps``), writing the hidden state of
    each step as a scan output (TensorListSetItem)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["time_in", "one"], ["time_out"]),
         helper.make_node("Gather", ["sequence", "time_in"], ["step"], axis=0),
         helper.make_node("MatMul", ["step", "w"], ["projected"]),
         helper.make_node("MatMul", ["h_in", "u"], ["recurrent"]),
         helper.make_node("Add", ["projected", "recurrent"], ["summed"]),
         helper.make_node("Tanh", ["summed"], ["h_out"]),
         helper.make_node("Identity", ["h_out"], ["h_scan"]),
         helper.make_node("Cast", ["time_out"], ["time_f"], to=TensorProto.FLOAT),
         helper.make_node("Cast", ["counter"], ["counter_f"], to=TensorProto.FLOAT),
         helper.make_node("Less", ["counter_f", "steps"], ["below_max"]),
         helper.make_node("Less", ["time_f", "steps"], ["below_steps"]),
         helper.make_node("And", ["below_max", "below_steps"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("counter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("time_in", TensorProto.INT32, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("time_out", TensorProto.INT32, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("h_scan", TensorProto.FLOAT, [1, 4])],
        initializer=[helper.make_tensor("one", TensorProto.INT32, [], [1])])
    rng = np.random.default_rng(1)
    inits = [helper.make_tensor("max_trip", TensorProto.INT64, [], [max_trip]),
             helper.make_tensor("steps", TensorProto.FLOAT, [], [steps]),
             helper.make_tensor("start", TensorProto.FLOAT, [], [start]),
             helper.make_tensor("time0", TensorProto.INT32, [], [0]),
             helper.make_tensor("h0", TensorProto.FLOAT, [1, 4], np.zeros(4)),
             helper.make_tensor("w", TensorProto.FLOAT, [3, 4], rng.normal(size=12)),
             helper.make_tensor("u", TensorProto.FLOAT, [4, 4], rng.normal(size=16) * 0.5)]
    nodes = [helper.make_node("Transpose", ["x"], ["sequence"], perm=[1, 0, 2]),
             helper.make_node("Less", ["start", "steps"], ["cond0"]),
             helper.make_node("Loop", ["max_trip", "cond0", "time0", "h0"], ["time_final", "h_final", "hs"],
                              body=body)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10, 3])],
                  [helper.make_tensor_value_info("h_final", TensorProto.FLOAT, [1, 4]),
                   helper.make_tensor_value_info("hs", TensorProto.FLOAT, None)], opset=13, inits=inits)


@pytest.mark.parametrize(("max_trip", "steps"), [(10, 10.0), (10, 6.0), (4, 10.0)])
def test_recurrent_loop_with_computed_condition_jits(max_trip, steps):
    """Keras LSTM/GRU via tf2onnx: the body's condition reads only the iteration number, a carried counter
    and constants, so the reader proves the trip count (trip_count.py) and the scan outputs stack under
    jax.jit (lax.scan). Before, such a Loop was a value-dependent node and wb.jit_forward refused the model."""
    model = _recurrent_loop(max_trip, steps, 0.0)
    assert wb.to_jax_source(model).count("VALUE_DEPENDENT_NODES = ()") == 1
    _check(model, [np.random.default_rng(0).normal(size=(1, 10, 3)).astype(np.float32)])


def test_loop_condition_on_values_stays_value_dependent():
    """A condition computed from the float state (tf.while_loop until a norm is small, with TensorArray
    writes) fixes no trip count now: the Loop stays a value-dependent node, run eagerly."""
    model = _recurrent_loop(10, 10.0, 0.0)
    loop = model.graph.node[2]
    body = loop.attribute[0].g
    # the condition: h[0, 0] < 0.9 instead of the counters
    body.node.extend([helper.make_node("ReduceMax", ["h_out"], ["h_max"], keepdims=0),
                      helper.make_node("Less", ["h_max", "limit"], ["below_value"])])
    body.initializer.append(helper.make_tensor("limit", TensorProto.FLOAT, [], [0.9]))
    body.node[-3].input[:] = ["below_max", "below_value"]  # the And
    body.node.append(body.node.pop(len(body.node) - 3))  # keep the nodes in topological order
    source = wb.to_jax_source(model)
    assert "VALUE_DEPENDENT_NODES = ()" not in source
    x = np.random.default_rng(0).normal(size=(1, 10, 3)).astype(np.float32)
    expected = run_onnx(model, [x])
    forward, params = wb.to_jax(model)
    for want, have in zip(expected, forward(params, x), strict=True):
        np.testing.assert_allclose(np.asarray(have), want, rtol=1e-6, atol=1e-6)


def test_segment_ids_fold_through_topk_and_unique():
    """``tf.math.unsorted_segment_sum`` with constant segment ids: tf2onnx counts the segments with TopK and
    Unique of the ids. Both fold now, so the segment count is a constant and the model jits; before, Unique
    (and the ConstantOfShape sized by it) were value-dependent nodes."""
    ids = helper.make_tensor("ids", TensorProto.INT64, [6], [0, 0, 2, 1, 2, 0])
    k = helper.make_tensor("k", TensorProto.INT64, [1], [6])
    nodes = [helper.make_node("TopK", ["ids", "k"], ["sorted", "order"], largest=0),
             helper.make_node("Unique", ["sorted"], ["segments", "first", "inverse", "counts"], sorted=1),
             helper.make_node("Gather", ["x", "segments"], ["picked"], axis=0),
             helper.make_node("Shape", ["segments"], ["n"]),
             helper.make_node("ConstantOfShape", ["n"], ["zeros"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("Unsqueeze", ["zeros", "axis"], ["column"]),
             helper.make_node("Add", ["picked", "column"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 5])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], opset=13,
                   inits=[ids, k, helper.make_tensor("axis", TensorProto.INT64, [1], [1])])
    assert "VALUE_DEPENDENT_NODES = ()" in wb.to_jax_source(model)
    _check(model, [np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)])
