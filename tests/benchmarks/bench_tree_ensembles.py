"""Gradient-boosted trees: jitted generated code against onnxruntime at batch 1, 64 and 4,096 rows.

LightGBM, XGBoost and CatBoost regressors, binary and 4-class classifiers of 100-500 trees, 6-8 levels
(num_leaves 31-255 with max_depth 7-8 for LightGBM), trained here on 20,000 seeded rows of 10 features
(5% NaN) and converted as people ship them (onnxmltools; CatBoost's own export), cached in ``--models``.
Both runtimes on one thread (``limit_xla_threads(1)``: tests/support/thread_limits.py; onnxruntime
``intra_op_num_threads=1``), inputs 64-byte aligned, calls interleaved (one JAX call, one onnxruntime call),
median wall time and mean process CPU time per call; ``first jit`` is ``wb.jit_forward``'s first call.
Printed as the table of docs/onnx_to_jax_corpus.md ("Tree ensembles as fast JAX")::

    PYTHONPATH=$PWD /path/venv-gbm/bin/python tests/benchmarks/bench_tree_ensembles.py [names] [--batches 1,64,4096]

A model whose library is not installed is reported and skipped (xgboost and catboost are not in CI's lock).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.support.thread_limits import limit_xla_threads, ort_session

FEATURES = 10
CLASSES = {"regressor": None, "binary": 2, "multiclass": 4}
# library -> kind -> training options (trees x levels as the docs' table says)
OPTIONS = {
    "lightgbm": {"regressor": dict(n_estimators=300, num_leaves=255, max_depth=8),
                 "binary": dict(n_estimators=300, num_leaves=31, max_depth=8),
                 "multiclass": dict(n_estimators=100, num_leaves=63, max_depth=7)},
    "xgboost": {"regressor": dict(n_estimators=300, max_depth=8), "binary": dict(n_estimators=500, max_depth=6),
                "multiclass": dict(n_estimators=100, max_depth=6)},
    "catboost": {"regressor": dict(iterations=300, depth=8), "binary": dict(iterations=500, depth=6),
                 "multiclass": dict(iterations=200, depth=6, loss_function="MultiClass")},
}
NEEDS = {"lightgbm": ("lightgbm", "onnxmltools"), "xgboost": ("xgboost", "onnxmltools"), "catboost": ("catboost",)}


def rows(classes: int | None, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded rows (5% NaN, 64-byte aligned) and a nonlinear target (classes: its quantile bins)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    score = (2 * x[:, 0] + np.sin(3 * x[:, 1]) + x[:, 2] * x[:, 3] - np.abs(x[:, 4]) + 0.5 * x[:, 5] * x[:, 6]
             + np.cos(2 * x[:, 7]) + 0.3 * rng.normal(size=n))
    y = score if classes is None else np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    x[rng.random(x.shape) < 0.05] = np.nan
    aligned = np.empty(x.size + 16, np.float32)
    start = (-aligned.ctypes.data % 64) // 4
    out = aligned[start:start + x.size].reshape(x.shape)
    out[...] = x
    return out, y


def model(name: str, folder: Path):
    """The ONNX model ``name`` (``library_kind``), trained and converted once, then read from ``folder``."""
    import onnx

    path = folder / f"{name}.onnx"
    if path.exists():
        return onnx.load(str(path))
    library, kind = name.split("_")
    x, y = rows(CLASSES[kind], 20_000, 0)
    options = OPTIONS[library][kind]
    if library == "catboost":
        import catboost

        cls = catboost.CatBoostRegressor if CLASSES[kind] is None else catboost.CatBoostClassifier
        cls(random_seed=0, verbose=0, thread_count=1, allow_writing_files=False, **options).fit(x, y).save_model(
            str(path), format="onnx")
        return onnx.load(str(path))
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("input", FloatTensorType([None, FEATURES]))]
    if library == "lightgbm":
        import lightgbm

        cls = lightgbm.LGBMRegressor if CLASSES[kind] is None else lightgbm.LGBMClassifier
        fitted = cls(random_state=0, n_jobs=1, verbose=-1, **options).fit(x, y)
        extra = {"zipmap": False} if CLASSES[kind] else {}
        converted = onnxmltools.convert_lightgbm(fitted, initial_types=types, target_opset=15, **extra)
    else:
        import xgboost

        cls = xgboost.XGBRegressor if CLASSES[kind] is None else xgboost.XGBClassifier
        fitted = cls(random_state=0, n_jobs=1, **options).fit(x, y)
        converted = onnxmltools.convert_xgboost(fitted, initial_types=types, target_opset=15)
    onnx.save(converted, str(path))
    return converted


def interleaved(jitted, session, feed: dict, x: np.ndarray, calls: int) -> tuple[float, float, float, float]:
    """(JAX wall ms, onnxruntime wall ms, JAX CPU ms, onnxruntime CPU ms) per call, calls alternating."""
    import jax

    jax.block_until_ready(jitted(x))
    session.run(None, feed)
    walls: tuple[list[float], list[float]] = ([], [])
    cpus: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for k, call in enumerate((lambda: jax.block_until_ready(jitted(x)), lambda: session.run(None, feed))):
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            walls[k].append(time.perf_counter() - wall)
            cpus[k].append(time.process_time() - cpu)
    return (1e3 * float(np.median(walls[0])), 1e3 * float(np.median(walls[1])), 1e3 * float(np.mean(cpus[0])),
            1e3 * float(np.mean(cpus[1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="library_kind, e.g. lightgbm_binary (default: all nine)")
    parser.add_argument("--batches", default="1,64,4096")
    parser.add_argument("--models", default=os.path.join(tempfile.gettempdir(), "bench_tree_ensembles"))
    args = parser.parse_args()
    limit_xla_threads(1)
    import jax

    import workbench as wb

    folder = Path(args.models)
    folder.mkdir(parents=True, exist_ok=True)
    names = args.names or [f"{library}_{kind}" for library in OPTIONS for kind in CLASSES]
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| model | trees | rows | first jit (s) | JAX wall (ms) | onnxruntime wall (ms) | wall ratio | JAX CPU (ms) | "
          "onnxruntime CPU (ms) | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        library = name.split("_")[0]
        absent = [lib for lib in NEEDS[library] if importlib.util.find_spec(lib) is None]
        if absent:
            print(f"| {name} | skipped: {', '.join(absent)} not installed |||||||||")
            continue
        onnx_model = model(name, folder)
        trees = len({a for node in onnx_model.graph.node if node.op_type.startswith("TreeEnsemble")
                     for attr in node.attribute if attr.name == "nodes_treeids" for a in attr.ints})
        session = ort_session(onnx_model)
        forward, params = wb.to_jax(onnx_model)
        for batch in (int(b) for b in args.batches.split(",")):
            x, _ = rows(None, batch, 5)
            jitted = wb.jit_forward(forward, params)
            start = time.perf_counter()
            jax.block_until_ready(jitted(x))
            first = time.perf_counter() - start
            wall, ort_wall, cpu, ort_cpu = interleaved(jitted, session, {session.get_inputs()[0].name: x}, x,
                                                       300 if batch <= 64 else 15)
            print(f"| {name} | {trees} | {batch} | {first:.2f} | {wall:.3f} | {ort_wall:.3f} | {wall / ort_wall:.2f} | "
                  f"{cpu:.3f} | {ort_cpu:.3f} | {cpu / ort_cpu:.2f} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
