"""Control flow beyond the per-handler testcases: one model run with many inputs, graph structure,
type info inside every subgraph, nesting, and sharing with ONNX local functions."""

from __future__ import annotations

from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from jax import lax

import workbench as wb
from tests.support.harness import assert_graph_quality, run_onnx
from workbench.jax_to_onnx.registry import REGISTRY


def _subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield attr.g
                yield from _subgraphs(attr.g)
            for sub in attr.graphs:
                yield sub
                yield from _subgraphs(sub)


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = list(graph.node)
    for sub in _subgraphs(graph):
        nodes += list(sub.node)
    return nodes


def _untyped_subgraph_values(model: onnx.ModelProto) -> list[str]:
    missing = []
    for sub in _subgraphs(model.graph):
        typed = {v.name for v in sub.value_info} | {v.name for v in sub.input} | {v.name for v in sub.output}
        for value in [*sub.input, *sub.output, *sub.value_info]:
            if not value.type.tensor_type.elem_type:
                missing.append(value.name)
        missing += [o for n in sub.node for o in n.output if o and o not in typed]
    return missing


CONTROL_CASES = [
    pytest.param(case, id=f"{primitive}::{case.name}")
    for primitive in ("cond", "while", "scan")
    for case in REGISTRY.get(primitive).testcases
]


@pytest.mark.parametrize("case", CONTROL_CASES)
def test_every_subgraph_value_has_type_info(case):
    model = wb.to_onnx(case.fn, case.inputs)
    assert list(_subgraphs(model.graph)), "a control-flow testcase produced no subgraph"
    assert _untyped_subgraph_values(model) == []


def _five_way(i, x):
    return lax.switch(i, [lambda v, k=k: v * k + k for k in range(5)], x)


def test_switch_every_index_and_clamping_in_one_model():
    model = wb.to_onnx(_five_way, [np.int32(0), ("B", 3)])
    assert_graph_quality(model)
    ifs = [n for n in _all_nodes(model.graph) if n.op_type == "If"]
    assert len(ifs) == 4, "five branches need four two-way If nodes"
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for index in (-5, -1, 0, 1, 2, 3, 4, 5, 100):
        (got,) = run_onnx(model, [np.asarray(index, np.int32), x])
        np.testing.assert_allclose(got, np.asarray(_five_way(np.int32(index), x)), err_msg=f"index {index}")


def test_two_branch_cond_is_one_if_on_the_bool_predicate():
    model = wb.to_onnx(lambda p, x: lax.cond(p > 0, jnp.sin, jnp.cos, x), [(), (3,)])
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("If") == 1
    assert "Cast" not in ops, "the predicate should be used as bool, not cast to int and back"


def test_two_conds_sharing_predicate_are_not_merged():
    def fn(p, x):
        return lax.cond(p > 0, jnp.sin, jnp.cos, x), lax.cond(p > 0, jnp.exp, jnp.tanh, x)

    model = wb.to_onnx(fn, [(), ("B",)])
    assert [n.op_type for n in model.graph.node].count("If") == 2
    x = np.linspace(-1, 1, 5).astype(np.float32)
    for p in (1.0, -1.0):
        got = run_onnx(model, [np.asarray(p, np.float32), x])
        for g, e in zip(got, fn(np.float32(p), x), strict=True):
            np.testing.assert_allclose(g, np.asarray(e), rtol=1e-6)


