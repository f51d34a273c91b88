"""Corpus: gradient-boosted trees as people ship them, to JAX, against onnxruntime.

LightGBM and XGBoost models converted by onnxmltools, CatBoost models by its own
``save_model(format="onnx")``: TreeEnsembleRegressor/Classifier with the attributes skl2onnx rarely
writes (base_values, LOGISTIC and SOFTMAX post transforms, BRANCH_LEQ / BRANCH_LT / BRANCH_GT, BRANCH_EQ for
LightGBM's categorical splits, nodes_missing_value_tracks_true), a few hundred trees, the ZipMap that onnxmltools and CatBoost put
after a classifier by default, the regressors also rewritten as TreeEnsemble (ai.onnx.ml 5, which no converter
here writes: tests/support/tree_ensemble5.py), and string class labels (classlabels_strings: compared eagerly only, the
labels are a numpy array of str picked on the host, and ``wb.jit_forward`` refuses the model). Each model is trained in the test on seeded synthetic data with missing
values (NaN) in the inputs; nothing is downloaded.

lightgbm and onnxmltools are in the ``corpus`` extra (and CI's lock): the LightGBM cases run in CI.
xgboost (0.7 GB installed with its NCCL) and catboost (0.3 GB) are not: their cases skip (``SKIP_REASONS``)
when the library is absent. Run them in a side venv::

    python3 -m venv /path/venv-gbm && /path/venv-gbm/bin/pip install -e ".[test,corpus]"
    /path/venv-gbm/bin/pip install xgboost catboost
    /path/venv-gbm/bin/python -m pytest tests/onnx_to_jax/test_corpus_boosting.py

``python -m tests.onnx_to_jax.test_corpus_boosting [names]`` prints the table of docs/onnx_to_jax_corpus.md.

What is compared: onnxruntime on the same file against the generated code eagerly, under
``wb.jit_forward`` and under ``jax.vmap`` (over batches of rows). Labels must be equal. Scores and
probabilities may differ by float32 rounding of a sum over the trees (onnxruntime adds the leaf weights
in its own order and precision): ``atol = 2**-21 * sqrt(trees) * max(1, max |output|)``, eight float32
units per sqrt(term) of the sum (a wrong leaf in one tree is off by its weight, orders of magnitude
more). The evaluation rows hold NaNs and values equal to the model's own split thresholds, so the
comparison modes (< against <=) and the missing-value directions are exercised, not only interiors.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pytest

import workbench as wb
from tests.support.corpus import failure_row
from tests.support.harness import run_onnx
from tests.support.tree_ensemble5 import as_tree_ensemble5

# every reason these tests do not run, in one place
SKIP_REASONS = {
    "lightgbm": "lightgbm or onnxmltools is not installed: both are in the corpus extra (pip install -e .[corpus])",
    "xgboost": "xgboost is not installed: not in CI's lock (pip install xgboost; ~0.7 GB with its NCCL)",
    "catboost": "catboost is not installed: not in CI's lock (pip install catboost; ~0.3 GB with plotly)",
}
NEEDS = {"lightgbm": ("lightgbm", "onnxmltools"), "xgboost": ("xgboost", "onnxmltools"), "catboost": ("catboost",)}

pytestmark = pytest.mark.corpus

FEATURES = 8
ONNX_OPSET = 15  # the newest onnxmltools 1.16 converts to
MISSING = 0.1  # share of NaN inputs, in training and evaluation
CATEGORY = 5  # the feature holding category codes 0..7 in the categorical cases


@dataclass(frozen=True)
class Case:
    """One model: its library, how to train it on (x, y), and its classes (None: a regressor)."""

    library: str
    train: Callable[[np.ndarray, np.ndarray], object]
    classes: int | None
    zipmap: bool = False  # keep the converter's default ZipMap (a list of {label: probability} per row)
    categorical: bool = False  # feature CATEGORY holds category codes (LightGBM: BRANCH_EQ splits)
    string_labels: bool = False  # trained on string targets: classlabels_strings, labels picked on the host
    ml5: bool = False  # the regressor rewritten as TreeEnsemble (ai.onnx.ml 5; tests/support/tree_ensemble5.py)


def _lightgbm(cls: str, categorical: bool = False, **options) -> Callable:
    def train(x, y):
        import lightgbm

        fit = {"categorical_feature": [CATEGORY]} if categorical else {}
        return getattr(lightgbm, cls)(num_leaves=15, random_state=0, n_jobs=1, verbose=-1, **options).fit(x, y, **fit)

    return train


def _xgboost(cls: str, **options) -> Callable:
    def train(x, y):
        import xgboost

        return getattr(xgboost, cls)(max_depth=4, random_state=0, n_jobs=1, **options).fit(x, y)

    return train


def _catboost(cls: str, **options) -> Callable:
    def train(x, y):
        import catboost

        return getattr(catboost, cls)(depth=5, random_seed=0, verbose=0, thread_count=1, allow_writing_files=False,
                                      **options).fit(x, y)

    return train


CASES = {
    "lightgbm_regressor": Case("lightgbm", _lightgbm("LGBMRegressor", n_estimators=300), None),
    "lightgbm_binary": Case("lightgbm", _lightgbm("LGBMClassifier", n_estimators=300), 2),
    "lightgbm_multiclass_zipmap": Case("lightgbm", _lightgbm("LGBMClassifier", n_estimators=100), 4, zipmap=True),
    "lightgbm_categorical": Case("lightgbm", _lightgbm("LGBMClassifier", categorical=True, n_estimators=100), 3,
                                 categorical=True),
    "lightgbm_string_labels_zipmap": Case("lightgbm", _lightgbm("LGBMClassifier", n_estimators=100), 3, zipmap=True,
                                          string_labels=True),
    "lightgbm_regressor_ml5": Case("lightgbm", _lightgbm("LGBMRegressor", n_estimators=300), None, ml5=True),
    "lightgbm_poisson_ml5": Case("lightgbm", _lightgbm("LGBMRegressor", n_estimators=200, objective="poisson"), None,
                                 ml5=True),
    "lightgbm_poisson": Case("lightgbm", _lightgbm("LGBMRegressor", n_estimators=200, objective="poisson"), None),
    "xgboost_regressor": Case("xgboost", _xgboost("XGBRegressor", n_estimators=300), None),
    "xgboost_regressor_ml5": Case("xgboost", _xgboost("XGBRegressor", n_estimators=300), None, ml5=True),
    "xgboost_binary": Case("xgboost", _xgboost("XGBClassifier", n_estimators=200), 2),
    "xgboost_multiclass": Case("xgboost", _xgboost("XGBClassifier", n_estimators=80), 4),
    "catboost_string_labels": Case("catboost", _catboost("CatBoostClassifier", iterations=100), 2, zipmap=True,
                                   string_labels=True),
    "catboost_regressor_ml5": Case("catboost", _catboost("CatBoostRegressor", iterations=300), None, ml5=True),
    "catboost_regressor": Case("catboost", _catboost("CatBoostRegressor", iterations=300), None),
    "catboost_binary_zipmap": Case("catboost", _catboost("CatBoostClassifier", iterations=200), 2, zipmap=True),
    "catboost_multiclass_zipmap": Case("catboost", _catboost("CatBoostClassifier", iterations=100,
                                                             loss_function="MultiClass"), 4, zipmap=True),
}


def _skip_reason(case: Case) -> str | None:
    absent = [name for name in NEEDS[case.library] if importlib.util.find_spec(name) is None]
    return SKIP_REASONS[case.library] if absent else None


def _data(classes: int | None, rows: int, seed: int, categorical: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Seeded rows with a nonlinear target (regression: positive, for Poisson) and NaNs at random;
    ``categorical``: feature CATEGORY holds codes 0..7 that move the target by code."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    score = 2 * x[:, 0] + np.sin(3 * x[:, 1]) + x[:, 2] * x[:, 3] - np.abs(x[:, 4])
    if categorical:
        x[:, CATEGORY] = rng.integers(0, 8, rows)
        score = score + np.array([1.5, -1.0, 0.0, 2.0, -2.0, 0.5, -0.5, 1.0])[x[:, CATEGORY].astype(int)]
    if classes is None:
        y = np.exp(0.5 * score + 0.1 * rng.normal(size=rows))
    else:
        y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    x[rng.random(x.shape) < MISSING] = np.nan
    return x, y


def convert(name: str):
    """(the ONNX model, evaluation rows) of ``CASES[name]``: trained, converted, rows on its thresholds."""
    import onnx

    case = CASES[name]
    x, y = _data(case.classes, 600, seed=0, categorical=case.categorical)
    if case.string_labels:
        y = np.array(["ant", "bee", "cat", "dog"])[y]
    model = case.train(x, y)
    if case.library == "catboost":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            model.save_model(str(path), format="onnx")
            onnx_model = onnx.load(str(path))
    else:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        to_onnx = onnxmltools.convert_lightgbm if case.library == "lightgbm" else onnxmltools.convert_xgboost
        options = {"zipmap": case.zipmap} if case.classes and case.library == "lightgbm" else {}
        onnx_model = to_onnx(model, initial_types=[("input", FloatTensorType([None, FEATURES]))],
                             target_opset=ONNX_OPSET, **options)
    rows, _ = _data(case.classes, 256, seed=1, categorical=case.categorical)
    rows = _on_thresholds(onnx_model, rows)
    return (as_tree_ensemble5(onnx_model) if case.ml5 else onnx_model), rows


def _on_thresholds(model, rows: np.ndarray) -> np.ndarray:
    """``rows`` with a quarter of their non-missing values replaced by split thresholds of the same
    feature taken from the model's trees, so ties decide between BRANCH_LT and BRANCH_LEQ."""
    from onnx import helper

    [ensemble] = [node for node in model.graph.node if node.op_type.startswith("TreeEnsemble")]
    attrs = {a.name: helper.get_attribute_value(a) for a in ensemble.attribute}
    modes = [m.decode() if isinstance(m, bytes) else m for m in attrs["nodes_modes"]]
    splits = [(f, v) for f, v, m in zip(attrs["nodes_featureids"], attrs["nodes_values"], modes) if m != "LEAF"]
    rng = np.random.default_rng(2)
    rows = rows.copy()
    for i, j in zip(*np.nonzero(~np.isnan(rows) & (rng.random(rows.shape) < 0.25))):
        values = [v for f, v in splits if f == j]
        if values:
            rows[i, j] = np.float32(values[rng.integers(len(values))])
    return rows


