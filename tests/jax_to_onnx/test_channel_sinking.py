"""Channel-transpose sinking (workbench/jax_to_onnx/passes/layout.py) on hand-built graphs: the paths of
its one walk where a step's Transpose is only a record (sinks on, blocked, dead, a graph output, read
twice, met by another chain later, folded into a dense head), each checked against onnxruntime on the
graph before the pass, bit for bit, and by what Transposes are left."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.jax_to_onnx.passes.layout import RELAID_KEY, sink_channel_transposes

RNG = np.random.default_rng(0)
N, C, H, W = 2, 3, 4, 5
TO_LAST, TO_FIRST = [0, 2, 3, 1], [0, 3, 1, 2]


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def _input(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _output(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def _const(name: str, shape) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def _t(name: str, source: str, perm) -> onnx.NodeProto:
    return helper.make_node("Transpose", [source], [name], perm=perm, name=f"{name}_node")


def _run(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _sunk(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float = 0.0) -> tuple[ir.Model, int]:
    """Run the pass; assert the outputs equal the original graph's (bit for bit unless a reduction sums in
    another order: ``rtol``); return the model and how many Transposes moved."""
    expected = _run(proto, feeds)
    model = ir.from_proto(proto)
    moved = sink_channel_transposes(model.graph)
    got = _run(ir.to_proto(model), feeds)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0)
    return model, moved


def _transposes(model: ir.Model) -> list[ir.Node]:
    return [node for node in model.graph if node.op_type == "Transpose"]


def _live_transposes(model: ir.Model) -> list[ir.Node]:
    """The Transposes something reads (a step's Transpose left unread stays for the clean-up pass)."""
    return [node for node in _transposes(model) if node.outputs[0].uses() or node.outputs[0].is_graph_output()]


def _feeds(**shapes) -> dict[str, np.ndarray]:
    return {name: RNG.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def test_a_chain_of_elementwise_ops_cancels_and_no_step_transpose_is_left():
    # x NCHW -> to channels-last -> BatchNorm-like Mul/Add -> Relu -> back: every step's Transpose sinks on
    proto = _model(
        [
            _t("a", "x", TO_LAST),
            helper.make_node("Mul", ["a", "scale"], ["m"], name="mul"),
            helper.make_node("Add", ["m", "shift"], ["s"], name="add"),
            helper.make_node("Relu", ["s"], ["r"], name="relu"),
            _t("y", "r", TO_FIRST),
        ],
        [_input("x", [N, C, H, W])],
        [_output("y")],
        [_const("scale", [C]), _const("shift", [C])],
    )
    model, moved = _sunk(proto, _feeds(x=(N, C, H, W)))
    assert moved == 4 and _transposes(model) == [], [n.op_type for n in model.graph]
    relu = next(node for node in model.graph if node.op_type == "Relu")
    add = next(node for node in model.graph if node.op_type == "Add")
    assert relu.outputs[0].name == "y"  # the back Transpose cancelled: Relu's output is the graph's
    assert add.outputs[0].name == "s/relaid" and add.outputs[0].meta[RELAID_KEY] == ("s", TO_LAST)
    assert [node.name for node in model.graph] == ["mul", "add", "relu"]


def test_a_blocked_step_leaves_its_transpose_after_the_node_with_the_nodes_name():
    # the MatMul with a non-constant operand stops the sinking: the Transpose after Relu is made and placed
    proto = _model(
        [
            _t("a", "x", TO_LAST),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "w"], ["y"], name="matmul"),
        ],
        [_input("x", [N, C, H, W]), _input("w", [C, 6])],
        [_output("y")],
    )
    model, moved = _sunk(proto, _feeds(x=(N, C, H, W), w=(C, 6)))
    ops = [node.op_type for node in model.graph]
    assert moved == 1 and ops == ["Relu", "Transpose", "MatMul"], ops
    transpose = _transposes(model)[0]
    assert transpose.outputs[0].name == "r" and transpose.inputs[0].name == "r/relaid"
    assert list(transpose.attributes["perm"].as_ints()) == TO_LAST


def test_a_graph_output_in_the_chain_keeps_its_name_and_layout():
    # ``r`` is returned and read on: its Transpose goes before the output (named ``r``) and stops there
    proto = _model(
        [
            _t("a", "x", TO_LAST),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            helper.make_node("Sigmoid", ["r"], ["s"], name="sigmoid"),
            _t("y", "s", TO_FIRST),
        ],
        [_input("x", [N, C, H, W])],
        [_output("r"), _output("y")],
    )
    model, _ = _sunk(proto, _feeds(x=(N, C, H, W)))
    assert [value.name for value in model.graph.outputs] == ["r", "y"]
    restored = model.graph.outputs[0].producer()
    assert restored.op_type == "Transpose" and restored.inputs[0].name == "r/before_transpose"
    assert len(_transposes(model)) == 2 and model.graph.outputs[1].producer().op_type == "Transpose"


