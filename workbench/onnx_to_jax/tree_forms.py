"""How a tree ensemble is laid out for XLA, decided at generation time (numpy only).

The ``ai.onnx.ml`` tree emitters read their attributes into a :class:`NodeTable` (one row per node, leaves
pointing at themselves); :func:`plan_forest` splits its trees into groups, each evaluated by the form XLA's
CPU backend runs fastest for it (measured, docs/onnx_to_jax_corpus.md, "Tree ensembles as fast JAX"):

* every split is first written as ``value <= threshold`` (go left) or not (go right): BRANCH_LT and
  BRANCH_GTE take the next float below the threshold in the input's type (``v < t`` is ``v <= nextafter(t,
  -inf)`` for floats of that type), BRANCH_GT and BRANCH_GTE swap their successors and their missing-value
  direction. NaN's direction goes into the column read: ``columns[:, 2 f]`` is feature ``f`` with NaN above
  every threshold (right), ``columns[:, 2 f + 1]`` with NaN as ``-inf`` (left), so one gather and one compare
  decide every node, exactly as onnxruntime's ``v <= t || (nan && tracks_true)``. Values and thresholds
  compare as integer keys ordered as the floats (:func:`sortable_keys`): XLA's CPU code flushes subnormal
  floats to zero in a float comparison, onnxruntime does not;
* ``oblivious``: complete trees whose nodes at each level share a feature and threshold (CatBoost's symmetric
  trees): one column gather and one compare for all levels, the leaf is the bits' binary number;
* ``perfect``: trees up to :data:`PERFECT_MAX_DEPTH` levels, not too sparse (:data:`PERFECT_MAX_PADDING`),
  padded to complete binary trees (a leaf above the
  last level fills all its padded descendants), stored as heaps (node i's children 2i + 1 and 2i + 2) and
  walked with ``i = 2 i + 1 + right`` under ``lax.fori_loop``: per step a gather of the node's column code
  and threshold, none of successors. Unrolled, the steps ran 6-15x slower at 64 and 4,096 rows
  (with ``lax.optimization_barrier`` between them too), and no faster at one row, so every form loops;
* ``walk``: deeper or sparse trees, grouped by depth, walk a node table whose two successors are adjacent
  (``next = left[node] + right``), leaves looping onto themselves, for their group's depth only; a form's
  groups become one at their deepest depth when that adds little work (:func:`_merged`);
* ``general``: trees with BRANCH_EQ / BRANCH_NEQ / BRANCH_MEMBER nodes or NaN thresholds (and BRANCH_LT /
  BRANCH_GTE at ``-inf``, which have no ``<=`` form) keep the per-node comparison table.

Leaf values are one scalar per leaf when every tree writes a single target (gradient boosting: a
``[rows, trees]`` gather and a product with the trees' target one-hot matrix), else ``[leaves, targets]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# modes as the tree emitters number them (ml._MODES)
LEQ, LT, GTE, GT, EQ, NEQ, MEMBER, LEAF = range(8)
# deepest trees padded to complete binary trees (2**depth leaves each); deeper ones are walked
PERFECT_MAX_DEPTH = 10
# sparse trees walk instead: a padded heap of more than this many times the tree's splits (LightGBM's
# leaf-wise 15-leaf trees 5-10 levels deep: first jit 0.82-0.86 CPU s as heaps, 0.49-0.73 walked; at
# 4,096 rows 0.55 and 0.65x onnxruntime, at one row 1.81 and 1.68x)
PERFECT_MAX_PADDING = 8
# a form's groups of several depths become one loop at the deepest when that adds at most this share of steps
MERGE_EXTRA_WORK = 0.25


@dataclass
class NodeTable:
    """Nodes of an ensemble as flat arrays; a leaf's successors are itself; ``values`` [nodes, targets]."""

    feature: np.ndarray
    threshold: np.ndarray  # float64: the attribute's values, cast to the input's type when planned
    mode: np.ndarray
    true_next: np.ndarray
    false_next: np.ndarray
    nan_true: np.ndarray
    roots: list[int]
    values: np.ndarray
    members: list[list[float]] = field(default_factory=list)


