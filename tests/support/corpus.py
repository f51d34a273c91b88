"""Shared by the ONNX -> JAX corpus tests: the model-scaled tolerance and onnxruntime's rewritten forms.

Tolerance. Two float32 implementations of the same graph (onnxruntime's kernels, XLA's) differ by
rounding: each node whose result sums many products (MatMul, Conv, reductions, normalizations,
Softmax...) may round differently, and along a chain of such nodes those differences add up. So the
absolute tolerance grows with the number of accumulating nodes on the longest path from an input to
the output (the model's *depth*, counted on the graph itself) and with the output's magnitude::

    atol = ROUNDING_PER_LAYER * depth * max(1, max |onnxruntime output|)

``ROUNDING_PER_LAYER`` is 2**-18 (about 3.8e-6): 64 float32 units of rounding (2**-24) per
accumulating layer, since a dot product of length n typically rounds by ~sqrt(n) units and n stays
below 4,096 in these models. Measured (docs/onnx_to_jax_corpus.md): the largest error is a small
fraction of this tolerance on every model of the corpus, quantized models included (their quantizers
round exactly as onnxruntime's: tests/onnx_to_jax/test_quantize_rounding.py), but ConvMixer, whose
error is float32 rounding as large as PyTorch's own (``framework`` in :func:`assert_outputs_match`).

A comparison only checks something if the output varies: every float output must spread over more
than ``MIN_SPREAD`` tolerances (a random network with the constructor's BatchNorm statistics gave
logits spanning 1e-9, which any near-zero answer would have matched).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

ROUNDING_PER_LAYER = 2.0**-18
# a float output must spread over more than this many tolerances to be worth comparing
MIN_SPREAD = 10.0
# generated code may be this many times as far from onnxruntime as the source framework's own result
FRAMEWORK_FACTOR = 2.0

# nodes whose every output element sums many rounded products (or divides by such a sum)
ACCUMULATING = frozenset({
    "MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "ConvInteger", "MatMulInteger", "QLinearConv",
    "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "FusedMatMul", "FusedConv",
    "FusedGemm", "Attention", "MultiHeadAttention", "GroupQueryAttention", "ReduceSum", "ReduceMean",
    "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Softmax", "LogSoftmax", "LayerNormalization",
    "SkipLayerNormalization", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization",
    "EmbedLayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
    "GlobalAveragePool", "AveragePool", "LpNormalization", "RoiAlign", "Resize", "QGemm", "QAttention",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearSoftmax",
})  # fmt: skip


def depth(model: onnx.ModelProto) -> int:
    """Accumulating nodes on the longest path from a graph input to a graph output (the main graph's
    nodes are in topological order, as ONNX requires; calls of model-local functions, as jax2onnx writes
    NNX/Equinox modules, count the nodes of their bodies; a node with subgraphs (If, Loop, Scan) counts
    the longest path through its bodies once: Optimum's merged decoders hold a whole decoder in each If branch)."""
    if model.functions:
        from workbench.onnx_to_jax.local_functions import inline_functions

        model = inline_functions(onnx.ModelProto.FromString(model.SerializeToString()), "the model")
    reached: dict[str, int] = {}
    _reach(model.graph, reached)
    return max((reached.get(output.name, 0) for output in model.graph.output), default=0)


def _reach(graph: onnx.GraphProto, reached: dict[str, int]) -> None:
    """Fill ``reached`` (value name -> accumulating nodes before it) for ``graph``'s values; a body sees the
    enclosing graph's values at their depths."""
    for node in graph.node:
        before = max((reached.get(name, 0) for name in node.input if name), default=0)
        for attribute in node.attribute:
            for body in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
                inside = dict(reached)
                _reach(body, inside)
                before = max([before, *(inside.get(output.name, 0) for output in body.output)])
        after = before + (1 if node.op_type in ACCUMULATING else 0)
        for name in node.output:
            reached[name] = after


def tolerance(model: onnx.ModelProto, expected: np.ndarray) -> float:
    """The absolute tolerance for one output of ``model`` (see the module docstring)."""
    magnitude = float(np.max(np.abs(expected))) if expected.size else 0.0
    return ROUNDING_PER_LAYER * max(1, depth(model)) * max(1.0, magnitude)


def table_row(keys: Sequence[object], row: dict[str, float]) -> str:
    """One row of a corpus module's printed table (``python -m tests.onnx_to_jax.test_corpus_X``): the case's
    ``keys`` (model, form, ...), then the ``check`` row's nodes, depth, first jit and error over tolerance."""
    cells = [*keys, row["nodes"], row["depth"], f"{row['first_jit_s']:.2f}", f"{row['error_over_tolerance']:.3f}"]
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def failure_row(keys: Sequence[object], error: BaseException) -> str:
    """The table row of a case that failed: its ``keys``, the error's type and first line, empty cells after."""
    lines = str(error).splitlines() or [""]
    return "| " + " | ".join(str(key) for key in keys) + f" | FAILED: {type(error).__name__}: {lines[0][:160]} ||||"


def assert_outputs_match(model: onnx.ModelProto, expected: Sequence[np.ndarray], got: Sequence,
                         framework: Sequence[np.ndarray] | None = None) -> list[float]:
    """Integer outputs equal, float outputs within :func:`tolerance`; returns error / tolerance per output.

    ``framework``: the source framework's own float32 outputs of the model the export came from. A
    float output's tolerance is then at least :data:`FRAMEWORK_FACTOR` times the framework's own
    distance from onnxruntime: deep networks whose activations stay O(1) (ConvMixer's 32 blocks with
    measured BatchNorm statistics: PyTorch, onnxruntime and XLA each ~0.01 from a float64 run, outputs
    ~20) drift by float32 rounding beyond the depth estimate, as much in PyTorch as in JAX.
    """
    assert len(got) == len(expected), f"{len(got)} outputs, onnxruntime gives {len(expected)}"
    ratios = []
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        have = np.asarray(have)
        assert have.shape == want.shape, f"output {index}: shape {have.shape}, onnxruntime {want.shape}"
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(have, want, err_msg=f"output {index}")
            continue
        atol = tolerance(model, want)
        if framework is not None and framework[index].shape == want.shape:
            atol = max(atol, FRAMEWORK_FACTOR * float(np.max(np.abs(framework[index] - want), initial=0.0)))
        # an output that varies by less than a few tolerances (a zero-initialized classifier head, or
        # features shrunk to ~1e-9 by a random network's BatchNorm defaults) passes for almost any
        # values of the right shape: refuse it, so every corpus entry checks something
        assert want.size < 2 or np.ptp(want) > MIN_SPREAD * atol, (
            f"output {index}: onnxruntime's values span {np.ptp(want):.3g}, under {MIN_SPREAD} x the tolerance "
            f"{atol:.3g}, so comparing them checks nothing; give the model weights (or BatchNorm statistics) "
            "that make this output vary")
        np.testing.assert_allclose(have, want, rtol=0, atol=atol, err_msg=f"output {index} (atol {atol:.3g})")
        ratios.append(float(np.max(np.abs(have - want))) / atol if want.size else 0.0)
    return ratios


def optimized(model: onnx.ModelProto, folder: Path, level: str = "extended") -> onnx.ModelProto:
    """``model`` after onnxruntime's offline graph optimization (``basic`` or ``extended``: its
    com.microsoft fusions), as ``SessionOptions.optimized_model_filepath`` writes it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }[level]
    options.optimized_model_filepath = str(folder / f"optimized_{level}.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(folder / f"optimized_{level}.onnx"))


def quantized(model: onnx.ModelProto, folder: Path) -> onnx.ModelProto:
    """``model`` after onnxruntime's dynamic quantization (int8 weights, DynamicQuantizeLinear inputs).

    With ``reduce_range`` (7-bit weights), as onnxruntime's documentation advises for x86 CPUs without VNNI:
    there its u8 x s8 matmul adds products in int16 pairs that saturate with full-range weights, so
    onnxruntime, the reference here, would be off the exact product by whole quantization steps on one CPU
    and not on another (BERT's logits 6e-3 off on an AMD EPYC; the generated JAX computes the exact product).
    With ``DefaultTensorType`` float: onnx's shape inference gives no type to the outputs of com.microsoft ops,
    which the quantizer needs for the MatMuls after them (an optimized model's Attention, SkipLayerNormalization).
    """
    from onnxruntime.quantization import quantize_dynamic

    onnx.save(model, str(folder / "float.onnx"))
    quantize_dynamic(str(folder / "float.onnx"), str(folder / "quantized.onnx"), reduce_range=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return onnx.load(str(folder / "quantized.onnx"))


def transformers_optimized(model: onnx.ModelProto, folder: Path, model_type: str, num_heads: int,
                           hidden_size: int) -> onnx.ModelProto:
    """``model`` after ``onnxruntime.transformers.optimizer`` (the offline tool of onnxruntime's BERT/GPT
    tooling, not the session's optimizer): for a BERT, EmbedLayerNormalization, Attention,
    SkipLayerNormalization and BiasGelu. Its graph fusions only (``opt_level=0``)."""
    from onnxruntime.transformers.optimizer import optimize_model

    onnx.save(model, str(folder / "float.onnx"))
    fused = optimize_model(str(folder / "float.onnx"), model_type=model_type, num_heads=num_heads,
                           hidden_size=hidden_size, opt_level=0)
    fused.save_model_to_file(str(folder / "transformers_optimized.onnx"))
    return onnx.load(str(folder / "transformers_optimized.onnx"))
