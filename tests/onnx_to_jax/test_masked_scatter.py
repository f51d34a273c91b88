"""jax2onnx's bounds-checked scatter: NonZero + Gather pick the rows in range, ScatterND writes them.

workbench/onnx_to_jax/masked_scatter.py writes it as one scatter that drops the other rows.

The models are built with onnx.helper in the form jax2onnx 0.17.1 writes for ``x.at[i].set/add/mul/min/max``
(CI has no jax2onnx; tests/benchmarks/jax2onnx_catalogue.py ``--tools to_jax`` measures its own files). The
generated code must give onnxruntime's outputs eagerly and under ``wb.jit_forward`` with indices below zero,
past the end and repeated, and the module must name no value-dependent node.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import assert_generated_matches_onnxruntime, run_onnx
from workbench.onnx_to_jax.api import generate_module

REDUCTIONS = ["none", "add", "mul", "min", "max"]


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.int64), name)


def _pick_and_scatter(keep: str, reduction: str, x: str = "x", y: str = "y") -> list[onnx.NodeProto]:
    """NonZero(keep) -> Transpose -> Squeeze -> Gather the indices' and the updates' rows -> ScatterND(x) -> y."""
    return [
        helper.make_node("NonZero", [keep], ["valid_idx"]),
        helper.make_node("Transpose", ["valid_idx"], ["valid_idx_t"], perm=[1, 0]),
        helper.make_node("Squeeze", ["valid_idx_t", "axes1"], ["rows"]),
        helper.make_node("Gather", ["indices_2d", "rows"], ["indices_valid"], axis=0),
        helper.make_node("Gather", ["updates", "rows"], ["updates_valid"], axis=0),
        helper.make_node("ScatterND", [x, "indices_valid", "updates_valid"], [y], reduction=reduction),
    ]


def _bounds_checked_scatter(reduction: str, x_shape: tuple[int, ...], rows: int, depth: int) -> onnx.ModelProto:
    """``x.at[i].<reduction>(u, mode="drop")`` as jax2onnx exports it: for each indexed axis, the column
    ``i[:, j]`` checked against ``0 <= i <= dim - 1`` (the dim read from Shape(x)), the checks And-ed, then
    the rows that pass picked and scattered."""
    nodes = [helper.make_node("Cast", ["i"], ["indices_2d"], to=TensorProto.INT64),
             helper.make_node("Shape", ["x"], ["x_shape"])]
    inits = [_const("axes1", [1]), _const("zero", 0), _const("one", 1), _const("axes0", [0])]
    checks = []
    for j in range(depth):
        inits.append(_const(f"col_{j}", [j]))
        nodes += [
            helper.make_node("Gather", ["indices_2d", f"col_{j}"], [f"base_{j}"], axis=1),
            helper.make_node("GreaterOrEqual", [f"base_{j}", "zero"], [f"ge_{j}"]),
            helper.make_node("Gather", ["x_shape", f"col_{j}"], [f"dim_{j}"], axis=0),
            helper.make_node("Squeeze", [f"dim_{j}", "axes0"], [f"dim_scalar_{j}"]),
            helper.make_node("Sub", [f"dim_scalar_{j}", "one"], [f"limit_{j}"]),
            helper.make_node("LessOrEqual", [f"base_{j}", f"limit_{j}"], [f"le_{j}"]),
            helper.make_node("And", [f"ge_{j}", f"le_{j}"], [f"valid_axis_{j}"]),
        ]
        checks.append(f"valid_axis_{j}")
    for j in range(1, depth):
        nodes.append(helper.make_node("And", [checks[j - 1], checks[j]], [f"valid_{j}"]))
        checks[j] = f"valid_{j}"
    nodes.append(helper.make_node("Squeeze", [checks[-1], "axes1"], ["keep"]))
    nodes += _pick_and_scatter("keep", reduction)
    updates_shape = [rows, *x_shape[depth:]]
    graph = helper.make_graph(
        nodes, "bounds_checked_scatter",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape)),
         helper.make_tensor_value_info("i", TensorProto.INT32, [rows, depth]),
         helper.make_tensor_value_info("updates", TensorProto.FLOAT, updates_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x_shape))], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    return model


def _inputs(x_shape, indices, rows, depth, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    updates = rng.standard_normal((rows, *x_shape[depth:])).astype(np.float32)
    return [x, np.asarray(indices, np.int32), updates]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_rows_out_of_range_are_dropped_under_jit(reduction):
    """1-D operand, rows below zero and past the end (dropped by the model's own check) and, except for
    ``none`` (where ONNX leaves their order undefined), a repeated index."""
    indices = [[1], [-1], [7], [3], [5]] if reduction == "none" else [[1], [-1], [7], [3], [1], [5], [3]]
    model = _bounds_checked_scatter(reduction, (6,), len(indices), 1)
    assert generate_module(model).value_dependent_nodes == ()
    assert_generated_matches_onnxruntime(model, _inputs((6,), indices, len(indices), 1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_two_indexed_axes_with_a_window_of_rows(reduction):
    """Indices of depth 2 into a 3-D operand (each update a row of the last axis), one axis out of range
    in some rows, every row dropped (an empty selection) in a second call."""
    indices = [[0, 2], [3, 0], [1, -2], [2, 1]] if reduction == "none" else [[0, 2], [3, 0], [1, -2], [2, 1], [0, 2]]
    model = _bounds_checked_scatter(reduction, (3, 4, 5), len(indices), 2)
    assert_generated_matches_onnxruntime(model, _inputs((3, 4, 5), indices, len(indices), 2, seed=1))
    outside = [[5, 0]] * len(indices)
    assert_generated_matches_onnxruntime(model, _inputs((3, 4, 5), outside, len(indices), 2, seed=2))


@pytest.mark.parametrize("reduction", ["none", "add"])
@pytest.mark.parametrize("mask_rows", [5, 6])
def test_mask_from_an_input_keeps_negative_indices_in_range(reduction, mask_rows):
    """The mask a graph input: kept rows with negative indices count from the end (as ONNX's ScatterND
    does), rows left out are dropped whatever they hold; a mask longer than the indices' rows (its extra
    rows left out) is as valid for ONNX's Gather."""
    nodes = [helper.make_node("Identity", ["i"], ["indices_2d"]), *_pick_and_scatter("keep", reduction)]
    graph = helper.make_graph(
        nodes, "masked_scatter",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [5, 1]),
         helper.make_tensor_value_info("updates", TensorProto.FLOAT, [5, 3]),
         helper.make_tensor_value_info("keep", TensorProto.BOOL, [mask_rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])], initializer=[_const("axes1", [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(3)
    x, updates = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    indices = np.array([[-1], [9], [0], [-4], [2]], np.int64)
    keep = np.array([True, False, True, True, False, False][:mask_rows])
    assert generate_module(model).value_dependent_nodes == ()
    assert_generated_matches_onnxruntime(model, [x, indices, updates, keep])


def test_known_indices_fold_to_a_plain_scatter():
    """Indices known at generation time: the check, NonZero and Gathers fold to constants as before (no
    masked form in the code)."""
    model = _bounds_checked_scatter("add", (6,), 4, 1)
    graph = model.graph
    graph.input.remove(next(i for i in graph.input if i.name == "i"))
    graph.initializer.append(numpy_helper.from_array(np.array([[1], [-1], [9], [4]], np.int32), "i"))
    source = generate_module(model).source
    assert "_masked_scatter_nd" not in source and "_scatter_nd(" in source
    rng = np.random.default_rng(4)
    assert_generated_matches_onnxruntime(model, [rng.standard_normal(6).astype(np.float32),
                                                 rng.standard_normal(4).astype(np.float32)])


def _window_scatter(reduction: str, rows: int, other_offsets: bool = False) -> onnx.ModelProto:
    """jax2onnx's window form (row_scatter.py) on ``x`` [2, 8]: each index row a start column ``s`` checked as
    ``0 <= s <= 8 - 3``, its update a [2, 3] window written at ``x[:, s:s + 3]``; the kept rows' count (Shape of
    the rows) shapes the zero column, the Reshape and Expand of the base indices and the flat updates.
    ``other_offsets``: the offsets added to the indices a graph input [rows, 6, 2] (different per row)."""
    window = 6
    offsets = np.array([[[a, b] for a in range(2) for b in range(3)]], np.int64)  # [1, 6, 2]
    nodes = [
        helper.make_node("Gather", ["i", "col0"], ["start"], axis=1),
        helper.make_node("GreaterOrEqual", ["start", "zero"], ["ge"]),
        helper.make_node("LessOrEqual", ["start", "last_start"], ["le"]),
        helper.make_node("And", ["ge", "le"], ["valid"]),
        helper.make_node("Squeeze", ["valid", "axes1"], ["keep"]),
        helper.make_node("NonZero", ["keep"], ["valid_idx"]),
        helper.make_node("Transpose", ["valid_idx"], ["valid_idx_t"], perm=[1, 0]),
        helper.make_node("Squeeze", ["valid_idx_t", "axes1"], ["rows"]),
        helper.make_node("Shape", ["rows"], ["count"]),
        helper.make_node("Gather", ["i", "rows"], ["indices_valid"], axis=0),
        helper.make_node("Gather", ["updates", "rows"], ["updates_valid"], axis=0),
        helper.make_node("Mul", ["count", "window"], ["total"]),
        helper.make_node("Concat", ["count", "one_vec"], ["zero_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["zero_shape"], ["zero_column"],
                         value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Gather", ["indices_valid", "col0"], ["base_col"], axis=1),
        helper.make_node("Concat", ["zero_column", "base_col"], ["base"], axis=1),
        helper.make_node("Concat", ["count", "one_two"], ["base_shape"], axis=0),
        helper.make_node("Reshape", ["base", "base_shape"], ["base_3d"]),
        helper.make_node("Concat", ["count", "window_two"], ["expand_shape"], axis=0),
        helper.make_node("Expand", ["base_3d", "expand_shape"], ["base_expanded"]),
        helper.make_node("Add", ["base_expanded", "offsets"], ["indices_3d"]),
        helper.make_node("Concat", ["total", "two"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["indices_3d", "flat_shape"], ["indices_flat"]),
        helper.make_node("Reshape", ["updates_valid", "total"], ["updates_flat"]),
        helper.make_node("ScatterND", ["x", "indices_flat", "updates_flat"], ["y"], reduction=reduction),
    ]
    inits = [_const("col0", [0]), _const("zero", 0), _const("last_start", 8 - 3), _const("axes1", [1]),
             _const("window", [window]), _const("one_vec", [1]), _const("one_two", [1, 2]),
             _const("window_two", [window, 2]), _const("two", [2])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8]),
              helper.make_tensor_value_info("i", TensorProto.INT64, [rows, 1]),
              helper.make_tensor_value_info("updates", TensorProto.FLOAT, [rows, 2, 3])]
    if other_offsets:
        inputs.append(helper.make_tensor_value_info("offsets", TensorProto.INT64, [rows, window, 2]))
    else:
        inits.append(numpy_helper.from_array(offsets, "offsets"))
    graph = helper.make_graph(nodes, "window_scatter", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_window_scatter_runs_every_row_and_drops_the_rows_left_out(reduction):
    """The window form jits (no value-dependent node) and matches onnxruntime with starts below zero, past
    the last window and, except for ``none``, overlapping windows; then with every row in range and none."""
    starts = [[4], [-1], [0], [6]] if reduction == "none" else [[4], [-1], [0], [6], [2], [4]]
    model = _window_scatter(reduction, len(starts))
    assert generate_module(model).value_dependent_nodes == ()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    updates = rng.standard_normal((len(starts), 2, 3)).astype(np.float32)
    assert_generated_matches_onnxruntime(model, [x, np.array(starts, np.int64), updates])
    inside = [[5], [0], [2], [3], [1], [4]][:len(starts)] if reduction != "none" else [[5], [0], [2], [3]]
    assert_generated_matches_onnxruntime(model, [x, np.array(inside, np.int64), updates])
    assert_generated_matches_onnxruntime(model, [x, np.full((len(starts), 1), 9, np.int64), updates])


def test_window_scatter_whose_rows_would_mix_is_generated_as_before():
    """Offsets that differ per row (a graph input) make the indices of a kept row depend on another row's
    offsets once every row is computed: the generator refuses the static form for that chain and the module
    runs its NonZero between jitted parts, matching onnxruntime (every row kept, as its graph needs)."""
    model = _window_scatter("add", 3, other_offsets=True)
    assert generate_module(model).value_dependent_nodes != ()
    rng = np.random.default_rng(6)
    offsets = rng.integers(0, 2, (3, 6, 2)).astype(np.int64)
    x, updates = rng.standard_normal((2, 8)).astype(np.float32), rng.standard_normal((3, 2, 3)).astype(np.float32)
    inputs = [x, np.array([[1], [3], [0]], np.int64), updates, offsets]
    forward, params = wb.to_jax(model)
    np.testing.assert_allclose(np.asarray(forward(params, *inputs)), run_onnx(model, inputs)[0], rtol=1e-6, atol=1e-6)


def test_masked_scatter_inside_an_if_branch_jits():
    """The chain in a branch of an If (jax2onnx's ``lax.cond`` around a scatter): the branch has no
    value-dependent node, so the If and the module jit."""
    model = _bounds_checked_scatter("add", (6,), 4, 1)
    branch = helper.make_graph(list(model.graph.node), "then", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])],
                               initializer=list(model.graph.initializer))
    otherwise = helper.make_graph([helper.make_node("Identity", ["x"], ["x_out"])], "else", [],
                                  [helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [6])])
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["out"], then_branch=branch, else_branch=otherwise)], "cond",
        [*model.graph.input, helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [6])])
    cond = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    onnx.checker.check_model(cond, full_check=True)
    assert generate_module(cond).value_dependent_nodes == ()
    for flag in (True, False):
        inputs = _inputs((6,), [[1], [-1], [7], [1]], 4, 1, seed=7)
        assert_generated_matches_onnxruntime(cond, [*inputs, np.array(flag)])


