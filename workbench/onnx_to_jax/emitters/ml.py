"""The classical-ML domain (``ai.onnx.ml``): what skl2onnx and onnxmltools write.

Tree ensembles (TreeEnsembleRegressor/Classifier, opsets 1 and 3, and TreeEnsemble, opset 5) become
arrays built at generation time: one row per node of every tree (feature, threshold, comparison,
true/false successor, missing-value direction; leaves point at themselves) and a leaf x target weight
matrix. The generated code walks all trees of all samples at once, ``depth`` steps of gathers under
``lax.fori_loop``, so a gradient-boosted model is one jit-able function. Linear models, Scaler,
Normalizer, Binarizer, Imputer, ArrayFeatureExtractor and OneHotEncoder are plain ``jnp``. ZipMap
(the ``{label: probability}`` rows onnxmltools and CatBoost write after a classifier by default) gives
what onnxruntime gives, a sequence of one dict per row (``_ZipMapRows``: a pytree of one array, so it
jits and vmaps at the cost of one output).
LabelEncoder maps with sorted keys and ``searchsorted``; string keys or values have no JAX type,
so that case runs on the host with numpy (not jit-able), as do a tree classifier's string class labels
(``classlabels_strings``: the walk jitted once, the labels picked on the host).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.tree_walks import _forest_scores, _tree_leaves
from workbench.onnx_to_jax.registry import emitter, runtime_helper
from workbench.onnx_to_jax.tree_forms import NodeTable, plan_forest, split_levels

ML = "ai.onnx.ml"
_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5,
          "BRANCH_MEMBER": 6, "LEAF": 7}
_LEAF = 7
_POST = {"NONE": 0, "SOFTMAX": 1, "LOGISTIC": 2, "SOFTMAX_ZERO": 3, "PROBIT": 4}
_AGGREGATE = {"AVERAGE": 0, "SUM": 1, "MIN": 2, "MAX": 3}


# ---- runtime helpers --------------------------------------------------------------------------------
@runtime_helper
def _tree_leaves_compiled(x, feature, threshold, mode, true_next, false_next, nan_true, members, roots, depth):
    """:func:`_tree_leaves` compiled once per input shape, for an ensemble that runs as a host step (string
    class labels): eagerly, its ``fori_loop`` would be traced and compiled again on every call (~1 s)."""
    run = _tree_leaves_compiled.__dict__.setdefault("run", jax.jit(_tree_leaves, static_argnums=(8, 9)))
    return run(x, feature, threshold, mode, true_next, false_next, nan_true, members, roots, depth)


@runtime_helper
def _tree_scores(leaves, weights, present, aggregate, base):
    """Aggregate the leaf weights [nodes, targets] of every tree (0 average, 1 sum, 2 min, 3 max)."""
    w = jnp.asarray(weights)[leaves]  # [samples, trees, targets]
    if aggregate in (2, 3):
        has = jnp.asarray(present)[leaves]
        fill = jnp.inf if aggregate == 2 else -jnp.inf
        pick = jnp.min if aggregate == 2 else jnp.max
        scores = pick(jnp.where(has, w, fill), axis=1)
        scores = jnp.where(jnp.any(has, axis=1), scores, 0)
    else:
        scores = jnp.sum(w, axis=1)
        if aggregate == 0:
            scores = scores / leaves.shape[1]
    return scores + jnp.asarray(base, scores.dtype)


@runtime_helper
def _post_transform(scores, kind):
    """ONNX-ML post transforms: 0 none, 1 softmax, 2 logistic, 3 softmax-zero, 4 probit."""
    if kind == 1:
        return jax.nn.softmax(scores, axis=-1)
    if kind == 2:
        return jax.nn.sigmoid(scores)
    if kind == 3:
        nonzero = jnp.abs(scores) > 1e-7
        peak = jnp.max(scores, axis=-1, keepdims=True)
        exps = jnp.where(nonzero, jnp.exp(scores - peak), scores * jnp.exp(-peak))
        total = jnp.sum(exps, axis=-1, keepdims=True)
        return jnp.where(total == 0, 0.5, exps / jnp.where(total == 0, 1, total))
    if kind == 4:
        return jnp.sqrt(2.0).astype(scores.dtype) * jax.scipy.special.erfinv(2 * scores - 1)
    return scores


@runtime_helper
def _tree_classifier(scores, binary, single_label, post, labels):
    """(label, scores) of TreeEnsembleClassifier, with the spec's binary special case."""
    if binary:
        positive = scores[:, -1] if scores.shape[1] > 1 else scores[:, 0]
        negative = 1 - positive if post in (0, 4) else -positive
        scores = jnp.stack([negative, positive], axis=1)
    scores = _post_transform(scores, post)
    best = jax.lax.argmax(scores, 1, jnp.int32)  # int32: an int64 argmax fails a plain jax.jit (index.py)
    if single_label:
        return jnp.where(best == 1, 1, 0).astype(jnp.int64), scores
    return jnp.asarray(labels)[best], scores


