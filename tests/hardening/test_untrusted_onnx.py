"""ONNX files audited as a hostile user writes them: every probe either converts to code that parses, holds the
model's text only inside string literals, and agrees with onnxruntime, or is refused with an OnnxModelError naming
what is wrong, before any code runs (docs/untrusted_input.md)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb

vi = helper.make_tensor_value_info
F = TensorProto.FLOAT
BAD = "pwn'\"\n\u2028"  # an unknown value that would also break out of a string literal or a line


def _model(nodes, inputs, outputs, inits=(), *, opsets=(("", 18),), ir_version: int = 8) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])  # fmt: skip
    model.ir_version = ir_version
    return model


def _onnxruntime_refuses(model: onnx.ModelProto) -> bool:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    try:
        onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - any refusal
        return True
    return False


# ------------------------------------------------------------------------------ attributes of a fixed vocabulary
def _depth_to_space(mode):
    return _model([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)],
                  [vi("x", F, [1, 8, 2, 2])], [vi("y", F, [1, 2, 4, 4])]), [np.arange(32, dtype=np.float32).reshape(1, 8, 2, 2)]  # fmt: skip


def _upsample(mode):
    return _model([helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode)], [vi("x", F, [1, 1, 2, 2])],
                  [vi("y", F, [1, 1, 4, 4])], [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")],
                  opsets=(("", 9),)), [np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)]  # fmt: skip


def _resize(**attrs):
    return _model([helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest", **attrs)], [vi("x", F, [1, 1, 2, 2])],
                  [vi("y", F, [1, 1, 4, 4])], [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")]), \
        [np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)]  # fmt: skip


def _scatter(op, reduction):
    indices = np.array([[0], [2]], np.int64) if op == "ScatterND" else np.array([0, 2], np.int64)
    return _model([helper.make_node(op, ["x", "i", "u"], ["y"], reduction=reduction)], [vi("x", F, [4])], [vi("y", F, [4])],
                  [numpy_helper.from_array(indices, "i"), numpy_helper.from_array(np.array([5, 7], np.float32), "u")]), \
        [np.arange(4, dtype=np.float32)]  # fmt: skip


def _cast(round_mode):
    """float32 -> float8_e8m0fnu (rounded as round_mode says) -> float32."""
    nodes = [helper.make_node("Cast", ["x"], ["e"], to=TensorProto.FLOAT8E8M0, round_mode=round_mode),
             helper.make_node("Cast", ["e"], ["y"], to=F)]  # fmt: skip
    return _model(nodes, [vi("x", F, [3])], [vi("y", F, [3])], opsets=(("", 24),), ir_version=11), \
        [np.array([0.1, 1.5, 3.0], np.float32)]  # fmt: skip


def _tfidf(mode):
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], mode=mode, min_gram_length=1, max_gram_length=1,
                            max_skip_count=0, ngram_counts=[0], ngram_indexes=[0, 1], pool_int64s=[2, 3])  # fmt: skip
    return _model([node], [vi("x", TensorProto.INT64, [4])], [vi("y", F, [2])]), [np.array([2, 3, 3, 5], np.int64)]


def _tree_ensemble(**attrs):
    """One split (x0 <= 0.5: leaf 1.0, else 2.0) as ai.onnx.ml TreeEnsemble (opset 5), its enums as integers."""
    fields = dict(nodes_splits=numpy_helper.from_array(np.array([0.5], np.float32)), nodes_featureids=[0],
                  nodes_modes=numpy_helper.from_array(np.array([0], np.uint8)), nodes_truenodeids=[0], nodes_trueleafs=[1],
                  nodes_falsenodeids=[1], nodes_falseleafs=[1], leaf_targetids=[0, 0],
                  leaf_weights=numpy_helper.from_array(np.array([1.0, 2.0], np.float32)), tree_roots=[0], n_targets=1,
                  aggregate_function=1, post_transform=0)  # fmt: skip
    fields.update(attrs)
    node = helper.make_node("TreeEnsemble", ["x"], ["y"], domain="ai.onnx.ml", **fields)
    return _model([node], [vi("x", F, [3, 2])], [vi("y", F, [3, 1])], opsets=(("", 21), ("ai.onnx.ml", 5)), ir_version=10), \
        [np.array([[0.1, 0], [0.9, 0], [0.5, 1]], np.float32)]  # fmt: skip


def _tree_regressor(**attrs):
    """The same split as the older TreeEnsembleRegressor (enums as strings)."""
    fields = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                  nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.5, 0, 0], nodes_truenodeids=[1, 0, 0],
                  nodes_falsenodeids=[2, 0, 0], target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0],
                  target_weights=[1.0, 2.0], n_targets=1)  # fmt: skip
    fields.update(attrs)
    node = helper.make_node("TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", **fields)
    return _model([node], [vi("x", F, [3, 2])], [vi("y", F, [3, 1])], opsets=(("", 17), ("ai.onnx.ml", 3))), \
        [np.array([[0.1, 0], [0.9, 0], [0.5, 1]], np.float32)]  # fmt: skip


# (what, the model with a good value, with a bad one, the refusal); each bad value was accepted (the code misread it
# as another mode, or a helper refused it only when the code ran) or failed with a bare KeyError/IndexError
VOCABULARIES = [
    ("DepthToSpace mode", lambda: _depth_to_space("CRD"), lambda: _depth_to_space(BAD), "attribute mode='pwn"),
    ("Upsample mode", lambda: _upsample("linear"), lambda: _upsample(BAD), "attribute mode='pwn"),
    ("Resize coordinate_transformation_mode", lambda: _resize(coordinate_transformation_mode="align_corners"),
     lambda: _resize(coordinate_transformation_mode=BAD), "attribute coordinate_transformation_mode='pwn"),
    ("Resize nearest_mode", lambda: _resize(nearest_mode="ceil"), lambda: _resize(nearest_mode=BAD),
     "attribute nearest_mode='pwn"),
    ("ScatterElements reduction", lambda: _scatter("ScatterElements", "add"), lambda: _scatter("ScatterElements", BAD),
     "attribute reduction='pwn"),
    ("ScatterND reduction", lambda: _scatter("ScatterND", "max"), lambda: _scatter("ScatterND", BAD),
     "attribute reduction='pwn"),
    ("Cast round_mode", lambda: _cast("down"), lambda: _cast(BAD), "attribute round_mode='pwn"),
    ("TfIdfVectorizer mode", lambda: _tfidf("TF"), lambda: _tfidf(BAD), "attribute mode='pwn"),
    ("TreeEnsemble post_transform", lambda: _tree_ensemble(post_transform=0), lambda: _tree_ensemble(post_transform=7),
     "attribute post_transform=7 is not one of 0, 1, 2, 3, 4"),
    ("TreeEnsemble aggregate_function", lambda: _tree_ensemble(aggregate_function=3),
     lambda: _tree_ensemble(aggregate_function=-1), "attribute aggregate_function=-1 is not one of 0, 1, 2, 3"),
    ("TreeEnsemble nodes_modes", lambda: _tree_ensemble(nodes_modes=numpy_helper.from_array(np.array([3], np.uint8))),
     lambda: _tree_ensemble(nodes_modes=numpy_helper.from_array(np.array([9], np.uint8))),
     "nodes_modes holds 9, which is not a node mode"),
    ("TreeEnsembleRegressor post_transform", lambda: _tree_regressor(post_transform="NONE"),
     lambda: _tree_regressor(post_transform=BAD), "attribute post_transform='pwn"),
    ("TreeEnsembleRegressor aggregate_function", lambda: _tree_regressor(aggregate_function="MAX"),
     lambda: _tree_regressor(aggregate_function=BAD), "attribute aggregate_function='pwn"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "good", "bad", "message"), VOCABULARIES, ids=[v[0] for v in VOCABULARIES])
def test_an_attribute_outside_its_vocabulary_is_refused_before_code_is_written(what, good, bad, message):
    model, inputs = good()
    forward, params = wb.to_jax(model)
    ours = forward(params, *inputs)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {i.name: value for i, value in zip(session.get_inputs(), inputs, strict=True)})
    np.testing.assert_allclose(np.asarray(ours, np.float32), theirs.astype(np.float32), rtol=1e-6)
    model, _ = bad()
    with pytest.raises(wb.OnnxModelError, match=r"<ModelProto>: node #0 \((ai\.onnx\.ml::)?\w+\): ") as caught:
        wb.to_jax_source(model)
    assert message in str(caught.value)
    if "reduction" not in what:  # onnxruntime takes an unknown Scatter reduction when the session is created
        assert _onnxruntime_refuses(model), what
