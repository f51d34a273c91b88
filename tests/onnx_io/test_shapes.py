"""workbench.onnx_io.shapes: one way to run ONNX shape inference, big float weights set aside meanwhile."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workbench.onnx_io import describe_value, infer_shapes, with_shapes
from workbench.onnx_io.shapes import edges_without_shape

_WEIGHT = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)  # 16 KiB: set aside


def _dense_then_reshape() -> onnx.ModelProto:
    """x (2, 64) @ W -> Reshape by an int64 initializer: inference needs the shape's values, not W's."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(_WEIGHT, "w"), numpy_helper.from_array(np.array([2, 8, -1], np.int64), "shape")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_weights_are_set_aside_while_inferring_and_restored_in_both_models(monkeypatch):
    model = _dense_then_reshape()
    seen: dict[str, int] = {}
    real = onnx.shape_inference.infer_shapes

    def spy(proto: onnx.ModelProto, **options: object) -> onnx.ModelProto:
        seen.update({t.name: len(t.raw_data) for t in proto.graph.initializer})
        return real(proto, **options)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", spy)
    inferred = infer_shapes(model, "dense.onnx")
    # the float weight was not serialized for inference (it is a typed input there); the shape was
    assert seen.get("w", 0) == 0 and seen["shape"] == 24
    shapes = {v.name: describe_value(v).shape for v in inferred.graph.value_info}
    assert shapes["h"] == (2, 64)
    assert describe_value(inferred.graph.output[0]).shape == (2, 8, 8)  # data propagation read "shape"
    for proto in (model, inferred):
        np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]), _WEIGHT)


def test_with_shapes_copies_only_when_an_edge_lacks_a_shape():
    model = _dense_then_reshape()
    assert edges_without_shape(model.graph) == ["h", "y"]
    shaped = with_shapes(model)
    assert shaped is not model and edges_without_shape(shaped.graph) == []
    assert len(model.graph.value_info) == 0  # the caller's model is not modified
    assert with_shapes(shaped) is shaped


def test_edges_inside_if_bodies_are_checked_with_the_outer_names_known():
    body = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["inner"])], "then", [], [helper.make_tensor_value_info("inner", TensorProto.FLOAT, [2])]
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=body, else_branch=body)], "g",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    assert edges_without_shape(graph) == []
    del body.output[:]
    graph.node[0].attribute[0].g.CopyFrom(body)
    assert edges_without_shape(graph) == ["inner"]
