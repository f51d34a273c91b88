"""Bad models give a WorkbenchError naming the file and the node, never a raw traceback."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

import workbench as wb
from tests.support.codegen_models import mlp


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_empty_file(tmp_path):
    path = _write(tmp_path, "empty.onnx", b"")
    with pytest.raises(wb.OnnxModelError, match=r"empty\.onnx.*empty"):
        wb.to_jax_source(path)


def test_truncated_file(tmp_path):
    data = mlp().SerializeToString()
    path = _write(tmp_path, "truncated.onnx", data[: len(data) // 2])
    with pytest.raises(wb.OnnxModelError, match=r"truncated\.onnx"):
        wb.to_jax_source(path)


def test_corrupt_file(tmp_path):
    path = _write(tmp_path, "corrupt.onnx", b"\xff\xfe this is not protobuf \x00\x01" * 10)
    with pytest.raises(wb.OnnxModelError, match=r"corrupt\.onnx"):
        wb.to_jax_source(path)


def test_missing_file(tmp_path):
    with pytest.raises(wb.OnnxModelError, match="not found"):
        wb.to_jax_source(tmp_path / "nope.onnx")


def _graph_model(nodes, inputs=("x",), outputs=("y",), opset=17, domains=()):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in outputs],
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def test_cycle(tmp_path):
    model = _graph_model([
        helper.make_node("Add", ["x", "b"], ["a"], name="first"),
        helper.make_node("Relu", ["a"], ["b"], name="second"),
        helper.make_node("Relu", ["a"], ["y"], name="third"),
    ])
    path = _write(tmp_path, "cycle.onnx", model.SerializeToString())
    with pytest.raises(wb.WorkbenchError, match=r"cycle\.onnx.*cycle through node '(first|second)'"):
        wb.to_jax_source(path)


def test_undefined_input(tmp_path):
    model = _graph_model([helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")])
    path = _write(tmp_path, "undefined.onnx", model.SerializeToString())
    with pytest.raises(wb.WorkbenchError, match=r"undefined\.onnx.*node 'adder' \(Add\).*'ghost'"):
        wb.to_jax_source(path)


def test_unknown_domain(tmp_path):
    model = _graph_model(
        [helper.make_node("Frobnicate", ["x"], ["y"], name="custom", domain="com.example")],
        domains=("com.example",),
    )
    path = _write(tmp_path, "custom.onnx", model.SerializeToString())
    with pytest.raises(wb.WorkbenchError, match=r"custom\.onnx.*node 'custom' \(com\.example::Frobnicate\)"):
        wb.to_jax_source(path)


def test_unsupported_types_are_reported_clearly():
    map_type = helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    graph = helper.make_graph(
        [helper.make_node("Identity", ["m"], ["y"])], "g",
        [helper.make_value_info("m", map_type)], [helper.make_value_info("y", map_type)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(wb.UnsupportedOnnxOpError, match="graph input 'm' is a map"):
        wb.to_jax_source(model)


def test_every_op_without_an_emitter_is_reported_at_once():
    graph = helper.make_graph(
        [helper.make_node("ImageDecoder", ["data"], ["image"], name="decode"),
         helper.make_node("Frobnicate", ["image"], ["y"], name="custom", domain="com.microsoft")],
        "g", [helper.make_tensor_value_info("data", TensorProto.UINT8, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
    )
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    with pytest.raises(wb.UnsupportedOnnxOpError, match="ImageDecoder.*\n.*com.microsoft::Frobnicate"):
        wb.to_jax_source(model)


def test_sequences_convert():
    graph = helper.make_graph(
        [helper.make_node("SequenceEmpty", [], ["s"], name="seq"),
         helper.make_node("SequenceLength", ["s"], ["y"], name="len")],
        "g", [], [helper.make_tensor_value_info("y", TensorProto.INT64, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    forward, params = wb.to_jax(model)
    assert int(forward(params)) == 0


def test_not_a_model_argument():
    with pytest.raises(ValueError):
        wb.to_jax_source(12345)  # type: ignore[arg-type]


def test_bytes_input_is_accepted():
    assert "def forward" in wb.to_jax_source(mlp().SerializeToString())
