"""The tree ensembles' planned forms (workbench/onnx_to_jax/tree_forms.py) against onnxruntime.

Every case is a TreeEnsembleRegressor / TreeEnsemble built with onnx.helper whose trees fall into one form
(oblivious, perfect heaps, deep walks, the general per-node walk), with every comparison mode, both
missing-value directions, and inputs that sit on the thresholds (ties), next to them (one float below and
above), at NaN and at +-inf. The generated code must give onnxruntime's outputs eagerly, under
``wb.jit_forward`` and under ``jax.vmap``; the source must hold the form the case is about, so a change of
plan that left a form untested would fail here.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import run_onnx

ML = "ai.onnx.ml"
FEATURES = 4
THRESHOLDS = np.asarray([-1.5, -0.25, 0.0, 0.5, 1.0, 2.75], np.float32)  # few values: ties everywhere
MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT")


class _Forest:
    """Trees in TreeEnsembleRegressor's ``nodes_*`` layout, built node by node."""

    def __init__(self, rng: np.random.Generator, modes: tuple[str, ...], targets: int = 1):
        self.rng, self.modes, self.targets = rng, modes, targets
        self.nodes: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "featureids", "values", "modes",
                                                      "truenodeids", "falsenodeids", "missing")}
        self.leaves: list[tuple[int, int, int, float]] = []

    def _add(self, tree: int, node: int, **fields) -> None:
        defaults = {"featureids": 0, "values": 0.0, "modes": "LEAF", "truenodeids": 0, "falsenodeids": 0,
                    "missing": 0}
        defaults.update(fields)
        self.nodes["treeids"].append(tree)
        self.nodes["nodeids"].append(node)
        for key, value in defaults.items():
            self.nodes[key].append(value)

    def tree(self, tree: int, shape: str, depth: int, split: tuple | None = None) -> None:
        """Add tree ``tree``: ``shape`` 'random' (leaves at random levels up to ``depth``), 'chain' (one
        split per level, an unbalanced tree ``depth`` deep) or 'oblivious' (complete, one split per level)."""
        counter = iter(range(10**6))
        levels = [(int(self.rng.integers(FEATURES)), float(self.rng.choice(THRESHOLDS)),
                   str(self.rng.choice(self.modes)), int(self.rng.integers(2))) for _ in range(depth)]

        def grow(level: int) -> int:
            node = next(counter)
            stop = level == depth or (shape == "random" and level > 0 and self.rng.random() < 0.25)
            if stop:
                self._add(tree, node)
                leaf_targets = [int(self.rng.integers(self.targets))] if self.targets == 1 else range(self.targets)
                for target in leaf_targets:
                    self.leaves.append((tree, node, target, float(self.rng.normal())))
                return node
            feature, threshold, mode, missing = levels[level] if shape == "oblivious" else (
                int(self.rng.integers(FEATURES)), float(self.rng.choice(THRESHOLDS)), str(self.rng.choice(self.modes)),
                int(self.rng.integers(2)))
            position = len(self.nodes["nodeids"])
            self._add(tree, node, featureids=feature, values=threshold, modes=mode, missing=missing)
            if shape == "chain":  # one side a leaf, the other goes on
                first, second = (grow(depth), grow(level + 1)) if self.rng.random() < 0.5 else (grow(level + 1),
                                                                                              grow(depth))
            else:
                first, second = grow(level + 1), grow(level + 1)
            self.nodes["truenodeids"][position], self.nodes["falsenodeids"][position] = first, second
            return node

        grow(0)

    def regressor(self, aggregate: str = "SUM", base: list[float] | None = None, input_type=TensorProto.FLOAT):
        node = helper.make_node(
            "TreeEnsembleRegressor", ["x"], ["y"], domain=ML, n_targets=self.targets, aggregate_function=aggregate,
            nodes_treeids=self.nodes["treeids"], nodes_nodeids=self.nodes["nodeids"],
            nodes_featureids=self.nodes["featureids"], nodes_values=self.nodes["values"],
            nodes_modes=self.nodes["modes"], nodes_truenodeids=self.nodes["truenodeids"],
            nodes_falsenodeids=self.nodes["falsenodeids"], nodes_missing_value_tracks_true=self.nodes["missing"],
            target_treeids=[t for t, _, _, _ in self.leaves], target_nodeids=[n for _, n, _, _ in self.leaves],
            target_ids=[k for _, _, k, _ in self.leaves], target_weights=[w for _, _, _, w in self.leaves],
            base_values=base or [0.0] * self.targets,
        )
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", input_type, ["N", FEATURES])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", self.targets])])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 3)],
                                 ir_version=8)


def _rows(n: int, seed: int, dtype=np.float32) -> np.ndarray:
    """Rows on the thresholds, one float below or above them, random, NaN and +-inf."""
    rng = np.random.default_rng(seed)
    on = rng.choice(THRESHOLDS, (n, FEATURES)).astype(dtype)
    beside = np.nextafter(on, np.where(rng.random(on.shape) < 0.5, -np.inf, np.inf).astype(dtype))
    pick = rng.integers(0, 6, on.shape)
    rows = np.select([pick == 0, pick == 1, pick == 2], [on, beside, rng.normal(size=on.shape).astype(dtype)], on)
    rows[pick == 3] = np.nan
    rows[(pick == 4) & (rng.random(on.shape) < 0.3)] = np.inf
    rows[(pick == 4) & (rng.random(on.shape) < 0.3)] = -np.inf
    return rows


