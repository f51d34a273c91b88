"""``passes.unused.remove_unused_nodes`` removes and renames exactly what onnx-ir's ``RemoveUnusedNodesPass`` does.

Each case is a small ONNX model run through both, compared as serialised bytes; the cases cover dead
chains, optional outputs (Dropout's mask, BatchNormalization's statistics at opsets 9 and 15), trailing
``None`` inputs, a graph output read by nobody, initializers, a Loop body and a local function. Two more
cases check what that pass never meets (it starts from a fresh model): the body of an If removed in the
same sweep, or folded away by an earlier pass, no longer keeps the initializer it read. The
exports of the zoo and the benchmark set, which run through it on every conversion, are compared with
main's byte for byte by ``tools/compare_exports.py``.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper
from onnx_ir.passes import common as common_passes

from workbench.jax_to_onnx.passes.unused import remove_unused_nodes

F = TensorProto.FLOAT


def _value(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, F, shape)


def _dead_chain_and_optional_outputs(opset: int) -> onnx.ModelProto:
    bn_attrs = {"training_mode": 0} if opset >= 14 else {}
    nodes = [
        helper.make_node("Relu", ["x"], ["dead1"]),
        helper.make_node("Neg", ["dead1"], ["dead2"]),  # a dead chain: both go in one sweep
        helper.make_node("Dropout", ["x"], ["dropped", "mask"]),  # mask unused: optional, renamed away
        helper.make_node("BatchNormalization", ["dropped", "s", "b", "m", "v"],
                         ["bn", "mean_out", "var_out"] if opset >= 14 else ["bn"], **bn_attrs),
        helper.make_node("Clip", ["bn", "", ""], ["clipped"]),  # trailing empty inputs dropped
        helper.make_node("Split", ["clipped"], ["half1", "half2"], axis=1,
                         **({"num_outputs": 2} if opset >= 18 else {})),  # variadic outputs: left alone
        helper.make_node("Add", ["half1", "half2"], ["y"]),
    ]
    inits = [helper.make_tensor(name, F, [4], np.ones(4, np.float32)) for name in ("s", "b", "m", "v")]
    inits.append(helper.make_tensor("unused_weight", F, [2], [1.0, 2.0]))
    graph = helper.make_graph(nodes, "g", [_value("x", [1, 4])], [_value("y", [1, 2]), _value("x_out", [1, 4])], inits)
    graph.node.append(helper.make_node("Identity", ["x"], ["x_out"]))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _loop_and_function() -> onnx.ModelProto:
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["carried", "carried"], ["carried_out"]),
            helper.make_node("Mul", ["carried", "carried"], ["body_dead"]),
            helper.make_node("Dropout", ["carried_out"], ["scan_out", "body_mask"]),
        ],
        "body",
        [_value("i", []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), _value("carried", [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _value("carried_out", [2]), _value("scan_out", [2])],
    )
    trip = helper.make_tensor("trip", TensorProto.INT64, [], [3])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    function = helper.make_function(
        "local", "Twice", ["a"], ["b"],
        [helper.make_node("Add", ["a", "a"], ["b"]), helper.make_node("Exp", ["a"], ["fn_dead"])],
        opset_imports=[helper.make_opsetid("", 21)],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Loop", ["trip", "cond", "x"], ["final", "scanned"], body=body),
            helper.make_node("Twice", ["final"], ["y"], domain="local"),
            helper.make_node("Sigmoid", ["scanned"], ["unused_sigmoid"]),
        ],
        "g", [_value("x", [2])], [_value("y", [2])], [trip, cond],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("local", 1)], functions=[function]
    )


@pytest.mark.parametrize(
    "proto",
    [_dead_chain_and_optional_outputs(9), _dead_chain_and_optional_outputs(15), _dead_chain_and_optional_outputs(21),
     _loop_and_function()],
    ids=["opset9", "opset15", "opset21", "loop_and_function"],
)
def test_same_result_as_onnx_ir_pass(proto: onnx.ModelProto) -> None:
    theirs, ours = ir.serde.deserialize_model(proto), ir.serde.deserialize_model(proto)
    common_passes.RemoveUnusedNodesPass()(theirs)
    removed = remove_unused_nodes(ours)
    assert removed > 0
    expected = ir.serde.serialize_model(theirs).SerializeToString(deterministic=True)
    assert ir.serde.serialize_model(ours).SerializeToString(deterministic=True) == expected
    # and what both did: the dead nodes are gone, the unused optional outputs unnamed
    ops = [node.op_type for node in ours.graph]
    assert "Neg" not in ops and "Relu" not in ops and "Sigmoid" not in ops


def test_optional_outputs_and_initializers() -> None:
    model = ir.serde.deserialize_model(_dead_chain_and_optional_outputs(15))
    remove_unused_nodes(model)
    dropout = next(node for node in model.graph if node.op_type == "Dropout")
    batch_norm = next(node for node in model.graph if node.op_type == "BatchNormalization")
    clip = next(node for node in model.graph if node.op_type == "Clip")
    assert len(dropout.outputs) == 1 and len(batch_norm.outputs) == 1 and len(clip.inputs) == 1
    assert "training_mode" not in batch_norm.attributes
    assert "unused_weight" not in model.graph.initializers and "s" in model.graph.initializers


def _used_names(graph: onnx.GraphProto, found: set[str]) -> set[str]:
    for node in graph.node:
        found.update(node.input)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _used_names(attr.g, found)
    return found


def test_an_initializer_read_only_by_a_folded_away_branch_goes() -> None:
    # constant folding replaces a cond whose predicate is a constant by the branch it takes; the other
    # branch's nodes stayed attached to the constant they read, so it stayed as an unused initializer
    # (onnxruntime warned "Removing initializer ... not used by any node": interpax's splines)
    import jax
    import jax.numpy as jnp

    import workbench as wb
    from tests.support.harness import run_onnx

    taken = np.arange(12, dtype=np.float32).reshape(3, 4) + 0.5
    not_taken = np.linspace(1, 2, 12, dtype=np.float32).reshape(3, 4)

    def scaled(x):
        return jax.lax.cond(jnp.sum(jnp.arange(4)) > 3, lambda v: v * taken, lambda v: v - not_taken, x)

    model = wb.to_onnx(scaled, [(3, 4)])
    assert [node.op_type for node in model.graph.node] == ["Mul"]
    used = _used_names(model.graph, set())
    assert [init.name for init in model.graph.initializer if init.name not in used] == []
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(model, [x])[0], np.asarray(scaled(x)), rtol=1e-6)


def test_a_removed_if_no_longer_keeps_what_its_branches_read() -> None:
    # an If nobody reads goes in the sweep; the outer value its branch read (an initializer) goes with it
    branch_then = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["t"])], "then", [], [_value("t", [2])])
    branch_else = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [_value("e", [2])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["dead"], then_branch=branch_then, else_branch=branch_else),
         helper.make_node("Relu", ["x"], ["y"])],
        "g", [_value("x", [2]), helper.make_tensor_value_info("c", TensorProto.BOOL, [])], [_value("y", [2])],
        [helper.make_tensor("w", F, [2], [1.0, 2.0])])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    remove_unused_nodes(model)
    assert [node.op_type for node in model.graph] == ["Relu"] and "w" not in model.graph.initializers