def ensemble_size(model) -> tuple[int, int]:
    """(trees, nodes) of the model's tree ensemble node (opset 5: split nodes and leaves)."""
    from onnx import helper

    [ensemble] = [node for node in model.graph.node if node.op_type.startswith("TreeEnsemble")]
    attrs = {a.name: helper.get_attribute_value(a) for a in ensemble.attribute}
    if ensemble.op_type == "TreeEnsemble":
        return len(attrs["tree_roots"]), len(attrs["nodes_featureids"]) + len(attrs["leaf_targetids"])
    return len(set(attrs["nodes_treeids"])), len(attrs["nodes_treeids"])


def as_array(output) -> np.ndarray:
    """A tensor output as it is; a ZipMap output (onnxruntime's list of {label: value} per row, the generated
    code's sequence of such dicts) as [rows, labels], or [batch..., rows, labels] when its values are
    batched (under vmap)."""
    if isinstance(output, (np.ndarray, jax.Array)):
        return np.asarray(output)
    table = np.asarray([[np.asarray(v) for v in row.values()] for row in output], np.float32)
    return np.moveaxis(table, (0, 1), (-2, -1))


def tolerance(trees: int, expected: np.ndarray) -> float:
    """See the module docstring: float32 rounding of a sum over ``trees`` leaf weights."""
    return 2.0**-21 * np.sqrt(trees) * max(1.0, float(np.max(np.abs(expected))))


