"""Corpus: scikit-learn pipelines converted by skl2onnx, to JAX, against onnxruntime.

Each model is trained in the test on a small seeded data set (no downloads), converted with
skl2onnx (classifiers without ZipMap: ``zipmap=False`` gives a probability tensor instead of a list
of dicts), and the generated JAX code must give onnxruntime's labels exactly and its scores within
float32 rounding of a sum over the model's trees or features (atol scaled by the number of terms).
Needs the ``corpus`` extra (scikit-learn, skl2onnx).
"""

from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="the corpus extra is not installed (pip install -e .[corpus])")
skl2onnx = pytest.importorskip("skl2onnx", reason="the corpus extra is not installed (pip install -e .[corpus])")

from sklearn import datasets, ensemble, linear_model, pipeline, preprocessing, tree  # noqa: E402

import workbench as wb  # noqa: E402
from tests.support.harness import run_onnx  # noqa: E402

pytestmark = pytest.mark.corpus


def _data(classes: int | None, seed: int = 0):
    if classes is None:
        x, y = datasets.make_regression(n_samples=120, n_features=6, noise=0.5, random_state=seed)
    else:
        x, y = datasets.make_classification(n_samples=120, n_features=6, n_informative=4, n_classes=classes,
                                            random_state=seed)
    return x.astype(np.float32), y


MODELS = {
    "scaler_logistic_3class": (lambda: pipeline.make_pipeline(preprocessing.StandardScaler(),
                                                               linear_model.LogisticRegression(max_iter=500)), 3),
    "logistic_binary": (lambda: linear_model.LogisticRegression(max_iter=500), 2),
    "decision_tree_3class": (lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0), 3),
    "random_forest_3class": (lambda: ensemble.RandomForestClassifier(n_estimators=12, max_depth=4, random_state=0), 3),
    "gradient_boosting_binary": (lambda: ensemble.GradientBoostingClassifier(n_estimators=20, max_depth=3,
                                                                             random_state=0), 2),
    "gradient_boosting_3class": (lambda: ensemble.GradientBoostingClassifier(n_estimators=10, max_depth=3,
                                                                             random_state=0), 3),
    "linear_regression": (lambda: linear_model.LinearRegression(), None),
    "minmax_ridge": (lambda: pipeline.make_pipeline(preprocessing.MinMaxScaler(), linear_model.Ridge()), None),
    "random_forest_regressor": (lambda: ensemble.RandomForestRegressor(n_estimators=10, max_depth=5,
                                                                       random_state=0), None),
    "gradient_boosting_regressor": (lambda: ensemble.GradientBoostingRegressor(n_estimators=25, max_depth=3,
                                                                               random_state=0), None),
}


def _convert(model, x):
    from skl2onnx import to_onnx

    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    return to_onnx(model, x[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})


def _terms(model) -> int:
    """How many float32 terms a score sums (trees, or features): the rounding scales with it."""
    last = model.steps[-1][1] if isinstance(model, pipeline.Pipeline) else model
    estimators = getattr(last, "estimators_", None)
    return int(np.size(estimators)) if estimators is not None else 8


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sklearn_model_matches_onnxruntime(name):
    build, classes = MODELS[name]
    x, y = _data(classes)
    model = build().fit(x, y)
    onnx_model = _convert(model, x)
    expected = run_onnx(onnx_model, [x])
    forward, params = wb.to_jax(onnx_model)
    got = forward(params, x)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    atol = 1e-6 * _terms(model) * max(1.0, float(np.max(np.abs(expected[-1]))))
    for want, have in zip(expected, got):
        have = np.asarray(have)
        assert have.shape == want.shape
        if want.dtype.kind in "iu":
            np.testing.assert_array_equal(have, want)
        else:
            np.testing.assert_allclose(have, want, rtol=1e-5, atol=atol)
