"""Operators outside the default domain: ai.onnx.ml and onnxruntime's com.microsoft.

Every case is a small model built with onnx.helper and run by onnxruntime (which implements these
domains); the generated JAX code must give the same outputs. The com.microsoft registrations are
checked against onnxruntime's own operator schemas (onnx.defs does not know that domain).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import run_onnx
from workbench.onnx_to_jax import registry

ML = "ai.onnx.ml"


def _model(node, inputs, outputs, *, ml_opset=3, opset=17, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph([node], "g", inputs, outputs, initializer=list(inits))
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(ML, ml_opset),
              helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _value(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _check(model, inputs, *, rtol=1e-5, atol=1e-5):
    expected = run_onnx(model, inputs)
    forward, params = wb.to_jax(model)
    got = forward(params, *inputs)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        have = np.asarray(have)
        assert have.shape == want.shape, (have.shape, want.shape)
        assert have.dtype == want.dtype, (have.dtype, want.dtype)
        np.testing.assert_allclose(have, want, rtol=rtol, atol=atol)


def _forest(n_trees=3, depth=3, n_features=4, seed=0):
    """Random complete binary trees in TreeEnsembleRegressor/Classifier's attribute layout."""
    rng = np.random.default_rng(seed)
    attrs = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                             "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true")}
    leaves = []
    for tree in range(n_trees):
        n_nodes = 2 ** (depth + 1) - 1
        for node in range(n_nodes):
            leaf = node >= 2 ** depth - 1
            attrs["nodes_treeids"].append(tree)
            attrs["nodes_nodeids"].append(node)
            attrs["nodes_featureids"].append(0 if leaf else int(rng.integers(n_features)))
            attrs["nodes_values"].append(0.0 if leaf else float(rng.standard_normal()))
            attrs["nodes_modes"].append("LEAF" if leaf else str(rng.choice(["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT"])))
            attrs["nodes_truenodeids"].append(0 if leaf else 2 * node + 1)
            attrs["nodes_falsenodeids"].append(0 if leaf else 2 * node + 2)
            attrs["nodes_missing_value_tracks_true"].append(int(rng.integers(2)))
            if leaf:
                leaves.append((tree, node))
    return attrs, leaves


@pytest.mark.parametrize("aggregate", ["SUM", "AVERAGE", "MIN", "MAX"])
def test_tree_ensemble_regressor(aggregate):
    attrs, leaves = _forest()
    rng = np.random.default_rng(1)
    node = helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["y"], domain=ML, n_targets=2, aggregate_function=aggregate,
        target_treeids=[t for t, _ in leaves] * 2, target_nodeids=[n for _, n in leaves] * 2,
        target_ids=[0] * len(leaves) + [1] * len(leaves),
        target_weights=rng.standard_normal(2 * len(leaves)).astype(np.float32).tolist(),
        base_values=[0.5, -0.25], **attrs,
    )
    model = _model(node, [_value("x", ["N", 4])], [_value("y", ["N", 2])])
    x = rng.standard_normal((16, 4)).astype(np.float32)
    x[0, 1] = np.nan  # missing values follow nodes_missing_value_tracks_true
    _check(model, [x])


@pytest.mark.parametrize("post_transform", ["NONE", "SOFTMAX", "LOGISTIC"])
def test_tree_ensemble_classifier(post_transform):
    attrs, leaves = _forest(seed=2)
    rng = np.random.default_rng(3)
    node = helper.make_node(
        "TreeEnsembleClassifier", ["x"], ["label", "scores"], domain=ML, classlabels_int64s=[3, 5, 7],
        class_treeids=[t for t, _ in leaves] * 3, class_nodeids=[n for _, n in leaves] * 3,
        class_ids=[c for c in range(3) for _ in leaves],
        class_weights=rng.standard_normal(3 * len(leaves)).astype(np.float32).tolist(),
        post_transform=post_transform, **attrs,
    )
    model = _model(node, [_value("x", ["N", 4])], [_value("label", ["N"], TensorProto.INT64),
                                                     _value("scores", ["N", 3])])
    _check(model, [rng.standard_normal((16, 4)).astype(np.float32)])


