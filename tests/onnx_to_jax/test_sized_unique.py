"""``jnp.unique(x, size=n, fill_value=f)`` as jax2onnx 0.17.1 writes it: Unique, then its values cut or padded to n.

workbench/onnx_to_jax/sized_unique.py writes the chain with static shapes; the models are built with onnx.helper
(CI has no jax2onnx) and the generated code must give onnxruntime's outputs eagerly and under ``wb.jit_forward``,
with fewer unique values than ``n`` (filled), more (cut) and repeated ones, and name no value-dependent node.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.support.harness import assert_generated_matches_onnxruntime
from workbench.onnx_to_jax.api import generate_module


def _sized_unique(size: int, elem_type: int, length: int | str, widen: bool) -> onnx.ModelProto:
    """Unique over ``x`` (widened to int64 first and cast back when ``widen``, as jax2onnx does for int32),
    then ``Gather(Concat(values, [fill]), Where(Less(i, K), i, K))`` for ``i = Range(0, size)``."""
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    nodes = []
    source = "x"
    if widen:
        nodes.append(helper.make_node("Cast", ["x"], ["x_wide"], to=TensorProto.INT64))
        source = "x_wide"
    nodes.append(helper.make_node("Unique", [source], ["values"], sorted=1))
    values = "values"
    if widen:
        nodes.append(helper.make_node("Cast", ["values"], ["values_back"], to=elem_type))
        values = "values_back"
    nodes += [
        helper.make_node("Range", ["zero", "size", "one"], ["positions"]),
        helper.make_node("Shape", [values], ["count"]),
        helper.make_node("Expand", ["count", "size_vec"], ["counts"]),
        helper.make_node("Less", ["positions", "counts"], ["inside"]),
        helper.make_node("Where", ["inside", "positions", "counts"], ["picked"]),
        helper.make_node("Concat", [values, "fill"], ["extended"], axis=0),
        helper.make_node("Gather", ["extended", "picked"], ["y"], axis=0),
    ]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("zero", 0), ("size", size), ("one", 1), ("size_vec", [size]))]
    inits.append(numpy_helper.from_array(np.array([-7], dtype), "fill"))
    graph = helper.make_graph(nodes, "sized_unique", [helper.make_tensor_value_info("x", elem_type, [length])],
                              [helper.make_tensor_value_info("y", elem_type, [size])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("size", [2, 4, 9])
def test_int32_widened_for_unique(size):
    """int32 values widened to int64 for Unique and cast back; 4 unique values among 6, cut to 2, exactly 4,
    filled to 9; then every value the same."""
    model = _sized_unique(size, TensorProto.INT32, 6, widen=True)
    assert generate_module(model).value_dependent_nodes == ()
    assert_generated_matches_onnxruntime(model, [np.array([3, -1, 3, 8, 0, -1], np.int32)])
    assert_generated_matches_onnxruntime(model, [np.full(6, 5, np.int32)])


@pytest.mark.parametrize("length", [5, "B"])
def test_float_values_filled(length):
    """float32 values, a static and a symbolic input length (run at 5 and 7), with repeats."""
    model = _sized_unique(6, TensorProto.FLOAT, length, widen=False)
    assert generate_module(model).value_dependent_nodes == ()
    assert_generated_matches_onnxruntime(model, [np.array([0.5, -2.0, 0.5, 3.25, -2.0], np.float32)])
    if length == "B":
        assert_generated_matches_onnxruntime(model, [np.array([1, 2, 3, 4, 5, 6, 1.5], np.float32)])


@pytest.mark.parametrize("elem_type", [TensorProto.INT32, TensorProto.FLOAT])
def test_values_from_an_initializer(elem_type):
    """The Unique's input an initializer: integers fold to constants (no sized form in the code); float
    initializers are weights, never folded, and take the sized form (jit-able)."""
    model = _sized_unique(5, elem_type, 4, widen=elem_type == TensorProto.INT32)
    graph = model.graph
    graph.input.remove(graph.input[0])
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 2, 0], dtype), "x"))
    assert ("_sized_unique" in generate_module(model).source) == (elem_type == TensorProto.FLOAT)
    assert_generated_matches_onnxruntime(model, [])
