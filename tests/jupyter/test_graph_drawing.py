"""The self-contained SVG drawing (the viewer where Netron cannot be served): parsed and measured."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.jupyter import graph_drawing
from workbench.jupyter.graph_drawing import draw_svg, shape_label
from workbench.onnx_io import with_shapes

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def _boxes(root: ET.Element, kind: str) -> list[tuple[float, float, float, float, str]]:
    """(left, top, width, height, title) of each drawn input/node/output."""
    found = []
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != f"wb-{kind}":
            continue
        rect = group.find(f"{SVG}rect")
        title = group.find(f"{SVG}text").text
        found.append((float(rect.get("x")), float(rect.get("y")), float(rect.get("width")), float(rect.get("height")), title))
    return found


def _edge_labels(root: ET.Element) -> list[str]:
    return [text.text for text in root.iter(f"{SVG}text") if text.get("paint-order") == "stroke"]


def test_mlp_drawing_has_every_node_shape_and_parameter(mlp_model: onnx.ModelProto) -> None:
    root = _parse(draw_svg(with_shapes(mlp_model)))
    assert [box[4] for box in _boxes(root, "node")] == ["Gemm", "Gelu", "Gemm"]
    assert [box[4] for box in _boxes(root, "input")] == ["in_0"]
    assert [box[4] for box in _boxes(root, "output")] == ["out_1"]
    assert sorted(_edge_labels(root)) == ["B×10", "B×20", "B×20", "B×30"]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "B ⟨30×20⟩" in texts and "C ⟨20⟩" in texts  # Gemm's schema names for the initializers
    tops = [box[1] for box in _boxes(root, "input") + _boxes(root, "node") + _boxes(root, "output")]
    assert tops == sorted(tops) and len(set(tops)) == 5  # a chain: one layer each, top to bottom


def _residual_model() -> onnx.ModelProto:
    """x -> Relu -> Tanh -> Sigmoid -> Add(x, .) : the skip connection spans three layers."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Tanh", ["a"], ["b"]),
        helper.make_node("Sigmoid", ["b"], ["c"]),
        helper.make_node("Add", ["x", "c"], ["y"]),
        helper.make_node("Neg", ["x"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes, "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])],
    )  # fmt: skip
    return with_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))


def test_boxes_never_overlap_and_long_edges_are_routed() -> None:
    root = _parse(draw_svg(_residual_model()))
    boxes = _boxes(root, "input") + _boxes(root, "node") + _boxes(root, "output")
    assert len(boxes) == 1 + 5 + 2
    for i, (left, top, width, height, _) in enumerate(boxes):
        for other_left, other_top, other_width, other_height, _ in boxes[i + 1 :]:
            apart = (
                left + width <= other_left or other_left + other_width <= left
                or top + height <= other_top or other_top + other_height <= top
            )  # fmt: skip
            assert apart, boxes
    paths = [p.get("d") for p in root.iter(f"{SVG}path") if p.get("marker-end")]
    assert len(paths) == 8  # x->Relu, Relu->Tanh, Tanh->Sigmoid, Sigmoid->Add, x->Add, x->Neg, Add->y, Neg->z
    # x (layer 0) -> Add (layer 4) passes a virtual point in each of the 3 layers between: 4 curve segments
    assert sorted(path.count("C") for path in paths) == [1, 1, 1, 1, 1, 1, 1, 4]
    assert _edge_labels(root).count("N×4") == 8


def test_untrusted_names_are_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    graph = helper.make_graph(
        [helper.make_node("Relu", [hostile], ["out"], name=hostile)], "g",
        [helper.make_tensor_value_info(hostile, TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    svg = draw_svg(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    _parse(svg)


def test_big_graphs_are_not_drawn(monkeypatch: pytest.MonkeyPatch, mlp_model: onnx.ModelProto) -> None:
    monkeypatch.setattr(graph_drawing, "MAX_DRAWN_NODES", 2)
    assert draw_svg(with_shapes(mlp_model)) is None


def test_constant_only_branches_sit_next_to_their_consumer() -> None:
    """A node fed only by initializers (a folded constant) is drawn one layer above its consumer."""
    scale = numpy_helper.from_array(np.full(4, 2.0, np.float32), "scale")
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Tanh", ["a"], ["b"]),
        helper.make_node("Sqrt", ["scale"], ["s"]),
        helper.make_node("Mul", ["b", "s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[scale],
    )  # fmt: skip
    root = _parse(draw_svg(with_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))))
    tops = {title: top for _, top, _, _, title in _boxes(root, "node")}
    assert tops["Sqrt"] == tops["Tanh"] < tops["Mul"]


@pytest.mark.parametrize(("text", "label"), [("float32[B×30]", "B×30"), ("int64[]", "scalar"), ("float32", "float32")])
def test_shape_labels(text: str, label: str) -> None:
    assert shape_label(text) == label


def test_drawing_of_a_converted_cnn_has_its_convolutions() -> None:
    import workbench as wb
    from workbench.zoo import ZOO

    built = ZOO["nnx_cnn"]()
    model = with_shapes(wb.to_onnx(built.fn, built.inputs))
    root = _parse(draw_svg(model))
    titles = [box[4] for box in _boxes(root, "node")]
    assert titles.count("Conv") == 2 and len(titles) == len(model.graph.node)
    assert any(re.fullmatch(r"B×\d+×\d+×\d+", label) for label in _edge_labels(root))
