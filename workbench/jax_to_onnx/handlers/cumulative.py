"""Cumulative ops: cumsum, cumprod, cummax, cummin, cumlogsumexp (forward and ``reverse=True``).

``cumsum`` maps to ONNX ``CumSum`` (which has ``reverse``). ONNX has no cumulative product, max,
min or logsumexp; these use a triangular-mask reduction: the operand gets one extra axis,
``masked[..., i, j, ...] = x[..., j, ...] if j <= i (j >= i for reverse) else identity``, and the
extra axis is reduced with ReduceProd / ReduceMax / ReduceMin / a stable log-sum-exp.

Why this lowering: it is exact for max/min, needs no log of negative numbers (a log-space cumprod
would break on signs and zeros), works for symbolic axis lengths (the mask is built from a
runtime ``Range``), and stays a handful of parallel ops instead of a Loop/Scan that onnxruntime
runs one step at a time. The cost is memory quadratic in the axis length (n² times the other
dims), fine for the sequence lengths these ops see in models; the products and log-sum-exps are
summed in a different order than JAX's associative scan, a rounding-level difference.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.jax_to_onnx.builder import onnx_dtype
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

_CUMSUM_TYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64))


def _identity(kind: str, dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    if kind == "sum":
        return np.zeros((), dtype)
    if kind == "prod":
        return np.ones((), dtype)
    if np.issubdtype(dtype, np.floating):
        return np.array(np.inf if kind == "min" else -np.inf, dtype)
    info = np.iinfo(dtype)
    return np.array(info.max if kind == "min" else info.min, dtype)


def _triangular_mask(ctx: LoweringContext, length: Any, rank: int, axis: int, reverse: bool) -> ir.Value:
    """Boolean mask of shape (n, n, 1, ...) with out index i on ``axis`` and in index j on ``axis + 1``."""
    n_scalar = ctx.op("Squeeze", ctx.dim_value(length), ctx.i64([0]))
    positions = ctx.op("Range", ctx.scalar(0, np.int64), n_scalar, ctx.scalar(1, np.int64))
    out_index = ctx.op("Unsqueeze", positions, ctx.i64([1]))  # (n, 1)
    in_index = ctx.op("Unsqueeze", positions, ctx.i64([0]))  # (1, n)
    mask = ctx.op("GreaterOrEqual" if reverse else "LessOrEqual", in_index, out_index)
    trailing = rank - axis - 1
    if trailing:
        mask = ctx.op("Unsqueeze", mask, ctx.i64([2 + t for t in range(trailing)]))
    return mask


def _masked_reduce(kind: str, ctx: LoweringContext, x: ir.Value, axis: int, reverse: bool) -> ir.Value:
    aval = ctx.avals_in[0]
    rank = len(aval.shape)
    mask = _triangular_mask(ctx, aval.shape[axis], rank, axis, reverse)
    spread = ctx.op("Unsqueeze", x, ctx.i64([axis]))  # (..., 1, n_in, ...)
    reduce_axis = ctx.i64([axis + 1])
    if kind == "logsumexp":
        masked = ctx.op("Where", mask, spread, ctx.scalar(-np.inf, aval.dtype))
        peak = ctx.op("ReduceMax", masked, reduce_axis, keepdims=1)
        # a slice that is all -inf (or holds +inf) must not produce inf - inf = NaN
        safe_peak = ctx.op("Where", ctx.op("IsInf", peak), ctx.scalar(0, aval.dtype), peak)
        total = ctx.op("ReduceSum", ctx.op("Exp", ctx.op("Sub", masked, safe_peak)), reduce_axis, keepdims=0)
        return ctx.op("Add", ctx.op("Log", total), ctx.op("Squeeze", safe_peak, reduce_axis))
    op_type = {"sum": "ReduceSum", "prod": "ReduceProd", "max": "ReduceMax", "min": "ReduceMin"}[kind]
    masked = ctx.op("Where", mask, spread, ctx.const(_identity(kind, aval.dtype)))
    return ctx.op(op_type, masked, reduce_axis, keepdims=0)


def _cumulative(kind: str, ctx: LoweringContext, x: ir.Value, *, axis: int, reverse: bool) -> ir.Value:
    """lax.cum{sum,prod,max,min,logsumexp}(x, axis, reverse): CumSum, or the triangular-mask reduction."""
    if kind == "sum":
        dtype = np.dtype(ctx.avals_in[0].dtype)
        if dtype in _CUMSUM_TYPES:
            return ctx.op("CumSum", x, ctx.i64(int(axis)), reverse=int(bool(reverse)), exclusive=0)
        # onnxruntime's CumSum takes float32/64 and int32/64: widen, sum, narrow (integer wrap-around as in JAX)
        wide = ir.DataType.FLOAT if jnp.issubdtype(dtype, jnp.floating) else ir.DataType.INT64
        summed = ctx.op("CumSum", ctx.op("Cast", x, to=wide), ctx.i64(int(axis)), reverse=int(bool(reverse)), exclusive=0)
        return ctx.op("Cast", summed, to=onnx_dtype(dtype))
    return _masked_reduce(kind, ctx, x, int(axis), bool(reverse))


_INTS = np.array([[3, -1, 4, 1, -5], [9, 2, -6, 5, 3]], np.int32)


def _cases(kind: str) -> list[Testcase]:
    fn = {"sum": lax.cumsum, "prod": lax.cumprod, "max": lax.cummax, "min": lax.cummin, "logsumexp": lax.cumlogsumexp}[kind]
    cases = [
        Testcase(f"cum{kind}_axis1", lambda x: fn(x, axis=1), [("B", 6)], rtol=1e-5, atol=1e-5),
        Testcase(f"cum{kind}_reverse_axis0_symbolic", lambda x: fn(x, axis=0, reverse=True), [("T", 3, 2)], rtol=1e-5, atol=1e-5),
        Testcase(f"cum{kind}_middle_axis_reverse", lambda x: fn(x, axis=1, reverse=True), [(2, 5, 3)], rtol=1e-5, atol=1e-5),
    ]
    if kind != "logsumexp":
        cases.append(Testcase(f"cum{kind}_int", lambda x: fn(x, axis=1), [_INTS]))
        # float64 kept end to end (enable_double_precision): a tolerance float32 cannot meet
        cases.append(Testcase(f"cum{kind}_f64", lambda x: fn(x, axis=1), [jax.ShapeDtypeStruct(("B", 6), np.float64)],
                              rtol=1e-12, atol=1e-12, x64=True))
    if kind == "sum":
        cases.append(Testcase("cumsum_int8", lambda x: lax.cumsum(x.astype(jnp.int8), axis=0, reverse=True), [_INTS]))
        cases.append(Testcase("cumsum_f16", lambda x: lax.cumsum(x.astype(jnp.float16), axis=1), [(2, 5)], rtol=2e-3, atol=2e-3))
    if kind == "logsumexp":
        cases.append(Testcase("cumlogsumexp_large_and_neg_inf", lambda x: lax.cumlogsumexp(x, axis=0), [np.array([-np.inf, 200.0, 150.0, -np.inf, 210.0], np.float32)]))
    return cases


for _kind in ("sum", "prod", "max", "min", "logsumexp"):
    handler(
        f"cum{_kind}",
        onnx_ops=("CumSum", "Cast") if _kind == "sum" else ("Range", "Where", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceSum", "Exp", "Log"),
        testcases=_cases(_kind),
    )(functools.partial(_cumulative, _kind))
