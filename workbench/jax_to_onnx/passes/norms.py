"""Normalization layers, however the JAX code spells them: ``LayerNormalization`` and ``RMSNormalization``.

The statistics of a norm layer reach the graph in several shapes: Flax reshapes its per-row mean back
(``Reshape``), Linen and ``vmap``-ed Equinox broadcast it back (``Unsqueeze``), ``jnp.mean(...,
keepdims=True)`` divides after broadcasting, Equinox's RMSNorm broadcasts ``rsqrt`` of a scalar,
``jnp.var`` guards its result with ``max(var, 0)``, Flax's RMSNorm subtracts a broadcast zero mean.
The rules here first bring all of them to one canonical form (reductions with ``keepdims=1`` over
negative trailing axes), which is the form onnxscript's own fusion rules are written for, then fuse:

1. ``rsqrt`` of a broadcast statistic → broadcast, then ``rsqrt``; ``x - broadcast(0)`` → ``x``;
   ``Unsqueeze/Reshape(Reduce(x, keepdims=0))`` restoring exactly the reduced axes →
   ``Reduce(x, keepdims=1)`` (:func:`keep_reduced_dims`); ``max(mean(d*d), 0)`` → ``mean(d*d)``.
2. the fusions: onnxscript's ``LayerNormFusion`` (last axis, scale applied last), and ours
   for what it does not match: several trailing axes, the scale folded into ``rsqrt`` (Flax's
   ``(x - mean) * (rsqrt(var + eps) * scale)``), RMS norms (onnxscript's ``RmsNormFusion`` matches
   ``Pow(x, 2.0)`` only, JAX writes ``x * x``), and, one phase later (they are prefixes of the scaled
   forms), the forms without scale and onnxscript's ``LayerNormalization + bias`` fusion.

onnxscript's rules are used through subclasses that add the check they lack: the scale (bias) must
have the normalized shape, else ``Mul(LayerNorm(x), y)`` with ``y`` an activation (a gate) would be
fused into a wrong graph.

RMS norms become opset-23 ``RMSNormalization`` when the target opset has it and the installed
onnxruntime runs it (:func:`onnxruntime_runs_rms_normalization`), otherwise the decomposition
``x / Sqrt(ReduceMean(Pow(x, 2)) + eps) * scale``: five nodes, the form onnxruntime's own graph
optimizer fuses into its SimplifiedLayerNormalization kernel.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase

from workbench.compat import norm_fusion_classes
from workbench.jax_to_onnx.ir_values import constant_array, is_broadcast_zero, register_unique
from workbench.jax_to_onnx.passes.fusions import ReduceMeanFusion
from workbench.jax_to_onnx.passes.norm_parameters import (
    as_parameter,
    fits_normalized_shape,
    unit_scale,
)
from workbench.jax_to_onnx.passes.reshapes import same_shape
from workbench.jax_to_onnx.passes.scheduler import fuse_patterns

RMS_NORMALIZATION_MIN_OPSET = 23
_ONNXSCRIPT = norm_fusion_classes()
LAYER_NORMALIZATION_MIN_OPSET = 17

# the reductions whose kept-dims form the preparation rules write
_REDUCTIONS = ("ReduceMean", "ReduceSum")


# ---------------------------------------------------------------------------------- helpers
def _scalar(value: ir.Value | None) -> float | None:
    """The value of a one-element constant, or None."""
    array = constant_array(value)
    return None if array is None or array.size != 1 else float(array.reshape(()))


def _reduced_axes(x: ir.Value, axes: ir.Value) -> list[int] | None:
    """The axes (0-based, sorted, distinct) a constant ``axes`` input reduces of ``x``, or None."""
    array = constant_array(axes)
    if x.shape is None or array is None or array.size == 0:
        return None
    rank = len(x.shape)
    if any(not -rank <= int(a) < rank for a in array.reshape(-1)):
        return None
    return sorted({int(a) % rank for a in array.reshape(-1)})


def _normalized_dims(x: ir.Value, axes: ir.Value, axes2: ir.Value, result: MatchResult) -> list[int] | None:
    """The static sizes of the trailing axes both ``axes`` and ``axes2`` reduce, or None (with ``result`` failed)."""
    if x.dtype != ir.DataType.FLOAT or x.shape is None:
        result.fail("fused for float32 inputs of known rank only (the ops stash float32)")
        return None
    first, second = _reduced_axes(x, axes), _reduced_axes(x, axes2)
    rank = len(x.shape)
    if first is None or first != second:
        result.fail("the statistics reduce different or non-constant axes")
        return None
    if first != list(range(first[0], rank)):
        result.fail("the normalization ops normalize trailing axes only")
        return None
    dims = [x.shape[a] for a in first]
    if not all(isinstance(d, int) for d in dims):
        result.fail("the normalized axes must be static")
        return None
    return [int(d) for d in dims]


def _epsilon(eps: ir.Value, result: MatchResult) -> bool:
    value = _scalar(eps)
    if value is None or not value >= 0.0 or constant_array(eps).ndim > 0:
        result.fail("epsilon is not a non-negative scalar constant")
        return False
    return True


def _scale_check(form: str, scale: ir.Value | None, dims: list[int], result: MatchResult) -> bool:
    if form != "none" and not fits_normalized_shape(scale, dims):
        result.fail("the scale does not have the normalized shape")
        return False
    return True


# ------------------------------------------------------------------------- 1. canonical form
def keep_reduced_dims(graph: ir.Graph | ir.Function) -> int:
    """``Reduce(x, axes, keepdims=0)`` whose every use restores the reduced axes (``Unsqueeze`` of
    exactly those axes, or a ``Reshape`` to x's shape with them 1) → one ``Reduce(x, axes, keepdims=1)``
    with the axes written negative (onnxscript's patterns read ``[-1]``), in place; returns the count.

    Then ``Sub(x, mean)`` nodes made identical (Flax subtracts its mean once broadcast by Unsqueeze,
    once by Reshape) are merged, so the centered value is one node as the norm patterns expect.

    A direct pass rather than a rewrite rule: a rule may not rewrite a value that is read elsewhere,
    and Flax's mean is read by two broadcasts. Hand-written: onnxscript has no rule for this.
    """
    count = 0
    for node in list(graph):
        if node.op_type not in _REDUCTIONS or node.domain != "" or node.graph is None:
            continue
        if node.attributes.get_int("keepdims", 1) != 0 or node.attributes.get_int("noop_with_empty_axes", 0):
            continue
        x, reduced = node.inputs[0], node.outputs[0]
        reduced_axes = None if x is None or len(node.inputs) < 2 else _reduced_axes(x, node.inputs[1])
        uses = reduced.uses()
        if reduced_axes is None or not uses or reduced.is_graph_output():
            continue
        if not all(use.idx == 0 and _restores(use.node, x, reduced_axes) for use in uses):
            continue
        rank = len(x.shape)
        axes = ir.Value(name=f"{reduced.name}/axes", const_value=ir.Tensor(np.array([a - rank for a in reduced_axes], np.int64)))
        axes.shape, axes.dtype = ir.Shape([len(reduced_axes)]), ir.DataType.INT64
        if isinstance(graph, ir.Graph):
            register_unique(graph, axes)
        else:  # a function has no initializers: the axes come from a Constant node
            constant = ir.Node("", "Constant", [], attributes=[ir.AttrTensor("value", axes.const_value)])
            graph.insert_before(node, constant)
            axes = constant.outputs[0]
        kept = ir.Node("", node.op_type, [x, axes], attributes=[ir.AttrInt64("keepdims", 1)], name=node.name,
                       metadata_props=dict(node.metadata_props), doc_string=node.doc_string)
        restored = uses[0].node.outputs[0]
        kept.outputs[0].name = restored.name
        if restored.shape is not None:
            kept.outputs[0].shape = restored.shape
        dtype = restored.dtype or reduced.dtype  # handler decompositions leave some values untyped
        if dtype is not None:
            kept.outputs[0].dtype = dtype
        graph.insert_before(node, kept)
        restoring = [use.node for use in uses]
        for restore in restoring:
            restore.outputs[0].replace_all_uses_with(kept.outputs[0])
        graph.remove([*restoring, node], safe=True)
        _merge_identical_uses(graph, kept.outputs[0])
        count += 1
    return count


def _restores(node: ir.Node, x: ir.Value, reduced_axes: list[int]) -> bool:
    """Whether ``node`` gives a reduction of ``x`` over ``reduced_axes`` back exactly those axes as 1s."""
    rank = len(x.shape)
    if node.domain != "" or len(node.inputs) != 2 or node.outputs[0].is_graph_output():
        return False
    if node.op_type == "Unsqueeze":
        kept_axes = constant_array(node.inputs[1])
        return kept_axes is not None and sorted(int(a) % rank for a in kept_axes.reshape(-1)) == reduced_axes
    if node.op_type != "Reshape" or node.attributes.get_int("allowzero", 0):
        return False
    restored = node.outputs[0]
    if restored.shape is None or len(restored.shape) != rank:
        return False
    return all(
        after == 1 if axis in reduced_axes else _same_dim(before, after)
        for axis, (before, after) in enumerate(zip(x.shape, restored.shape, strict=True))
    )


def _merge_identical_uses(graph: ir.Graph | ir.Function, value: ir.Value) -> None:
    """Merge the nodes reading ``value`` that are the same op on the same inputs (a local CSE)."""
    seen: dict[tuple[object, ...], ir.Node] = {}
    for use in list(value.uses()):
        node = use.node
        if node.graph is None or node.domain != "" or node.op_type != "Sub" or len(node.outputs) != 1:
            continue
        key = (node.op_type, tuple(id(v) for v in node.inputs))
        first = seen.setdefault(key, node)
        if first is not node and not node.outputs[0].is_graph_output():
            node.outputs[0].replace_all_uses_with(first.outputs[0])
            graph.remove(node, safe=True)


def _same_dim(a: int | ir.SymbolicDim, b: int | ir.SymbolicDim) -> bool:
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return a.value is not None and a.value == b.value


class RsqrtBeforeBroadcast(RewriteRuleClassBase):
    """``Unsqueeze(Reciprocal(Sqrt(s + eps)), axes)`` → ``Reciprocal(Sqrt(Unsqueeze(s, axes) + eps))``.

    Equinox's RMSNorm takes ``rsqrt`` of a per-example scalar, which ``vmap`` broadcasts afterwards;
    broadcasting the statistic first puts the Unsqueeze next to its reduction (see
    :class:`ReductionKeepsDims`). Elementwise ops on a scalar ``eps`` commute with the Unsqueeze exactly.
    """

    def pattern(self, op, statistic, eps, axes):  # noqa: ANN001, ANN201
        return op.Unsqueeze(op.Reciprocal(op.Sqrt(op.Add(statistic, eps))), axes)

    def check(self, context, statistic, eps, axes) -> MatchResult:  # noqa: ANN001
        del context, statistic, axes
        result = MatchResult()
        _epsilon(eps, result)
        return result

    def rewrite(self, op, statistic, eps, axes):  # noqa: ANN001, ANN201
        return op.Reciprocal(op.Sqrt(op.Add(op.Unsqueeze(statistic, axes), eps)))


class SubtractBroadcastZero(RewriteRuleClassBase):
    """``x - broadcast(0)`` → ``x`` when x already has the result's shape (Flax's RMSNorm subtracts a zero mean)."""

    def pattern(self, op, x, zero):  # noqa: ANN001, ANN201
        return op.Sub(x, zero, _outputs=["difference"])

    def check(self, context, x, zero, difference) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        if not same_shape(x, difference):
            return result.fail("x does not have the result's shape")
        if not is_broadcast_zero(zero):
            return result.fail("the subtrahend is not a broadcast zero")
        return result

    def rewrite(self, op, x, zero, difference):  # noqa: ANN001, ANN201
        del zero, difference
        return op.Identity(x)


class NonNegativeGuard(RewriteRuleClassBase):
    """``max(mean(d * d), 0)`` (or its ``Relu``) → ``mean(d * d)``: a mean of squares is never negative,
    and NaN stays NaN either way (``jnp.var`` and Equinox guard the variance so)."""

    def __init__(self, *, relu: bool = False) -> None:
        super().__init__(name=f"NonNegativeGuard{'Relu' if relu else 'Max'}")
        self.relu = relu

    def pattern(self, op, d, axes, zero):  # noqa: ANN001, ANN201
        variance = op.ReduceMean(op.Mul(d, d), axes, _outputs=["variance"])
        return op.Relu(variance) if self.relu else op.Max(variance, zero)

    def check(self, context, d, axes, variance, zero=None) -> MatchResult:  # noqa: ANN001
        del context, d, axes
        result = MatchResult()
        if self.relu:
            return result
        if _scalar(zero) != 0.0 or zero.shape is None or variance.shape is None or len(zero.shape) > len(variance.shape):
            return result.fail("not a max with a scalar 0")
        return result

    def rewrite(self, op, d, axes, variance, zero=None):  # noqa: ANN001, ANN201
        del zero
        attributes = {name: attr.value for name, attr in variance.producer().attributes.items()}
        return op.ReduceMean(op.Mul(d, d), axes, **attributes)


# ------------------------------------------------------------------------------ 2. fusions
class CheckedLayerNormFusion(_ONNXSCRIPT.layer_norm):
    """onnxscript's ``LayerNormFusion`` (last axis, ``Mul(normalized, scale)``), with the scale's shape checked."""

    def check(self, context, x, scale, epsilon, **rest) -> MatchResult:  # noqa: ANN001
        result = super().check(context, x, scale=scale, epsilon=epsilon, **rest)
        if not result:
            return result
        if x.dtype != ir.DataType.FLOAT or x.shape is None or not isinstance(x.shape[-1], int):
            return result.fail("fused for float32 inputs with a static last axis only")
        if list(scale.shape or []) != [x.shape[-1]]:
            return result.fail("the scale does not have the normalized shape")
        return result


class CheckedLayerNormBiasFusion(_ONNXSCRIPT.layer_norm_bias):
    """onnxscript's ``LayerNormalization(x, scale) + bias`` → ``LayerNormalization(x, scale, bias)``, when
    ``bias`` has the normalized shape (a residual added to a LayerNorm's output is no bias)."""

    def check(self, context, x, scale, bias, normalized) -> MatchResult:  # noqa: ANN001
        del context, x
        result = MatchResult()
        if normalized.producer().domain != "" or len(normalized.producer().inputs) != 2:
            return result.fail("not a standard LayerNormalization without bias")
        if scale.shape is None or not scale.shape.is_static() or not fits_normalized_shape(bias, list(scale.shape)):
            return result.fail("the bias does not have the normalized shape")
        return result

    def rewrite(self, op, x, scale, bias, normalized):  # noqa: ANN001, ANN201
        return super().rewrite(op, x, scale, as_parameter(op, bias, [int(d) for d in scale.shape]), normalized)


class _NormFusion(RewriteRuleClassBase):
    """The shared part of the hand-written norm rules: how the scale is applied.

    ``form``: ``"after"`` ``Mul(Mul(n, inv), scale)``, ``"inside"`` ``Mul(n, Mul(inv, scale))`` (Flax),
    ``"none"`` ``Mul(n, inv)``; ``flipped`` reads ``Mul(inv, n)`` (Equinox's ``inv_rms * x``).
    """

    kind = ""

    def __init__(self, *, form: str, flipped: bool = False) -> None:
        super().__init__(name=f"{self.kind}{form.title()}{'Flipped' if flipped else ''}")
        self.form = form
        self.flipped = flipped

    def _scaled(self, op, centered, inv, scale):  # noqa: ANN001, ANN202
        if self.form == "inside":
            return op.Mul(centered, op.Mul(inv, scale))
        normalized = op.Mul(inv, centered) if self.flipped else op.Mul(centered, inv)
        return op.Mul(normalized, scale) if self.form == "after" else normalized

    def _check_statistics(self, x, axes, axes2, eps, scale) -> MatchResult:  # noqa: ANN001
        """Both reductions over the same trailing axes, a scalar epsilon, a scale of the normalized shape."""
        result = MatchResult()
        dims = _normalized_dims(x, axes, axes2, result)
        if dims is not None and _epsilon(eps, result):
            _scale_check(self.form, scale, dims, result)
        return result

    def _axis_and_weight(self, op, x, axes, scale) -> tuple[int, ir.Value]:  # noqa: ANN001
        """The fused op's (negative) first normalized axis and its scale input (ones when there is no scale)."""
        first = _reduced_axes(x, axes)[0]
        dims = [int(d) for d in x.shape[first:]]
        weight = unit_scale(op, dims, x) if self.form == "none" else as_parameter(op, scale, dims)
        return first - len(x.shape), weight


class LayerNormKeptStatistics(_NormFusion):
    """``(x - mean) * rsqrt(mean((x - mean)²) + eps)`` with the scale applied three ways, over any
    trailing axes (``use_fast_variance=False`` in Flax NNX/Linen, Equinox, hand-written code)
    → ``LayerNormalization``. Written by hand for what onnxscript's ``LayerNormFusion`` does not match:
    several axes, the scale folded into ``rsqrt``, no scale."""

    kind = "LayerNormKept"

    def pattern(self, op, x, axes, axes2, eps, scale):  # noqa: ANN001, ANN201
        centered = op.Sub(x, op.ReduceMean(x, axes, keepdims=1))
        variance = op.ReduceMean(op.Mul(centered, centered), axes2, keepdims=1)
        inv = op.Reciprocal(op.Sqrt(op.Add(variance, eps)))
        return self._scaled(op, centered, inv, scale)

    def check(self, context, x, axes, axes2, eps, scale=None) -> MatchResult:  # noqa: ANN001
        del context
        return self._check_statistics(x, axes, axes2, eps, scale)

    def rewrite(self, op, x, axes, axes2, eps, scale=None):  # noqa: ANN001, ANN201
        del axes2
        axis, weight = self._axis_and_weight(op, x, axes, scale)
        return op.LayerNormalization(x, weight, axis=axis, epsilon=_scalar(eps))


class RMSNormFusion(_NormFusion):
    """``x * rsqrt(mean(x²) + eps)`` (Flax NNX/Linen RMSNorm, Equinox, Llama/GPT-OSS code) with the scale
    applied three ways → ``RMSNormalization`` (opset 23, when onnxruntime runs it) or the five-node
    decomposition. Hand-written because onnxscript's ``RmsNormFusion`` matches ``Pow(x, 2.0)`` over
    the last axis only, while JAX lowers ``x**2`` to ``x * x``."""

    kind = "RMSNorm"

    def __init__(self, *, form: str, flipped: bool = False, fused_op: bool) -> None:
        super().__init__(form=form, flipped=flipped)
        self.fused_op = fused_op

    def pattern(self, op, x, axes, eps, scale):  # noqa: ANN001, ANN201
        mean_square = op.ReduceMean(op.Mul(x, x), axes, keepdims=1)
        inv = op.Reciprocal(op.Sqrt(op.Add(mean_square, eps)))
        return self._scaled(op, x, inv, scale)

    def check(self, context, x, axes, eps, scale=None) -> MatchResult:  # noqa: ANN001
        del context
        return self._check_statistics(x, axes, axes, eps, scale)

    def rewrite(self, op, x, axes, eps, scale=None):  # noqa: ANN001, ANN201
        if self.fused_op:
            axis, weight = self._axis_and_weight(op, x, axes, scale)
            return op.RMSNormalization(x, weight, axis=axis, epsilon=_scalar(eps))
        two = op.initializer(ir.Tensor(np.array(2.0, np.float32)), name=f"{x.name}/two")
        mean_square = op.ReduceMean(op.Pow(x, two), axes, keepdims=1)
        normalized = op.Div(x, op.Sqrt(op.Add(mean_square, eps)))
        return normalized if self.form == "none" else op.Mul(normalized, scale)


class CheckedRmsNormFusion(_ONNXSCRIPT.rms_norm):
    """onnxscript's ``RmsNormFusion`` (``Pow(x, 2.0)`` over the last axis), with the scale's shape checked."""

    def check(self, op, x, scale, epsilon, compute_dtype, target_dtype, **rest) -> MatchResult:  # noqa: ANN001
        result = super().check(op, x, scale, epsilon, compute_dtype, target_dtype, **rest)
        if not result:
            return result
        if x.shape is None or not isinstance(x.shape[-1], int) or list(scale.shape or []) != [x.shape[-1]]:
            return result.fail("the scale does not have the normalized shape")
        return result


def rms_normalization_op(opset: int) -> bool:
    """Whether RMS norms become the ``RMSNormalization`` op at ``opset`` (else the decomposition)."""
    return opset >= RMS_NORMALIZATION_MIN_OPSET and onnxruntime_runs_rms_normalization()


# --------------------------------------------------------------------- runtime capability
@functools.cache
def onnxruntime_runs_rms_normalization() -> bool:
    """Whether the installed onnxruntime loads and runs opset-23 ``RMSNormalization`` (checked once).

    The op is new (onnxruntime implements it from 1.22); an export meant for this machine's runtime
    should not contain an op it cannot run. Without onnxruntime the decomposition is used.
    """
    try:
        import onnxruntime
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
    except ImportError:
        return False
    import onnx
    from onnx import helper

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])
    scale = onnx.numpy_helper.from_array(np.ones(2, np.float32), "scale")
    node = helper.make_node("RMSNormalization", ["x", "scale"], ["y"], axis=-1, epsilon=1e-5)
    graph = helper.make_graph([node], "probe", [x], [y], [scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", RMS_NORMALIZATION_MIN_OPSET)], ir_version=10)
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"x": np.array([[3.0, 4.0]], np.float32)})
    except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.NotImplemented, ort_errors.InvalidArgument):
        return False
    expected = np.array([[3.0, 4.0]]) / math.sqrt(12.5 + 1e-5)
    return bool(np.allclose(out, expected, rtol=1e-5))