@runtime_helper
def _tree_classifier_strings(scores, binary, post, labels):
    """TreeEnsembleClassifier with string class labels: scores as in JAX, the labels a numpy array of ``str``
    picked on the host (JAX has no string type, so the node runs between jitted parts)."""
    best, scores = _tree_classifier(scores, binary, len(labels) == 1, post, np.arange(len(labels)))
    return np.asarray(labels, dtype=object)[np.asarray(best)], scores


@runtime_helper
def _linear_classifier(x, coefficients, intercepts, labels, post, multi_class):
    x = jnp.asarray(x)
    x = x.astype(jnp.float32) if not jnp.issubdtype(x.dtype, jnp.floating) else x
    x = jnp.reshape(x, (-1, x.shape[-1])) if x.ndim > 1 else jnp.reshape(x, (1, -1))
    scores = jnp.matmul(x, jnp.asarray(coefficients, x.dtype).T)
    if intercepts is not None:
        scores = scores + jnp.asarray(intercepts, x.dtype)
    if scores.shape[1] == 1 and len(labels) == 2:  # one score column: the positive class
        positive = scores[:, 0]
        scores = jnp.stack([-positive, positive], axis=1)
        scores = _post_transform(scores, post)
        if post == 0:
            scores = scores.at[:, 0].set(-positive)
    else:
        scores = _post_transform(scores, post)
    best = jax.lax.argmax(scores, 1, jnp.int32)  # int32: an int64 argmax fails a plain jax.jit (index.py)
    del multi_class
    return jnp.asarray(labels)[best], scores


@runtime_helper
def _label_encode(x, keys, values, default):
    """LabelEncoder for numeric keys and values: sorted keys, ``searchsorted``, default when absent."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    sorted_keys, sorted_values = keys[order], np.asarray(values)[order]
    x = jnp.asarray(x)
    position = jnp.clip(jnp.searchsorted(jnp.asarray(sorted_keys), x), 0, len(sorted_keys) - 1)
    found = jnp.asarray(sorted_keys)[position] == x
    if np.issubdtype(sorted_keys.dtype, np.floating):
        found = found | (jnp.isnan(x) & jnp.isnan(jnp.asarray(sorted_keys)[position]))
    return jnp.where(found, jnp.asarray(sorted_values)[position], jnp.asarray(default, sorted_values.dtype))


@runtime_helper
def _label_encode_host(x, keys, values, default, dtype):
    """LabelEncoder with string keys or values, on the host with numpy (not jit-able: no JAX strings)."""
    table = dict(zip(keys, values))
    flat = [table.get(k.item() if hasattr(k, "item") else k, default) for k in np.asarray(x).reshape(-1)]
    return np.asarray(flat, dtype=dtype).reshape(np.shape(x))


@runtime_helper
@jax.tree_util.register_pytree_node_class
class _ZipMapRows:
    """ZipMap's output, onnxruntime's sequence of maps: ``rows[i]`` is the ``{label: score}`` dict of row i.

    One pytree leaf, the scores [rows, labels] (``.scores``; labels in ``.labels``): under ``jax.jit`` the
    program returns one array, not rows x labels scalars (XLA's CPU compile grows with the number of
    outputs: 20 s for 256 x 4). Under ``jax.vmap`` the scores gain leading batch axes and each value of a
    row's dict carries them."""

    def __init__(self, scores, labels):
        self.scores, self.labels = scores, tuple(labels)
        self._host = None

    def tree_flatten(self):
        return (self.scores,), self.labels

    @classmethod
    def tree_unflatten(cls, labels, leaves):
        return cls(leaves[0], labels)

    def __len__(self):
        return self.scores.shape[-2]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(len(self))[i]]
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} of {len(self)}")
        if isinstance(self.scores, jax.core.Tracer):
            return {label: self.scores[..., i, k] for k, label in enumerate(self.labels)}
        self._host = np.asarray(self.scores) if self._host is None else self._host  # read on the host once
        return {label: self._host[..., i, k][()] for k, label in enumerate(self.labels)}

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        return f"ZipMap rows {list(self)!r}"


