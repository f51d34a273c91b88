"""serialize.serialize_model writes what onnx-ir's serialize_model writes, byte for byte."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

import workbench as wb
from workbench import zoo
from workbench.jax_to_onnx.serialize import serialize_model


def _same_bytes(model: ir.Model) -> None:
    expected = ir.serde.serialize_model(model).SerializeToString(deterministic=True)
    assert serialize_model(model).SerializeToString(deterministic=True) == expected


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_models_serialize_as_onnx_ir_does(name):
    built = zoo.ZOO[name]()
    _same_bytes(wb.convert(built.fn, built.inputs).ir_model)


def test_symbolic_dims_and_unoptimized_graph():
    built = zoo.nnx_gpt()
    _same_bytes(wb.convert(built.fn, built.inputs, optimize=False).ir_model)


def _small_model() -> tuple[ir.Model, list[ir.Value]]:
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["B", 3]))
    weight = ir.Value(name="w", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([3]),
                      const_value=ir.Tensor(np.ones(3, np.float32), name="w"))
    first = ir.Node("", "Add", [x, weight], name="add", metadata_props={"b": "2", "a": "1"}, doc_string="doc")
    second = ir.Node("", "Mul", [first.outputs[0], first.outputs[0]], attributes=[ir.AttrInt64("unused", 1)])
    third = ir.Node("", "Relu", [second.outputs[0]])
    for node in (first, second, third):
        node.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
        node.outputs[0].shape = ir.Shape(["B", 3])
    first.outputs[0].name, second.outputs[0].name, third.outputs[0].name = "a", "m", "y"
    graph = ir.Graph([x], [third.outputs[0]], nodes=[first, second, third], initializers=[weight],
                     opset_imports={"": 21}, name="g", doc_string="graph doc")
    graph.metadata_props["k"] = "v"
    return ir.Model(graph, ir_version=10, producer_name="test"), [first.outputs[0], second.outputs[0]]


def test_plain_values_and_nodes():
    model, _ = _small_model()
    _same_bytes(model)


@pytest.mark.parametrize("change", ["doc", "metadata", "denotation", "quantization", "unnamed_output", "no_shape"])
def test_values_with_more_to_say_go_through_onnx_ir(change):
    model, (added, multiplied) = _small_model()
    if change == "doc":
        added.doc_string = "a value's doc"
    elif change == "metadata":
        added.metadata_props["key"] = "value"
    elif change == "denotation":
        multiplied.shape = ir.Shape(["B", 3], denotations=["DATA_BATCH", None])
    elif change == "quantization":
        multiplied.meta["quant_parameter_tensor_names"] = {"SCALE_TENSOR": "w"}
    elif change == "unnamed_output":
        multiplied.name = ""
    else:
        multiplied.shape = None
    _same_bytes(model)