@dataclass
class Group:
    """Trees evaluated one way. ``arrays`` by form (see :mod:`the module <workbench.onnx_to_jax.tree_forms>`):
    oblivious ``codes, thresholds`` [depth, trees]; perfect ``codes, thresholds`` [trees * (2**depth - 1)]
    (tree-major heaps); walk ``codes, thresholds, left`` [nodes] and ``roots``; general the ``roots`` of
    its trees in the node table. ``values``: [trees * 2**depth] / [nodes] (scalar leaves) or with a
    targets axis; ``onehot`` [trees, targets] for scalar leaves."""

    form: str
    depth: int
    trees: list[int]
    arrays: dict[str, object]
    values: np.ndarray
    onehot: np.ndarray | None


@dataclass
class _Split:
    code: int  # 2 * feature + (NaN goes left)
    threshold: float
    left: object  # _Split or int (the leaf's node index)
    right: object


def _normalized(table: NodeTable, node: int, dtype: np.dtype) -> _Split | int | None:
    """The subtree at ``node`` in ``<=`` form, or None when some node has none (see the module)."""
    mode = int(table.mode[node])
    if mode == LEAF:
        return node
    if mode not in (LEQ, LT, GTE, GT):
        return None
    threshold = dtype.type(table.threshold[node])
    if np.isnan(threshold) or (mode in (LT, GTE) and threshold == -np.inf):
        return None
    if mode in (LT, GTE):
        threshold = np.nextafter(threshold, dtype.type(-np.inf))
    swap = mode in (GTE, GT)
    nan_left = bool(table.nan_true[node]) != swap
    first, second = int(table.true_next[node]), int(table.false_next[node])
    left, right = (second, first) if swap else (first, second)
    left_tree, right_tree = _normalized(table, left, dtype), _normalized(table, right, dtype)
    if left_tree is None or right_tree is None:
        return None
    return _Split(2 * int(table.feature[node]) + int(nan_left), float(threshold), left_tree, right_tree)


def sortable_keys(values: np.ndarray) -> np.ndarray:
    """Integer keys ordered as the float32 / float64 ``values`` are (-0.0 and 0.0 one key; no NaN here), the
    thresholds' side of ``_float_keys`` in emitters/tree_walks.py."""
    wide = values.dtype == np.float64
    bits = values.view(np.int64 if wide else np.int32)
    magnitude = bits & (0x7FFFFFFFFFFFFFFF if wide else 0x7FFFFFFF)
    return np.where(bits < 0, -magnitude, magnitude)


def _splits(tree: _Split | int) -> int:
    return 0 if isinstance(tree, int) else 1 + _splits(tree.left) + _splits(tree.right)


def _depth(tree: _Split | int) -> int:
    return 0 if isinstance(tree, int) else 1 + max(_depth(tree.left), _depth(tree.right))


def _complete(tree: _Split | int, depth: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, bool]:
    """Per level codes and thresholds of ``tree`` padded to a complete tree of ``depth`` levels, its leaves'
    node indices [2**depth], and whether each level's real nodes share code and threshold (oblivious)."""
    codes = [np.zeros(2**level, np.int64) for level in range(depth)]
    thresholds = [np.zeros(2**level, np.float64) for level in range(depth)]
    real: list[set[tuple[int, float]]] = [set() for _ in range(depth)]
    leaves = np.zeros(2**depth, np.int64)
    todo = [(tree, 0, 0)]
    while todo:
        sub, level, position = todo.pop()
        if isinstance(sub, int):
            span = 2 ** (depth - level)
            leaves[position * span:(position + 1) * span] = sub
            continue
        codes[level][position], thresholds[level][position] = sub.code, sub.threshold
        real[level].add((sub.code, sub.threshold))
        todo += [(sub.left, level + 1, 2 * position), (sub.right, level + 1, 2 * position + 1)]
    oblivious = all(len(pairs) == 1 for pairs in real)
    if oblivious:  # padded nodes take their level's split (they decide nothing)
        for level, pairs in enumerate(real):
            [(code, threshold)] = pairs
            codes[level][:], thresholds[level][:] = code, threshold
    return codes, thresholds, leaves, oblivious


