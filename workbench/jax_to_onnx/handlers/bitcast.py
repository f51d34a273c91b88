"""Float bit patterns: ``bitcast_convert_type``, ``nextafter`` and ``reduce_precision``, exact for every value.

ONNX has ``BitCast`` only from opset 26. Below it (and for the float/int pairs it lacks) a float is
taken apart arithmetically into its IEEE fields and put back together:

- *fields of a float*: sign (``x < 0`` or ``1/x < 0`` for -0), the binary exponent
  ``e = floor(log2 |x|)`` (from ``Log`` in float64, corrected by one comparison against exact powers
  of two on each side, so it is exact), the biased exponent field and the mantissa field
  ``|x| * 2**(M - e) - 2**M`` (or ``|x| * 2**(bias - 1 + M)`` for subnormals). All arithmetic is in
  float64, where every float16/bfloat16/float32 value and every power of two in play is exact;
  scaling by ``2**k`` is two multiplications by ``2**(k//2)`` and ``2**(k - k//2)`` read from a
  table (``Gather``), so no intermediate overflows or rounds, float64 inputs included.
- *float from fields*: ``(2**M + mantissa) * 2**(exponent - bias - M)`` (subnormals without the
  implicit bit), the same way, then a ``Cast`` to the float type (exact, the value is representable).

Infinities and NaN are handled explicitly; a NaN's payload is not kept (every NaN becomes the
canonical quiet NaN, sign cleared), which is what ``bitcast`` of a NaN computed by arithmetic
gives anyway. Integer ↔ integer bitcasts of one width are ``Cast`` (two's complement wrap-around).
Bitcasts between different widths (which change the shape) are reported with that reason.

``nextafter(x, y)`` steps the sign-magnitude ordinal ``exponent * 2**M + mantissa`` of ``x`` by one
toward ``y`` (XLA's definition: NaN in → NaN, ``x == y`` → ``y``, ``x == 0`` → the smallest
subnormal with the direction's sign).

``reduce_precision(x, exponent_bits, mantissa_bits)`` rounds to a narrower format and back as XLA's
ReducePrecision does on the bit pattern: the magnitude ordinal is rounded to ``mantissa_bits`` (round to
nearest, ties to even, a carry may bump the exponent), then an exponent above the narrow format's range
becomes infinity and one at or below its smallest normal exponent becomes zero (keeping the sign); NaN
stays NaN (the input itself, payload included). Rounding to at least the input type's own widths is the
identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.jax_to_onnx.builder import onnx_dtype
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

_F64 = ir.DataType.DOUBLE
_I64 = ir.DataType.INT64
_BOOL = ir.DataType.BOOL
_HALF_RANGE = 540  # |k//2| for every scale 2**k needed (float64: k down to -1074)
_POWERS = np.ldexp(1.0, np.arange(-_HALF_RANGE, _HALF_RANGE + 1)).astype(np.float64)


@dataclass(frozen=True)
class _Format:
    """An IEEE binary floating-point format: exponent and mantissa field widths."""

    exponent_bits: int
    mantissa_bits: int

    @property
    def bias(self) -> int:
        return (1 << (self.exponent_bits - 1)) - 1

    @property
    def width(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits


_FORMATS: dict[np.dtype, _Format] = {
    np.dtype(np.float16): _Format(5, 10),
    np.dtype(ml_dtypes.bfloat16): _Format(8, 7),
    np.dtype(np.float32): _Format(8, 23),
    np.dtype(np.float64): _Format(11, 52),
}
_UNSIGNED = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def _i64(ctx: LoweringContext, value: int) -> ir.Value:
    return ctx.const(np.asarray(value, np.int64))


def _f64(ctx: LoweringContext, value: float) -> ir.Value:
    return ctx.const(np.asarray(value, np.float64))


def _power(ctx: LoweringContext, exponent: ir.Value) -> ir.Value:
    """``2.0 ** exponent`` (int64 in [-_HALF_RANGE, _HALF_RANGE]) exactly, as float64."""
    return ctx.op("Gather", ctx.const(_POWERS), ctx.op("Add", exponent, _i64(ctx, _HALF_RANGE)), axis=0)


def _scale(ctx: LoweringContext, value: ir.Value, exponent: ir.Value) -> ir.Value:
    """``value * 2.0 ** exponent`` for float64 ``value``, in two exact steps."""
    half = ctx.op("Div", exponent, _i64(ctx, 2))  # truncation is fine: the halves add up to exponent
    rest = ctx.op("Sub", exponent, half)
    return ctx.op("Mul", ctx.op("Mul", value, _power(ctx, half)), _power(ctx, rest))


# ----------------------------------------------------------------------------- float → fields
def _fields(ctx: LoweringContext, x: ir.Value, fmt: _Format) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(sign bool, exponent field int64, mantissa field int64) of every element of float ``x``."""
    wide = ctx.op("Cast", x, to=_F64)
    zero = _f64(ctx, 0.0)
    negative = ctx.op("Or", ctx.op("Less", wide, zero), ctx.op("Less", ctx.op("Div", _f64(ctx, 1.0), wide), zero))
    magnitude = ctx.op("Abs", wide)
    is_inf = ctx.op("IsInf", wide)
    is_nan = ctx.op("IsNaN", wide)
    # a finite, non-zero stand-in where |x| is 0, inf or NaN, so Log and the scaling stay finite
    finite = ctx.op("Where", ctx.op("Or", ctx.op("Or", is_inf, is_nan), ctx.op("Equal", magnitude, zero)),
                    _f64(ctx, 1.0), magnitude)
    guess = ctx.op("Cast", ctx.op("Floor", ctx.op("Div", ctx.op("Log", finite), _f64(ctx, np.log(2.0)))), to=_I64)
    too_high = ctx.op("Cast", ctx.op("Greater", _scale(ctx, _f64(ctx, 1.0), guess), finite), to=_I64)
    exponent = ctx.op("Sub", guess, too_high)
    one_more = ctx.op("Add", exponent, _i64(ctx, 1))
    too_low = ctx.op("Cast", ctx.op("LessOrEqual", _scale(ctx, _f64(ctx, 1.0), one_more), finite), to=_I64)
    exponent = ctx.op("Add", exponent, too_low)

    subnormal = ctx.op("Less", exponent, _i64(ctx, 1 - fmt.bias))
    normal_exponent = ctx.op("Max", exponent, _i64(ctx, 1 - fmt.bias))  # keeps the unused branch's scale in range
    normal_mantissa = ctx.op("Sub", _scale(ctx, finite, ctx.op("Sub", _i64(ctx, fmt.mantissa_bits), normal_exponent)),
                             _f64(ctx, float(2**fmt.mantissa_bits)))
    subnormal_mantissa = _scale(ctx, finite, _i64(ctx, fmt.bias - 1 + fmt.mantissa_bits))
    mantissa = ctx.op("Cast", ctx.op("Where", subnormal, subnormal_mantissa, normal_mantissa), to=_I64)
    biased = ctx.op("Where", subnormal, _i64(ctx, 0), ctx.op("Add", exponent, _i64(ctx, fmt.bias)))

    is_zero = ctx.op("Equal", magnitude, zero)
    all_ones = _i64(ctx, (1 << fmt.exponent_bits) - 1)
    biased = ctx.op("Where", ctx.op("Or", is_inf, is_nan), all_ones, ctx.op("Where", is_zero, _i64(ctx, 0), biased))
    quiet_nan_mantissa = _i64(ctx, 1 << (fmt.mantissa_bits - 1))
    mantissa = ctx.op("Where", is_nan, quiet_nan_mantissa,
                      ctx.op("Where", ctx.op("Or", is_inf, is_zero), _i64(ctx, 0), mantissa))
    negative = ctx.op("And", negative, ctx.op("Not", is_nan))
    return negative, biased, mantissa


