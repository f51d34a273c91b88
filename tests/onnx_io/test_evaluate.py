"""workbench.onnx_io.evaluate: the one constant evaluator of ONNX nodes, checked against onnxruntime.

Both directions fold through it (index arithmetic while lowering, shape arithmetic in the generated
JAX), so its values, dtypes, omitted optional inputs, attribute forms and opset forms must be those
of a real runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper

import workbench as wb
from tests.support.harness import run_onnx
from workbench.onnx_io import evaluate_node

_I64 = np.array([4, -1, 7], np.int64)


def _runtime(op_type: str, inputs: list[np.ndarray | None], attributes: dict, opset: int, n_outputs: int = 1) -> list:
    """The node's outputs as onnxruntime computes them (the inputs fed at run time)."""
    names = [f"x{i}" if value is not None else "" for i, value in enumerate(inputs)]
    outputs = [f"y{i}" for i in range(n_outputs)]
    fed = [(name, value) for name, value in zip(names, inputs, strict=True) if value is not None]
    graph = helper.make_graph(
        [helper.make_node(op_type, names, outputs, **attributes)], "g",
        [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for name, v in fed],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return run_onnx(model, [v for _, v in fed])


@pytest.mark.parametrize(("op_type", "inputs", "attributes", "opset"), [
    ("Add", [_I64, np.array(3, np.int64)], {}, 18),
    ("Cast", [_I64], {"to": onnx.TensorProto.FLOAT}, 18),
    ("Concat", [_I64, _I64[:1]], {"axis": 0}, 18),
    ("Gather", [np.arange(12, dtype=np.int64).reshape(3, 4), np.array([2, -1], np.int64)], {"axis": 1}, 18),
    ("Slice", [np.arange(10, dtype=np.int64), np.array([8]), np.array([-100]), None, np.array([-3])], {}, 18),
    ("Unsqueeze", [_I64, np.array([0, -1], np.int64)], {}, 18),
    ("Unsqueeze", [_I64], {"axes": [0, -1]}, 11),  # the older form: axes as an attribute
    ("ReduceMax", [np.arange(6, dtype=np.int64).reshape(2, 3), np.array([1], np.int64)], {"keepdims": 0}, 18),
    ("Range", [np.array(2, np.int64), np.array(11, np.int64), np.array(3, np.int64)], {}, 18),
    ("Where", [np.array([True, False, True]), _I64, np.zeros(3, np.int64)], {}, 18),
])
def test_values_and_dtypes_are_the_runtimes(op_type, inputs, attributes, opset):
    [got] = evaluate_node(op_type, inputs, attributes, opset)
    [want] = _runtime(op_type, inputs, attributes, opset)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_several_outputs_and_attribute_forms():
    """Split's outputs, an onnx_ir DataType and a tuple as attribute values (how handlers write them)."""
    x = np.arange(10, dtype=np.int64)
    got = evaluate_node("Split", [x, np.array([3, 7], np.int64)], {"axis": 0}, 18, n_outputs=2)
    for g, w in zip(got, _runtime("Split", [x, np.array([3, 7], np.int64)], {"axis": 0}, 18, n_outputs=2), strict=True):
        np.testing.assert_array_equal(g, w)
    [cast] = evaluate_node("Cast", [x], {"to": ir.DataType.INT32}, 18)
    assert cast.dtype == np.int32
    [transposed] = evaluate_node("Transpose", [x.reshape(2, 5)], {"perm": (1, 0)}, 18)
    np.testing.assert_array_equal(transposed, x.reshape(2, 5).T)
    fill = {"value": onnx.numpy_helper.from_array(np.array([7], np.int8))}  # a tensor: not a cache key
    for _ in range(2):
        [filled] = evaluate_node("ConstantOfShape", [np.array([2, 3], np.int64)], fill, 18)
        [want] = _runtime("ConstantOfShape", [np.array([2, 3], np.int64)], fill, 18)
        assert filled.dtype == want.dtype == np.int8
        np.testing.assert_array_equal(filled, want)


def test_what_cannot_be_evaluated_is_none_not_an_error():
    assert evaluate_node("NoSuchOp", [_I64], {}, 18) is None
    assert evaluate_node("Add", [_I64, np.arange(2, dtype=np.int64)], {}, 18) is None  # shapes do not broadcast
    assert evaluate_node("MatMul", [_I64], {}, 18, domain="com.example") is None


def test_index_folding_leaves_one_slice():
    """jax -> onnx: literal indices fold through the evaluator while lowering, x[..., :4] is one Slice."""
    model = wb.to_onnx(lambda x: x[..., 1:4], [("B", 6)])
    assert [node.op_type for node in model.graph.node] == ["Slice"]
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(run_onnx(model, [x])[0], x[..., 1:4])


def test_generator_folds_shape_arithmetic_into_literals():
    """onnx -> jax: a Concat of constants feeding Reshape is computed now, not written as code."""
    shape = helper.make_node("Concat", ["a", "b"], ["shape"], axis=0)
    reshape = helper.make_node("Reshape", ["x", "shape"], ["y"])
    graph = helper.make_graph(
        [shape, reshape], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3, 4])],
        initializer=[onnx.numpy_helper.from_array(np.array([3], np.int64), "a"),
                     onnx.numpy_helper.from_array(np.array([4], np.int64), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    source = wb.to_jax_source(model)
    assert "concatenate" not in source
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    forward, params = wb.to_jax(model)
    np.testing.assert_array_equal(np.asarray(forward(params, x)), x.reshape(3, 4))
