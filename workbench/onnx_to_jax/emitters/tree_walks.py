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
def _float_keys(x):
    """Integer keys ordered as the floats ``x`` are (float32 -> int32, float64 -> int64; -0.0 and 0.0 one key,
    NaN above +inf). Comparisons go through them because XLA's CPU code flushes subnormal floats to zero in a
    float comparison (1e-45 <= 0 came out true) and onnxruntime compares them exactly."""
    wide = x.dtype == jnp.float64
    bits = lax.bitcast_convert_type(x, jnp.int64 if wide else jnp.int32)
    magnitude = bits & (0x7FFFFFFFFFFFFFFF if wide else 0x7FFFFFFF)
    return jnp.where(bits < 0, -magnitude, magnitude)


@runtime_helper
def _tree_leaves(x, feature, threshold, mode, true_next, false_next, nan_true, members, roots, depth):
    """The leaf each sample reaches in each tree: [samples, trees] node indices (the general walk: a per-node
    comparison mode, ``depth`` steps under ``lax.fori_loop``). Values compare as :func:`_float_keys`; a NaN
    value, or a NaN threshold of a comparison, makes it false but BRANCH_NEQ's, as for floats."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    x = jnp.reshape(x, (x.shape[0], -1)) if x.ndim != 1 else jnp.reshape(x, (1, -1))
    keys, missing = _float_keys(x), jnp.isnan(x)
    splits = jnp.asarray(threshold, x.dtype)
    split_keys, split_nan = _float_keys(splits), jnp.isnan(splits)
    member_keys = _float_keys(jnp.asarray(members, x.dtype))  # NaN padding: above every value's key
    node = jnp.broadcast_to(jnp.asarray(roots), (x.shape[0], len(roots)))

    def step(_, node):
        column = jnp.asarray(feature)[node]
        value, nan = jnp.take_along_axis(keys, column, axis=1), jnp.take_along_axis(missing, column, axis=1)
        split = split_keys[node]
        kind = jnp.asarray(mode)[node]
        member = jnp.any(value[..., None] == member_keys[node], axis=-1)
        go_true = jnp.select(
            [kind == 0, kind == 1, kind == 2, kind == 3, kind == 4, kind == 5, kind == 6],
            [value <= split, value < split, value >= split, value > split, value == split, value != split, member],
            False,
        )
        go_true = jnp.where(nan | (split_nan[node] & (kind != 6)), kind == 5, go_true)  # a member's split is unused
        go_true = go_true | (nan & jnp.asarray(nan_true)[node])
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
    """The input as [rows, features] of the tables' float type (integers read as floats; a 1-D input is one
    row)."""
    x = jnp.asarray(x).astype(dtype)
    return jnp.reshape(x, (x.shape[0], -1)) if x.ndim != 1 else jnp.reshape(x, (1, -1))


@runtime_helper
def _split_columns(rows):
    """[rows, 2 features] of :func:`_float_keys`: column 2f is feature f with NaN above every threshold (goes
    right), column 2f + 1 the same with NaN as -inf (goes left), so that a node's column code says where NaN
    goes."""
    key = _float_keys(rows)
    nan = jnp.isnan(rows)
    right = jnp.where(nan, jnp.iinfo(key.dtype).max, key)
    left = jnp.where(nan, _float_keys(jnp.asarray(-jnp.inf, rows.dtype)), key)
    return jnp.stack([right, left], axis=-1).reshape(rows.shape[0], -1)


@runtime_helper
def _node_gather(table, *index):
    """``table[index]`` for indices in bounds by construction (the plan's tables): no clamping and no wrapping
    of negative indices, which made the walks' gathers 20-25% slower at 4,096 rows."""
    return table.at[index].get(mode="promise_in_bounds", wrap_negative_indices=False)


@runtime_helper
def _leaf_sum(values, leaves, onehot):
    """Sum over trees of the leaf values: ``values`` [leaf rows] or [leaf rows, targets] at ``leaves`` [rows,
    trees]; scalar leaves go to their tree's target through ``onehot`` [trees, targets]. A matrix product,
    not ``jnp.sum``: XLA's CPU reduction costs ~20 ns an element here, its dot a fraction of that."""
    picked = _node_gather(jnp.asarray(values), leaves)
    if onehot is None:
        return jnp.einsum("rtk,t->rk", picked, jnp.ones(picked.shape[1], picked.dtype))
    return jnp.matmul(picked, jnp.asarray(onehot, picked.dtype))


@runtime_helper
def _oblivious_sum(columns, codes, thresholds, values, onehot):
    """Trees whose levels share one split each: codes and thresholds [depth, trees]; the leaf's position is
    the binary number of the levels' right turns (first level the highest bit)."""
    depth, trees = codes.shape
    picked = _node_gather(columns, slice(None), jnp.reshape(jnp.asarray(codes), (-1,))).reshape(columns.shape[0], depth,
                                                                                           trees)
    right = jnp.logical_not(picked <= jnp.asarray(thresholds)).astype(jnp.float32)
    weights = jnp.asarray([2 ** (depth - 1 - level) for level in range(depth)], jnp.float32)
    position = jnp.einsum("rdt,d->rt", right, weights).astype(jnp.int32)  # a float dot: exact below 2**24
    leaves = jnp.arange(trees, dtype=jnp.int32) * 2**depth + position
    return _leaf_sum(values, leaves, onehot)


@runtime_helper
def _perfect_sum(columns, codes, thresholds, depth, values, onehot):
    """Complete binary trees of ``depth`` levels as heaps, codes and thresholds [trees * (2**depth - 1)]
    (tree-major; node i's children are 2i + 1 and 2i + 2): ``depth`` steps of ``i = 2i + 1 + right``."""
    trees = values.shape[0] // 2**depth
    codes, thresholds = jnp.asarray(codes), jnp.asarray(thresholds)
    first = jnp.arange(trees, dtype=jnp.int32)
    heap = 2**depth - 1

    row = jnp.arange(columns.shape[0], dtype=jnp.int32)[:, None]

    def step(_, i):
        node = first * heap + i
        value = _node_gather(columns, row, _node_gather(codes, node))
        return 2 * i + 1 + jnp.logical_not(value <= _node_gather(thresholds, node)).astype(jnp.int32)

    i = lax.fori_loop(0, depth, step, jnp.zeros((columns.shape[0], trees), jnp.int32))
    return _leaf_sum(values, first * 2**depth + i - heap, onehot)


@runtime_helper
def _walk_sum(columns, codes, thresholds, left, roots, depth, values, onehot):
    """Deep trees: a node table whose successors are adjacent (``left[node] + right``), ``depth`` steps from
    the roots; leaves go left onto themselves."""
    codes, thresholds, left = jnp.asarray(codes), jnp.asarray(thresholds), jnp.asarray(left)

    row = jnp.arange(columns.shape[0], dtype=jnp.int32)[:, None]

    def step(_, node):
        value = _node_gather(columns, row, _node_gather(codes, node))
        return _node_gather(left, node) + jnp.logical_not(
            value <= _node_gather(thresholds, node)).astype(jnp.int32)

    node = jnp.broadcast_to(jnp.asarray(roots, jnp.int32), (columns.shape[0], len(roots)))
    return _leaf_sum(values, lax.fori_loop(0, depth, step, node), onehot)
