"""Special functions and bit operations ONNX lacks: erf_inv, lgamma, digamma, shifts, population_count, clz.

Accuracy (float32, checked against JAX by the testcases below):
- ``erf_inv``: Giles' single-precision rational/polynomial approximation ("Approximating the
  erfinv function", GPU Computing Gems, 2011), the same published polynomial XLA uses for float32;
  about 1e-6 relative error on (-1, 1); ±1 give ±inf. float64 inputs get the same float32-grade
  polynomial (≈1e-7 relative, not full double precision).
- ``lgamma``: Lanczos approximation (g=7, 9 terms) for x >= 0.5 and the reflection formula
  below, with an exact argument reduction for sin(pi x); poles (0, -1, ...) give +inf as in JAX.
  About 1e-6 relative away from the zeros at 1 and 2, about 1e-6 absolute near them.
- ``digamma``: recurrence up to x >= 6, then the asymptotic series to 1/x^10; reflection below 0.5;
  poles give NaN as in JAX. About 1e-6 relative (absolute near its root at 1.4616).

Bit operations: ONNX ``BitShift`` only takes unsigned types, so signed integers are shifted in
their unsigned view (Cast keeps the two's-complement bits) and cast back; 16-bit values are
widened to 32 bits (onnxruntime has no 16-bit BitShift). Shift amounts outside [0, bits) give 0
(left / logical right) or the sign fill (arithmetic right), as XLA defines. ``population_count``
and ``clz`` use the classic SWAR bit-count on non-negative int64 values (shifts as exact
divisions), with 64-bit inputs split into two 32-bit halves.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import onnx_dtype
from workbench.jax_to_onnx.handlers.where_kernels import where as _where
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler


def _horner(ctx: LoweringContext, w: ir.Value, coefficients: Sequence[float], dtype: Any) -> ir.Value:
    """c[0]*w^(n-1) + ... + c[-1], highest degree first."""
    result = ctx.scalar(coefficients[0], dtype)
    for c in coefficients[1:]:
        result = ctx.op("Add", ctx.op("Mul", result, w), ctx.scalar(c, dtype))
    return result


# ----------------------------------------------------------------------------- erf_inv
_ERFINV_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                   -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)
_ERFINV_EDGES = np.array([-1.0, -0.9999, -0.99, -0.5, -1e-4, 0.0, 1e-6, 0.3, 0.9, 0.99999, 1.0], np.float32)


@handler("erf_inv", onnx_ops=("Log", "Sqrt", "Where", "Mul", "Add"), testcases=[
    Testcase("erf_inv_f32", lambda x: lax.erf_inv(jnp.tanh(x) * 0.999), [("B", 8)], rtol=1e-5, atol=1e-6),
    # near ±1 XLA forms w = -log1p(-x*x) and we form -log((1-x)(1+x)): both within the polynomial's error, ~3e-6 apart
    Testcase("erf_inv_edges", lax.erf_inv, [_ERFINV_EDGES], rtol=5e-6, atol=1e-6),
    Testcase("erf_inv_jnp", lambda x: jax_erfinv(jnp.tanh(x)), [(4, 5)], rtol=1e-5, atol=1e-6),
])
def _erf_inv(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    """Giles' float32 erfinv: w = -log(1 - x²); a polynomial in w - 2.5 (w < 5) or sqrt(w) - 3, times x."""
    dtype = ctx.avals_in[0].dtype
    one = ctx.scalar(1.0, dtype)
    w = ctx.op("Neg", ctx.op("Log", ctx.op("Mul", ctx.op("Sub", one, x), ctx.op("Add", one, x))))
    central = _horner(ctx, ctx.op("Sub", w, ctx.scalar(2.5, dtype)), _ERFINV_CENTRAL, dtype)
    tail = _horner(ctx, ctx.op("Sub", ctx.op("Sqrt", w), ctx.scalar(3.0, dtype)), _ERFINV_TAIL, dtype)
    p = ctx.op("Where", ctx.op("Less", w, ctx.scalar(5.0, dtype)), central, tail)
    result = ctx.op("Mul", p, x)
    at_one = ctx.op("Equal", ctx.op("Abs", x), one)
    return ctx.op("Where", at_one, ctx.op("Mul", x, ctx.scalar(np.inf, dtype)), result)