def test_binary_tree_classifier_with_one_weight_column():
    attrs, leaves = _forest(seed=4)
    rng = np.random.default_rng(5)
    node = helper.make_node(
        "TreeEnsembleClassifier", ["x"], ["label", "scores"], domain=ML, classlabels_int64s=[0, 1],
        class_treeids=[t for t, _ in leaves], class_nodeids=[n for _, n in leaves], class_ids=[0] * len(leaves),
        class_weights=rng.standard_normal(len(leaves)).astype(np.float32).tolist(), post_transform="LOGISTIC",
        **attrs,
    )
    model = _model(node, [_value("x", ["N", 4])], [_value("label", ["N"], TensorProto.INT64),
                                                     _value("scores", ["N", 2])])
    _check(model, [rng.standard_normal((16, 4)).astype(np.float32)])


def test_linear_regressor_and_classifier():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    regressor = helper.make_node("LinearRegressor", ["x"], ["y"], domain=ML, targets=2,
                                 coefficients=rng.standard_normal(10).tolist(), intercepts=[0.1, -0.2])
    _check(_model(regressor, [_value("x", ["N", 5])], [_value("y", ["N", 2])]), [x])
    classifier = helper.make_node("LinearClassifier", ["x"], ["label", "scores"], domain=ML,
                                  classlabels_ints=[0, 1, 2], coefficients=rng.standard_normal(15).tolist(),
                                  intercepts=[0.0, 0.5, -0.5], post_transform="SOFTMAX")
    model = _model(classifier, [_value("x", ["N", 5])], [_value("label", ["N"], TensorProto.INT64),
                                                           _value("scores", ["N", 3])])
    _check(model, [x])


def test_preprocessing_ops():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    cases = [
        helper.make_node("Scaler", ["x"], ["y"], domain=ML, offset=[0.5, -1.0, 2.0], scale=[2.0, 0.5, 1.5]),
        helper.make_node("Normalizer", ["x"], ["y"], domain=ML, norm="L2"),
        helper.make_node("Normalizer", ["x"], ["y"], domain=ML, norm="L1"),
        helper.make_node("Binarizer", ["x"], ["y"], domain=ML, threshold=0.25),
    ]
    for node in cases:
        _check(_model(node, [_value("x", ["N", 3])], [_value("y", ["N", 3])]), [x])
    with_nan = x.copy()
    with_nan[1, 2] = np.nan
    imputer = helper.make_node("Imputer", ["x"], ["y"], domain=ML, imputed_value_floats=[1.0, 2.0, 3.0],
                               replaced_value_float=float("nan"))
    _check(_model(imputer, [_value("x", ["N", 3])], [_value("y", ["N", 3])]), [with_nan])


def test_one_hot_encoder_and_label_encoder():
    codes = np.array([[1, 4], [2, 9]], np.int64)
    encoder = helper.make_node("OneHotEncoder", ["x"], ["y"], domain=ML, cats_int64s=[1, 2, 4], zeros=1)
    _check(_model(encoder, [_value("x", [2, 2], TensorProto.INT64)], [_value("y", [2, 2, 3])]), [codes])
    labels = helper.make_node("LabelEncoder", ["x"], ["y"], domain=ML, keys_int64s=[1, 2, 4],
                              values_floats=[0.5, 1.5, 2.5], default_float=-1.0)
    model = _model(labels, [_value("x", [2, 2], TensorProto.INT64)], [_value("y", [2, 2])], ml_opset=2)
    _check(model, [codes])


def test_runtime_domain_emitters_match_onnxruntime_schemas():
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    schemas = {(s.domain, s.name, s.since_version) for s in ort_state.get_all_operator_schema()}
    for (domain, op_type), versions in registry.registered().items():
        if domain in registry.RUNTIME_DOMAINS:
            for version in versions:
                assert (domain, op_type, version) in schemas, f"{domain}::{op_type} since {version} is not an onnxruntime op"