@runtime_helper
def _zip_map(scores, labels):
    """ZipMap: the rows of ``scores`` [rows, labels] (a 1-D input is one row) as ``{label: score}`` dicts."""
    scores = jnp.asarray(scores)
    rows = jnp.reshape(scores, (1, -1)) if scores.ndim == 1 else scores
    if rows.ndim != 2 or rows.shape[1] != len(labels):
        raise ValueError(f"ZipMap: {len(labels)} class labels for scores of shape {tuple(scores.shape)}; "
                         "the input must be [rows, one column per label]")
    return _ZipMapRows(rows, labels)


# ---- tree ensembles: the tables built at generation time --------------------------------------------
class _Trees:
    """Nodes of an ensemble as flat arrays; leaves loop onto themselves."""

    def __init__(self) -> None:
        self.feature: list[int] = []
        self.threshold: list[float] = []
        self.mode: list[int] = []
        self.true_next: list[int] = []
        self.false_next: list[int] = []
        self.nan_true: list[bool] = []
        self.members: list[list[float]] = []
        self.roots: list[int] = []

    def add(self, feature=0, threshold=0.0, mode=_LEAF, nan_true=False, members=()) -> int:
        self.feature.append(int(feature))
        self.threshold.append(float(threshold))
        self.mode.append(int(mode))
        self.true_next.append(len(self.mode) - 1)
        self.false_next.append(len(self.mode) - 1)
        self.nan_true.append(bool(nan_true))
        self.members.append(list(members))
        return len(self.mode) - 1

    def depth(self, roots: list[int]) -> int:
        """Levels of the deepest of the trees at ``roots``, leaves counted (the general walk's step count)."""
        return max((split_levels(self.mode, self.true_next, self.false_next, root) + 1 for root in roots), default=0)

    def arrays(self, ctx: NodeContext, dtype: np.dtype = np.dtype(np.float32), roots: list[int] | None = None
               ) -> list[str]:
        """The general walk's arguments (:func:`_tree_leaves`): the node tables, thresholds in ``dtype``, and
        the ``roots`` walked (all trees by default) with their depth."""
        roots = self.roots if roots is None else roots
        width = max([len(m) for m in self.members] + [1])
        members = np.full((len(self.members), width), np.nan, np.float32)
        for i, values in enumerate(self.members):
            members[i, : len(values)] = values
        as_expr = ctx.constant
        return [
            as_expr(np.asarray(self.feature, np.int32), "feature"),
            as_expr(np.asarray(self.threshold, dtype), "threshold"),
            as_expr(np.asarray(self.mode, np.int8), "mode"),
            as_expr(np.asarray(self.true_next, np.int32), "true_next"),
            as_expr(np.asarray(self.false_next, np.int32), "false_next"),
            as_expr(np.asarray(self.nan_true, bool), "nan_true"),
            as_expr(members, "members"),
            ctx.lit(tuple(roots)),
            ctx.lit(self.depth(roots)),
        ]


def _forest_dtype(ctx: NodeContext) -> np.dtype | None:
    """The float type the planned forms compare in: the input's (integers as float32, as onnxruntime reads
    them), or None when unknown or half precision (the general walk then compares as before)."""
    dtype = ctx.dtype(0)
    if dtype is None:
        return None
    if np.issubdtype(dtype, np.integer):
        return np.dtype(np.float32)
    return dtype if dtype in (np.dtype(np.float32), np.dtype(np.float64)) else None