def _from_fields(ctx: LoweringContext, negative: ir.Value, biased: ir.Value, mantissa: ir.Value, fmt: _Format,
                 dtype: Any) -> ir.Value:
    """The float of ``dtype`` with these fields (NaN for an all-ones exponent and a non-zero mantissa)."""
    subnormal = ctx.op("Equal", biased, _i64(ctx, 0))
    implicit = ctx.op("Where", subnormal, _i64(ctx, 0), _i64(ctx, 1 << fmt.mantissa_bits))
    significand = ctx.op("Cast", ctx.op("Add", mantissa, implicit), to=_F64)
    exponent = ctx.op("Sub", ctx.op("Where", subnormal, _i64(ctx, 1), biased), _i64(ctx, fmt.bias + fmt.mantissa_bits))
    all_ones = ctx.op("Equal", biased, _i64(ctx, (1 << fmt.exponent_bits) - 1))
    safe_exponent = ctx.op("Where", all_ones, _i64(ctx, 0), exponent)
    magnitude = _scale(ctx, significand, safe_exponent)
    special = ctx.op("Where", ctx.op("Equal", mantissa, _i64(ctx, 0)), _f64(ctx, np.inf), _f64(ctx, np.nan))
    magnitude = ctx.op("Where", all_ones, special, magnitude)
    # the sign as a factor: onnxruntime's Where returns +0.0 when it picks a -0.0 from its second input
    value = ctx.op("Mul", magnitude, ctx.op("Where", negative, _f64(ctx, -1.0), _f64(ctx, 1.0)))
    if np.dtype(dtype) == np.dtype(np.float64):
        return value
    if np.dtype(dtype) != np.dtype(np.float32):
        value = ctx.op("Cast", value, to=ir.DataType.FLOAT)  # exact; float64 → float16/bfloat16 goes through it
    return ctx.op("Cast", value, to=onnx_dtype(dtype))


