"""Reductions: reduce_sum/max/min/prod/and/or/xor, argmax/argmin (and what logsumexp traces to).

- ``argmax``/``argmin``: ONNX ArgMax/ArgMin return int64, so a Cast to ``index_dtype`` follows.
  JAX returns the index of the first NaN when the reduced slice holds one; ONNX leaves NaN order
  unspecified, so float inputs get an explicit "first NaN wins" correction (ArgMax over IsNaN).
- ``reduce_and``/``reduce_or``/``reduce_xor`` on booleans: onnxruntime has no boolean Reduce*, so the
  bools are cast to int32 and reduced with ReduceMin (and), ReduceMax (or) or ReduceSum mod 2 (xor).
- ``logsumexp`` (jax.nn / jax.scipy.special) traces to reduce_max, exp, reduce_sum, log and friends,
  which lower one by one; its testcases live with ``reduce_max``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import onnx_dtype
from workbench.jax_to_onnx.handlers.elementwise import bitwise_needs_opset_18
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

_NAN_ROWS = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 5.0, -1.0, 5.0], [np.nan, 0.0, 0.0, 1.0]], np.float32)


# onnxruntime implements ReduceSum for int32/int64 only among the integers, and ReduceMax/ReduceMin for
# (u)int8/int32/int64; the other integer types are reduced in int32/int64 and cast back. That is exact: a sum
# of fewer than 2**31 values of at most 32 bits cannot overflow int64 (onnxruntime's int64 reductions saturate
# instead of wrapping, which rules out uint64 and products), Cast to the narrow type keeps the low bits as
# JAX's wrap-around does, and max/min of values the wide type holds exactly are the same values.
_WIDE_SUM = {np.dtype(t): np.dtype(np.int64) for t in (np.int8, np.uint8, np.int16, np.uint16, np.uint32)}
_WIDE_EXTREMUM = {np.dtype(np.int16): np.dtype(np.int32), np.dtype(np.uint16): np.dtype(np.int32),
                  np.dtype(np.uint32): np.dtype(np.int64)}
_WIDE = {"ReduceSum": _WIDE_SUM, "ReduceMax": _WIDE_EXTREMUM, "ReduceMin": _WIDE_EXTREMUM}


def _reduce(op_type: str, ctx: LoweringContext, x: ir.Value, *, axes: Any, out_sharding: Any = None) -> ir.Value:
    """ONNX Reduce* with axes as an input (opset 18+), keepdims=0 as lax does (``out_sharding``: reduce_sum's, XLA's);
    integer types onnxruntime lacks for ``op_type`` go through a wider one (``_WIDE``)."""
    del out_sharding
    if not axes:
        return x
    dtype = np.dtype(ctx.avals_in[0].dtype)
    wide = _WIDE.get(op_type, {}).get(dtype)
    if wide is None:
        return ctx.op(op_type, x, ctx.i64(list(axes)), keepdims=0)
    reduced = ctx.op(op_type, ctx.op("Cast", x, to=onnx_dtype(wide)), ctx.i64(list(axes)), keepdims=0)
    return ctx.op("Cast", reduced, to=onnx_dtype(dtype))


# integers past the signed range of their width, and sums/products that wrap around
_UINT32_NEAR_MAX = np.array([[4_294_967_295, 3, 2_147_483_648, 7], [0, 65_537, 9, 4_000_000_000]], np.uint32)
_INT8_NEAR_LIMITS = np.array([[127, -128, 5], [1, -1, 100], [3, -3, 100]], np.int8)

_LOGSUMEXP_CASES = [
    Testcase("logsumexp_nn_axis", lambda x: jax.nn.logsumexp(x * 30.0, axis=1), [("B", 3, 4)], rtol=1e-5, atol=1e-4),
    Testcase("logsumexp_scipy_all", lambda x: jax.scipy.special.logsumexp(x), [("B", 5)], rtol=1e-5, atol=1e-5),
]

for _prim, _op, _fn, _extra in (
    ("reduce_sum", "ReduceSum", lambda x: jnp.sum(x, axis=1), [
        Testcase("reduce_sum_symbolic_axis", lambda x: jnp.sum(x, axis=(0, 2)), [("B", 3, "T")]),
        Testcase("reduce_sum_int", lambda x: jnp.sum(x, axis=0), [np.arange(12, dtype=np.int32).reshape(3, 4)]),
        Testcase("reduce_sum_uint32_wraps", lambda x: lax.reduce_sum(x, axes=(1,)), [_UINT32_NEAR_MAX]),
        Testcase("reduce_sum_int8_wraps", lambda x: lax.reduce_sum(x, axes=(0,)), [_INT8_NEAR_LIMITS]),
    ]),
    ("reduce_max", "ReduceMax", lambda x: jnp.max(x, axis=(0, 1)), [
        *_LOGSUMEXP_CASES,
        Testcase("reduce_max_uint16", lambda x: lax.reduce_max(x, axes=(1,)), [_UINT32_NEAR_MAX.astype(np.uint16)]),
    ]),
    ("reduce_min", "ReduceMin", lambda x: jnp.min(x, axis=-1), [
        Testcase("reduce_min_int", lambda x: jnp.min(x, axis=1), [np.array([[3, -1, 2], [7, 8, -9]], np.int32)]),
        Testcase("reduce_min_uint32", lambda x: lax.reduce_min(x, axes=(0,)), [_UINT32_NEAR_MAX]),
    ]),
    ("reduce_prod", "ReduceProd", lambda x: jnp.prod(x, axis=0), []),
):
    _f64 = jax.ShapeDtypeStruct(("B", 3, 4), np.float64)  # double precision kept end to end: tolerance float32 cannot meet
    handler(_prim, onnx_ops=(_op, "Cast") if _op in _WIDE else (_op,), testcases=[
        Testcase(_prim, _fn, [("B", 3, 4)], rtol=1e-5, atol=1e-5),
        Testcase(f"{_prim}_f64", _fn, [_f64], rtol=1e-12, atol=1e-12, x64=True),
        *_extra,
    ])(
        functools.partial(_reduce, _op)
    )


# ----------------------------------------------------------------------------- boolean reductions
_BOOLS = np.array([[True, True, True], [True, False, True], [False, False, False], [False, True, True]])


_BITWISE = {"and": "BitwiseAnd", "or": "BitwiseOr", "xor": "BitwiseXor"}
# Zobrist-style hashes and bit masks (pgx's Go hashes its board by reduce_xor of uint32 keys)
_HASHES = np.array([[0x9E3779B9, 0x7F4A7C15, 0xF39CC060, 0x1D8E4E27, 0xDEADBEEF],
                    [0x00000000, 0xFFFFFFFF, 0x80000001, 0x12345678, 0x0F0F0F0F]], np.uint32)
_MASKS = np.array([[7, -1, 12, 5], [-8, 3, 6, 127], [1, 2, 4, 8]], np.int32)


def _bool_reduce(kind: str, ctx: LoweringContext, x: ir.Value, *, axes: Any) -> ir.Value:
    """Boolean and/or/xor over ``axes`` via int32 ReduceMin/ReduceMax/ReduceSum (no boolean Reduce* in onnxruntime);
    integer ones bitwise (:func:`_bitwise_reduce`)."""
    if np.dtype(ctx.avals_in[0].dtype) != np.dtype(bool):
        return _bitwise_reduce(kind, ctx, x, axes)
    if not axes:
        return x
    as_int = ctx.op("Cast", x, to=ir.DataType.INT32)
    op_type = {"and": "ReduceMin", "or": "ReduceMax", "xor": "ReduceSum"}[kind]
    reduced = ctx.op(op_type, as_int, ctx.i64(list(axes)), keepdims=0)
    if kind == "xor":
        reduced = ctx.op("Mod", reduced, ctx.scalar(2, np.int32))
    return ctx.op("Cast", reduced, to=ir.DataType.BOOL)


def _bitwise_reduce(kind: str, ctx: LoweringContext, x: ir.Value, axes: Any) -> ir.Value:
    """Integer and/or/xor over ``axes``: ONNX has no bitwise reduction, so each axis is folded in halves
    (``op(first half, second half)``, an odd last slice carried along): ceil(log2(n)) Bitwise* ops, exact.

    The reduced axes need static sizes.
    """
    dtype = np.dtype(ctx.avals_in[0].dtype)
    shape = list(ctx.avals_in[0].shape)
    if not all(isinstance(shape[a], int) for a in axes):
        raise ConversionError(
            f"reduce_{kind} over {dtype} along an axis of symbolic size ({tuple(shape)}, axes {tuple(axes)}): the "
            "bitwise reduction is unrolled over the axis, which needs its size; give that axis a fixed size."
        )
    op_type = _BITWISE[kind]
    for axis in sorted((int(a) for a in axes), reverse=True):  # later axes first: earlier indices stay valid
        size = shape[axis]
        if size == 0:
            identity = np.array(-1 if kind == "and" else 0).astype(dtype)
            shape.pop(axis)
            x = ctx.op("Expand", ctx.const(identity), ctx.shape_value(tuple(shape)))
            continue
        while size > 1:
            half = size // 2
            first = ctx.op("Slice", x, ctx.i64([0]), ctx.i64([half]), ctx.i64([axis]))
            second = ctx.op("Slice", x, ctx.i64([half]), ctx.i64([2 * half]), ctx.i64([axis]))
            folded = ctx.op(op_type, first, second)
            if size % 2:
                rest = ctx.op("Slice", x, ctx.i64([2 * half]), ctx.i64([size]), ctx.i64([axis]))
                folded = ctx.op("Concat", folded, rest, axis=axis)
            x, size = folded, half + size % 2
        x = ctx.op("Squeeze", x, ctx.i64([axis]))
        shape.pop(axis)
    return x


for _kind, _fn, _fn_all, _reduce_lax in (
    ("and", lambda x: jnp.all(x, axis=1), lambda x: jnp.all(x > 0), lax.reduce_and),
    ("or", lambda x: jnp.any(x, axis=1), lambda x: jnp.any(x > 1.5), lax.reduce_or),
    ("xor", lambda x: lax.reduce_xor(x, (1,)), lambda x: lax.reduce_xor(x > 0, (0, 1)), lax.reduce_xor),
):
    handler(f"reduce_{_kind}", onnx_ops=("Cast", "ReduceMin", "ReduceMax", "ReduceSum", "Mod", _BITWISE[_kind], "Slice"),
            unsupported_reason=bitwise_needs_opset_18, testcases=[
        Testcase(f"reduce_{_kind}_rows", _fn, [_BOOLS]),
        Testcase(f"reduce_{_kind}_all_symbolic", _fn_all, [("B", 3)]),
        Testcase(f"reduce_{_kind}_int32_both_axes", functools.partial(_reduce_lax, axes=(0, 1)), [_MASKS], rtol=0, atol=0),
        Testcase(f"reduce_{_kind}_uint32_rows", functools.partial(_reduce_lax, axes=(1,)), [_HASHES], rtol=0, atol=0),
    ])(functools.partial(_bool_reduce, _kind))


# ----------------------------------------------------------------------------- argmax / argmin
def _arg_reduce(op_type: str, ctx: LoweringContext, x: ir.Value, *, axes: Any, index_dtype: Any) -> ir.Value:
    """ArgMax/ArgMin (first index on ties, as lax) → Cast to ``index_dtype``; the first NaN wins as in JAX."""
    (axis,) = axes
    dtype = np.dtype(ctx.avals_in[0].dtype)
    operand = x
    if dtype == np.dtype(bool) or dtype in (np.dtype(np.int16), np.dtype(np.uint16), np.dtype(np.uint32)):
        operand = ctx.op("Cast", x, to=ir.DataType.INT32 if dtype != np.dtype(np.uint32) else ir.DataType.INT64)
    index = ctx.op(op_type, operand, axis=int(axis), keepdims=0, select_last_index=0)
    if jnp.issubdtype(dtype, jnp.floating):
        is_nan = ctx.op("Cast", ctx.op("IsNaN", x), to=ir.DataType.INT32)
        first_nan = ctx.op("ArgMax", is_nan, axis=int(axis), keepdims=0, select_last_index=0)
        any_nan = ctx.op("Cast", ctx.op("ReduceMax", is_nan, ctx.i64([int(axis)]), keepdims=0), to=ir.DataType.BOOL)
        index = ctx.op("Where", any_nan, first_nan, index)
    if np.dtype(index_dtype) != np.dtype(np.int64):
        index = ctx.op("Cast", index, to=onnx_dtype(index_dtype))
    return index


handler("argmax", onnx_ops=("ArgMax", "Cast", "IsNaN", "ReduceMax", "Where"), testcases=[
    Testcase("argmax_axis1", lambda x: jnp.argmax(x, axis=1), [("B", 5)]),
    Testcase("argmax_symbolic_axis", lambda x: jnp.argmax(x, axis=0), [("T", 3)]),
    Testcase("argmax_nan_and_ties", lambda x: jnp.argmax(x, axis=1), [_NAN_ROWS]),
    Testcase("argmax_f64", lambda x: jnp.argmax(x, axis=1), [jax.ShapeDtypeStruct(("B", 5), np.float64)], x64=True),
    Testcase("argmax_int_x64", lambda x: jnp.argmax(x, axis=-1), [np.array([[3, 9, 9, 1], [0, -2, 4, 4]], np.int64)], x64=True),
    Testcase("argmax_bool", lambda x: jnp.argmax(x, axis=1), [_BOOLS]),
])(functools.partial(_arg_reduce, "ArgMax"))

handler("argmin", onnx_ops=("ArgMin", "Cast", "IsNaN", "ReduceMax", "Where"), testcases=[
    Testcase("argmin_axis0", lambda x: jnp.argmin(x, axis=0), [("B", 5)]),
    Testcase("argmin_nan_and_ties", lambda x: jnp.argmin(x, axis=1), [_NAN_ROWS]),
    Testcase("argmin_int", lambda x: jnp.argmin(x, axis=1), [np.array([[3, 1, 1, 9], [0, -2, 4, -2]], np.int32)]),
])(functools.partial(_arg_reduce, "ArgMin"))