def _ensemble_scores(ctx: NodeContext, trees: _Trees, weights: np.ndarray, present: np.ndarray, aggregate: int,
                     base: list[float], x: str) -> str:
    """[rows, targets] scores, base values added: the planned forms (tree_forms.py) for SUM and AVERAGE on
    a float32/float64 input, else the general walk and :func:`_tree_scores`."""
    dtype = _forest_dtype(ctx)
    base_values = ctx.lit(np.asarray(base, np.float32))
    if dtype is None or aggregate not in (0, 1):
        leaves = ctx.call(_tree_leaves, x, *trees.arrays(ctx))
        return ctx.call(_tree_scores, leaves, ctx.constant(weights, "leaf_weights"),
                        ctx.constant(present, "leaf_present"), ctx.lit(aggregate), base_values)
    table = NodeTable(np.asarray(trees.feature), np.asarray(trees.threshold, np.float64), np.asarray(trees.mode),
                      np.asarray(trees.true_next), np.asarray(trees.false_next), np.asarray(trees.nan_true),
                      list(trees.roots), weights, trees.members)
    groups = []
    for g, group in enumerate(plan_forest(table, dtype)):
        def const(value: np.ndarray, hint: str, g: int = g) -> str:
            return ctx.constant(np.asarray(value), f"group{g}_{hint}")

        values = const(group.values.astype(np.float32), "values")
        onehot = "None" if group.onehot is None else const(group.onehot.astype(np.float32), "onehot")
        arrays = group.arrays
        if group.form == "oblivious":
            parts = [const(arrays["codes"], "codes"), const(arrays["thresholds"], "thresholds"), values, onehot]
        elif group.form == "perfect":
            parts = [const(arrays["codes"], "codes"), const(arrays["thresholds"], "thresholds"), ctx.lit(group.depth),
                     values, onehot]
        elif group.form == "walk":
            parts = [const(arrays["codes"], "codes"), const(arrays["thresholds"], "thresholds"),
                     const(arrays["left"], "left"), ctx.lit(tuple(arrays["roots"])), ctx.lit(group.depth), values,
                     onehot]
        else:
            parts = [*trees.arrays(ctx, dtype, arrays["roots"]), values]
        groups.append(_tuple([ctx.lit(group.form), *parts]))
    scores = ctx.call(_forest_scores, x, ctx.dt(dtype), _tuple(groups))
    if aggregate == 0:
        return f"({scores} / {len(trees.roots)} + {base_values})"
    return f"({scores} + {base_values})"


def _tuple(items: list[str]) -> str:
    """Code of a tuple of the given expressions."""
    return "(" + "".join(f"{item}, " for item in items) + ")"


def _legacy_trees(ctx: NodeContext, prefix: str) -> tuple[_Trees, dict[tuple[int, int], int]]:
    """TreeEnsembleRegressor/Classifier's ``nodes_*`` attributes as a _Trees table, with the index of
    each (tree id, node id)."""
    tree_ids = ctx.attr("nodes_treeids")
    node_ids = ctx.attr("nodes_nodeids")
    modes = ctx.attr("nodes_modes")
    features = ctx.attr("nodes_featureids")
    values = _floats(ctx, "nodes_values")
    true_ids, false_ids = ctx.attr("nodes_truenodeids"), ctx.attr("nodes_falsenodeids")
    missing = ctx.attr("nodes_missing_value_tracks_true", [0] * len(node_ids))
    trees = _Trees()
    index: dict[tuple[int, int], int] = {}
    for tree, node, mode, feature, value, nan_true in zip(tree_ids, node_ids, modes, features, values, missing):
        if mode not in _MODES or mode == "BRANCH_MEMBER":
            raise ctx.unsupported(f"node mode {mode!r} is not supported")
        index[(tree, node)] = trees.add(feature, value, _MODES[mode], nan_true)
    children = set()
    for k, (tree, mode) in enumerate(zip(tree_ids, modes)):
        if mode != "LEAF":
            trees.true_next[k] = index[(tree, true_ids[k])]
            trees.false_next[k] = index[(tree, false_ids[k])]
            children.update((trees.true_next[k], trees.false_next[k]))
    seen_trees: dict[int, int] = {}
    for (tree, _), position in index.items():
        if position not in children and tree not in seen_trees:
            seen_trees[tree] = position
    trees.roots = [seen_trees[t] for t in sorted(seen_trees)]
    del prefix
    return trees, index


