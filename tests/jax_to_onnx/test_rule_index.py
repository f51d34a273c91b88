"""The rule scheduler's op-type index: a rule is tried only while the graph may hold every op its pattern needs.

``compat.rule_required_ops`` reads the op types off a rule's compiled pattern (alternatives left out);
``fuse_patterns`` skips a phase none of whose rules can match and grows the index with the ops its
rewrites add, so a later phase still sees them. The exports of the zoo and the benchmark set are the
same bytes with and without the index (``tools/compare_exports.py``).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper
from onnxscript.rewriter import RewriteRule

from workbench.compat import rule_required_ops
from workbench.jax_to_onnx.passes import scheduler
from workbench.jax_to_onnx.passes.fusions import ReluFusion, SoftmaxFusion, rule_phases


def _relu_to_neg(op, x):  # noqa: ANN001, ANN201
    return op.Relu(x)


def _neg(op, x):  # noqa: ANN001, ANN201
    return op.Neg(x)


def _neg_to_abs(op, x):  # noqa: ANN001, ANN201
    return op.Abs(x)


def _two_phases(opset: int) -> list[list[tuple[RewriteRule, bool]]]:
    del opset
    return [[(RewriteRule(_relu_to_neg, _neg), False)], [(RewriteRule(_neg, _neg_to_abs), False)]]


def _relu_model() -> ir.Model:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["r"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))


def test_required_ops_of_known_rules() -> None:
    assert rule_required_ops(ReluFusion.rule()) == {"Max"}
    assert {"Exp", "ReduceSum", "Div", "Sub", "ReduceMax"} <= rule_required_ops(SoftmaxFusion.rule())
    assert rule_required_ops(RewriteRule(_relu_to_neg, _neg)) == {"Relu"}
    # every rule of the pipeline needs at least its root's op type, where it has one
    for phase in rule_phases(21):
        for rule, _ in phase:
            indexed = scheduler._IndexedRule.of(rule)
            if indexed.root_op is not None and indexed.required_ops:
                assert indexed.root_op in indexed.required_ops, rule.name


def test_a_later_phase_sees_the_ops_an_earlier_one_made() -> None:
    model = _relu_model()
    assert scheduler.fuse_patterns(model, phases=_two_phases) == 2
    assert [node.op_type for node in model.graph] == ["Abs", "Sigmoid"]


def test_a_phase_that_cannot_match_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    walked: list[int] = []
    apply_rules = scheduler._apply_rules

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        walked.append(1)
        return apply_rules(*args, **kwargs)

    monkeypatch.setattr(scheduler, "_apply_rules", counting)
    model = _relu_model()
    model.graph.node(0).op_type = "Tanh"  # nothing for either phase to do
    assert scheduler.fuse_patterns(model, phases=_two_phases) == 0
    assert walked == []
    assert scheduler.fuse_patterns(_relu_model(), phases=_two_phases) == 2
    assert len(walked) == 2


def test_op_types_reach_into_subgraphs() -> None:
    body = helper.make_graph(
        [helper.make_node("Erf", ["a"], ["b"])], "body", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])]
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)],
        "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [helper.make_tensor("a", TensorProto.FLOAT, [1], np.ones(1, np.float32))],
    )
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    assert scheduler.op_types(model.graph) == {"If", "Erf"}
