"""ONNX seeds for the fault sweep that users hold rather than the suite's own models.

Each builder makes, in code and without downloads, a model of a kind people bring: onnxruntime's
``com.microsoft`` fused and quantized ops (Attention, SkipLayerNormalization, QLinearAdd, QGemm,
MatMulNBits, the cases of :mod:`workbench.onnx_to_jax.contrib_cases`), ai.onnx.ml tree ensembles,
a skl2onnx pipeline with its default ZipMap, a LightGBM classifier through onnxmltools, Optimum's
merged-decoder ``If`` (each branch a decoder; one inner name with two types), and the workbench's
own exports of the benchmark set (tests/support/benchmark_set.py at test size). The sweep
(tests/hardening/fault_sweep.py) mutates them like its local seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper


@dataclass(frozen=True)
class UserSeed:
    """A valid model and known-good inputs for it (``None``: the sweep generates them); integer outputs may
    differ from onnxruntime's by ``int_steps`` (quantized ops whose rounding onnxruntime does its own way)."""

    name: str
    model: onnx.ModelProto
    inputs: list[np.ndarray] | None
    int_steps: int = 0


CONTRIB_OPS = (("com.microsoft", "Attention"), ("com.microsoft", "SkipLayerNormalization"),
               ("com.microsoft", "QLinearAdd"), ("com.microsoft", "QGemm"), ("com.microsoft", "MatMulNBits"),
               ("ai.onnx.ml", "TreeEnsembleClassifier"))  # fmt: skip


def contrib_seeds() -> list[UserSeed]:
    """The first contrib case of each op in CONTRIB_OPS."""
    from workbench.onnx_to_jax.contrib_cases import cases

    seeds = []
    for domain, op in CONTRIB_OPS:
        case = cases(domain, op)[0]
        # contrib_cases' atol counts quantization steps for integer outputs (QLinearAdd: 1, onnxruntime's rounding)
        seeds.append(UserSeed(f"contrib.{op}", case.model, list(case.inputs), int(case.atol)))
    return seeds


def merged_decoder() -> UserSeed:
    """Optimum's merged decoder: ``If(use_cache_branch)`` over two decoders writing one inner name as bool and float."""
    vi = helper.make_tensor_value_info
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    with_cache = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["mask"], name="with_cache/Cast", to=TensorProto.BOOL),
         helper.make_node("Where", ["mask", "x", "zero"], ["logits_cached"], name="with_cache/Where")],
        "with_cache", [], [vi("logits_cached", TensorProto.FLOAT, ["n", 3])])  # fmt: skip
    without_cache = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["mask"], name="without_cache/Cast", to=TensorProto.FLOAT),
         helper.make_node("Neg", ["mask"], ["logits_fresh"], name="without_cache/Neg")],
        "without_cache", [], [vi("logits_fresh", TensorProto.FLOAT, ["n", 3])])  # fmt: skip
    node = helper.make_node("If", ["use_cache_branch"], ["logits"], name="optimum::if",
                            then_branch=with_cache, else_branch=without_cache)  # fmt: skip
    graph = helper.make_graph([node], "merged", [vi("x", TensorProto.FLOAT, ["n", 3]), vi("use_cache_branch", TensorProto.BOOL, [])],
                              [vi("logits", TensorProto.FLOAT, ["n", 3])], initializer=[zero])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    return UserSeed("optimum.merged_if", model, [x, np.array(True)])


def _classification(rows: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 5)).astype(np.float32)
    return x, (x[:, 0] + np.sin(2 * x[:, 1]) > 0).astype(np.int64) + (x[:, 2] > 1)


def sklearn_pipeline() -> UserSeed:
    """StandardScaler + LogisticRegression (3 classes) through skl2onnx, its default ZipMap kept."""
    from skl2onnx import to_onnx
    from sklearn import linear_model, pipeline, preprocessing

    x, y = _classification()
    fitted = pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=200)).fit(x, y)
    return UserSeed("skl2onnx.scaler_logistic", to_onnx(fitted, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}), [x[:4]])


def lightgbm_classifier() -> UserSeed:
    """A 3-class LightGBM classifier (20 trees) through onnxmltools, without ZipMap."""
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _classification()
    fitted = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=7, random_state=0, verbose=-1).fit(x, y)
    model = onnxmltools.convert_lightgbm(fitted, initial_types=[("input", FloatTensorType([None, 5]))], target_opset=15,
                                         zipmap=False)  # fmt: skip
    return UserSeed("onnxmltools.lightgbm", model, [x[:4]])


EXPORTED = ("zoo_gpt", "haiku_resnet18", "eqx_transformer")


def benchmark_exports(names: tuple[str, ...] = EXPORTED) -> list[UserSeed]:
    """``wb.to_onnx`` of benchmark-set models at test size (programs nobody here wrote, but for the zoo's)."""
    import workbench as wb
    from tests.support.benchmark_set import SET

    seeds = []
    for name in names:
        bench = SET[name]("test")
        seeds.append(UserSeed(f"export.{name}", wb.to_onnx(bench.fn, bench.specs), [np.asarray(x) for x in bench.inputs]))
    return seeds


BUILDERS: dict[str, Callable[[], list[UserSeed]]] = {
    "contrib": contrib_seeds,
    "optimum": lambda: [merged_decoder()],
    "sklearn": lambda: [sklearn_pipeline()],
    "lightgbm": lambda: [lightgbm_classifier()],
    "exports": benchmark_exports,
}


def user_seeds(groups: tuple[str, ...] = tuple(BUILDERS)) -> list[UserSeed]:
    """The seeds of the named groups, in BUILDERS order."""
    return [seed for group in groups for seed in BUILDERS[group]()]


__all__ = ["BUILDERS", "CONTRIB_OPS", "EXPORTED", "UserSeed", "benchmark_exports", "user_seeds"]
