"""workbench.onnx_io.describe: one decoder of value types for every layer."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workbench.onnx_io import (
    default_opset,
    describe_inputs,
    describe_outputs,
    describe_tensor,
    describe_value,
    opset_imports,
)


def _unknown_dim_info(name: str) -> onnx.ValueInfoProto:
    info = helper.make_tensor_value_info(name, TensorProto.INT64, ["B", 4])
    info.type.tensor_type.shape.dim.add()  # a third dim with neither a value nor a name
    return info


def test_tensor_dims_are_ints_names_or_unknown():
    value = describe_value(_unknown_dim_info("ids"))
    assert (value.name, value.kind, value.shape, value.rank) == ("ids", "tensor", ("B", 4, None), 3)
    assert value.dtype == np.dtype("int64") and value.type_name == "int64"
    assert value.text() == "int64[B×4×?]"


def test_float_text_is_numpy_named_and_type_name_is_onnx_named():
    value = describe_value(helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]))
    assert (value.text(), value.type_name, value.dtype) == ("float32[2×3]", "float", np.dtype("float32"))
    no_shape = describe_value(helper.make_tensor_value_info("y", TensorProto.DOUBLE, None))
    assert (no_shape.shape, no_shape.rank, no_shape.text()) == (None, None, "float64")


def test_strings_sequences_and_untyped_values():
    text = describe_value(helper.make_tensor_value_info("s", TensorProto.STRING, [2]))
    assert (text.dtype, text.type_name, text.text()) == (None, "string", "string[2]")
    sequence = describe_value(helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [3]))
    assert (sequence.kind, sequence.is_tensor, sequence.dtype, sequence.text()) == ("sequence", False, None, "sequence")
    untyped = describe_value(onnx.ValueInfoProto(name="u"))
    assert (untyped.kind, untyped.text(), untyped.type_name) == (None, "?", "?")


def test_initializers_and_real_inputs():
    weight = numpy_helper.from_array(np.zeros((3, 5), np.float16), "w")
    assert describe_tensor(weight).text() == "float16[3×5]"
    assert describe_tensor(weight).dtype == np.dtype("float16")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        # an old exporter's habit: the weight listed as a graph input too
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["B", 3]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT16, [3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["B", 5])], [weight],
    )  # fmt: skip
    assert [v.name for v in describe_inputs(graph)] == ["x"]


def test_opsets():
    model = helper.make_model(
        helper.make_graph([], "g", [], []),
        opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)],
    )
    assert opset_imports(model) == {"ai.onnx": 21, "com.microsoft": 1}
    assert default_opset(model) == 21
    del model.opset_import[0]
    assert default_opset(model) is None


def test_sparse_tensors_unknown_element_types_and_outputs():
    sparse = onnx.ValueInfoProto(name="s")
    sparse.type.sparse_tensor_type.elem_type = TensorProto.FLOAT
    sparse.type.sparse_tensor_type.shape.dim.add().dim_value = 7
    described = describe_value(sparse)
    assert (described.kind, described.shape, described.is_tensor) == ("sparse_tensor", (7,), False)
    future = describe_value(helper.make_tensor_value_info("f", 999, [2]))  # an element type this onnx does not know
    assert (future.dtype, future.type_name) == (None, "elem_type 999")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.INT8, [3])], [helper.make_tensor_value_info("y", TensorProto.INT8, [3])],
    )  # fmt: skip
    assert [(v.name, v.text()) for v in describe_outputs(graph)] == [("y", "int8[3]")]
