"""Models whose graphs compute 64-bit values at run time run with x64 on (generator._needs_x64).

Found by real programs (gymnax, jumanji, augmax): the exports of ``jax.random`` widen uint32 counters to
int64 and build floats in float64; generated code that ran them in JAX's default 32 bits returned other
numbers. Each case is compared with the JAX function it was exported from (exactly: the same bits) or
with onnxruntime, eagerly and under ``wb.jit_forward``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

import workbench as wb
from workbench.onnx_to_jax.jit_options import X64_NAME


def _random_draws(key_data: jax.Array):
    key = jax.random.wrap_key_data(key_data)
    return (jax.random.uniform(key, (5,)), jax.random.randint(key, (4,), 0, 10),
            jax.random.categorical(key, jnp.zeros((3, 4))))  # fmt: skip


def test_exported_random_draws_round_trip_bit_for_bit():
    key_data = np.asarray(jax.random.key_data(jax.random.key(3)))
    model = wb.to_onnx(_random_draws, [jax.ShapeDtypeStruct((2,), jnp.uint32)])
    assert f"{X64_NAME} = True" in wb.to_jax_source(model)
    forward, params = wb.to_jax(model)
    expected = _random_draws(key_data)
    for got in (forward(params, key_data), wb.jit_forward(forward)(params, key_data)):
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(e))


def _uint32_widened_model() -> onnx.ModelProto:
    """uint32 -> int64, + 2^31, mod 3^20, as float64 / 7, back to float32: every step needs 64 bits."""
    nodes = [
        helper.make_node("Cast", ["x"], ["wide"], to=TensorProto.INT64),
        helper.make_node("Add", ["wide", "offset"], ["shifted"]),
        helper.make_node("Mod", ["shifted", "modulus"], ["rest"]),
        helper.make_node("Cast", ["rest"], ["rest_f64"], to=TensorProto.DOUBLE),
        helper.make_node("Div", ["rest_f64", "seven"], ["ratio"]),
        helper.make_node("Cast", ["ratio"], ["y"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "widened",
        [helper.make_tensor_value_info("x", TensorProto.UINT32, [6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])],
        [helper.make_tensor("offset", TensorProto.INT64, [], [2**31]),
         helper.make_tensor("modulus", TensorProto.INT64, [], [3**20]),
         helper.make_tensor("seven", TensorProto.DOUBLE, [], [7.0])],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_uint32_widened_to_int64_matches_onnxruntime():
    model = _uint32_widened_model()
    onnx.checker.check_model(model, full_check=True)
    x = np.array([0, 1, 2**31 - 1, 2**31, 3_000_000_000, 2**32 - 1], np.uint32)
    (expected,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    forward, params = wb.to_jax(model)
    for got in (forward(params, x), wb.jit_forward(forward)(params, x)):
        np.testing.assert_array_equal(np.asarray(got), expected)


def test_int64_shape_arithmetic_keeps_a_model_32_bit():
    # Shape -> Gather -> Concat -> Reshape: int64, but known while tracing, so no x64
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("ArgMax", ["flat"], ["best"], axis=1, keepdims=0),
        helper.make_node("Cast", ["best"], ["y"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "shapes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B"])],
        [helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
         helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    assert X64_NAME not in wb.to_jax_source(model)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    (expected,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    forward, params = wb.to_jax(model)
    np.testing.assert_array_equal(np.asarray(forward(params, x)), expected)


def test_a_64_bit_model_keeps_its_input_names_in_forward_and_forward_prepared():
    """Was: ``forward(params, *inputs)`` for every model with 64-bit inputs or outputs (a torch export with ArgMax
    or NonZero): help() showed no input names and ``forward(params, image=x)`` raised a TypeError."""
    import inspect

    weight = np.linspace(-1, 1, 2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)
    nodes = [helper.make_node("Conv", ["image", "weight"], ["features"], pads=[1, 1, 1, 1]),
             helper.make_node("ArgMax", ["features"], ["label"], axis=1, keepdims=0)]  # fmt: skip
    graph = helper.make_graph(
        nodes, "classify", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N", 4, 4])],
        [onnx.numpy_helper.from_array(weight, "weight")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    (expected,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    forward, params = wb.to_jax(model)
    prepared, prepared_params = wb.to_jax(model, prepared=True)
    assert f"{X64_NAME} = True" in wb.to_jax_source(model)
    for function in (forward, prepared):
        assert str(inspect.signature(function)) == "(params, image)", function.__name__
    for got in (forward(params, image=x), prepared(prepared_params, image=x), wb.jit_forward(forward, params)(x)):
        assert np.asarray(got).dtype == np.int64
        np.testing.assert_array_equal(np.asarray(got), expected)
    plain = helper.make_model(helper.make_graph(  # no weight to lay out: forward is the x64 wrapper itself
        nodes[1:], "argmax", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N", 4, 4])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=9)  # fmt: skip
    forward, params = wb.to_jax(plain)
    assert str(inspect.signature(forward)) == "(params, features)"
    np.testing.assert_array_equal(np.asarray(forward(params, features=x[:, :2])), np.argmax(x[:, :2], axis=1))


def _argmax_and_linear_classifier() -> onnx.ModelProto:
    """ArgMax (last index of ties) and ArgMin of x, and an ai.onnx.ml LinearClassifier: three int64 outputs that
    index the extreme value (the classifier's label, as skl2onnx exports a logistic regression) and its scores."""
    coefficients = np.linspace(-1, 1, 12, dtype=np.float32)
    nodes = [helper.make_node("ArgMax", ["x"], ["last_max"], axis=1, keepdims=1, select_last_index=1),
             helper.make_node("ArgMin", ["x"], ["min"], axis=0, keepdims=0),
             helper.make_node("LinearClassifier", ["x"], ["label", "scores"], domain="ai.onnx.ml",
                              coefficients=coefficients.tolist(), intercepts=[0.1, -0.2, 0.3], classlabels_ints=[4, 5, 6])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "int64_indices", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 4])],
        [helper.make_tensor_value_info("last_max", TensorProto.INT64, [5, 1]),
         helper.make_tensor_value_info("min", TensorProto.INT64, [4]),
         helper.make_tensor_value_info("label", TensorProto.INT64, [5]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [5, 3])],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
                             ir_version=9)