def test_masked_scatter_inside_a_loop_body_jits():
    """``lax.fori_loop(0, 8, lambda i, v: v.at[i].set(i), v)`` as jax2onnx writes it: the bounds-checked scatter in
    the Loop's body (the catalogue's fori_loop_vector); steps 6 and 7 index past the end and are dropped."""
    axes = [_const("axes1", [1]), _const("zero", 0), _const("limit", 5), _const("rc", [1, 1]), _const("one", [1])]
    body = helper.make_graph(
        [helper.make_node("Reshape", ["step", "rc"], ["indices_2d"]),
         helper.make_node("Cast", ["step"], ["step_f"], to=TensorProto.FLOAT),
         helper.make_node("Reshape", ["step_f", "one"], ["updates"]),
         helper.make_node("Squeeze", ["indices_2d", "axes1"], ["column"]),
         helper.make_node("GreaterOrEqual", ["column", "zero"], ["ge"]),
         helper.make_node("LessOrEqual", ["column", "limit"], ["le"]),
         helper.make_node("And", ["ge", "le"], ["keep"]),
         *_pick_and_scatter("keep", "none", x="v", y="v_out"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("step", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [6])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [6])], initializer=axes)
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body)], "fori_loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])], initializer=[_const("trips", 8)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    assert generate_module(model).value_dependent_nodes == ()
    assert_generated_matches_onnxruntime(model, [np.full(6, -1.0, np.float32)])
