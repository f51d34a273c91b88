"""Graph clean-up and fusion after lowering, then shape annotation.

- common patterns become the ONNX op that says what they are, through onnxscript's pattern
  rewriter (each rule checks the constants it relies on, so numerics are preserved):
  a 1-D bias reshaped to ``(1, ..., 1, N)`` before a broadcasting Add/Mul/Sub is used as is
  (ONNX broadcasts numpy-style); ``MatMul`` + ``Add`` on 2-D inputs → ``Gemm``; the arithmetic
  of ``jax.nn.softmax`` → ``Softmax``; both forms of ``jax.nn.gelu`` (tanh approximation and
  exact erf) → ``Gelu`` at opset 20+ (kept decomposed below);
- unused nodes, initializers and functions are removed (onnx-ir passes);
- common subexpressions (repeated Shape/Gather of the same dim, equal constants) are merged;
- ONNX shape inference fills ``value_info`` for values whose type the lowering did not set
  itself (handler decompositions, fused ops), so every edge shows a shape.

Why hand-written rules: the patterns are those JAX's own decompositions produce (e.g. softmax
with its ``max(-inf, reduce_max)`` guard, gelu's ``x * x * x``), which the generic fusions of
onnxscript do not recognise; the matching and the graph surgery are onnxscript's.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes import common as common_passes
from onnxscript.rewriter import RewriteRuleSet
from onnxscript.rewriter._basics import MatchResult
from onnxscript.rewriter._rewrite_rule import RewriteRuleClassBase
from onnxscript.rewriter.rules.common._matmul_add_to_gemm import MatMulAddToGemm

from workbench.errors import ConversionError

GELU_MIN_OPSET = 20


def _constant(value: ir.Value | None) -> np.ndarray | None:
    """The array of an initializer or Constant output, or None when the value is computed at run time."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _is_scalar(value: ir.Value | None, expected: float, *, rtol: float = 1e-6) -> bool:
    array = _constant(value)
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
    """``Op(x, Reshape(b, [1, ..., 1, N]))`` with a 1-D ``b`` of length N → ``Op(x, b)``."""

    op_type = "Add"

    def pattern(self, op, x, bias, shape):  # noqa: ANN001, ANN201 - onnxscript pattern builder
        return getattr(op, self.op_type)(x, op.Reshape(bias, shape))

    def check(self, context, x, bias, shape) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        target = _constant(shape)
        if target is None or bias.shape is None or len(bias.shape) != 1:
            return result.fail("bias is not 1-D or the reshape target is not constant")
        length = bias.shape[0]
        if not isinstance(length, int) or list(target) != [1] * (len(target) - 1) + [length]:
            return result.fail("reshape target is not (1, ..., 1, N)")
        x_rank = _rank(x)
        if x_rank is None or x_rank < len(target):
            return result.fail("the other operand must have at least the reshaped rank")
        return result

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
    """jax.nn.softmax: ``e = Exp(x - Unsqueeze(Max(-inf, ReduceMax(x, a)), a))``, ``e / Unsqueeze(ReduceSum(e, a), a)``."""

    def pattern(self, op, x, floor, axes_max, axes_unsq1, axes_sum, axes_unsq2):  # noqa: ANN001, ANN201
        reduced = op.ReduceMax(x, axes_max, keepdims=0)
        shifted = op.Sub(x, op.Unsqueeze(op.Max(floor, reduced), axes_unsq1))
        exp = op.Exp(shifted)
        total = op.Unsqueeze(op.ReduceSum(exp, axes_sum, keepdims=0), axes_unsq2)
        return op.Div(exp, total)

    def check(self, context, x, floor, axes_max, axes_unsq1, axes_sum, axes_unsq2) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        if not _is_scalar(floor, -math.inf):
            return result.fail("the max guard is not -inf")
        axes = [_constant(a) for a in (axes_max, axes_unsq1, axes_sum, axes_unsq2)]
        rank = _rank(x)
        if rank is None or any(a is None or a.size != 1 for a in axes):
            return result.fail("softmax over one constant axis only")
        normalized = {int(a.reshape(())) % rank for a in axes}
        if len(normalized) != 1:
            return result.fail("reduction and unsqueeze axes differ")
        return result

    def rewrite(self, op, x, floor, axes_max, axes_unsq1, axes_sum, axes_unsq2):  # noqa: ANN001, ANN201
        del floor, axes_unsq1, axes_sum, axes_unsq2
        return op.Softmax(x, axis=int(_constant(axes_max).reshape(())))


# ------------------------------------------------------------------------------------ gelu
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class GeluTanhFusion(RewriteRuleClassBase):
    """jax.nn.gelu(approximate=True): ``x * (0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x*x*x))))``."""

    def pattern(self, op, x, c_cube, c_scale, one, half):  # noqa: ANN001, ANN201
        cube = op.Mul(x, op.Mul(x, x))
        inner = op.Mul(c_scale, op.Add(x, op.Mul(c_cube, cube)))
        return op.Mul(x, op.Mul(half, op.Add(one, op.Tanh(inner))))

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
    """jax.nn.gelu(approximate=False): ``(0.5 * x) * (1 - erf(-x * (1/sqrt 2)))``."""

    def pattern(self, op, x, half, inv_sqrt2, one):  # noqa: ANN001, ANN201
        return op.Mul(op.Mul(half, x), op.Sub(one, op.Erf(op.Mul(op.Neg(x), inv_sqrt2))))

    def check(self, context, x, half, inv_sqrt2, one) -> MatchResult:  # noqa: ANN001
        del context, x
        result = MatchResult()
        if not (_is_scalar(half, 0.5) and _is_scalar(inv_sqrt2, 1 / math.sqrt(2), rtol=1e-5) and _is_scalar(one, 1.0)):
            return result.fail("constants are not those of the erf gelu")
        return result

    def rewrite(self, op, x, half, inv_sqrt2, one):  # noqa: ANN001, ANN201
        del half, inv_sqrt2, one
        return op.Gelu(x)


def fusion_rules(opset: int) -> RewriteRuleSet:
    """The rewrite rules that apply at ``opset``, in the order they must run."""
    rules = [
        AddReshapedBias.rule(),
        MulReshapedBias.rule(),
        SubReshapedBias.rule(),
        MatMulAddToGemm.rule(),
        SoftmaxFusion.rule(),
    ]
    if opset >= GELU_MIN_OPSET:
        rules += [GeluTanhFusion.rule(), GeluErfFusion.rule()]
    return RewriteRuleSet(rules, commute=True)


def fuse_patterns(model: ir.Model) -> int:
    """Apply the fusion rules to the main graph in place; returns how many rewrites happened."""
    opset = model.opset_imports.get("", 0)
    return fusion_rules(opset).apply_to_model(model)


def run_passes(model: ir.Model, *, optimize: bool = True) -> onnx.ModelProto:
    passes: list[ir.passes.PassBase] = [common_passes.RemoveUnusedNodesPass()]
    if optimize:
        passes.append(common_passes.CommonSubexpressionEliminationPass())
    manager = ir.passes.PassManager(passes)
    manager(model)
    if optimize:
        fuse_patterns(model)
    cleanup = ir.passes.PassManager(
        [
            common_passes.RemoveUnusedNodesPass(),
            common_passes.RemoveUnusedFunctionsPass(),
            common_passes.RemoveUnusedOpsetsPass(),
        ]
    )
    cleanup(model)
    proto = ir.serde.serialize_model(model)
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as error:
        raise ConversionError(f"the exported graph failed ONNX shape inference: {error}") from error