def _floats(ctx: NodeContext, name: str) -> list[float]:
    """A float-list attribute or its ``*_as_tensor`` form (double precision models)."""
    if ctx.has_attr(f"{name}_as_tensor"):
        return [float(v) for v in np.asarray(ctx.attr(f"{name}_as_tensor")).reshape(-1)]
    return [float(v) for v in ctx.attr(name, [])]


def _leaf_weights(ctx: NodeContext, trees: _Trees, index, tree_ids, node_ids, target_ids, weights, n_targets):
    matrix = np.zeros((len(trees.mode), n_targets), np.float32)
    present = np.zeros((len(trees.mode), n_targets), bool)
    for tree, node, target, weight in zip(tree_ids, node_ids, target_ids, weights):
        matrix[index[(tree, node)], target] += weight
        present[index[(tree, node)], target] = True
    return matrix, present


@emitter("TreeEnsembleRegressor", since=(1, 3), domain=ML)
def tree_ensemble_regressor(ctx: NodeContext) -> str:
    trees, index = _legacy_trees(ctx, "nodes")
    n_targets = ctx.attr("n_targets", 1)
    weights, present = _leaf_weights(ctx, trees, index, ctx.attr("target_treeids"), ctx.attr("target_nodeids"),
                                     ctx.attr("target_ids"), _floats(ctx, "target_weights"), n_targets)
    aggregate = _AGGREGATE[ctx.choice("aggregate_function", tuple(_AGGREGATE), "SUM")]
    base = _floats(ctx, "base_values") or [0.0] * n_targets
    scores = _ensemble_scores(ctx, trees, weights, present, aggregate, base, ctx.x(0))
    post = _POST[ctx.choice("post_transform", tuple(_POST), "NONE")]
    _note_runtime_post(ctx, post, n_targets)
    return ctx.call(_post_transform, scores, ctx.lit(post))


def _note_runtime_post(ctx: NodeContext, code: int, targets: int) -> None:
    """Warn where onnxruntime (1.31, measured) computes another post transform than the spec's, which the generated
    code follows: it leaves a single target's score raw under SOFTMAX, LOGISTIC and SOFTMAX_ZERO (its issue
    #26596; a fix is proposed upstream), and its TreeEnsemble (ai.onnx.ml 5) reads code 1 as LOGISTIC and 2 as
    SOFTMAX, where the spec says 1 SOFTMAX, 2 LOGISTIC. A comparison with onnxruntime then differs by the
    transform, which the warning says before the user finds it."""
    name = {value: key for key, value in _POST.items()}[code]
    if targets == 1 and name in ("SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO"):
        ctx.warn(f"post_transform {name} on a single target: applied as the ONNX spec says; onnxruntime returns "
                 "the raw score there (onnxruntime issue #26596), so the two differ by the transform")
    elif ctx.node.op_type == "TreeEnsemble" and name in ("SOFTMAX", "LOGISTIC"):
        other = "LOGISTIC" if name == "SOFTMAX" else "SOFTMAX"
        ctx.warn(f"post_transform {code} is {name} in the ONNX spec, which the generated code applies; onnxruntime's "
                 f"TreeEnsemble applies {other} for code {code}, so the two differ")


def _class_labels(ctx: NodeContext) -> tuple[list[int] | None, list[str] | None]:
    """A classifier's or ZipMap's ``(classlabels_int64s, classlabels_strings)``: exactly one of them is given."""
    int_labels = ctx.attr("classlabels_int64s", None)
    str_labels = ctx.attr("classlabels_strings", None)
    if (int_labels is None) == (str_labels is None):
        raise ctx.error(f"{ctx.node.op_type} needs exactly one of classlabels_int64s and classlabels_strings")
    return int_labels, str_labels