def _collatz_steps(n):
    def step(state):
        value, count = state
        return jnp.where(value % 2 == 0, value // 2, 3 * value + 1), count + 1

    return lax.while_loop(lambda s: s[0] > 1, step, (n, jnp.int32(0)))[1]


def test_while_trip_count_depends_on_data():
    model = wb.to_onnx(_collatz_steps, [np.int32(1)])
    assert_graph_quality(model)
    for n in (1, 2, 3, 6, 7, 27):
        (got,) = run_onnx(model, [np.asarray(n, np.int32)])
        assert int(got) == int(_collatz_steps(np.int32(n))), f"collatz({n})"


def test_fori_loop_with_traced_bounds_runs_zero_and_many_times():
    fn = lambda n, x: lax.fori_loop(0, n, lambda i, v: v + i.astype(jnp.float32), x)  # noqa: E731
    model = wb.to_onnx(fn, [np.int32(0), (2,)])
    x = np.ones(2, np.float32)
    for n in (-2, 0, 1, 10):
        (got,) = run_onnx(model, [np.asarray(n, np.int32), x])
        np.testing.assert_allclose(got, np.asarray(fn(np.int32(n), x)))


def _running_sum(xs, w):
    return lax.scan(lambda c, x: (c + x * w, c), jnp.zeros(xs.shape[1:], xs.dtype), xs)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_scan_over_symbolic_length_runs_at_several_lengths(reverse):
    def fn(xs, w):
        return lax.scan(lambda c, x: (c * 0.5 + x * w, c + x), jnp.zeros(xs.shape[1:], xs.dtype), xs, reverse=reverse)

    model = wb.to_onnx(fn, [("T", "B"), ("B",)])
    assert_graph_quality(model)
    assert [d.dim_param for d in model.graph.output[1].type.tensor_type.shape.dim] == ["T", "B"]
    rng = np.random.default_rng(0)
    for length in (1, 4, 33):
        xs = rng.standard_normal((length, 3)).astype(np.float32)
        w = rng.standard_normal(3).astype(np.float32)
        got = run_onnx(model, [xs, w])
        for g, e in zip(got, fn(xs, w), strict=True):
            np.testing.assert_allclose(g, np.asarray(e), rtol=1e-5, atol=1e-6, err_msg=f"T={length}")


def test_scan_with_cond_and_while_inside():
    def fn(xs):
        def step(carry, x):
            y = lax.cond(jnp.sum(x) > 0, lambda v: v * 2.0, lambda v: -v, x)
            z = lax.while_loop(lambda v: jnp.sum(jnp.abs(v)) < 10.0, lambda v: v * 2.0 + 0.01, y)
            return carry + z, z

        return lax.scan(step, jnp.zeros(xs.shape[1:]), xs)

    model = wb.to_onnx(fn, [("T", 4)])
    assert_graph_quality(model)
    assert _untyped_subgraph_values(model) == []
    ops = {n.op_type for n in _all_nodes(model.graph)}
    assert {"Scan", "If", "Loop"} <= ops
    xs = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    got = run_onnx(model, [xs])
    for g, e in zip(got, fn(xs), strict=True):
        np.testing.assert_allclose(g, np.asarray(e), rtol=1e-5, atol=1e-5)


def test_control_flow_inside_an_onnx_function():
    @wb.onnx_function
    def block(x, w):
        return lax.scan(lambda c, r: (c + r * w, jnp.tanh(c)), jnp.zeros(x.shape[1:]), x)[1]

    def fn(x, w):
        return block(block(x, w), w)

    model = wb.to_onnx(fn, [("T", 3), (3,)])
    assert_graph_quality(model)
    assert len(model.functions) == 1
    assert [n.op_type for n in model.functions[0].node].count("Scan") == 1
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    w = np.float32([0.5, -1.0, 2.0])
    (got,) = run_onnx(model, [x, w])
    np.testing.assert_allclose(got, np.asarray(fn(x, w)), rtol=1e-5, atol=1e-6)


def test_rewritten_values_in_a_loop_body_do_not_repeat_outer_names():
    # found by blackjax's NUTS step: the layout rewrite Mul(Reshape(MatMul), c) -> Reshape(Mul(MatMul, c))
    # creates an unnamed Mul output in the main graph and again in the while body; onnx-ir named both
    # "val_0" (a counter per graph) and the checker refused the Loop (not single static assignment)
    matrix = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)

    def scaled(w):
        return jnp.reshape(matrix @ w.reshape(3, 1), (4,)) * 0.5

    def body(carry):
        return carry[0] + scaled(carry[0])[:3], carry[1] + 1

    def fn(w):
        first = scaled(w)
        return first, lax.while_loop(lambda carry: carry[1] < 3, body, (first[:3], 0))[0]

    model = wb.to_onnx(fn, [(3,)])
    assert_graph_quality(model)
    defined = [name for node in _all_nodes(model.graph) for name in node.output if name]
    repeated = sorted({name for name in defined if defined.count(name) > 1})
    assert not repeated, f"values defined more than once across scopes: {repeated}"
    w = np.array([0.3, -1.2, 0.8], np.float32)
    for got, expected in zip(run_onnx(model, [w]), fn(w), strict=True):
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-5)
