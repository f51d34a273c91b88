"""Fusion rules: the arithmetic JAX's decompositions produce, rewritten into the ONNX op that says what it is.

A 1-D bias reshaped to ``(1, ..., 1, N)`` before a broadcasting Add/Mul/Sub is used as is (ONNX
broadcasts numpy-style); ``MatMul`` + ``Add`` on 2-D inputs → ``Gemm``; the arithmetic of
``jax.nn.softmax`` → ``Softmax``; both forms of ``jax.nn.gelu`` (tanh approximation and exact erf)
→ ``Gelu`` at opset 20+ (kept decomposed below); flax's LayerNorm → ``LayerNormalization`` at opset 17+; the
softmax pattern reads the opset-18 form of ``ReduceMax`` (softmax stays decomposed below opset 18).

Why hand-written rules: the patterns are those JAX's own decompositions produce (e.g. softmax
with its ``max(-inf, reduce_max)`` guard, gelu's ``x * x * x``), which the generic fusions of
onnxscript do not recognise; the matching and the graph surgery are onnxscript's. Each rule checks
the constants it relies on, so numerics are preserved.
"""

from __future__ import annotations

import math

import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase
from onnxscript.rewriter.rules import common as common_rules

from workbench.compat import new_common_rules
from workbench.jax_to_onnx.bias import bias_reshape_problem
from workbench.jax_to_onnx.ir_values import constant_array, is_uniform_condition
from workbench.jax_to_onnx.passes.norm_parameters import (
    as_parameter,
    fits_normalized_shape,
    unit_scale,
)
from workbench.jax_to_onnx.passes.reshapes import same_shape
from workbench.jax_to_onnx.passes.transposed_softmax import TransposedSoftmax

GELU_MIN_OPSET = 20
LAYER_NORMALIZATION_MIN_OPSET = 17


def _is_scalar(value: ir.Value | None, expected: float, *, rtol: float = 1e-6) -> bool:
    array = constant_array(value)
    if array is None or array.size != 1:
        return False
    actual = float(array.reshape(()))
    if math.isinf(expected):
        return actual == expected
    return math.isclose(actual, expected, rel_tol=rtol, abs_tol=0.0)


