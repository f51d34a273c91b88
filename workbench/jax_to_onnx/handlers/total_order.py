"""Total-order comparisons (``eq_to``, ``le_to``, ``lt_to``): the order JAX's sort and searchsorted use.

For integers they are the ordinary comparisons. For floats the IEEE total order puts
``-inf < ... < -0 < +0 < ... < inf < NaN``: a plain comparison, except that ``-0`` is below
``+0`` (told apart by ``1/x < 0``) and NaN is above everything. The sign of a NaN cannot be
observed arithmetically, so every NaN is taken as positive (JAX canonicalizes sort keys to
positive NaN before comparing, so sorting is not affected).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax.extend.core import primitives as jax_primitives  # the *_to primitives have no jax.lax binding

from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

_X = np.array([1.0, -0.0, 0.0, np.nan, 2.0, -np.inf, np.nan, 0.0, 3.0], np.float32)
_Y = np.array([2.0, 0.0, -0.0, 1.0, np.nan, -1.0, np.nan, 0.0, 3.0], np.float32)
_IX = np.array([1, -2, 3, 4], np.int32)
_IY = np.array([2, -2, 1, 4], np.int32)


def _is_float(ctx: LoweringContext) -> bool:
    return bool(jnp.issubdtype(ctx.avals_in[0].dtype, jnp.floating))


def _negative_zero(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    zero = ctx.scalar(0, ctx.avals_in[0].dtype)
    reciprocal = ctx.op("Div", ctx.scalar(1, ctx.avals_in[0].dtype), x)
    return ctx.op("And", ctx.op("Equal", x, zero), ctx.op("Less", reciprocal, zero))


def _total_less(ctx: LoweringContext, x: ir.Value, y: ir.Value) -> ir.Value:
    """x < y in the IEEE total order (all NaNs positive)."""
    if not _is_float(ctx):
        return ctx.op("Less", x, y)
    zero = ctx.scalar(0, ctx.avals_in[0].dtype)
    both_zero = ctx.op("And", ctx.op("Equal", x, zero), ctx.op("Equal", y, zero))
    signed_zeros = ctx.op("And", both_zero, ctx.op("And", _negative_zero(ctx, x), ctx.op("Not", _negative_zero(ctx, y))))
    below_nan = ctx.op("And", ctx.op("Not", ctx.op("IsNaN", x)), ctx.op("IsNaN", y))
    return ctx.op("Or", ctx.op("Or", ctx.op("Less", x, y), signed_zeros), below_nan)


def _compare_to(kind: str, ctx: LoweringContext, x: ir.Value, y: ir.Value) -> ir.Value:
    if kind == "lt":
        return _total_less(ctx, x, y)
    if kind == "le":  # a total order: x <= y exactly when not y < x
        return ctx.op("Not", _total_less(ctx, y, x))
    return ctx.op("Not", ctx.op("Or", _total_less(ctx, x, y), _total_less(ctx, y, x)))


_SORTED = np.array([-3.0, -1.0, -0.0, 0.5, 0.5, 2.0, np.inf], np.float32)
_QUERIES = np.array([-5.0, -1.0, 0.0, 0.5, 1.0, 9.0, np.inf, np.nan], np.float32)
_EXAMPLES = {
    "lt_to": [Testcase("searchsorted_right", lambda a, v: jnp.searchsorted(a, v, side="right"), [_SORTED, _QUERIES])],
    "le_to": [Testcase("searchsorted_left", jnp.searchsorted, [_SORTED, _QUERIES])],
    "eq_to": [],
}

for _kind, _primitive in (("lt", jax_primitives.lt_to_p), ("le", jax_primitives.le_to_p), ("eq", jax_primitives.eq_to_p)):
    handler(_primitive.name, onnx_ops=("Less", "Equal", "IsNaN", "Div", "And", "Or", "Not"), testcases=[
        Testcase(f"{_primitive.name}_f32", _primitive.bind, [_X, _Y]),
        Testcase(f"{_primitive.name}_i32", _primitive.bind, [_IX, _IY]),
        *_EXAMPLES[_primitive.name],
    ])(functools.partial(_compare_to, _kind))
