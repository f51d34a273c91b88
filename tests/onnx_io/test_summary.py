"""workbench.onnx_io.summary / shapes: one summary for the viewer, ``%%to_onnx`` and ``workbench inspect``."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from tests.support.codegen_models import cnn, if_and_loop
from workbench.onnx_io import summarize, with_shapes
from workbench.onnx_io.shapes import edges_without_shape


def test_counts_match_the_initializers_and_nodes():
    model = cnn()
    summary = summarize(with_shapes(model))
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    assert summary.parameter_count == sum(a.size for a in arrays)
    assert summary.parameter_bytes == sum(a.nbytes for a in arrays)
    assert summary.parameter_tensors == len(arrays)
    assert [row.op for row in summary.nodes] == [n.op_type for n in model.graph.node]
    assert dict(summary.op_counts) == {op: [n.op_type for n in model.graph.node].count(op) for op in dict(summary.op_counts)}
    assert (summary.opset, summary.opsets, summary.ir_version) == (17, {"ai.onnx": 17}, 8)


def test_every_edge_has_a_type_after_with_shapes():
    model = cnn()
    assert edges_without_shape(model.graph)  # the builder gives intermediate values no value_info
    shaped = with_shapes(model)
    assert edges_without_shape(shaped.graph) == [] and edges_without_shape(model.graph)  # a copy was inferred
    assert with_shapes(shaped) is shaped  # nothing to infer: the model itself
    conv = summarize(shaped).nodes[1]
    assert conv.op == "Conv"
    assert [e.type for e in conv.outputs] == ["float32[2×8×8×8]"]
    assert [(e.name, e.is_parameter, e.type) for e in conv.inputs[1:]] == [
        ("conv.w", True, "float32[8×3×3×3]"), ("conv.b", True, "float32[8]"),
    ]


def test_json_form_uses_onnx_type_names():
    data = summarize(with_shapes(cnn())).to_json()
    assert data["inputs"] == [{"name": "x", "dtype": "float", "shape": [2, 3, 8, 8]}]
    assert data["parameters"]["tensors"] == 8
    conv = data["nodes"][1]
    assert conv["op_type"] == "Conv" and conv["outputs"] == [{"name": "c", "shape": [2, 8, 8, 8], "dtype": "float"}]
    assert conv["inputs"][1] == {"name": "conv.w", "shape": [8, 3, 3, 3]}


def test_subgraph_nodes_are_labelled_by_where_they_sit():
    summary = summarize(with_shapes(if_and_loop()))
    assert [row.op for row in summary.nodes] == ["ReduceSum", "Greater", "If", "Loop", "Add"]
    where = {(row.graph, row.op) for row in summary.subgraph_nodes}
    assert ("If.then_branch", "Mul") in where and ("If.else_branch", "Sub") in where
    assert ("Loop.body", "Cast") in where
    text = summary.text()
    assert text.splitlines()[0] == "ONNX graph 'control': 5 nodes (Add ×1, Greater ×1, If ×1, Loop ×1, ReduceSum ×1), 5 parameters, opset 17"
    assert "x: float32[4]" in text and "steps: float32[3×4]" in text


def test_foreign_domains_are_shown_with_their_domain():
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")], "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("com.example", 1)],
    )  # fmt: skip
    summary = summarize(model)
    assert summary.nodes[0].op == "com.example::Frobnicate"
    assert summary.to_json()["op_histogram"] == {"Frobnicate": 1}
    assert np.isclose(summary.parameter_count, 0)
