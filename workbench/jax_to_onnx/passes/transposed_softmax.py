"""A softmax JAX computes on a transposed view → ``Softmax`` on the original, one Transpose after.

Flax's attention (``nnx.MultiHeadAttention``, grouped-query form) takes the softmax of 5-D logits
``(B, H, T, 1, S)`` whose layout the einsum that made them left permuted: the jaxpr reduces the
max over the last axis, transposes the reduced max, and transposes the logits the same way before
subtracting, exponentiating and normalizing::

    m = Transpose(Max(ReduceMax(u, [a], keepdims=0), -inf), p)
    e = Exp(Transpose(u, q) - Unsqueeze(m, [b]))
    y = e / Unsqueeze(ReduceSum(e, [b], keepdims=0), [b])

where ``q[b] == a`` and ``p`` is ``q`` without ``b``. That is ``Transpose(Softmax(u, axis=a), q)``;
when ``y`` is read by a single Transpose (the einsum that follows), both permutations are composed
into one (or none, when they cancel).

Why hand-written: onnxscript has no softmax rule, and :class:`.fusions.SoftmaxFusion` matches the
softmax of an untransposed view only.
"""

from __future__ import annotations

import math

import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase

from workbench.jax_to_onnx.ir_values import constant_array


def _single_axis(value: ir.Value, rank: int) -> int | None:
    array = constant_array(value)
    if array is None or array.size != 1:
        return None
    axis = int(array.reshape(()))
    return axis % rank if -rank <= axis < rank else None


def _perm(value: ir.Value) -> list[int] | None:
    attribute = value.producer().attributes.get("perm")
    return None if attribute is None else list(attribute.as_ints())


class TransposedSoftmax(RewriteRuleClassBase):
    """See the module docstring; ``then_transpose`` also takes in the single Transpose that reads ``y``."""

    def __init__(self, *, then_transpose: bool) -> None:
        super().__init__(name=f"TransposedSoftmax{'ThenTranspose' if then_transpose else ''}")
        self.then_transpose = then_transpose

    def pattern(self, op, u, axes_max, floor, axes_shift, axes_sum, axes_total):  # noqa: ANN001, ANN201
        guarded = op.Max(op.ReduceMax(u, axes_max, keepdims=0), floor)
        shift = op.Unsqueeze(op.Transpose(guarded, _outputs=["moved_max"]), axes_shift)
        exp = op.Exp(op.Sub(op.Transpose(u, _outputs=["moved"]), shift))
        total = op.Unsqueeze(op.ReduceSum(exp, axes_sum, keepdims=0), axes_total)
        if self.then_transpose:
            return op.Transpose(op.Div(exp, total), _outputs=["result"])
        return op.Div(exp, total, _outputs=["probabilities"])

    def check(self, context, u, axes_max, floor, axes_shift, axes_sum, axes_total, moved_max, moved,
              result=None, probabilities=None) -> MatchResult:  # noqa: ANN001
        del context
        check = MatchResult()
        if probabilities is not None:
            uses = probabilities.uses()
            if len(uses) == 1 and uses[0].node.op_type == "Transpose" and uses[0].node.domain == "":
                return check.fail("left to the form with the Transpose after (matched at that Transpose)")
        floor_array = constant_array(floor)
        if floor_array is None or floor_array.size != 1 or not math.isinf(float(floor_array.reshape(()))) \
                or float(floor_array.reshape(())) > 0:
            return check.fail("the max guard is not -inf")
        if u.shape is None:
            return check.fail("the logits' rank is unknown")
        rank = len(u.shape)
        q, p = _perm(moved), _perm(moved_max)
        a = _single_axis(axes_max, rank)
        if q is None or p is None or a is None or sorted(q) != list(range(rank)):
            return check.fail("transposes without perm, or a reduction over several axes")
        b = q.index(a)
        if p != [axis - (axis > a) for axis in q if axis != a]:
            return check.fail("the max is not transposed as the logits are")
        if any(_single_axis(axes, rank) != b for axes in (axes_shift, axes_sum, axes_total)):
            return check.fail("the shift and the sum are not over the softmax axis")
        if result is not None and _perm(result) is None:
            return check.fail("the Transpose after has no perm")
        return check

    def rewrite(self, op, u, axes_max, floor, axes_shift, axes_sum, axes_total, moved_max, moved,
                result=None, probabilities=None):  # noqa: ANN001, ANN201
        del floor, axes_shift, axes_sum, axes_total, moved_max, probabilities
        rank = len(u.shape)
        perm = _perm(moved)
        if result is not None:
            perm = [perm[axis] for axis in _perm(result)]
        softmax = op.Softmax(u, axis=_single_axis(axes_max, rank))
        return softmax if perm == list(range(rank)) else op.Transpose(softmax, perm=perm)
