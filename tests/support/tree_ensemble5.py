"""A single-target TreeEnsembleRegressor (ai.onnx.ml opset 1/3) rewritten as TreeEnsemble (ai.onnx.ml opset 5).

No converter we use writes opset 5 (onnxmltools 1.16 stops at ai.onnx.ml 3; skl2onnx 1.20's opset-5 path
fails on HistGradientBoostingRegressor), so the boosting corpus rewrites its regressors to check the
opset-5 emitter on real ensembles against onnxruntime. Opset 5 keeps split nodes and leaves in separate
arrays (``nodes_*`` index split nodes, ``nodes_trueleafs``/``nodes_falseleafs`` say whether a successor
index is a leaf), takes splits and leaf weights as tensors and has no ``base_values``: the base value
becomes an ``Add`` after the node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

ML = "ai.onnx.ml"
_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5}


def as_tree_ensemble5(model: onnx.ModelProto, onnx_opset: int = 21) -> onnx.ModelProto:
    """``model`` with its one single-target TreeEnsembleRegressor as TreeEnsemble (opset 5) + Add of its base
    value, writing the regressor's output; the other nodes as they are."""
    [node] = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    a = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
    if a.get("n_targets", 1) != 1 or a.get("post_transform", b"NONE") not in (b"NONE", "NONE"):
        raise ValueError("only single-target regressors without a post transform are rewritten")
    modes = [m.decode() if isinstance(m, bytes) else m for m in a["nodes_modes"]]
    keys = list(zip(a["nodes_treeids"], a["nodes_nodeids"]))
    split_index = {key: i for i, key in enumerate(k for k, m in zip(keys, modes) if m != "LEAF")}
    leaf_index = {key: i for i, key in enumerate(k for k, m in zip(keys, modes) if m == "LEAF")}
    leaf_weight = np.zeros(len(leaf_index), np.float32)
    for tree, leaf, weight in zip(a["target_treeids"], a["target_nodeids"], a["target_weights"]):
        leaf_weight[leaf_index[(tree, leaf)]] += weight
    missing = a.get("nodes_missing_value_tracks_true", [0] * len(keys))
    splits = {name: [] for name in ("feature", "value", "mode", "true", "true_leaf", "false", "false_leaf", "nan")}
    for k, (key, mode) in enumerate(zip(keys, modes)):
        if mode == "LEAF":
            continue
        tree = key[0]
        for side, child in (("true", a["nodes_truenodeids"][k]), ("false", a["nodes_falsenodeids"][k])):
            is_leaf = (tree, child) in leaf_index
            splits[side].append(leaf_index[(tree, child)] if is_leaf else split_index[(tree, child)])
            splits[f"{side}_leaf"].append(int(is_leaf))
        splits["feature"].append(a["nodes_featureids"][k])
        splits["value"].append(a["nodes_values"][k])
        splits["mode"].append(_MODES[mode])
        splits["nan"].append(int(missing[k]))
    roots = []
    for tree in sorted(set(a["nodes_treeids"])):
        root = (tree, min(n for t, n in keys if t == tree))
        if root not in split_index:
            raise ValueError(f"tree {tree} is a single leaf: opset 5 roots must be split nodes")
        roots.append(split_index[root])
    ensemble = helper.make_node(
        "TreeEnsemble", [node.input[0]], [f"{node.output[0]}_trees"], domain=ML, n_targets=1, aggregate_function=1,
        post_transform=0, tree_roots=roots, nodes_featureids=splits["feature"],
        nodes_splits=numpy_helper.from_array(np.asarray(splits["value"], np.float32)),
        nodes_modes=numpy_helper.from_array(np.asarray(splits["mode"], np.uint8)),
        nodes_truenodeids=splits["true"], nodes_trueleafs=splits["true_leaf"], nodes_falsenodeids=splits["false"],
        nodes_falseleafs=splits["false_leaf"], nodes_missing_value_tracks_true=splits["nan"],
        leaf_targetids=[0] * len(leaf_weight), leaf_weights=numpy_helper.from_array(leaf_weight))
    base = np.asarray(a.get("base_values", [0.0]), np.float32).reshape(1, 1)
    add = helper.make_node("Add", [f"{node.output[0]}_trees", f"{node.output[0]}_base"], [node.output[0]])
    nodes = []
    for other in model.graph.node:  # the rest of the graph (an Exp after a Poisson model, Identities) stays
        nodes += [ensemble, add] if other is node else [other]
    graph = helper.make_graph(nodes, "tree_ensemble5", model.graph.input, model.graph.output,
                              initializer=[*model.graph.initializer,
                                           numpy_helper.from_array(base, f"{node.output[0]}_base")])
    opsets = [o for o in model.opset_import if o.domain not in ("", ML)]
    return helper.make_model(graph, opset_imports=[*opsets, helper.make_opsetid("", onnx_opset),
                                                   helper.make_opsetid(ML, 5)], ir_version=10)