def assert_matches(expected: list, got, trees: int) -> float:
    """Labels equal, values within :func:`tolerance`, ZipMap keys equal; returns max error / tolerance."""
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected), f"{len(got)} outputs, onnxruntime gives {len(expected)}"
    worst = 0.0
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        if isinstance(want, list):
            assert [list(r) for r in have] == [list(r) for r in want], \
                f"output {index}: the ZipMap rows' labels differ from onnxruntime's"
        want, have = as_array(want), as_array(have)
        assert have.shape == want.shape, f"output {index}: shape {have.shape}, onnxruntime {want.shape}"
        if want.dtype.kind in "iuO":  # labels: integers, or str (a model trained on string targets)
            np.testing.assert_array_equal(have, want, err_msg=f"output {index}")
            continue
        atol = tolerance(trees, want)
        assert np.ptp(want) > 10 * atol, f"output {index}: onnxruntime's values barely vary; the check is empty"
        np.testing.assert_allclose(have, want, rtol=0, atol=atol, err_msg=f"output {index} (atol {atol:.3g})")
        worst = max(worst, float(np.max(np.abs(have - want))) / atol)
    return worst


def check(name: str) -> dict[str, object]:
    """Convert ``name``, compare eager / jitted / vmapped generated code with onnxruntime; the table's row."""
    model, rows = convert(name)
    trees, nodes = ensemble_size(model)
    expected = run_onnx(model, [rows])
    start = time.perf_counter()
    forward, params = wb.to_jax(model)
    generate = time.perf_counter() - start
    start = time.perf_counter()
    eager = forward(params, rows)
    first_call = time.perf_counter() - start
    errors = [assert_matches(expected, eager, trees)]
    if CASES[name].string_labels:  # strings have no JAX type: forward runs its jitted parts around the host step
        with pytest.raises(wb.WorkbenchError, match="call forward"):
            wb.jit_forward(forward, params)
        return {"trees": trees, "nodes": nodes, "generate_s": generate, "first_jit_s": first_call,
                "error_over_tolerance": errors[0], "run": lambda x: forward(params, x), "model": model, "rows": rows,
                "checked": "eager (host labels)"}
    run = wb.jit_forward(forward, params)
    start = time.perf_counter()
    jitted = jax.block_until_ready(run(rows))
    first_jit = time.perf_counter() - start
    errors.append(assert_matches(expected, jitted, trees))
    batches = rows[:24].reshape(4, 6, FEATURES)  # vmap over 4 batches of 6 rows
    mapped = jax.vmap(lambda batch: forward(params, batch))(batches)
    mapped = mapped if isinstance(mapped, tuple) else (mapped,)
    for b, batch in enumerate(batches):
        want = run_onnx(model, [batch])
        one = tuple(jax.tree_util.tree_map(lambda leaf, b=b: leaf[b], out) for out in mapped)
        errors.append(assert_matches(want, one if len(one) > 1 else one[0], trees))
    return {"trees": trees, "nodes": nodes, "generate_s": generate, "first_jit_s": first_jit,
            "error_over_tolerance": max(errors), "run": run, "model": model, "rows": rows,
            "checked": "eager / jit / vmap"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_boosted_model_matches_onnxruntime(name):
    reason = _skip_reason(CASES[name])
    if reason:
        pytest.skip(reason)
    check(name)


def _latency(fn: Callable[[], object], repeat: int = 30) -> float:
    """Median wall time of ``fn`` in milliseconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(names: list[str]) -> None:
    """Print the docs' table: one row per model (of the named models, or all)."""
    import onnxruntime as ort

    print("| model | trees | nodes | matches onnxruntime | max error / tolerance | to_jax (s) | first jit (s) | "
          "jitted 256 rows (ms) | onnxruntime 256 rows (ms) |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for name in sorted(CASES):
        if names and name not in names:
            continue
        reason = _skip_reason(CASES[name])
        if reason:
            print(f"| {name} | skipped: {reason} ||||||||")
            continue
        try:
            row = check(name)
        except Exception as error:  # noqa: BLE001 - the table reports a failing model and goes on
            print(failure_row([name], error))
            continue
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(row["model"].SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: row["rows"]}
        jitted = _latency(lambda row=row: jax.block_until_ready(row["run"](row["rows"])))  # forward when host labels
        onnxruntime = _latency(lambda: session.run(None, feed))
        print(f"| {name} | {row['trees']} | {row['nodes']} | {row['checked']} | {row['error_over_tolerance']:.3f} | "
              f"{row['generate_s']:.2f} | {row['first_jit_s']:.2f} | {jitted:.2f} | {onnxruntime:.2f} |", flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