def _adjacent(trees: list[_Split | int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Node tables of ``trees`` with each split's successors adjacent (right = left + 1): codes, thresholds,
    left successors, the original node index of each leaf row (-1 for splits), and the roots. A leaf
    compares ``-inf`` or a value with ``+inf`` (column 1: NaN as ``-inf``) and goes left, onto itself."""
    codes: list[int] = []
    thresholds: list[float] = []
    left: list[int] = []
    origin: list[int] = []
    roots = []

    def new(sub) -> int:
        codes.append(1)
        thresholds.append(np.inf)
        left.append(len(left))
        origin.append(sub if isinstance(sub, int) else -1)
        return len(left) - 1

    for tree in trees:
        roots.append(new(tree))
        todo = [(tree, roots[-1])]
        while todo:
            sub, row = todo.pop()
            if isinstance(sub, int):
                continue
            codes[row], thresholds[row] = sub.code, sub.threshold
            left[row] = new(sub.left)
            new(sub.right)
            todo += [(sub.left, left[row]), (sub.right, left[row] + 1)]
    return (np.asarray(codes, np.int32), np.asarray(thresholds), np.asarray(left, np.int32),
            np.asarray(origin, np.int64), roots)


def _tree_targets(table: NodeTable) -> np.ndarray | None:
    """The one target each tree writes, or None when some tree writes several (or none)."""
    present = table.values != 0
    targets = []
    for root in table.roots:
        written: set[int] = set()
        todo, seen = [root], set()
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            if table.mode[node] == LEAF:
                written |= set(np.nonzero(present[node])[0].tolist())
            else:
                todo += [int(table.true_next[node]), int(table.false_next[node])]
        if len(written) > 1:
            return None
        targets.append(written.pop() if written else 0)
    return np.asarray(targets, np.int64)


def plan_forest(table: NodeTable, dtype: np.dtype) -> list[Group]:
    """The ensemble's trees in groups (see the module), thresholds in ``dtype`` (the input's float type)."""
    dtype = np.dtype(dtype)
    targets = _tree_targets(table)
    by_key: dict[tuple[str, int], list[int]] = {}
    normal: dict[int, _Split | int] = {}
    for t, root in enumerate(table.roots):
        tree = _normalized(table, root, dtype)
        if tree is None:
            by_key.setdefault(("general", _general_depth(table, root)), []).append(t)
            continue
        normal[t] = tree
        depth = _depth(tree)
        padded = 2**depth - 1 <= PERFECT_MAX_PADDING * _splits(tree)
        form = "perfect" if depth <= PERFECT_MAX_DEPTH and padded else "walk"
        if form == "perfect" and _complete(tree, depth)[3]:
            form = "oblivious"
        by_key.setdefault((form, depth), []).append(t)
    if any(form == "walk" for form, _ in by_key):  # one form, fewer loops: heaps walk too (see _merged)
        for form, depth in [key for key in by_key if key[0] == "perfect"]:
            by_key.setdefault(("walk", depth), []).extend(by_key.pop((form, depth)))
    by_key = _merged(by_key)
    general = [t for (form, _), trees in by_key.items() if form == "general" for t in trees]
    groups = [_group(table, form, depth, trees, normal, targets, dtype)
              for (form, depth), trees in sorted(by_key.items()) if form != "general"]
    if general:
        depth = max(depth for (form, depth) in by_key if form == "general")
        groups.append(Group("general", depth, general, {"roots": [table.roots[t] for t in general]},
                            table.values.astype(dtype), None))
    return groups


def _merged(by_key: dict[tuple[str, int], list[int]]) -> dict[tuple[str, int], list[int]]:
    """Perfect groups, and walk groups, gathered into as few loops as keep the padding small: from the
    deepest depth down, a group joins the current loop (at that loop's depth) while the loop's steps x trees
    stay within 1 + :data:`MERGE_EXTRA_WORK` times its trees' own depths. Every loop costs compile time,
    ~0.15-0.2 CPU s (LightGBM's binary model of 294 trees of depth 8 and 6 of depth 7: first jit 0.69-0.86
    CPU s in two loops, 0.46-0.49 in one; 0.38-0.44 before the planned forms). For the same reason, when
    some trees walk, the heap trees walk with them: the boosting corpus's LightGBM binary model (15-leaf
    trees, 5-12 levels) compiled in 0.75 CPU s as a heap loop and two walks, 0.49 as walks alone (0.43-0.51
    before gbm48), at 0.59x and 0.65x onnxruntime's CPU time at 4,096 rows, 1.69x and 1.63x at one row."""
    merged = {key: trees for key, trees in by_key.items() if key[0] not in ("perfect", "walk")}
    for form in ("perfect", "walk"):
        groups = sorted(((depth, trees) for (kind, depth), trees in by_key.items() if kind == form), reverse=True)
        loop_depth, loop_trees, work = 0, [], 0
        for depth, trees in groups:
            if loop_trees and loop_depth * (len(loop_trees) + len(trees)) > (1 + MERGE_EXTRA_WORK) * (
                    work + depth * len(trees)):
                merged[(form, loop_depth)] = sorted(loop_trees)
                loop_trees, work = [], 0
            if not loop_trees:
                loop_depth = depth
            loop_trees += trees
            work += depth * len(trees)
        if loop_trees:
            merged[(form, loop_depth)] = sorted(loop_trees)
    return merged


def _group(table: NodeTable, form: str, depth: int, trees: list[int], normal: dict, targets: np.ndarray | None,
           dtype: np.dtype) -> Group:
    """One group of trees in ``<=`` form: its arrays and leaf values."""
    if form == "walk":
        codes, thresholds, left, origin, roots = _adjacent([normal[t] for t in trees])
        arrays: dict[str, object] = {"codes": codes, "thresholds": sortable_keys(thresholds.astype(dtype)),
                                     "left": left,
                                     "roots": roots}
        leaves = np.where(origin >= 0, origin, 0)
        tree_of_row = np.cumsum(np.isin(np.arange(len(left)), roots)) - 1
        values = np.where((origin >= 0)[:, None], table.values[leaves], 0)
    else:
        parts = [_complete(normal[t], depth) for t in trees]
        leaves = np.concatenate([p[2] for p in parts])
        tree_of_row = np.repeat(np.arange(len(trees)), 2**depth)
        values = table.values[leaves]
        if form == "oblivious":
            arrays = {"codes": np.asarray([[p[0][level][0] for p in parts] for level in range(depth)],
                                          np.int32).reshape(depth, len(trees)),
                      "thresholds": sortable_keys(np.asarray([[p[1][level][0] for p in parts]
                                                              for level in range(depth)], dtype).reshape(depth, len(trees)))}
        else:
            # tree-major heaps: node i of a tree (level l, position p: i = 2**l - 1 + p) has children 2i+1, 2i+2
            arrays = {"codes": np.concatenate([np.concatenate(p[0]) for p in parts] or [np.zeros(0)]).astype(np.int32),
                      "thresholds": sortable_keys(np.concatenate([np.concatenate(p[1]) for p in parts]
                                                                 or [np.zeros(0)]).astype(dtype))}
    if targets is None:
        return Group(form, depth, trees, arrays, values.astype(dtype), None)
    written = targets[trees]
    onehot = np.zeros((len(trees), table.values.shape[1]), dtype)
    onehot[np.arange(len(trees)), written] = 1
    return Group(form, depth, trees, arrays, values[np.arange(len(values)), written[tree_of_row]].astype(dtype),
                 onehot)


def _general_depth(table: NodeTable, root: int) -> int:
    """Levels of splits under ``root`` in the node table (the general walk's step count)."""
    return split_levels(table.mode, table.true_next, table.false_next, root)


def split_levels(mode: Sequence[int], true_next: Sequence[int], false_next: Sequence[int], root: int) -> int:
    """Levels of splits under ``root`` of a tree given as per-node mode and successor columns (0: a leaf)."""
    deepest, todo, seen = 0, [(root, 0)], set()
    while todo:
        node, level = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        deepest = max(deepest, level)
        if mode[node] != LEAF:
            todo += [(int(true_next[node]), level + 1), (int(false_next[node]), level + 1)]
    return deepest
