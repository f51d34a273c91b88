"""Bad models give a WorkbenchError naming the file and the node, never a raw traceback."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper

import workbench as wb
from tests.support.codegen_models import mlp
from tests.support.harness import run_onnx


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


def test_every_node_of_an_unknown_domain_is_reported_at_once():
    """Was: only the first node ('node #0 (my.ops::Pre) uses the operator domain ...'), as if it were the only one;
    fixing it revealed the next. Every operator is counted, with its first node."""
    nodes = [helper.make_node("Pre", ["x"], ["a"], name="pre", domain="my.ops"),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Pre", ["b"], ["c"], name="pre_again", domain="my.ops"),
             helper.make_node("Post", ["c"], ["y"], name="post", domain="vendor.ops")]  # fmt: skip
    model = _graph_model(nodes, domains=("my.ops", "vendor.ops"))
    with pytest.raises(wb.OnnxModelError) as caught:
        wb.to_jax_source(model)
    message = str(caught.value)
    assert message.startswith("<ModelProto>: 3 node(s) use operator domain(s) ['my.ops', 'vendor.ops'], which have no "
                              "JAX emitters")
    assert "'my.ops::Pre' x2 (first: node 'pre' (my.ops::Pre)); 'vendor.ops::Post' x1 (first: node 'post' " in message
    assert "Re-export the model with standard ONNX operators" in message


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


def _stale_shapes_model(*, stale_value_info: bool, stale_output: bool):
    """NCHW in, Transpose to NHWC, Relu out; the file states the transposed value's and the output's shapes
    either right ([1, 4, 5, 3]) or stale (still NCHW, [1, 3, 4, 5]), as jax2onnx 0.17.1 writes its ResNets."""
    right, stale = [1, 4, 5, 3], [1, 3, 4, 5]
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1], name="to_nhwc"),
         helper.make_node("Relu", ["t"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, stale if stale_output else right)],
        value_info=[helper.make_tensor_value_info("t", TensorProto.FLOAT, stale if stale_value_info else right)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("stale_value_info, stale_output", [(True, False), (False, True), (True, True)])
def test_stale_stated_shapes_are_ignored_with_a_warning_as_onnxruntime_does(stale_value_info, stale_output):
    model = _stale_shapes_model(stale_value_info=stale_value_info, stale_output=stale_output)
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    expected = run_onnx(model, [x])[0]
    with pytest.warns(wb.WorkbenchWarning, match=r"(?s)value_info.*Inferred shape and existing shape differ.*ignored"):
        forward, params = wb.to_jax(model)
    got = np.asarray(forward(params, x))
    assert got.shape == expected.shape == (1, 4, 5, 3)
    np.testing.assert_array_equal(got, expected)


def test_right_stated_shapes_give_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wb.to_jax_source(_stale_shapes_model(stale_value_info=False, stale_output=False))


def test_a_graph_at_fault_is_still_refused_when_it_also_states_shapes():
    """Add of [2, 3] and [4, 5]: wrong whatever the file states, so the error of the file as given is raised."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "z"], ["y"], name="adder")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]), helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(wb.OnnxModelError, match=r"shape inference \(ai\.onnx opset 17\) rejected the model.*adder"):
        wb.to_jax_source(model)