@emitter("TreeEnsembleClassifier", since=(1, 3), domain=ML)
def tree_ensemble_classifier(ctx: NodeContext) -> str:
    """Labels from ``classlabels_int64s`` in JAX; ``classlabels_strings`` (a model trained on string targets)
    give a numpy array of ``str``: the node then reads its input on the host (``ctx.host``), a step between
    jitted parts, the way string ops run."""
    trees, index = _legacy_trees(ctx, "nodes")
    int_labels, str_labels = _class_labels(ctx)
    class_ids = ctx.attr("class_ids")
    weights, present = _leaf_weights(ctx, trees, index, ctx.attr("class_treeids"), ctx.attr("class_nodeids"),
                                     class_ids, _floats(ctx, "class_weights"), max(max(class_ids) + 1, 1))
    base = _floats(ctx, "base_values") or [0.0] * (max(class_ids) + 1)
    if str_labels is None:
        scores = _ensemble_scores(ctx, trees, weights, present, 1, base, ctx.x(0))
    else:
        leaves = ctx.call(_tree_leaves_compiled, ctx.host(0), *trees.arrays(ctx))
        scores = ctx.call(_tree_scores, leaves, ctx.constant(weights, "leaf_weights"),
                          ctx.constant(present, "leaf_present"), "1", ctx.lit(np.asarray(base, np.float32)))
    binary = len(set(class_ids)) == 1
    post = ctx.lit(_POST[ctx.choice("post_transform", tuple(_POST), "NONE")])
    if str_labels is not None:
        return ctx.call(_tree_classifier_strings, scores, ctx.lit(binary), post, ctx.lit(tuple(str_labels)))
    return ctx.call(_tree_classifier, scores, ctx.lit(binary), ctx.lit(len(int_labels) == 1), post,
                    ctx.lit(np.asarray(int_labels, np.int64)))


@emitter("TreeEnsemble", since=5, domain=ML)
def tree_ensemble(ctx: NodeContext) -> str:
    splits = np.asarray(ctx.attr("nodes_splits")).reshape(-1)
    features = ctx.attr("nodes_featureids")
    modes = np.asarray(ctx.attr("nodes_modes")).reshape(-1)
    true_ids, true_leaf = ctx.attr("nodes_truenodeids"), ctx.attr("nodes_trueleafs")
    false_ids, false_leaf = ctx.attr("nodes_falsenodeids"), ctx.attr("nodes_falseleafs")
    missing = ctx.attr("nodes_missing_value_tracks_true", [0] * len(features))
    members_flat = ctx.attr("membership_values", None)
    member_sets: list[list[float]] = []
    if members_flat is not None:
        current: list[float] = []
        for v in np.asarray(members_flat).reshape(-1):
            if np.isnan(v):
                member_sets.append(current)
                current = []
            else:
                current.append(float(v))
    trees = _Trees()
    member_iter = iter(member_sets)
    for mode in modes:
        if not 0 <= int(mode) < _LEAF:
            raise ctx.error(f"nodes_modes holds {int(mode)}, which is not a node mode (0-6: BRANCH_LEQ ... BRANCH_MEMBER)")
    for split, feature, mode, nan_true in zip(splits, features, modes, missing):
        members = next(member_iter) if int(mode) == 6 else ()
        trees.add(feature, split, int(mode), nan_true, members)
    n_interior = len(features)
    leaf_targets, leaf_weights = ctx.attr("leaf_targetids"), np.asarray(ctx.attr("leaf_weights")).reshape(-1)
    leaf_index = [trees.add() for _ in leaf_targets]
    for k in range(n_interior):
        trees.true_next[k] = leaf_index[true_ids[k]] if true_leaf[k] else true_ids[k]
        trees.false_next[k] = leaf_index[false_ids[k]] if false_leaf[k] else false_ids[k]
    trees.roots = list(ctx.attr("tree_roots"))
    n_targets = ctx.attr("n_targets", max(leaf_targets) + 1)
    matrix = np.zeros((len(trees.mode), n_targets), np.float32)
    present = np.zeros((len(trees.mode), n_targets), bool)
    for leaf, target, weight in zip(leaf_index, leaf_targets, leaf_weights):
        matrix[leaf, target] += weight
        present[leaf, target] = True
    aggregate = ctx.choice("aggregate_function", tuple(_AGGREGATE.values()), 1)
    dtype = ctx.dtype(0) or np.dtype(np.float32)
    scores = _ensemble_scores(ctx, trees, matrix, present, aggregate, [0.0] * n_targets, ctx.x(0))
    code = ctx.choice("post_transform", tuple(_POST.values()), 0)
    _note_runtime_post(ctx, code, n_targets)
    post = ctx.call(_post_transform, scores, ctx.lit(code))
    return f"{post}.astype({ctx.dt(dtype)})"