def jax_erfinv(x: Any) -> Any:
    import jax.scipy.special

    return jax.scipy.special.erfinv(x)


# ----------------------------------------------------------------------------- lgamma / digamma
_LANCZOS_G = 7.0
_LANCZOS = (0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
            -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
            1.5056327351493116e-7)


def _sin_pi(ctx: LoweringContext, x: ir.Value, dtype: Any) -> ir.Value:
    """|sin(pi x)| with the argument reduced exactly (x - round(x) is exact in floating point)."""
    reduced = ctx.op("Sub", x, ctx.op("Round", x))
    return ctx.op("Abs", ctx.op("Sin", ctx.op("Mul", reduced, ctx.scalar(np.pi, dtype))))


def _reflected(ctx: LoweringContext, x: ir.Value, dtype: Any) -> tuple[ir.Value, ir.Value]:
    """(x < 0.5, the argument the series sees): 1 - x below 0.5 (the reflection formula's side), x above."""
    reflect = ctx.op("Less", x, ctx.scalar(0.5, dtype))
    return reflect, ctx.op("Where", reflect, ctx.op("Sub", ctx.scalar(1.0, dtype), x), x)


def _is_pole(ctx: LoweringContext, x: ir.Value, dtype: Any) -> ir.Value:
    """x is 0 or a negative integer."""
    return ctx.op("And", ctx.op("LessOrEqual", x, ctx.scalar(0.0, dtype)), ctx.op("Equal", x, ctx.op("Floor", x)))