def test_a_value_read_twice_by_one_node_and_by_a_second_node():
    proto = _model(
        [
            _t("a", "x", TO_LAST),
            helper.make_node("Exp", ["a"], ["e"], name="exp"),
            helper.make_node("Mul", ["e", "e"], ["sq"], name="square"),
            helper.make_node("Neg", ["e"], ["n"], name="neg"),
            helper.make_node("Add", ["sq", "n"], ["s"], name="add"),
            _t("y", "s", TO_FIRST),
        ],
        [_input("x", [N, C, H, W])],
        [_output("y")],
    )
    model, _ = _sunk(proto, _feeds(x=(N, C, H, W)))
    # Neg's Transpose waits at the Add until Mul's arrives and takes the Add: left unread
    assert _live_transposes(model) == [], [n.op_type for n in model.graph]
    exp = next(node for node in model.graph if node.op_type == "Exp")
    assert [(use.node.name, use.idx) for use in exp.outputs[0].uses()] == [("square", 0), ("square", 1), ("neg", 0)]


def test_a_value_read_by_a_node_that_cannot_take_the_transpose_keeps_it():
    # the Add's other operand is in neither layout: the Transpose after Exp is made, both its readers read it
    proto = _model(
        [
            _t("a", "x", TO_LAST),
            helper.make_node("Exp", ["a"], ["e"], name="exp"),
            helper.make_node("Mul", ["e", "e"], ["sq"], name="square"),
            helper.make_node("Add", ["sq", "z"], ["y"], name="add"),
        ],
        [_input("x", [N, C, H, W]), _input("z", [N, H, W, C])],
        [_output("y")],
    )
    model, _ = _sunk(proto, _feeds(x=(N, C, H, W), z=(N, H, W, C)))
    (transpose,) = _transposes(model)
    assert transpose.inputs[0].name == "sq/relaid" and transpose.outputs[0].name == "sq"


def test_two_chains_meeting_at_an_add_after_different_numbers_of_steps():
    # the short chain's Transpose waits at the Add (its other operand not yet transposed), the long one's
    # arrives later and takes the Add with it: the short chain's Transpose is left unread (dead, for the
    # clean-up), the output has none before it
    proto = _model(
        [
            _t("a", "x", TO_LAST),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            _t("b", "z", TO_LAST),
            helper.make_node("Exp", ["b"], ["e1"], name="exp1"),
            helper.make_node("Neg", ["e1"], ["e2"], name="neg"),
            helper.make_node("Add", ["r", "e2"], ["s"], name="add"),
            _t("y", "s", TO_FIRST),
        ],
        [_input("x", [N, C, H, W]), _input("z", [N, C, H, W])],
        [_output("y")],
    )
    model, _ = _sunk(proto, _feeds(x=(N, C, H, W), z=(N, C, H, W)))
    assert _live_transposes(model) == [], [(n.name, n.inputs[0].name) for n in _transposes(model)]
    assert len(_transposes(model)) == 1
    add = next(node for node in model.graph if node.op_type == "Add")
    assert [value.name for value in add.inputs] == ["r/relaid", "e2/relaid"]


def test_a_flatten_into_a_dense_head_takes_the_transpose_into_the_weight_rows():
    proto = _model(
        [
            _t("a", "x", TO_LAST),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            helper.make_node("Reshape", ["r", "flat_shape"], ["f"], name="flatten"),
            helper.make_node("MatMul", ["f", "w"], ["y"], name="dense"),
        ],
        [_input("x", [N, C, H, W])],
        [_output("y")],
        [numpy_helper.from_array(np.array([N, H * W * C], np.int64), "flat_shape"), _const("w", [H * W * C, 7])],
    )
    model = ir.from_proto(proto)
    # shapes as the lowering sets them (the flatten rule reads the transposed value's shape)
    values = {value.name: value for node in model.graph for value in node.outputs}
    values["a"].shape = values["r"].shape = ir.Shape([N, H, W, C])
    values["f"].shape = ir.Shape([N, H * W * C])
    feeds = _feeds(x=(N, C, H, W))
    expected = _run(proto, feeds)
    sink_channel_transposes(model.graph)
    assert [node.op_type for node in model.graph] == ["Relu", "Reshape", "MatMul"]
    np.testing.assert_allclose(_run(ir.to_proto(model), feeds)[0], expected[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduce_keepdims", [0, 1])
def test_a_reduction_then_elementwise_ops_keep_the_numbers(reduce_keepdims):
    proto = _model(
        [
            _t("a", "x", TO_LAST),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            helper.make_node("ReduceSum", ["r", "axes"], ["m"], keepdims=reduce_keepdims, name="sum"),
            helper.make_node("Neg", ["m"], ["y"], name="neg"),
        ],
        [_input("x", [N, C, H, W])],
        [_output("y")],
        [numpy_helper.from_array(np.array([1, 2], np.int64), "axes")],
    )
    model, _ = _sunk(proto, _feeds(x=(N, C, H, W)), rtol=1e-6)
    assert model.graph.outputs[0].name == "y"