def _check(model, rows: np.ndarray, forms: set[str]) -> None:
    """Eager, jitted and vmapped generated code against onnxruntime; the generated source has ``forms``."""
    source = wb.to_jax_source(model)
    for form in forms:
        assert f"'{form}'" in source, f"the plan has no {form!r} group: {sorted(forms)} expected"
    expected = run_onnx(model, [rows])[0]
    forward, params = wb.to_jax(model)
    atol = 1e-5 * max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(np.asarray(forward(params, rows)), expected, rtol=0, atol=atol, err_msg="eager")
    run = wb.jit_forward(forward, params)
    np.testing.assert_allclose(np.asarray(run(rows)), expected, rtol=0, atol=atol, err_msg="jit")
    batches = rows[: 4 * (len(rows) // 4)].reshape(4, -1, FEATURES)
    mapped = np.asarray(jax.vmap(lambda batch: forward(params, batch))(batches))
    for b, batch in enumerate(batches):
        np.testing.assert_allclose(mapped[b], run_onnx(model, [batch])[0], rtol=0, atol=atol, err_msg=f"vmap {b}")


@pytest.mark.parametrize("mode", MODES)
def test_perfect_heaps_every_mode_both_missing_directions(mode):
    """Random trees up to 5 levels (padded to complete heaps) in one comparison mode, NaN either way."""
    forest = _Forest(np.random.default_rng(MODES.index(mode)), (mode,))
    for tree in range(12):
        forest.tree(tree, "random", 1 + tree % 5)
    _check(forest.regressor(base=[0.5]), _rows(96, 1), {"perfect"})


def test_deep_unbalanced_trees_walk_with_mixed_modes():
    """Chains 12-16 levels deep (beyond the padded heaps' 10) with all four modes mixed, beside shallow ones
    (which then walk too: one form, fewer loops)."""
    forest = _Forest(np.random.default_rng(7), MODES)
    for tree in range(6):
        forest.tree(tree, "chain", 12 + tree % 5)
    for tree in range(6, 10):
        forest.tree(tree, "random", 3)
    _check(forest.regressor(), _rows(96, 2), {"walk"})


def test_oblivious_trees_and_several_targets_averaged():
    """CatBoost-like symmetric trees (one split per level), leaves writing two targets, AVERAGE."""
    forest = _Forest(np.random.default_rng(3), MODES, targets=2)
    for tree in range(8):
        forest.tree(tree, "oblivious", 1 + tree % 6)
    _check(forest.regressor(aggregate="AVERAGE", base=[1.0, -2.0]), _rows(96, 3), {"oblivious"})


@pytest.mark.parametrize("mode", ["BRANCH_EQ", "BRANCH_NEQ"])
def test_equality_splits_keep_the_general_walk_beside_planned_trees(mode):
    """Trees with BRANCH_EQ / BRANCH_NEQ nodes (no ``<=`` form) in the general walk, the others planned."""
    forest = _Forest(np.random.default_rng(11), (mode, "BRANCH_LEQ"))
    for tree in range(6):
        forest.tree(tree, "random", 4)
    plain = _Forest(np.random.default_rng(12), ("BRANCH_LT",))
    for tree in range(4):
        plain.tree(tree, "random", 4)
    for key, values in plain.nodes.items():  # the LT trees after the mixed ones, ids shifted
        forest.nodes[key] += [v + 6 for v in values] if key == "treeids" else values
    forest.leaves += [(t + 6, n, k, w) for t, n, k, w in plain.leaves]
    _check(forest.regressor(), _rows(96, 4), {"general", "perfect"})


def test_double_input_compares_in_double_precision():
    """A float64 input with double thresholds (``nodes_values_as_tensor``): values one double ulp around a
    threshold that is not a float32 go the way double comparisons send them, as in onnxruntime."""
    forest = _Forest(np.random.default_rng(5), MODES)
    for tree in range(6):
        forest.tree(tree, "random", 4)
    model = forest.regressor(input_type=TensorProto.DOUBLE)
    [node] = model.graph.node
    thresholds = np.asarray(forest.nodes["values"], np.float64) + 1e-9  # between float32 values
    del node.attribute[[a.name for a in node.attribute].index("nodes_values")]
    node.attribute.append(helper.make_attribute("nodes_values_as_tensor", numpy_helper.from_array(thresholds)))
    rng = np.random.default_rng(6)
    rows = rng.choice(thresholds, (64, FEATURES))
    rows = np.nextafter(rows, np.where(rng.random(rows.shape) < 0.5, -np.inf, np.inf))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    expected = run_onnx(model, [rows])[0]
    forward, params = wb.to_jax(model)
    np.testing.assert_allclose(np.asarray(forward(params, rows)), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(wb.jit_forward(forward, params)(rows)), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("modes, form", [(MODES, "perfect"), (("BRANCH_EQ", "BRANCH_NEQ", "BRANCH_LT"), "general")])
def test_subnormal_values_and_thresholds_compare_exactly(modes, form):
    """XLA's CPU code flushes subnormal floats to zero in float comparisons; onnxruntime does not. Values and
    thresholds of +-1e-45 and +-0.0 against each other, in every mode, planned and in the general walk."""
    tiny = np.float32(1.4e-45)
    forest = _Forest(np.random.default_rng(13), modes)
    for tree in range(10):
        forest.tree(tree, "random", 3)
    forest.nodes["values"] = [float(np.random.default_rng(tree).choice([tiny, -tiny, 0.0, -0.0]))
                              for tree in range(len(forest.nodes["values"]))]
    rows = np.random.default_rng(14).choice(np.asarray([tiny, -tiny, 0.0, -0.0, np.nan], np.float32), (64, FEATURES))
    _check(forest.regressor(), rows, {form})