# ----------------------------------------------------------------------------- fields ↔ integer bit patterns
def _bits_from_fields(ctx: LoweringContext, negative: ir.Value, biased: ir.Value, mantissa: ir.Value,
                      fmt: _Format, int_dtype: Any) -> ir.Value:
    """The bit pattern as ``int_dtype`` (int64 arithmetic; the top bit wraps into the sign for 64 bits)."""
    unsigned = ctx.op("Add", ctx.op("Mul", biased, _i64(ctx, 1 << fmt.mantissa_bits)), mantissa)
    sign_value = -(1 << 63) if fmt.width == 64 else 1 << (fmt.width - 1)
    pattern = ctx.op("Add", unsigned, ctx.op("Where", negative, _i64(ctx, sign_value), _i64(ctx, 0)))
    if fmt.width < 64:  # int64 → the unsigned type of the width keeps the low bits
        pattern = ctx.op("Cast", pattern, to=onnx_dtype(_UNSIGNED[fmt.width]))
        if np.dtype(int_dtype) == np.dtype(_UNSIGNED[fmt.width]):
            return pattern
    return ctx.op("Cast", pattern, to=onnx_dtype(int_dtype))  # reinterpreted: two's complement wrap-around


def _fields_from_bits(ctx: LoweringContext, bits: ir.Value, int_dtype: Any, fmt: _Format) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(sign, exponent field, mantissa field) of an integer bit pattern."""
    width = fmt.width
    if width < 64:
        unsigned = bits if np.dtype(int_dtype).kind == "u" else ctx.op("Cast", bits, to=onnx_dtype(_UNSIGNED[width]))
        pattern = ctx.op("Cast", unsigned, to=_I64)
        negative = ctx.op("GreaterOrEqual", pattern, _i64(ctx, 1 << (width - 1)))
        rest = ctx.op("Mod", pattern, _i64(ctx, 1 << (width - 1)))
    else:
        pattern = bits if np.dtype(int_dtype) == np.dtype(np.int64) else ctx.op("Cast", bits, to=_I64)
        negative = ctx.op("Less", pattern, _i64(ctx, 0))
        # two's complement: the pattern without its top bit is pattern - INT64_MIN for negative patterns
        rest = ctx.op("Where", negative, ctx.op("Sub", pattern, _i64(ctx, -(1 << 63))), pattern)
    biased = ctx.op("Div", rest, _i64(ctx, 1 << fmt.mantissa_bits))
    mantissa = ctx.op("Mod", rest, _i64(ctx, 1 << fmt.mantissa_bits))
    return negative, biased, mantissa


# ----------------------------------------------------------------------------- bitcast_convert_type
def _bitcast_reason(eqn: Any, opset: int | None) -> str:
    del opset  # the same at every opset the handler supports
    source, target = np.dtype(eqn.invars[0].aval.dtype), np.dtype(eqn.params["new_dtype"])
    if source.itemsize != target.itemsize:
        return (f"bitcast_convert_type from {source} to {target} changes the element width (and the shape); "
                "only bitcasts between types of one width are exported")
    for dtype in (source, target):
        if dtype not in _FORMATS and dtype.kind not in "iu":
            return f"bitcast_convert_type involving {dtype} is not supported (float16/bfloat16/float32/float64 and integers are)"
    return ""


_BITS_F32 = np.array([0x3F800000, 0x80000000, 0x00000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x7F800000,
                      0xFF800000, 0x3EAAAAAB, 0xC2F6E979, 0x00000000], np.uint32)
_FLOATS = np.array([1.0, -0.0, 0.0, 1e-45, -1.17e-38, 3.4e38, -np.inf, np.inf, 0.3333333, -123.456, 2.5e-40,
                    np.float32(np.finfo(np.float32).tiny)], np.float32)
_DOUBLES = np.array([1.0, -0.0, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, np.inf, -np.inf, 0.1,
                     -123.456e100, 1e-310], np.float64)


@handler("bitcast_convert_type", onnx_ops=("BitCast", "Cast", "Log", "Floor", "Gather", "Where"),
         unsupported_reason=_bitcast_reason, testcases=[
    Testcase("bitcast_u32_to_f32", lambda b: lax.bitcast_convert_type(b, jnp.float32), [_BITS_F32], rtol=0, atol=0),
    Testcase("bitcast_f32_to_i32", lambda x: lax.bitcast_convert_type(x, jnp.int32), [_FLOATS]),
    Testcase("bitcast_f32_to_u32", lambda x: lax.bitcast_convert_type(x, jnp.uint32), [_FLOATS]),
    Testcase("bitcast_i32_to_f32", lambda b: lax.bitcast_convert_type(b, jnp.float32),
             [_BITS_F32.view(np.int32)], rtol=0, atol=0),
    Testcase("bitcast_f32_roundtrip_random", lambda x: lax.bitcast_convert_type(lax.bitcast_convert_type(x * 1e3, jnp.int32) + 1, jnp.float32),
             [("B", 16)], rtol=0, atol=0),
    Testcase("bitcast_f64_to_i64", lambda x: lax.bitcast_convert_type(x, jnp.int64), [_DOUBLES], x64=True),
    Testcase("bitcast_u64_to_f64", lambda b: lax.bitcast_convert_type(b, jnp.float64),
             [_DOUBLES.view(np.uint64)], x64=True, rtol=0, atol=0),
    Testcase("bitcast_f16_to_u16", lambda x: lax.bitcast_convert_type(x.astype(jnp.float16), jnp.uint16),
             [np.array([1.0, -2.5, 6.0e-8, 65504.0, -0.0, 1e-5], np.float32)]),
    Testcase("bitcast_u16_to_bf16", lambda b: lax.bitcast_convert_type(b, jnp.bfloat16).astype(jnp.float32),
             [np.array([0x3F80, 0xC020, 0x0001, 0x7F7F, 0x8000], np.uint16)], rtol=0, atol=0),
    Testcase("bitcast_i32_to_u32", lambda b: lax.bitcast_convert_type(b, jnp.uint32), [np.array([-1, 0, 5, -2**31], np.int32)]),
    Testcase("bitcast_constant", lambda x: x + lax.bitcast_convert_type(jnp.asarray(_BITS_F32[:4]), jnp.float32), [(4,)]),
])
def _bitcast_convert_type(ctx: LoweringContext, x: ir.Value, *, new_dtype: Any) -> ir.Value:
    """Same-width reinterpretation: BitCast at opset >= 26, Cast between integers, field arithmetic otherwise."""
    source, target = np.dtype(ctx.avals_in[0].dtype), np.dtype(new_dtype)
    if source == target:
        return x
    constants = ctx.constant_values(x)
    if constants is not None:  # a constant operand: its bits reinterpreted here, no nodes
        return ctx.const(np.ascontiguousarray(constants[0]).view(target))
    if ctx.opset >= 26:
        return ctx.op("BitCast", x, to=onnx_dtype(target))
    if source.kind in "iu" and target.kind in "iu":
        return ctx.op("Cast", x, to=onnx_dtype(target))
    if source in _FORMATS and target in _FORMATS:  # float16 ↔ bfloat16: through the bit pattern
        fmt = _FORMATS[source]
        pattern = _bits_from_fields(ctx, *_fields(ctx, x, fmt), fmt, _UNSIGNED[fmt.width])
        return _from_fields(ctx, *_fields_from_bits(ctx, pattern, _UNSIGNED[fmt.width], _FORMATS[target]),
                            _FORMATS[target], target)
    if source in _FORMATS:
        fmt = _FORMATS[source]
        return _bits_from_fields(ctx, *_fields(ctx, x, fmt), fmt, target)
    fmt = _FORMATS[target]
    return _from_fields(ctx, *_fields_from_bits(ctx, x, source, fmt), fmt, target)


# ----------------------------------------------------------------------------- nextafter
_NEXT_X = np.array([1.0, 1.0, -1.0, 0.0, -0.0, 0.0, np.inf, 3.4028235e38, 1e-45, np.nan, 2.0, 5.0, -1e-38], np.float32)
_NEXT_Y = np.array([2.0, 0.0, 0.0, 1.0, -1.0, -1.0, 0.0, np.inf, 0.0, 1.0, 2.0, np.nan, -1.0], np.float32)


def _nextafter_of_constants(x: jnp.ndarray) -> jnp.ndarray:
    return x + jnp.nextafter(jnp.asarray(_NEXT_X), jnp.asarray(_NEXT_Y))


@handler("nextafter", onnx_ops=("Log", "Floor", "Gather", "Where", "Cast"), testcases=[
    Testcase("nextafter_edges", jnp.nextafter, [_NEXT_X, _NEXT_Y], rtol=0, atol=0),
    Testcase("nextafter_random", jnp.nextafter, [("B", 8), ("B", 8)], rtol=0, atol=0),
    Testcase("nextafter_constants", _nextafter_of_constants, [(13,)], rtol=0, atol=0),
    Testcase("nextafter_f64", jnp.nextafter, [np.array([1.0, -1e-300, 0.0, 1e308], np.float64),
                                               np.array([2.0, 0.0, -1.0, np.inf], np.float64)], x64=True, rtol=0, atol=0),
])
def _nextafter(ctx: LoweringContext, x: ir.Value, y: ir.Value) -> ir.Value:
    """The float next to ``x`` in the direction of ``y``, by stepping its magnitude ordinal."""
    dtype = np.dtype(ctx.avals_in[0].dtype)
    constants = ctx.constant_values(x, y)
    if constants is not None:  # constant operands (a solver's time grid): NumPy's nextafter, the same IEEE step
        return ctx.const(np.nextafter(*constants).astype(dtype))
    fmt = _FORMATS[dtype]
    negative, biased, mantissa = _fields(ctx, x, fmt)
    ordinal = ctx.op("Add", ctx.op("Mul", biased, _i64(ctx, 1 << fmt.mantissa_bits)), mantissa)
    zero = ctx.scalar(0, dtype)
    toward_larger = ctx.op("Greater", y, x)
    grows = ctx.op("Equal", toward_larger, ctx.op("Greater", x, zero))  # |x| grows: moving away from zero
    ordinal = ctx.op("Add", ordinal, ctx.op("Where", grows, _i64(ctx, 1), _i64(ctx, -1)))
    biased = ctx.op("Div", ordinal, _i64(ctx, 1 << fmt.mantissa_bits))
    mantissa = ctx.op("Mod", ordinal, _i64(ctx, 1 << fmt.mantissa_bits))
    stepped = _from_fields(ctx, negative, biased, mantissa, fmt, dtype)
    tiny = ctx.scalar(np.asarray(np.ldexp(1.0, 1 - fmt.bias - fmt.mantissa_bits), dtype), dtype)
    from_zero = ctx.op("Where", toward_larger, tiny, ctx.op("Neg", tiny))
    result = ctx.op("Where", ctx.op("Equal", x, zero), from_zero, stepped)
    result = ctx.op("Where", ctx.op("Equal", x, y), y, result)
    either_nan = ctx.op("Or", ctx.op("IsNaN", x), ctx.op("IsNaN", y))
    return ctx.op("Where", either_nan, ctx.op("Add", x, y), result)


# ----------------------------------------------------------------------------- reduce_precision
_ROUNDING = np.array([0.3, 1.1, -3.14159, 1000.0, 1.0009765625, 1.0029296875, -1.00048828125, 65504.0, 65520.0,
                      6.1e-5, 6.0e-5, -1e-6, 1e-6, 1e4, -1e6, 1e6, 3.4e38, -np.inf, np.inf, np.nan, 0.0, -0.0,
                      1e-45, 2.5e-40], np.float32)


@handler("reduce_precision", onnx_ops=("Log", "Floor", "Gather", "Where", "Cast", "Div", "Mod"), testcases=[
    Testcase("reduce_precision_noop", lambda x: lax.reduce_precision(x, exponent_bits=8, mantissa_bits=23), [("B", 4)]),
    Testcase("reduce_precision_to_f16", lambda x: lax.reduce_precision(x, exponent_bits=5, mantissa_bits=10),
             [_ROUNDING], rtol=0, atol=0),
    Testcase("reduce_precision_to_bf16", lambda x: lax.reduce_precision(x, exponent_bits=8, mantissa_bits=7),
             [_ROUNDING], rtol=0, atol=0),
    Testcase("reduce_precision_random_e4m3", lambda x: lax.reduce_precision(x * 100.0, exponent_bits=4, mantissa_bits=3),
             [("B", 64)], rtol=0, atol=0),
    Testcase("reduce_precision_f64_to_f32", lambda x: lax.reduce_precision(x, exponent_bits=8, mantissa_bits=23),
             [_DOUBLES], x64=True, rtol=0, atol=0),
])
def _reduce_precision(ctx: LoweringContext, x: ir.Value, *, exponent_bits: int, mantissa_bits: int) -> ir.Value:
    """Round ``x`` to ``exponent_bits``/``mantissa_bits`` and back (XLA's ReducePrecision, see the module docstring)."""
    dtype = np.dtype(ctx.avals_in[0].dtype)
    fmt = _FORMATS[dtype]
    if exponent_bits >= fmt.exponent_bits and mantissa_bits >= fmt.mantissa_bits:
        return x
    negative, biased, mantissa = _fields(ctx, x, fmt)
    ordinal = ctx.op("Add", ctx.op("Mul", biased, _i64(ctx, 1 << fmt.mantissa_bits)), mantissa)
    if mantissa_bits < fmt.mantissa_bits:
        step = _i64(ctx, 1 << (fmt.mantissa_bits - mantissa_bits))  # the narrow format's last mantissa bit
        last_bit = ctx.op("Mod", ctx.op("Div", ordinal, step), _i64(ctx, 2))
        bias = ctx.op("Add", last_bit, _i64(ctx, (1 << (fmt.mantissa_bits - mantissa_bits - 1)) - 1))
        ordinal = ctx.op("Mul", ctx.op("Div", ctx.op("Add", ordinal, bias), step), step)
    if exponent_bits < fmt.exponent_bits:
        narrow_bias = (1 << (exponent_bits - 1)) - 1
        exponent = ctx.op("Div", ordinal, _i64(ctx, 1 << fmt.mantissa_bits))
        infinity = _i64(ctx, ((1 << fmt.exponent_bits) - 1) << fmt.mantissa_bits)
        ordinal = ctx.op("Where", ctx.op("Greater", exponent, _i64(ctx, fmt.bias + narrow_bias)), infinity, ordinal)
        ordinal = ctx.op("Where", ctx.op("LessOrEqual", exponent, _i64(ctx, fmt.bias - narrow_bias)), _i64(ctx, 0), ordinal)
    biased = ctx.op("Div", ordinal, _i64(ctx, 1 << fmt.mantissa_bits))
    mantissa = ctx.op("Mod", ordinal, _i64(ctx, 1 << fmt.mantissa_bits))
    rounded = _from_fields(ctx, negative, biased, mantissa, fmt, dtype)
    return ctx.op("Where", ctx.op("IsNaN", x), x, rounded)


__all__: list[str] = []