@handler("lgamma", onnx_ops=("Log", "Sin", "Round", "Where", "Div"), testcases=[
    Testcase("lgamma_positive", lambda x: lax.lgamma(jnp.abs(x) * 4 + 0.01), [("B", 8)], rtol=1e-5, atol=2e-6),
    Testcase("lgamma_negative_and_poles", lax.lgamma, [np.array([-0.5, -1.5, -2.25, -7.9, 0.0, -3.0, 0.5, 1.0, 2.0, 3.5, 30.0, 1e4], np.float32)], rtol=1e-5, atol=2e-6),
    Testcase("gammaln_scipy", lambda x: jax_gammaln(x), [np.linspace(0.05, 12.0, 25, dtype=np.float32)], rtol=1e-5, atol=2e-6),
])
def _lgamma(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    """Lanczos for x >= 0.5; lgamma(x) = log(pi / |sin(pi x)|) - lgamma(1 - x) below; +inf at poles."""
    dtype = ctx.avals_in[0].dtype
    half, one = ctx.scalar(0.5, dtype), ctx.scalar(1.0, dtype)
    reflect, w = _reflected(ctx, x, dtype)
    z = ctx.op("Sub", w, one)
    series = ctx.scalar(_LANCZOS[0], dtype)
    for i, c in enumerate(_LANCZOS[1:], start=1):
        series = ctx.op("Add", series, ctx.op("Div", ctx.scalar(c, dtype), ctx.op("Add", z, ctx.scalar(float(i), dtype))))
    t = ctx.op("Add", z, ctx.scalar(_LANCZOS_G + 0.5, dtype))
    log_t = ctx.op("Log", t)
    lanczos = ctx.op("Add", ctx.scalar(0.5 * np.log(2 * np.pi), dtype), ctx.op("Mul", ctx.op("Add", z, half), log_t))
    lanczos = ctx.op("Add", ctx.op("Sub", lanczos, t), ctx.op("Log", series))
    reflected = ctx.op("Sub", ctx.op("Sub", ctx.scalar(np.log(np.pi), dtype), ctx.op("Log", _sin_pi(ctx, x, dtype))), lanczos)
    result = ctx.op("Where", reflect, reflected, lanczos)
    return ctx.op("Where", _is_pole(ctx, x, dtype), ctx.scalar(np.inf, dtype), result)


def jax_gammaln(x: Any) -> Any:
    import jax.scipy.special

    return jax.scipy.special.gammaln(x)


_DIGAMMA_SHIFT = 6
# asymptotic series: psi(y) ~ log y - 1/(2y) - sum B_2k / (2k y^2k)
_DIGAMMA_SERIES = (-1.0 / 132.0, 1.0 / 240.0, -1.0 / 252.0, 1.0 / 120.0, -1.0 / 12.0, 0.0)


@handler("digamma", onnx_ops=("Log", "Tan", "Round", "Where", "Div"), testcases=[
    Testcase("digamma_positive", lambda x: lax.digamma(jnp.abs(x) * 4 + 0.05), [("B", 8)], rtol=1e-5, atol=1e-5),
    Testcase("digamma_negative_and_poles", lax.digamma, [np.array([-0.5, -1.5, -2.25, -7.9, 0.0, -3.0, 0.5, 1.0, 1.4616322, 3.5, 30.0, 1e4], np.float32)], rtol=1e-5, atol=1e-5),
])
def _digamma(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    """psi(x) = psi(x + 6) - sum 1/(x + k), asymptotic series at x + 6; psi(1 - x) - pi/tan(pi x) below 0.5."""
    dtype = ctx.avals_in[0].dtype
    half = ctx.scalar(0.5, dtype)
    reflect, w = _reflected(ctx, x, dtype)
    correction = ctx.op("Reciprocal", w)
    for k in range(1, _DIGAMMA_SHIFT):
        correction = ctx.op("Add", correction, ctx.op("Reciprocal", ctx.op("Add", w, ctx.scalar(float(k), dtype))))
    y = ctx.op("Add", w, ctx.scalar(float(_DIGAMMA_SHIFT), dtype))
    inv_y = ctx.op("Reciprocal", y)
    inv_y2 = ctx.op("Mul", inv_y, inv_y)
    series = _horner(ctx, inv_y2, _DIGAMMA_SERIES, dtype)
    asymptotic = ctx.op("Sub", ctx.op("Add", ctx.op("Log", y), series), ctx.op("Mul", half, inv_y))
    direct = ctx.op("Sub", asymptotic, correction)
    reduced = ctx.op("Sub", x, ctx.op("Round", x))
    cot_term = ctx.op("Div", ctx.scalar(np.pi, dtype), ctx.op("Tan", ctx.op("Mul", reduced, ctx.scalar(np.pi, dtype))))
    result = ctx.op("Where", reflect, ctx.op("Sub", direct, cot_term), direct)
    return ctx.op("Where", _is_pole(ctx, x, dtype), ctx.scalar(np.nan, dtype), result)


# ----------------------------------------------------------------------------- shifts
_UNSIGNED = {8: ir.DataType.UINT8, 16: ir.DataType.UINT16, 32: ir.DataType.UINT32, 64: ir.DataType.UINT64}


def _int_info(ctx: LoweringContext, index: int = 0) -> tuple[np.dtype, int]:
    dtype = np.dtype(ctx.avals_in[index].dtype)
    if not np.issubdtype(dtype, np.integer):
        raise ConversionError(f"{ctx.eqn.primitive.name} needs integer operands, got {dtype}.")
    return dtype, dtype.itemsize * 8


def _to_shift_domain(ctx: LoweringContext, x: ir.Value, dtype: np.dtype, bits: int) -> ir.Value:
    """The unsigned view of ``x`` in a type BitShift takes (16-bit widened to 32, zero-extended)."""
    if np.issubdtype(dtype, np.signedinteger):
        x = ctx.op("Cast", x, to=_UNSIGNED[bits])
    if bits == 16:
        x = ctx.op("Cast", x, to=ir.DataType.UINT32)
    return x


def _from_shift_domain(ctx: LoweringContext, x: ir.Value, dtype: np.dtype, bits: int) -> ir.Value:
    if bits == 16:
        x = ctx.op("Cast", x, to=ir.DataType.UINT16)
    if np.issubdtype(dtype, np.signedinteger):
        x = ctx.op("Cast", x, to=onnx_dtype(dtype))
    return x


def _shift_amount(ctx: LoweringContext, y: ir.Value, bits: int, shift_type: ir.DataType) -> tuple[ir.Value, ir.Value]:
    """(amount clamped into [0, bits - 1] as ``shift_type``, mask of amounts outside [0, bits))."""
    wide = ctx.op("Cast", y, to=ir.DataType.INT64)
    out_of_range = ctx.op("Or", ctx.op("Less", wide, ctx.scalar(0, np.int64)),
                          ctx.op("GreaterOrEqual", wide, ctx.scalar(bits, np.int64)))
    clamped = ctx.op("Where", out_of_range, ctx.scalar(bits - 1, np.int64), wide)
    return ctx.op("Cast", clamped, to=shift_type), out_of_range


def _shift(kind: str, ctx: LoweringContext, x: ir.Value, y: ir.Value) -> ir.Value:
    """shift_left / shift_right_logical / shift_right_arithmetic with XLA's out-of-range semantics."""
    dtype, bits = _int_info(ctx)
    shift_type = ir.DataType.UINT32 if bits <= 32 and bits != 8 else _UNSIGNED[bits]
    amount, out_of_range = _shift_amount(ctx, y, bits, shift_type)
    if kind == "arithmetic":
        # on the signed view: negative x → NOT(logical(NOT x)); the clamped amount gives the sign fill
        signed = dtype if np.issubdtype(dtype, np.signedinteger) else np.dtype(f"int{bits}")
        value = x if signed == dtype else ctx.op("Cast", x, to=onnx_dtype(signed))
        negative = ctx.op("Less", value, ctx.scalar(0, signed))
        flipped = _where(ctx, negative, ctx.op("BitwiseNot", value), value, signed)
        shifted = ctx.op("BitShift", _to_shift_domain(ctx, flipped, signed, bits), amount, direction="RIGHT")
        shifted = _from_shift_domain(ctx, shifted, signed, bits)
        result = _where(ctx, negative, ctx.op("BitwiseNot", shifted), shifted, signed)
        return result if signed == dtype else ctx.op("Cast", result, to=onnx_dtype(dtype))
    direction = "LEFT" if kind == "left" else "RIGHT"
    shifted = ctx.op("BitShift", _to_shift_domain(ctx, x, dtype, bits), amount, direction=direction)
    result = _from_shift_domain(ctx, shifted, dtype, bits)
    return _where(ctx, out_of_range, ctx.scalar(0, dtype), result, dtype)


_SX = np.array([1, -1, 7, -8, 123456, -123456, 2**30, -(2**31)], np.int32)
_SY = np.array([0, 1, 3, 31, 32, -1, 5, 2], np.int32)
_U8 = np.array([1, 255, 128, 7, 16, 3], np.uint8)
_U8Y = np.array([1, 3, 7, 8, 9, 0], np.uint8)
_I16 = np.array([-3, 300, -32768, 32767, 5, -1], np.int16)
_I16Y = np.array([1, 4, 15, 1, 16, 3], np.int16)
_I64 = np.array([-(2**40), 2**50 + 3, -1, 12345], np.int64)
_I64Y = np.array([3, 12, 63, 64], np.int64)

for _prim, _kind, _fn in (
    ("shift_left", "left", lax.shift_left),
    ("shift_right_logical", "logical", lax.shift_right_logical),
    ("shift_right_arithmetic", "arithmetic", lax.shift_right_arithmetic),
):
    handler(_prim, onnx_ops=("BitShift", "Cast", "Where", "BitwiseNot"), min_opset=18, testcases=[
        Testcase(f"{_prim}_i32", _fn, [_SX, _SY]),
        Testcase(f"{_prim}_u8", _fn, [_U8, _U8Y]),
        Testcase(f"{_prim}_i16", _fn, [_I16, _I16Y]),
        Testcase(f"{_prim}_i64", _fn, [_I64, _I64Y], x64=True),
    ])(functools.partial(_shift, _kind))


# ----------------------------------------------------------------------------- population_count / clz
_M1, _M2, _M4, _H01 = 0x55555555, 0x33333333, 0x0F0F0F0F, 0x01010101


def _as_halves(ctx: LoweringContext, x: ir.Value, dtype: np.dtype, bits: int) -> list[ir.Value]:
    """Non-negative int64 values of at most 32 bits each: [x] for <= 32-bit types, [high, low] for 64-bit."""
    if bits <= 32:
        unsigned = ctx.op("Cast", x, to=_UNSIGNED[bits]) if np.issubdtype(dtype, np.signedinteger) else x
        return [ctx.op("Cast", unsigned, to=ir.DataType.INT64)]
    as_u64 = ctx.op("Cast", x, to=ir.DataType.UINT64) if np.issubdtype(dtype, np.signedinteger) else x
    high = ctx.op("Cast", ctx.op("BitShift", as_u64, ctx.const(np.array(32, np.uint64)), direction="RIGHT"), to=ir.DataType.INT64)
    low = ctx.op("BitwiseAnd", ctx.op("Cast", as_u64, to=ir.DataType.INT64), ctx.scalar(0xFFFFFFFF, np.int64))
    return [high, low]


def _popcount32(ctx: LoweringContext, v: ir.Value) -> ir.Value:
    """SWAR bit count of non-negative int64 values below 2**32 (right shifts as exact divisions)."""

    def c(value: int) -> ir.Value:
        return ctx.scalar(value, np.int64)

    def shr(value: ir.Value, k: int) -> ir.Value:
        return ctx.op("Div", value, c(1 << k))

    v = ctx.op("Sub", v, ctx.op("BitwiseAnd", shr(v, 1), c(_M1)))
    v = ctx.op("Add", ctx.op("BitwiseAnd", v, c(_M2)), ctx.op("BitwiseAnd", shr(v, 2), c(_M2)))
    v = ctx.op("BitwiseAnd", ctx.op("Add", v, shr(v, 4)), c(_M4))
    return ctx.op("BitwiseAnd", shr(ctx.op("Mul", v, c(_H01)), 24), c(0xFF))


@handler("population_count", onnx_ops=("BitwiseAnd", "Div", "Mul", "Cast"), min_opset=18, testcases=[
    Testcase("population_count_i32", lax.population_count, [_SX]),
    Testcase("population_count_u8", lax.population_count, [_U8]),
    Testcase("population_count_i64", lax.population_count, [_I64], x64=True),
])
def _population_count(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    dtype, bits = _int_info(ctx)
    counts = [_popcount32(ctx, half) for half in _as_halves(ctx, x, dtype, bits)]
    total = counts[0] if len(counts) == 1 else ctx.op("Add", *counts)
    return ctx.op("Cast", total, to=onnx_dtype(dtype))


def _clz32(ctx: LoweringContext, v: ir.Value, width: int) -> ir.Value:
    """Leading zeros of a non-negative int64 value of ``width`` (<= 32) bits: smear the top bit down, count."""
    for k in (1, 2, 4, 8, 16):
        if k >= width:
            break
        v = ctx.op("BitwiseOr", v, ctx.op("Div", v, ctx.scalar(1 << k, np.int64)))
    return ctx.op("Sub", ctx.scalar(width, np.int64), _popcount32(ctx, v))


@handler("clz", onnx_ops=("BitwiseOr", "BitwiseAnd", "Div", "Mul", "Sub", "Cast", "Where"), min_opset=18, testcases=[
    Testcase("clz_i32", lax.clz, [_SX]),
    Testcase("clz_u8", lax.clz, [np.array([0, 1, 255, 128, 7, 16], np.uint8)]),
    Testcase("clz_i64", lax.clz, [np.array([0, 1, -1, 2**40, 2**31, 12345], np.int64)], x64=True),
])
def _clz(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    dtype, bits = _int_info(ctx)
    halves = _as_halves(ctx, x, dtype, bits)
    if len(halves) == 1:
        result = _clz32(ctx, halves[0], bits)
    else:
        high, low = halves
        high_zero = ctx.op("Equal", high, ctx.scalar(0, np.int64))
        low_count = ctx.op("Add", _clz32(ctx, low, 32), ctx.scalar(32, np.int64))
        result = ctx.op("Where", high_zero, low_count, _clz32(ctx, high, 32))
    return ctx.op("Cast", result, to=onnx_dtype(dtype))