@emitter("ZipMap", since=1, domain=ML)
def zip_map(ctx: NodeContext) -> str:
    """ZipMap (``classlabels_int64s`` or ``classlabels_strings``): onnxruntime's sequence of maps as a
    sequence of dicts (``_ZipMapRows``), keyed by Python ints or strings (a dict key needs no JAX type)."""
    int_labels, str_labels = _class_labels(ctx)
    labels = tuple(int(v) for v in int_labels) if int_labels is not None else tuple(str_labels)
    shape = ctx.shape(0)
    if shape and shape[-1] is not None and shape[-1] != len(labels):
        raise ctx.error(f"{len(labels)} class labels for an input of {shape[-1]} columns; ZipMap needs one "
                        "label per column of the classifier's scores")
    return ctx.call(_zip_map, ctx.x(0), ctx.lit(labels))


# ---- linear models and preprocessing ---------------------------------------------------------------
@emitter("LinearRegressor", since=1, domain=ML)
def linear_regressor(ctx: NodeContext) -> str:
    targets = ctx.attr("targets", 1)
    coefficients = np.asarray(ctx.attr("coefficients"), np.float32).reshape(targets, -1)
    intercepts = np.asarray(ctx.attr("intercepts", [0.0] * targets), np.float32)
    x = f"jnp.asarray({ctx.x(0)}, jnp.float32)"
    scores = f"(jnp.matmul({x}, {ctx.constant(coefficients.T, 'coefficients')}) + {ctx.lit(intercepts)})"
    post = _POST[ctx.choice("post_transform", tuple(_POST), "NONE")]
    _note_runtime_post(ctx, post, targets)
    return ctx.call(_post_transform, scores, ctx.lit(post))


@emitter("LinearClassifier", since=1, domain=ML)
def linear_classifier(ctx: NodeContext) -> str:
    labels = ctx.attr("classlabels_ints", None)
    if labels is None:
        raise ctx.unsupported("string class labels have no JAX type; convert the model with integer labels")
    coefficients = np.asarray(ctx.attr("coefficients"), np.float32)
    intercepts = ctx.attr("intercepts", None)
    rows = len(intercepts) if intercepts is not None else max(len(labels) if len(labels) > 2 else 1, 1)
    coefficients = coefficients.reshape(rows, -1)
    return ctx.call(_linear_classifier, ctx.x(0), ctx.constant(coefficients, "coefficients"),
                    "None" if intercepts is None else ctx.lit(np.asarray(intercepts, np.float32)),
                    ctx.lit(np.asarray(labels, np.int64)), ctx.lit(_POST[ctx.choice("post_transform", tuple(_POST), "NONE")]),
                    ctx.lit(ctx.attr("multi_class", 0)))


@emitter("Scaler", since=1, domain=ML)
def scaler(ctx: NodeContext) -> str:
    offset = np.asarray(ctx.attr("offset", [0.0]), np.float32)
    scale = np.asarray(ctx.attr("scale", [1.0]), np.float32)
    return f"((jnp.asarray({ctx.x(0)}, jnp.float32) - {ctx.lit(offset)}) * {ctx.lit(scale)})"


@emitter("Normalizer", since=1, domain=ML)
def normalizer(ctx: NodeContext) -> str:
    norm = ctx.attr("norm", "MAX")
    x = f"jnp.asarray({ctx.x(0)}, jnp.float32)"
    if norm == "MAX":
        denominator = f"jnp.max({x}, axis=-1, keepdims=True)"
    elif norm == "L1":
        denominator = f"jnp.sum(jnp.abs({x}), axis=-1, keepdims=True)"
    elif norm == "L2":
        denominator = f"jnp.sqrt(jnp.sum(jnp.square({x}), axis=-1, keepdims=True))"
    else:
        raise ctx.error(f"norm must be 'MAX', 'L1' or 'L2', got {norm!r}")
    return f"{x} / {denominator}"


@emitter("Binarizer", since=1, domain=ML)
def binarizer(ctx: NodeContext) -> str:
    x = ctx.x(0)
    return f"jnp.where({x} > {ctx.lit(ctx.fattr('threshold', 0.0))}, 1, 0).astype(jnp.asarray({x}).dtype)"