# --------------------------------------------------------------------------------- the driver
def _broadcast_phases(opset: int) -> list[list[tuple[RewriteRule, bool]]]:
    del opset
    return [[(RsqrtBeforeBroadcast.rule(), False), (SubtractBroadcastZero.rule(), False)]]


def _norm_phases(opset: int) -> list[list[tuple[RewriteRule, bool]]]:
    if opset < LAYER_NORMALIZATION_MIN_OPSET:
        return []
    fused_op = rms_normalization_op(opset)
    # Equinox divides by n after broadcasting: Div(ReduceSum(keepdims=1), n) becomes a mean here
    means = [(ReduceMeanFusion.rule(), False), (NonNegativeGuard.rule(), False), (NonNegativeGuard.rule(relu=True), False)]
    scaled: list[RewriteRule] = [CheckedLayerNormFusion.rule()]
    scaled += [LayerNormKeptStatistics.rule(form=form) for form in ("after", "inside")]
    if fused_op:
        scaled += [CheckedRmsNormFusion.rule(f"CheckedRmsNormFusion{order}", mul_order=order) for order in (True, False)]
    scaled += [RMSNormFusion.rule(form=form, flipped=flipped, fused_op=fused_op)
               for form in ("after", "inside") for flipped in (False, True)]
    # the forms without scale are prefixes of the scaled ones: one phase later
    unscaled: list[RewriteRule] = [LayerNormKeptStatistics.rule(form="none")]
    unscaled += [RMSNormFusion.rule(form="none", flipped=flipped, fused_op=fused_op) for flipped in (False, True)]
    unscaled.append(CheckedLayerNormBiasFusion.rule())
    return [means, [(rule, False) for rule in scaled], [(rule, False) for rule in unscaled]]


def fuse_norms(model: ir.Model) -> int:
    """Bring every norm spelling to the canonical form and fuse it (steps 1 and 2 above), in place.

    Runs after :func:`.scheduler.fuse_patterns` (whose ReduceMean fusion it builds on); each step is
    one sweep over the graph. Returns how many rewrites happened. The ops read ReduceMean's axes
    input, an attribute before opset 18: below it nothing is done.
    """
    if model.opset_imports.get("", 0) < 18:
        return 0
    count = fuse_patterns(model, phases=_broadcast_phases)
    for graph in (model.graph, *model.functions.values()):
        count += keep_reduced_dims(graph)
    return count + fuse_patterns(model, phases=_norm_phases)
