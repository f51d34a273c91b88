"""Regression: shape arithmetic on a symbolic dim must stay concrete under ``jax.jit``.

Models exported with a symbolic batch (``B``) compute target shapes at run time:
``Concat(Shape(x)[0:1], [16]) -> Expand/Reshape``. Shape cannot be folded at generation
time, but its result is known while JAX traces, so the generated code evaluates that
arithmetic with ``jax.ensure_compile_time_eval`` and jit needs no static arguments. Before
the fix, the Concat produced a tracer and ``jax.jit(forward)`` raised
``TracerArrayConversionError`` (found by the zoo round trip: GPT, ViT, GRU, LSTM).
"""

from __future__ import annotations

import jax
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.codegen_models import run_onnxruntime


def _batch_shape_model() -> onnx.ModelProto:
    """y = Reshape(Expand(bias, Concat(Shape(x)[0:1], [4])) + x, Concat(Shape(x)[0:1] * 2, [2]))."""
    inits = [
        numpy_helper.from_array(np.arange(4, dtype=np.float32), "bias"),
        numpy_helper.from_array(np.array([4], dtype=np.int64), "four"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "two"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Gather", ["x_shape", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "four"], ["wide"], axis=0),
        helper.make_node("Expand", ["bias", "wide"], ["bias_b"]),
        helper.make_node("Add", ["x", "bias_b"], ["summed"]),
        helper.make_node("Mul", ["batch", "two"], ["double_batch"]),
        helper.make_node("Concat", ["double_batch", "two"], ["narrow"], axis=0),
        helper.make_node("Reshape", ["summed", "narrow"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "batch_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B2", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_shape_arithmetic_on_a_symbolic_batch_is_jittable():
    model = _batch_shape_model()
    forward, params = wb.to_jax(model)
    jitted = jax.jit(forward)
    for batch in (1, 3):  # one generated function serves every batch size
        x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
        (expected,) = run_onnxruntime(model, x)
        np.testing.assert_allclose(np.asarray(jitted(params, x)), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(forward(params, x)), expected, rtol=1e-6, atol=1e-6)


def test_trace_time_shape_arithmetic_is_marked_in_the_source():
    source = wb.to_jax_source(_batch_shape_model())
    assert "with jax.ensure_compile_time_eval():" in source
    # float math on the weights is ordinary traced code, not evaluated at trace time
    add_line = next(line for line in source.splitlines() if "summed = " in line)
    assert add_line.startswith("    summed"), add_line
