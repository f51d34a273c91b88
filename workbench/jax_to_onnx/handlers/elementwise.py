"""Elementwise lax primitives: arithmetic, math functions, comparisons, logic, casts, select, clamp."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.jax_to_onnx.bias import BIAS_BROADCAST_OPS, without_bias_reshape
from workbench.jax_to_onnx.builder import onnx_dtype
from workbench.jax_to_onnx.handlers.where_kernels import selected_as
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

F = ("B", 4)  # a float32 input with a symbolic batch
F64 = jax.ShapeDtypeStruct(("B", 4), np.float64)  # the same in float64, for exports with enable_double_precision


def _and_f64(case: Testcase) -> tuple[Testcase, Testcase]:
    """``case`` and its float64 twin: float inputs in float64, exported with double precision and compared
    at a tolerance float32 could not meet, so a silent downcast anywhere in the handler fails the test."""
    inputs = [F64 if spec == F else spec for spec in case.inputs]
    twin = Testcase(f"{case.name.removesuffix('_f32')}_f64", case.fn, inputs, rtol=1e-12, atol=1e-12, x64=True)
    return case, twin


# primitives whose ONNX op onnxruntime's CPU provider also runs in float64 (Tan, Asin, Acos, Atan, Sinh,
# Cosh, Asinh, Atanh and Erf are float32-only there, so their float64 exports are valid but cannot run)
_F64_RUNNABLE = frozenset({
    "add", "sub", "mul", "neg", "exp", "sin", "cos", "tanh", "abs", "sign", "floor", "ceil", "logistic", "max", "min",
})


def _is_bool(aval: Any) -> bool:
    return np.dtype(aval.dtype) == np.dtype(bool)


def _is_float(aval: Any) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.floating)


# ----------------------------------------------------------------------------- n-ary direct mappings
# ONNX's Max and Min take no bool tensors (the model is invalid); on bools (False < True) they are Or and And
_BOOL_MAX_MIN = {"Max": "Or", "Min": "And"}


def _direct(
    op_type: str, ctx: LoweringContext, *operands: ir.Value, accuracy: Any = None, out_dtype: Any = None
) -> ir.Value:
    """One ONNX op per primitive. ``accuracy`` (transcendentals) is XLA's approximation choice; ``out_dtype``
    (mul) asks for the product in another dtype: the operands are cast to it first."""
    del accuracy
    if op_type in _BOOL_MAX_MIN and _is_bool(ctx.avals_in[0]):
        return ctx.op(_BOOL_MAX_MIN[op_type], *operands)
    if out_dtype is not None and np.dtype(out_dtype) != np.dtype(ctx.avals_in[0].dtype):
        operands = tuple(ctx.op("Cast", operand, to=onnx_dtype(out_dtype)) for operand in operands)
    if op_type in BIAS_BROADCAST_OPS:
        # a bias reshaped to (1, ..., 1, N) (Flax Dense, LayerNorm) is used as is: ONNX broadcasts it
        left, right = operands
        plain_right = without_bias_reshape(left, right)
        if plain_right is not right:
            operands = (left, plain_right)
        else:
            operands = (without_bias_reshape(right, left), right)
    return ctx.op(op_type, *operands)


# every pair of bools, for the handlers that treat bools apart (max, min, the order comparisons)
_BOOLS = [np.array([False, False, True, True]), np.array([False, True, False, True])]


def _register_direct(primitive: str, op_type: str, fn: Any, n_inputs: int, **tc_kwargs: Any) -> None:
    specs = [F] * n_inputs
    case = Testcase(f"{primitive}_f32", fn, specs, **tc_kwargs)
    cases = list(_and_f64(case)) if primitive in _F64_RUNNABLE else [case]
    bool_op = _BOOL_MAX_MIN.get(op_type)
    if bool_op is not None:
        cases.append(Testcase(f"{primitive}_bool", fn, _BOOLS))
    handler(
        primitive,
        onnx_ops=(op_type,) if bool_op is None else (op_type, bool_op),
        testcases=cases,
    )(functools.partial(_direct, op_type))


_pos = {"int_high": 5}
for _prim, _op, _fn, _n in (
    ("add", "Add", lambda x, y: x + y, 2),
    ("sub", "Sub", lambda x, y: x - y, 2),
    ("mul", "Mul", lambda x, y: x * y, 2),
    ("neg", "Neg", lambda x: -x, 1),
    ("exp", "Exp", jnp.exp, 1),
    ("sin", "Sin", jnp.sin, 1),
    ("cos", "Cos", jnp.cos, 1),
    ("tan", "Tan", jnp.tan, 1),
    ("asin", "Asin", lambda x: jnp.arcsin(jnp.tanh(x)), 1),
    ("acos", "Acos", lambda x: jnp.arccos(jnp.tanh(x)), 1),
    ("atan", "Atan", jnp.arctan, 1),
    ("sinh", "Sinh", jnp.sinh, 1),
    ("cosh", "Cosh", jnp.cosh, 1),
    ("tanh", "Tanh", jnp.tanh, 1),
    ("asinh", "Asinh", jnp.arcsinh, 1),
    ("atanh", "Atanh", lambda x: jnp.arctanh(0.9 * jnp.tanh(x)), 1),
    ("abs", "Abs", jnp.abs, 1),
    ("sign", "Sign", jnp.sign, 1),
    ("floor", "Floor", jnp.floor, 1),
    ("ceil", "Ceil", jnp.ceil, 1),
    ("logistic", "Sigmoid", jax.nn.sigmoid, 1),
    ("erf", "Erf", jax.scipy.special.erf, 1),
    ("max", "Max", jnp.maximum, 2),
    ("min", "Min", jnp.minimum, 2),
):
    _register_direct(_prim, _op, _fn, _n)


# integer dtypes whose division by zero (and INT_MIN / -1) is guarded: onnxruntime fails on an integer
# division by zero ("Integer division by zero") where XLA defines the result; these are the integer
# types onnxruntime's Where runs on
_GUARDED_DIVISION = frozenset(np.dtype(t) for t in (np.int8, np.uint8, np.int32, np.int64, np.uint32))
_DIVISION_EDGES = (np.array([7, -7, 5, -5, 0, -2147483648, -2147483648, 9], np.int32),
                   np.array([2, 2, -3, 0, 0, -1, 0, -1], np.int32))


def _division_guard(ctx: LoweringContext, x: ir.Value, y: ir.Value) -> tuple[ir.Value, ir.Value] | None:
    """(the divisor with 0, and -1 where the dividend is the type's minimum, replaced by 1; where it was 0),
    or None for the types that need no guard (floats: IEEE defines x / 0)."""
    dtype = np.dtype(ctx.avals_in[0].dtype)
    if dtype not in _GUARDED_DIVISION:
        return None
    is_zero = ctx.op("Equal", y, ctx.scalar(0, dtype))
    replace = is_zero
    if dtype.kind == "i":  # the one quotient that overflows: XLA gives INT_MIN / -1 = INT_MIN, INT_MIN % -1 = 0
        overflow = ctx.op("And", ctx.op("Equal", x, ctx.scalar(np.iinfo(dtype).min, dtype)),
                          ctx.op("Equal", y, ctx.scalar(-1, dtype)))
        replace = ctx.op("Or", is_zero, overflow)
    return ctx.op("Where", replace, ctx.scalar(1, dtype), y), is_zero


@handler("div", onnx_ops=("Div", "Equal", "Where"), testcases=[
    *_and_f64(Testcase("div_f32", lambda x, y: x / (jnp.abs(y) + 1.0), [F, F])),
    Testcase("div_int_truncates", lambda x, y: lax.div(x, y), [np.array([7, -7, 5, -5], np.int32), np.array([2, 2, -3, -3], np.int32)]),
    Testcase("div_int_by_zero_and_overflow", lambda x, y: lax.div(x, y), list(_DIVISION_EDGES), rtol=0, atol=0),
    Testcase("div_uint32_by_zero", lambda x, y: lax.div(x, y),
             [np.array([7, 0, 2**32 - 1, 9], np.uint32), np.array([0, 0, 0, 4], np.uint32)], rtol=0, atol=0),
])
def _div(ctx: LoweringContext, x: ir.Value, y: ir.Value) -> ir.Value:
    """lax.div truncates toward zero for integers, as ONNX Div does; an integer x / 0 is -1 (all bits set),
    as XLA defines it, and INT_MIN / -1 is INT_MIN."""
    guard = _division_guard(ctx, x, y)
    if guard is None:
        return ctx.op("Div", x, y)
    divisor, is_zero = guard
    dtype = np.dtype(ctx.avals_in[0].dtype)
    return ctx.op("Where", is_zero, ctx.scalar(np.array(-1).astype(dtype), dtype), ctx.op("Div", x, divisor))


@handler("rem", onnx_ops=("Mod", "Equal", "Where"), testcases=[
    *_and_f64(Testcase("rem_f32", lambda x, y: lax.rem(x, jnp.abs(y) + 1.0), [F, F])),
    Testcase("rem_int", lambda x, y: lax.rem(x, y), [np.array([7, -7, 5, -5], np.int32), np.array([2, 2, -3, -3], np.int32)]),
    Testcase("rem_int_by_zero_and_overflow", lambda x, y: lax.rem(x, y), list(_DIVISION_EDGES), rtol=0, atol=0),
])
def _rem(ctx: LoweringContext, x: ir.Value, y: ir.Value) -> ir.Value:
    """lax.rem takes the sign of the dividend: C fmod, i.e. ONNX Mod with fmod=1; an integer x % 0 is x
    (XLA's definition) and INT_MIN % -1 is 0."""
    guard = _division_guard(ctx, x, y)
    if guard is None:
        return ctx.op("Mod", x, y, fmod=1)
    divisor, is_zero = guard
    return ctx.op("Where", is_zero, x, ctx.op("Mod", x, divisor, fmod=1))


@handler("pow", onnx_ops=("Pow",), testcases=[*_and_f64(Testcase("pow_f32", lambda x, y: jnp.abs(x) ** y, [F, F], rtol=1e-4))])
def _pow(ctx: LoweringContext, x: ir.Value, y: ir.Value) -> ir.Value:
    return ctx.op("Pow", x, y)


@handler("integer_pow", onnx_ops=("Mul", "Reciprocal"), testcases=[
    *_and_f64(Testcase("integer_pow_3", lambda x: x**3, [F], rtol=1e-4)),
    Testcase("integer_pow_neg2", lambda x: (jnp.abs(x) + 1.0) ** -2, [F]),
    Testcase("integer_pow_int", lambda x: x**2, [np.array([1, -2, 3], np.int32)]),
])
def _integer_pow(ctx: LoweringContext, x: ir.Value, *, y: int) -> ir.Value:
    """x**y by repeated squaring, exact like XLA's expansion; negative y takes the reciprocal."""
    if y == 0:
        return ctx.op("Expand", ctx.scalar(1, ctx.avals_in[0].dtype), ctx.shape_value(ctx.avals_in[0].shape))
    result: ir.Value | None = None
    base = x
    power = abs(y)
    while power:
        if power & 1:
            result = base if result is None else ctx.op("Mul", result, base)
        power >>= 1
        if power:
            base = ctx.op("Mul", base, base)
    assert result is not None
    return ctx.op("Reciprocal", result) if y < 0 else result


@handler("square", onnx_ops=("Mul",), testcases=[*_and_f64(Testcase("square", jnp.square, [F]))])
def _square(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    return ctx.op("Mul", x, x)


@handler("sqrt", onnx_ops=("Sqrt",), testcases=[*_and_f64(Testcase("sqrt", lambda x: jnp.sqrt(jnp.abs(x)), [F]))])
def _sqrt(ctx: LoweringContext, x: ir.Value, *, accuracy: Any) -> ir.Value:
    del accuracy  # XLA's approximation choice
    return ctx.op("Sqrt", x)


@handler("rsqrt", onnx_ops=("Sqrt", "Reciprocal"), testcases=[*_and_f64(Testcase("rsqrt", lambda x: lax.rsqrt(jnp.abs(x) + 0.5), [F]))])
def _rsqrt(ctx: LoweringContext, x: ir.Value, *, accuracy: Any) -> ir.Value:
    del accuracy  # XLA's approximation choice
    return ctx.op("Reciprocal", ctx.op("Sqrt", x))


@handler("cbrt", onnx_ops=("Pow", "Sign", "Abs"), testcases=[*_and_f64(Testcase("cbrt", jnp.cbrt, [F], rtol=1e-5))])
def _cbrt(ctx: LoweringContext, x: ir.Value, *, accuracy: Any) -> ir.Value:
    """Pow is undefined for negative bases with a fractional exponent: sign(x) * |x|^(1/3)."""
    del accuracy  # XLA's approximation choice
    third = ctx.scalar(1.0 / 3.0, ctx.avals_in[0].dtype)
    return ctx.op("Mul", ctx.op("Sign", x), ctx.op("Pow", ctx.op("Abs", x), third))


@handler("log", onnx_ops=("Log",), testcases=[*_and_f64(Testcase("log", lambda x: jnp.log(jnp.abs(x) + 0.1), [F]))])
def _log(ctx: LoweringContext, x: ir.Value, *, accuracy: Any) -> ir.Value:
    del accuracy  # XLA's approximation choice
    return ctx.op("Log", x)


@handler("log1p", onnx_ops=("Log", "Add"), testcases=[*_and_f64(Testcase("log1p", lambda x: jnp.log1p(jnp.abs(x)), [F]))])
def _log1p(ctx: LoweringContext, x: ir.Value, *, accuracy: Any) -> ir.Value:
    """ONNX has no Log1p; log(1 + x) loses relative precision only for |x| < ~1e-7."""
    del accuracy  # XLA's approximation choice
    return ctx.op("Log", ctx.op("Add", x, ctx.scalar(1, ctx.avals_in[0].dtype)))


@handler("expm1", onnx_ops=("Exp", "Sub"), testcases=[*_and_f64(Testcase("expm1", jnp.expm1, [F], atol=1e-6))])
def _expm1(ctx: LoweringContext, x: ir.Value, *, accuracy: Any) -> ir.Value:
    del accuracy  # XLA's approximation choice
    return ctx.op("Sub", ctx.op("Exp", x), ctx.scalar(1, ctx.avals_in[0].dtype))


@handler("exp2", onnx_ops=("Pow",), testcases=[*_and_f64(Testcase("exp2", jnp.exp2, [F]))])
def _exp2(ctx: LoweringContext, x: ir.Value, *, accuracy: Any) -> ir.Value:
    del accuracy  # XLA's approximation choice
    return ctx.op("Pow", ctx.scalar(2, ctx.avals_in[0].dtype), x)


@handler("acosh", onnx_ops=("Acosh",), testcases=[Testcase("acosh", lambda x: jnp.arccosh(jnp.abs(x) + 1.0), [F])])
def _acosh(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    return ctx.op("Acosh", x)


@handler("erfc", onnx_ops=("Erf", "Sub"), testcases=[Testcase("erfc", jax.scipy.special.erfc, [F])])
def _erfc(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    return ctx.op("Sub", ctx.scalar(1, ctx.avals_in[0].dtype), ctx.op("Erf", x))


@handler("atan2", onnx_ops=("Atan", "Div", "Where"), testcases=[
    Testcase("atan2", jnp.arctan2, [F, F], atol=1e-5),
    Testcase("atan2_axes", jnp.arctan2, [np.array([0.0, 0.0, 1.0, -1.0, 0.0, -2.0], np.float32), np.array([1.0, -1.0, 0.0, 0.0, 0.0, -2.0], np.float32)]),
])
def _atan2(ctx: LoweringContext, y: ir.Value, x: ir.Value) -> ir.Value:
    """atan2 from Atan(y/x) with quadrant corrections; x == 0 handled explicitly."""
    dtype = ctx.avals_in[0].dtype
    zero, pi, half_pi = (ctx.scalar(v, dtype) for v in (0.0, np.pi, np.pi / 2))
    x_zero = ctx.op("Equal", x, zero)
    safe_x = ctx.op("Where", x_zero, ctx.scalar(1.0, dtype), x)
    base = ctx.op("Atan", ctx.op("Div", y, safe_x))
    y_neg = ctx.op("Less", y, zero)
    signed_pi = ctx.op("Where", y_neg, ctx.op("Neg", pi), pi)
    x_neg = ctx.op("Less", x, zero)
    shifted = ctx.op("Where", x_neg, ctx.op("Add", base, signed_pi), base)
    on_axis = ctx.op("Where", y_neg, ctx.op("Neg", half_pi), ctx.op("Where", ctx.op("Equal", y, zero), zero, half_pi))
    return ctx.op("Where", x_zero, on_axis, shifted)


@handler("round", onnx_ops=("Round", "Floor"), testcases=[
    Testcase("round_even", lambda x: jnp.round(x), [np.array([0.5, 1.5, 2.5, -0.5, -1.7, 3.2], np.float32)]),
    Testcase("round_away", lambda x: lax.round(x, lax.RoundingMethod.AWAY_FROM_ZERO), [np.array([0.5, 1.5, 2.5, -0.5, -1.7, 3.2], np.float32)]),
])
def _round(ctx: LoweringContext, x: ir.Value, *, rounding_method: Any) -> ir.Value:
    """ONNX Round is half-to-even; lax's default (AWAY_FROM_ZERO) is sign(x) * floor(|x| + 0.5)."""
    if int(rounding_method) == int(lax.RoundingMethod.TO_NEAREST_EVEN):
        return ctx.op("Round", x)
    half = ctx.scalar(0.5, ctx.avals_in[0].dtype)
    return ctx.op("Mul", ctx.op("Sign", x), ctx.op("Floor", ctx.op("Add", ctx.op("Abs", x), half)))


@handler("is_finite", onnx_ops=("IsInf", "IsNaN", "Or", "Not"), testcases=[
    Testcase("is_finite", jnp.isfinite, [np.array([1.0, np.inf, -np.inf, np.nan, 0.0], np.float32)]),
])
def _is_finite(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    return ctx.op("Not", ctx.op("Or", ctx.op("IsInf", x), ctx.op("IsNaN", x)))


# ----------------------------------------------------------------------------- comparisons
# the order comparisons of bools (False < True), which ONNX's Less/Greater/... do not take: (negate x, op, negate y)
_BOOL_ORDER = {"Less": (True, "And", False), "LessOrEqual": (True, "Or", False),
               "Greater": (False, "And", True), "GreaterOrEqual": (False, "Or", True)}


def _compare(op_type: str, negate: bool, ctx: LoweringContext, x: ir.Value, y: ir.Value) -> ir.Value:
    if op_type in _BOOL_ORDER and _is_bool(ctx.avals_in[0]):
        not_x, logic, not_y = _BOOL_ORDER[op_type]
        return ctx.op(logic, ctx.op("Not", x) if not_x else x, ctx.op("Not", y) if not_y else y)
    result = ctx.op(op_type, x, y)
    return ctx.op("Not", result) if negate else result


for _prim, _op, _neg, _fn in (
    ("eq", "Equal", False, lambda x, y: x == y),
    ("ne", "Equal", True, lambda x, y: x != y),
    ("lt", "Less", False, lambda x, y: x < y),
    ("le", "LessOrEqual", False, lambda x, y: x <= y),
    ("gt", "Greater", False, lambda x, y: x > y),
    ("ge", "GreaterOrEqual", False, lambda x, y: x >= y),
):
    handler(
        _prim,
        onnx_ops=(_op, "Not") if _neg else (_op, "Not", "And", "Or") if _op in _BOOL_ORDER else (_op,),
        testcases=[
            Testcase(f"{_prim}_f32", _fn, [np.array([1.0, 2.0, 3.0], np.float32), np.array([2.0, 2.0, 2.0], np.float32)]),
            Testcase(f"{_prim}_i32", _fn, [np.array([1, 2, 3], np.int32), np.array([2, 2, 2], np.int32)]),
            *([Testcase(f"{_prim}_bool", _fn, _BOOLS)] if _op in _BOOL_ORDER else []),
        ],
    )(functools.partial(_compare, _op, _neg))


# ----------------------------------------------------------------------------- logic and bitwise
_B = [np.array([True, False, True, False]), np.array([True, True, False, False])]
_I = [np.array([12, 5, -3, 0], np.int32), np.array([10, 3, 7, -1], np.int32)]


def _logical(bool_op: str, bitwise_op: str, ctx: LoweringContext, *operands: ir.Value) -> ir.Value:
    return ctx.op(bool_op if _is_bool(ctx.avals_in[0]) else bitwise_op, *operands)


def bitwise_needs_opset_18(eqn: Any, opset: int | None) -> str:
    """Integer and/or/xor/not are ONNX's Bitwise* ops, which exist from opset 18 on (bool ones always)."""
    if opset is None or opset >= 18 or np.dtype(eqn.invars[0].aval.dtype) == np.dtype(bool):
        return ""
    return f"{eqn.primitive.name} of integers needs ONNX's Bitwise* operators (opset >= 18); the export targets opset {opset}"


for _prim, _bool_op, _bit_op, _fn in (
    ("and", "And", "BitwiseAnd", lambda x, y: x & y),
    ("or", "Or", "BitwiseOr", lambda x, y: x | y),
    ("xor", "Xor", "BitwiseXor", lambda x, y: x ^ y),
):
    handler(
        _prim,
        onnx_ops=(_bool_op, _bit_op),
        unsupported_reason=bitwise_needs_opset_18,
        testcases=[Testcase(f"{_prim}_bool", _fn, _B), Testcase(f"{_prim}_int", _fn, _I)],
    )(functools.partial(_logical, _bool_op, _bit_op))

handler(
    "not",
    onnx_ops=("Not", "BitwiseNot"),
    unsupported_reason=bitwise_needs_opset_18,
    testcases=[Testcase("not_bool", lambda x: ~x, _B[:1]), Testcase("not_int", lambda x: ~x, _I[:1])],
)(functools.partial(_logical, "Not", "BitwiseNot"))


# ----------------------------------------------------------------------------- casts and selection
@handler("convert_element_type", onnx_ops=("Cast",), testcases=[
    Testcase("cast_f32_i32", lambda x: (x * 3).astype(jnp.int32), [F]),
    Testcase("cast_i32_f32", lambda x: x.astype(jnp.float32) / 2, [np.array([1, -3, 5], np.int32)]),
    Testcase("cast_to_bool", lambda x: x.astype(bool), [np.array([0.0, 1.5, -2.0], np.float32)]),
    Testcase("cast_f16", lambda x: x.astype(jnp.float16), [F], rtol=1e-3, atol=1e-3),
])
def _convert_element_type(ctx: LoweringContext, x: ir.Value, *, new_dtype: Any, weak_type: bool, sharding: Any) -> ir.Value:
    del weak_type, sharding
    if np.dtype(new_dtype) == np.dtype(ctx.avals_in[0].dtype):
        return x
    return ctx.op("Cast", x, to=onnx_dtype(new_dtype))


def _identity(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    del ctx
    return x


handler("stop_gradient", onnx_ops=(), testcases=[Testcase("stop_gradient", lambda x: lax.stop_gradient(x) * 2, [F])])(_identity)
handler("copy", onnx_ops=(), testcases=[Testcase("copy", lambda x: jnp.array(x, copy=True) + 1, [F])])(_identity)


@handler("select_n", onnx_ops=("Where", "Equal", "Cast"), testcases=[
    Testcase("select_bool", lambda p, x, y: jnp.where(p > 0, x, y), [F, F, F]),
    Testcase("select_n_int", lambda i, a, b, c: lax.select_n(i, a, b, c), [np.array([0, 1, 2, 1], np.int32), (4,), (4,), (4,)]),
    Testcase("select_of_bools", lambda m: jnp.tril(m), [np.array([[True, True, False], [True, False, True], [True, True, True]])]),
    Testcase("select_int16", lambda p, x, y: jnp.where(p, x, y), [_BOOLS[0], np.array([1, -2, 3, -4], np.int16), np.array([5, 6, -7, 8], np.int16)]),
    Testcase("select_uint16_n", lambda i, a, b, c: lax.select_n(i, a, b, c), [np.array([0, 1, 2, 1], np.int32), *(np.array([1, 2, 65535, 4], np.uint16) * k for k in (1, 2, 3))]),
])
def _select_n(ctx: LoweringContext, which: ir.Value, *cases: ir.Value) -> ir.Value:
    """select_n(which, *cases) picks cases[which]: nested Where, last case as the default.

    onnxruntime's CPU provider has no Where kernel for bool, int16, uint16, uint64 or bfloat16 tensors, so
    those cases are selected in a wider type (handlers/where_kernels.py) and cast back once.
    """
    dtype = ctx.avals_in[1].dtype
    wide = selected_as(dtype)
    if wide is not None:
        cases = tuple(ctx.op("Cast", case, to=onnx_dtype(wide)) for case in cases)
    if _is_bool(ctx.avals_in[0]):
        result = ctx.op("Where", which, cases[1], cases[0])
    else:
        result = cases[-1]
        index_dtype = ctx.avals_in[0].dtype
        for index in range(len(cases) - 2, -1, -1):
            result = ctx.op("Where", ctx.op("Equal", which, ctx.scalar(index, index_dtype)), cases[index], result)
    return ctx.op("Cast", result, to=onnx_dtype(dtype)) if wide is not None else result


@handler("clamp", onnx_ops=("Max", "Min", "Or", "And"), testcases=[
    *_and_f64(Testcase("clamp_scalar", lambda x: jnp.clip(x, -0.5, 0.5), [F])),
    Testcase("clamp_lax", lambda lo, x, hi: lax.clamp(lo, x, hi), [np.float32(-0.2), F, np.float32(0.3)]),
    Testcase("clamp_bool", lambda lo, x, hi: lax.clamp(lo, x, hi), [np.array([False, True, False, True]), *_BOOLS]),
])
def _clamp(ctx: LoweringContext, low: ir.Value, x: ir.Value, high: ir.Value) -> ir.Value:
    """min(max(x, low), high); on bools (Max and Min take none) Or then And."""
    if _is_bool(ctx.avals_in[1]):
        return ctx.op("And", ctx.op("Or", x, low), high)
    return ctx.op("Min", ctx.op("Max", x, low), high)