def test_plain_jax_jit_of_int64_indices_matches_onnxruntime():
    """Was: ``jax.jit(forward)`` with JAX's 64-bit mode off (its default) failed at lowering, "Cannot lower jaxpr with
    verifier errors: type of return operand 0 ('tensor<5xi32>') doesn't match function result type
    ('tensor<5xi64>')", for every model with an ArgMax/ArgMin or a classifier's label (torch exports, skl2onnx
    trees and linear models): JAX lowers an int64 argmax under the mode of the outer jit. The index is now computed
    in int32 and widened. A model that is 64-bit inside only (uint32 widened to int64 and float64) jits plainly as
    before."""
    model = _argmax_and_linear_classifier()
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal((5, 4)), 1).astype(np.float32)
    x[2, 1] = x[2, 3] = x[2].max() + 1  # a tie: select_last_index picks 3
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})
    forward, params = wb.to_jax(model)
    assert f"{X64_NAME} = True" in wb.to_jax_source(model) and not jax.config.jax_enable_x64
    for got in (jax.jit(forward)(params, x), forward(params, x), wb.jit_forward(forward)(params, x)):
        for g, e in zip(got, expected, strict=True):
            assert np.asarray(g).dtype == e.dtype
            np.testing.assert_allclose(np.asarray(g), e, rtol=1e-6, atol=1e-6)
    inside = _uint32_widened_model()
    u = np.array([0, 1, 2**31 - 1, 2**31, 3_000_000_000, 2**32 - 1], np.uint32)
    (wanted,) = ort.InferenceSession(inside.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": u})
    forward, params = wb.to_jax(inside)
    np.testing.assert_array_equal(np.asarray(jax.jit(forward)(params, u)), wanted)
