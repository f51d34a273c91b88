"""Runtime helpers of the tree ensembles' fast forms (planned by :mod:`workbench.onnx_to_jax.tree_forms`).

Each form returns its group's contribution to the scores, [rows, targets]; the emitters in ``ml.py`` add the
groups, the base values and the post transform. Depths are Python ints, so the level loops unroll at trace
time (every level of a perfect tree has its own table shape).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from workbench.onnx_to_jax.registry import runtime_helper


@runtime_helper
def _tree_leaves(x, feature, threshold, mode, true_next, false_next, nan_true, members, roots, depth):
    """The leaf each sample reaches in each tree: [samples, trees] node indices (the general walk: a per-node
    comparison mode, ``depth`` steps under ``lax.fori_loop``)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    x = jnp.reshape(x, (x.shape[0], -1)) if x.ndim != 1 else jnp.reshape(x, (1, -1))
    node = jnp.broadcast_to(jnp.asarray(roots), (x.shape[0], len(roots)))

    def step(_, node):
        value = jnp.take_along_axis(x, jnp.asarray(feature)[node], axis=1)
        split = jnp.asarray(threshold, x.dtype)[node]
        kind = jnp.asarray(mode)[node]
        member = jnp.any(value[..., None] == jnp.asarray(members, x.dtype)[node], axis=-1)
        go_true = jnp.select(
            [kind == 0, kind == 1, kind == 2, kind == 3, kind == 4, kind == 5, kind == 6],
            [value <= split, value < split, value >= split, value > split, value == split, value != split, member],
            False,
        )
        go_true = go_true | (jnp.isnan(value) & jnp.asarray(nan_true)[node])
        following = jnp.where(go_true, jnp.asarray(true_next)[node], jnp.asarray(false_next)[node])
        return jnp.where(kind == 7, node, following)

    return lax.fori_loop(0, depth, step, node)


@runtime_helper
def _forest_scores(x, dtype, groups):
    """Sum over an ensemble's tree groups of their leaf values, [rows, targets]: each group is ``(form,
    *arrays)`` as planned (tree_forms.py); the general group walks the node table with :func:`_tree_leaves`."""
    rows = _tree_rows(x, dtype)
    columns = _split_columns(rows)
    total = None
    for form, *arrays in groups:
        if form == "oblivious":
            part = _oblivious_sum(columns, *arrays)
        elif form == "perfect":
            part = _perfect_sum(columns, *arrays)
        elif form == "walk":
            part = _walk_sum(columns, *arrays)
        else:
            *tables, values = arrays
            part = _leaf_sum(values, _tree_leaves(rows, *tables), None)
        total = part if total is None else total + part
    return total


@runtime_helper
def _tree_rows(x, dtype):
    """The input as [rows, features] of the tables' float type (a 1-D input is one row)."""
    x = jnp.asarray(x)
    x = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(dtype)
    return jnp.reshape(x, (x.shape[0], -1)) if x.ndim != 1 else jnp.reshape(x, (1, -1))


@runtime_helper
def _split_columns(rows):
    """[rows, 2 features]: column 2f is feature f, column 2f + 1 the same with NaN as -inf, so that a node's
    column code says where NaN goes (as is: ``NaN <= t`` is false, right; as -inf: left)."""
    low = jnp.where(jnp.isnan(rows), -jnp.inf, rows)
    return jnp.stack([rows, low], axis=-1).reshape(rows.shape[0], -1)


@runtime_helper
def _leaf_sum(values, leaves, onehot):
    """Sum over trees of the leaf values: ``values`` [leaf rows] or [leaf rows, targets] at ``leaves`` [rows,
    trees]; scalar leaves go to their tree's target through ``onehot`` [trees, targets]. A matrix product,
    not ``jnp.sum``: XLA's CPU reduction costs ~20 ns an element here, its dot a fraction of that."""
    picked = jnp.asarray(values)[leaves]
    if onehot is None:
        return jnp.einsum("rtk,t->rk", picked, jnp.ones(picked.shape[1], picked.dtype))
    return jnp.matmul(picked, jnp.asarray(onehot, picked.dtype))


@runtime_helper
def _oblivious_sum(columns, codes, thresholds, values, onehot):
    """Trees whose levels share one split each: codes and thresholds [depth, trees]; the leaf's position is
    the binary number of the levels' right turns (first level the highest bit)."""
    depth, trees = codes.shape
    picked = jnp.take(columns, jnp.reshape(codes, (-1,)), axis=1).reshape(columns.shape[0], depth, trees)
    right = jnp.logical_not(picked <= jnp.asarray(thresholds, columns.dtype)).astype(jnp.float32)
    weights = jnp.asarray([2 ** (depth - 1 - level) for level in range(depth)], jnp.float32)
    position = jnp.einsum("rdt,d->rt", right, weights).astype(jnp.int32)  # a float dot: exact below 2**24
    leaves = jnp.arange(trees, dtype=jnp.int32) * 2**depth + position
    return _leaf_sum(values, leaves, onehot)


@runtime_helper
def _perfect_sum(columns, codes, thresholds, depth, values, onehot):
    """Complete binary trees of ``depth`` levels as heaps, codes and thresholds [trees * (2**depth - 1)]
    (tree-major; node i's children are 2i + 1 and 2i + 2): ``depth`` steps of ``i = 2i + 1 + right``."""
    trees = values.shape[0] // 2**depth
    codes, thresholds = jnp.asarray(codes), jnp.asarray(thresholds, columns.dtype)
    first = jnp.arange(trees, dtype=jnp.int32)
    heap = 2**depth - 1

    def step(_, i):
        node = first * heap + i
        value = jnp.take_along_axis(columns, codes[node], axis=1)
        return 2 * i + 1 + jnp.logical_not(value <= thresholds[node]).astype(jnp.int32)

    i = lax.fori_loop(0, depth, step, jnp.zeros((columns.shape[0], trees), jnp.int32))
    return _leaf_sum(values, first * 2**depth + i - heap, onehot)


@runtime_helper
def _walk_sum(columns, codes, thresholds, left, roots, depth, values, onehot):
    """Deep trees: a node table whose successors are adjacent (``left[node] + right``), ``depth`` steps from
    the roots; leaves go left onto themselves."""
    codes, thresholds, left = jnp.asarray(codes), jnp.asarray(thresholds, columns.dtype), jnp.asarray(left)

    def step(_, node):
        value = jnp.take_along_axis(columns, codes[node], axis=1)
        return left[node] + jnp.logical_not(value <= thresholds[node]).astype(jnp.int32)

    node = jnp.broadcast_to(jnp.asarray(roots, jnp.int32), (columns.shape[0], len(roots)))
    return _leaf_sum(values, lax.fori_loop(0, depth, step, node), onehot)