@emitter("Imputer", since=1, domain=ML)
def imputer(ctx: NodeContext) -> str:
    x = ctx.x(0)
    if ctx.has_attr("imputed_value_floats"):
        fill = np.asarray(ctx.attr("imputed_value_floats"), np.float32)
        missing = ctx.fattr("replaced_value_float", 0.0)
        test = f"jnp.isnan({x})" if np.isnan(missing) else f"({x} == {ctx.lit(missing)})"
    else:
        fill = np.asarray(ctx.attr("imputed_value_int64s"), np.int64)
        test = f"({x} == {ctx.lit(ctx.attr('replaced_value_int64', 0))})"
    return f"jnp.where({test}, {ctx.lit(fill)}, {x}).astype(jnp.asarray({x}).dtype)"


@emitter("ArrayFeatureExtractor", since=1, domain=ML)
def array_feature_extractor(ctx: NodeContext) -> str:
    x = ctx.x(0)
    return ctx.call("jnp.take", x, f"jnp.reshape({ctx.x(1)}, (-1,))", axis="-1")


@emitter("OneHotEncoder", since=1, domain=ML)
def one_hot_encoder(ctx: NodeContext) -> str:
    categories = ctx.attr("cats_int64s", None)
    if categories is None:
        raise ctx.unsupported("string categories have no JAX type (cats_strings)")
    x = ctx.x(0)
    hot = f"(jnp.asarray({x})[..., None] == {ctx.lit(np.asarray(categories, np.int64))})"
    if not ctx.attr("zeros", 1):
        raise ctx.unsupported("zeros=0 (fail on unknown categories) is not supported")
    return f"{hot}.astype(jnp.float32)"


@emitter("LabelEncoder", since=(1, 2, 4), domain=ML)
def label_encoder(ctx: NodeContext) -> str:
    keys = values = None
    for suffix in ("strings", "int64s", "floats"):
        keys = ctx.attr(f"keys_{suffix}", None) if keys is None else keys
        values = ctx.attr(f"values_{suffix}", None) if values is None else values
    if ctx.has_attr("keys_tensor"):
        keys = np.asarray(ctx.attr("keys_tensor")).reshape(-1).tolist()
    if ctx.has_attr("values_tensor"):
        values = np.asarray(ctx.attr("values_tensor")).reshape(-1).tolist()
    if ctx.opset < 2:
        keys, values = ctx.attr("classes_strings", []), list(range(len(ctx.attr("classes_strings", []))))
    if keys is None or values is None:
        raise ctx.error("LabelEncoder needs keys and values")
    default = _label_default(ctx, values)
    textual = any(isinstance(v, str) for v in [*keys, *values])
    if textual:
        if ctx.has_attr("values_tensor"):
            dtype = np.asarray(ctx.attr("values_tensor")).dtype.name
        elif any(isinstance(v, str) for v in values):
            dtype = "object"
        else:
            dtype = "int64" if isinstance(values[0], int) else "float32"
        return ctx.call(_label_encode_host, ctx.host(0), ctx.lit(tuple(keys)), ctx.lit(tuple(values)),
                        ctx.lit(default), ctx.lit(dtype))
    # the list attributes are float32 (keys_floats, values_floats) or int64; the *_tensor forms say
    key_array = np.asarray(keys, np.float32 if isinstance(keys[0], float) else np.int64)
    value_array = np.asarray(values, np.float32 if isinstance(values[0], float) else np.int64)
    if ctx.has_attr("values_tensor"):
        value_array = value_array.astype(np.asarray(ctx.attr("values_tensor")).dtype)
    if ctx.has_attr("keys_tensor"):
        key_array = key_array.astype(np.asarray(ctx.attr("keys_tensor")).dtype)
    return ctx.call(_label_encode, ctx.x(0), ctx.lit(key_array), ctx.lit(value_array), ctx.lit(default))


def _label_default(ctx: NodeContext, values: list) -> object:
    if ctx.has_attr("default_tensor"):
        return np.asarray(ctx.attr("default_tensor")).reshape(-1)[0].item()
    if values and isinstance(values[0], str):
        return ctx.attr("default_string", "_Unused")
    if values and isinstance(values[0], float):
        return ctx.fattr("default_float", -0.0)
    return ctx.attr("default_int64", -1)