def _rank(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


# ------------------------------------------------------------------------------------ bias
class _BiasReshapeBase(RewriteRuleClassBase):
    """``Op(x, Reshape(b, [1, ..., 1, *b.shape]))`` → ``Op(x, b)`` (numpy broadcasting adds the leading 1s)."""

    op_type = "Add"

    def pattern(self, op, x, bias, shape):  # noqa: ANN001, ANN201 - onnxscript pattern builder
        return getattr(op, self.op_type)(x, op.Reshape(bias, shape))

    def check(self, context, x, bias, shape) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        problem = bias_reshape_problem(x, bias, shape)
        return result.fail(problem) if problem else result

    def rewrite(self, op, x, bias, shape):  # noqa: ANN001, ANN201
        del shape
        return getattr(op, self.op_type)(x, bias)


class AddReshapedBias(_BiasReshapeBase):
    op_type = "Add"


class MulReshapedBias(_BiasReshapeBase):
    op_type = "Mul"


class SubReshapedBias(_BiasReshapeBase):
    op_type = "Sub"


# --------------------------------------------------------------------------------- softmax
class SoftmaxFusion(RewriteRuleClassBase):
    """jax.nn.softmax: ``e = Exp(x - Unsqueeze(Max(ReduceMax(x, a), -inf), a))``, ``e / Unsqueeze(ReduceSum(e, a), a)``."""

    def pattern(self, op, x, floor, axes_max, axes_unsq1, axes_sum, axes_unsq2):  # noqa: ANN001, ANN201
        reduced = op.ReduceMax(x, axes_max, keepdims=0)
        shifted = op.Sub(x, op.Unsqueeze(op.Max(reduced, floor), axes_unsq1))
        exp = op.Exp(shifted)
        total = op.Unsqueeze(op.ReduceSum(exp, axes_sum, keepdims=0), axes_unsq2)
        return op.Div(exp, total)

    def check(self, context, x, floor, axes_max, axes_unsq1, axes_sum, axes_unsq2) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        if not _is_scalar(floor, -math.inf):
            return result.fail("the max guard is not -inf")
        axes = [constant_array(a) for a in (axes_max, axes_unsq1, axes_sum, axes_unsq2)]
        rank = _rank(x)
        if rank is None or any(a is None or a.size != 1 for a in axes):
            return result.fail("softmax over one constant axis only")
        normalized = {int(a.reshape(())) % rank for a in axes}
        if len(normalized) != 1:
            return result.fail("reduction and unsqueeze axes differ")
        return result

    def rewrite(self, op, x, floor, axes_max, axes_unsq1, axes_sum, axes_unsq2):  # noqa: ANN001, ANN201
        del floor, axes_unsq1, axes_sum, axes_unsq2
        return op.Softmax(x, axis=int(constant_array(axes_max).reshape(())))


# ------------------------------------------------------------------------------------ gelu
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class GeluTanhFusion(RewriteRuleClassBase):
    """jax.nn.gelu(approximate=True): ``x * ((1 + tanh((x + x*x*x * 0.044715) * sqrt(2/pi))) * 0.5)``."""

    def pattern(self, op, x, c_cube, c_scale, one, half):  # noqa: ANN001, ANN201
        cube = op.Mul(x, op.Mul(x, x))
        inner = op.Mul(op.Add(x, op.Mul(cube, c_cube)), c_scale)
        return op.Mul(x, op.Mul(op.Add(op.Tanh(inner), one), half))

    def check(self, context, x, c_cube, c_scale, one, half) -> MatchResult:  # noqa: ANN001
        del context, x
        result = MatchResult()
        if not (
            _is_scalar(c_cube, 0.044715, rtol=1e-5)
            and _is_scalar(c_scale, _SQRT_2_OVER_PI, rtol=1e-5)
            and _is_scalar(one, 1.0)
            and _is_scalar(half, 0.5)
        ):
            return result.fail("constants are not those of the tanh gelu")
        return result

    def rewrite(self, op, x, c_cube, c_scale, one, half):  # noqa: ANN001, ANN201
        del c_cube, c_scale, one, half
        return op.Gelu(x, approximate="tanh")


class GeluErfFusion(RewriteRuleClassBase):
    """jax.nn.gelu(approximate=False): ``(x * 0.5) * (1 - erf(-x * (1/sqrt 2)))``."""

    def pattern(self, op, x, half, inv_sqrt2, one):  # noqa: ANN001, ANN201
        return op.Mul(op.Mul(x, half), op.Sub(one, op.Erf(op.Mul(op.Neg(x), inv_sqrt2))))

    def check(self, context, x, half, inv_sqrt2, one) -> MatchResult:  # noqa: ANN001
        del context, x
        result = MatchResult()
        if not (_is_scalar(half, 0.5) and _is_scalar(inv_sqrt2, 1 / math.sqrt(2), rtol=1e-5) and _is_scalar(one, 1.0)):
            return result.fail("constants are not those of the erf gelu")
        return result

    def rewrite(self, op, x, half, inv_sqrt2, one):  # noqa: ANN001, ANN201
        del half, inv_sqrt2, one
        return op.Gelu(x)


# --------------------------------------------------------------------------------- no-ops
class ConstantConditionWhere(RewriteRuleClassBase):
    """``Where(c, x, y)`` with ``c`` a constant, all true (or all false) → ``x`` (or ``y``).

    ``jnp.var`` and friends guard a division with ``where(n - ddof > 0, ...)``; under ``vmap`` the
    constant guard stays a Where, with the other branch broadcast through ``Shape → Concat →
    Expand``. The kept branch must already have the Where's shape (no broadcasting is lost).
    """

    def pattern(self, op, condition, x, y):  # noqa: ANN001, ANN201
        return op.Where(condition, x, y, _outputs=["selected"])

    def check(self, context, condition, x, y, selected) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        if not is_uniform_condition(condition):
            return result.fail("the condition is not a constant, all true or all false")
        kept = x if constant_array(condition).all() else y
        if not same_shape(kept, selected):
            return result.fail("the kept branch does not have the result's shape")
        return result

    def rewrite(self, op, condition, x, y, selected):  # noqa: ANN001, ANN201
        del selected
        return op.Identity(x if constant_array(condition).all() else y)


# ----------------------------------------------------------------------------- activations
# the integer types onnxruntime's CPU Relu takes (ONNX allows every signed one since opset 14; int16 and int64
# have no kernel: an int64 Max(x, 0), such as a clamped dimension or length, stays a Max)
_RELU_INTEGERS = frozenset({ir.DataType.INT8, ir.DataType.INT32})


class ReluFusion(RewriteRuleClassBase):
    """jax.nn.relu: ``Max(x, 0)`` → ``Relu(x)`` (relu6's ``Min(Max(x, 0), 6)`` became a Clip before), for
    floats and the integer types onnxruntime runs Relu on."""

    def pattern(self, op, x, zero):  # noqa: ANN001, ANN201
        return op.Max(x, zero)

    def check(self, context, x, zero) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        if x.shape is None or zero.shape is None or not _is_scalar(zero, 0.0):
            return result.fail("not a max with a scalar 0")
        if len(zero.shape) > len(x.shape):
            return result.fail("the zero would broadcast x to a higher rank")
        if x.dtype is None or not (x.dtype.is_floating_point() or x.dtype in _RELU_INTEGERS):
            return result.fail(f"onnxruntime has no Relu for {x.dtype}")
        return result

    def rewrite(self, op, x, zero):  # noqa: ANN001, ANN201
        del zero
        return op.Relu(x)


class LeakyReluFusion(RewriteRuleClassBase):
    """jax.nn.leaky_relu: ``Where(x >= 0, x, x * alpha)`` → ``LeakyRelu(x, alpha)``."""

    def pattern(self, op, x, zero, alpha):  # noqa: ANN001, ANN201
        return op.Where(op.GreaterOrEqual(x, zero), x, op.Mul(x, alpha))

    def check(self, context, x, zero, alpha) -> MatchResult:  # noqa: ANN001
        del context, x
        result = MatchResult()
        array = constant_array(alpha)
        if not _is_scalar(zero, 0.0) or array is None or array.size != 1 or array.ndim != 0:
            return result.fail("not leaky_relu's comparison with 0 and scalar slope")
        return result

    def rewrite(self, op, x, zero, alpha):  # noqa: ANN001, ANN201
        del zero
        return op.LeakyRelu(x, alpha=float(constant_array(alpha)))


class ReduceMeanFusion(RewriteRuleClassBase):
    """jnp.mean: ``ReduceSum(x, axes) / n`` with n the number of reduced elements → ``ReduceMean(x, axes)``."""

    def pattern(self, op, x, axes, count):  # noqa: ANN001, ANN201
        return op.Div(op.ReduceSum(x, axes, _allow_other_attributes=True, _outputs=["total"]), count)

    def check(self, context, x, axes, count, total) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        axes_array = constant_array(axes)
        if x.shape is None or axes_array is None or axes_array.size == 0:
            return result.fail("reduction axes are not constant")
        if total.producer().attributes.get_int("noop_with_empty_axes", 0):
            return result.fail("noop_with_empty_axes")
        rank = len(x.shape)
        dims = [x.shape[int(a) % rank] for a in axes_array.reshape(-1)]
        if not all(isinstance(d, int) for d in dims) or not _is_scalar(count, float(math.prod(dims))):
            return result.fail("the divisor is not the number of reduced elements")
        return result

    def rewrite(self, op, x, axes, count, total):  # noqa: ANN001, ANN201
        del count
        keepdims = total.producer().attributes.get_int("keepdims", 1)
        return op.ReduceMean(x, axes, keepdims=keepdims)


# ------------------------------------------------------------------------------ layer norm
class LayerNormFusion(RewriteRuleClassBase):
    """flax ``LayerNorm`` (fast variance): mean and E[x²] over the trailing axes, ``var = max(E[x²] - mean², 0)``,
    ``(x - mean) * (rsqrt(var + eps) * scale) + bias`` → ``LayerNormalization``. The statistics get
    their reduced axes back through a Reshape (NNX) or an Unsqueeze of exactly those axes (Linen's
    ``broadcast_in_dim``): ``unsqueeze`` picks the form.

    The variance form differs from ONNX's ``E[(x - mean)²]`` only by rounding (ONNX's is the more
    accurate one); the rule checks every constant and shape it relies on: the axes are the trailing
    ones, the divisor is their size, the guard is 0, the re-shaped statistics keep x's other dims.
    """

    def __init__(self, *, with_scale: bool, with_bias: bool, unsqueeze: bool = False) -> None:
        super().__init__(
            name=f"LayerNorm{'Scale' if with_scale else ''}{'Bias' if with_bias else ''}{'Unsqueeze' if unsqueeze else ''}"
        )
        self.with_scale = with_scale
        self.with_bias = with_bias
        self.unsqueeze = unsqueeze

    def pattern(self, op, x, axes, axes2, count, count2, zero, mean_shape, var_shape, eps, scale, bias):  # noqa: ANN001, ANN201
        mean = op.Div(op.ReduceSum(x, axes, keepdims=0), count)
        mean_sq = op.Div(op.ReduceSum(op.Mul(x, x), axes2, keepdims=0), count2)
        var = op.Max(op.Sub(mean_sq, op.Mul(mean, mean)), zero)
        keep = op.Unsqueeze if self.unsqueeze else op.Reshape
        centered = op.Sub(x, keep(mean, mean_shape))
        inv_std = op.Reciprocal(op.Sqrt(op.Add(keep(var, var_shape), eps)))
        normalized = op.Mul(centered, op.Mul(inv_std, scale) if self.with_scale else inv_std)
        return op.Add(normalized, bias) if self.with_bias else normalized

    def check(self, context, x, axes, axes2, count, count2, zero, mean_shape, var_shape, eps, scale=None, bias=None) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        if x.dtype != ir.DataType.FLOAT or x.shape is None:
            return result.fail("fused for float32 inputs of known rank only (LayerNormalization stashes float32)")
        rank = len(x.shape)
        axes_array, axes2_array = constant_array(axes), constant_array(axes2)
        if axes_array is None or axes2_array is None:
            return result.fail("reduction axes are not constant")
        normalized = sorted({int(a) % rank for a in axes_array.reshape(-1)})
        if sorted({int(a) % rank for a in axes2_array.reshape(-1)}) != normalized or not normalized:
            return result.fail("the two means reduce different axes")
        if normalized != list(range(normalized[0], rank)):
            return result.fail("LayerNormalization normalizes trailing axes only")
        if self.unsqueeze:
            for kept_axes in (constant_array(mean_shape), constant_array(var_shape)):
                if kept_axes is None or sorted(int(a) % rank for a in kept_axes.reshape(-1)) != normalized:
                    return result.fail("the statistics do not get back exactly the reduced axes")
        trailing = [x.shape[a] for a in normalized]
        if not all(isinstance(d, int) for d in trailing):
            return result.fail("normalized axes must be static")
        size = float(math.prod(trailing))
        if not (_is_scalar(count, size) and _is_scalar(count2, size) and _is_scalar(zero, 0.0)):
            return result.fail("divisors are not the normalized size or the variance guard is not 0")
        eps_array = constant_array(eps)
        if eps_array is None or eps_array.size != 1 or not float(eps_array.reshape(())) >= 0.0:
            return result.fail("epsilon is not a non-negative constant")
        for value in (scale, bias) if self.with_scale else (bias,):
            if value is not None and not fits_normalized_shape(value, trailing):
                return result.fail("scale and bias must have the normalized shape (leading 1s aside)")
        return result

    def rewrite(self, op, x, axes, axes2, count, count2, zero, mean_shape, var_shape, eps, scale=None, bias=None):  # noqa: ANN001, ANN201
        del axes2, count, count2, zero, mean_shape, var_shape
        rank = len(x.shape)
        first_axis = min(int(a) % rank for a in constant_array(axes).reshape(-1))
        epsilon = float(constant_array(eps).reshape(()))
        trailing = [int(d) for d in x.shape[first_axis:]]
        scale = as_parameter(op, scale, trailing) if self.with_scale else unit_scale(op, trailing, x)
        inputs = [x, scale] + ([as_parameter(op, bias, trailing)] if self.with_bias else [])
        return op.LayerNormalization(*inputs, axis=first_axis, epsilon=epsilon)


# ------------------------------------------------------------------------------- the driver
# commutative binary ops whose constant operand is moved to the right before matching, so that one


def rule_phases(opset: int) -> list[list[tuple[RewriteRule, bool]]]:
    """The rules that apply at ``opset`` as (rule, try both operand orders), phase by phase.

    Chains of layout ops that cancel or combine (Transpose∘Transpose, Reshape∘Reshape, no-op
    Transpose/Expand/Cast: onnxscript's own rules) and bias reshapes go first so the larger
    patterns see plain 1-D biases and scales; the
    LayerNorm forms without a bias go last (they are part of the forms with one). The larger
    patterns match the canonical operand order only (see :func:`canonicalize_constant_operands`):
    onnxscript's ``commute`` expands each of them into 2^(commutative ops) variants (128 for gelu),
    which made the rewriter the slowest step of a conversion.
    """
    common = new_common_rules()
    layout = [(rule, False) for rule in (
        common.transpose_transpose,
        common.no_op_transpose,
        common.reshape_reshape,
        common.unsqueeze_unsqueeze,
        common.no_op_expand,
        common.no_op_cast,
        ConstantConditionWhere.rule(),
    )]
    bias = [(AddReshapedBias.rule(), True), (MulReshapedBias.rule(), True), (SubReshapedBias.rule(), True)]
    # relu6 = Min(Max(x, 0), 6) → Clip, before Max(x, 0) alone becomes a Relu
    clips = [(common.max_min_to_clip, False), (common.min_max_to_clip, False)]
    fusions = [(common.matmul_add_to_gemm, True)]
    if opset >= 18:  # the pattern reads ReduceMax's axes input (an attribute before opset 18)
        fusions.append((SoftmaxFusion.rule(), False))
        # the softmax of a transposed view (Flax's grouped-query attention), with the Transpose after it first
        fusions += [(TransposedSoftmax.rule(then_transpose=after), False) for after in (True, False)]
    fusions += [(rule, False) for rule in _hard_sigmoid_rules()]
    layer_norm = opset >= LAYER_NORMALIZATION_MIN_OPSET
    if layer_norm:
        fusions += [
            (LayerNormFusion.rule(with_scale=scale, with_bias=True, unsqueeze=unsqueeze), False)
            for scale in (True, False) for unsqueeze in (False, True)
        ]
    if opset >= GELU_MIN_OPSET:
        fusions += [(GeluTanhFusion.rule(), False), (GeluErfFusion.rule(), False)]
    # a LayerNorm without bias is a prefix of one with bias: only tried once those have been fused
    unbiased = [
        (LayerNormFusion.rule(with_scale=scale, with_bias=False, unsqueeze=unsqueeze), False)
        for scale in (True, False) for unsqueeze in (False, True)
    ] if layer_norm else []
    # Max(x, 0) is also LayerNorm's variance guard and ReduceSum/n its mean: both only once LayerNorms are fused
    activations = [(ReluFusion.rule(), False), (LeakyReluFusion.rule(), False)]
    if opset >= 18:  # ReduceMean with its axes as an input (an attribute before opset 18)
        activations.append((ReduceMeanFusion.rule(), False))
    if opset >= 14:  # HardSwish exists from opset 14 on
        activations += [(rule, False) for rule in _hard_swish_rules()]
    return [layout + bias + clips, fusions, unbiased, activations]


def _hard_sigmoid_rules() -> list[RewriteRule]:
    """onnxscript's ``Clip(x + 3, 0, 6) / 6`` → HardSigmoid (jax.nn.hard_sigmoid)."""
    return [rule for rule in common_rules.fuse_hardswish_rules() if rule.name == "HardSigmoidFusion"]


def _hard_swish_rules() -> list[RewriteRule]:
    """onnxscript's ``x * HardSigmoid(x)`` → HardSwish (jax.nn.hard_swish), once HardSigmoid is fused."""
    return [rule for rule in common_rules.fuse_hardswish_rules() if rule.name != "HardSigmoidFusion"]


def fusion_rules(opset: int) -> list[RewriteRule]:
    """Every rewrite rule (with its commuted variants) that applies at ``opset``, in application order."""
    rules: list[RewriteRule] = []
    for phase in rule_phases(opset):
        for rule, commute in phase:
            rules.extend(rule.commute() if commute else [rule])
    return rules
