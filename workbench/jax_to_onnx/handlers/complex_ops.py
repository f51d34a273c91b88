"""Complex numbers in the exported graph: every complex value is a real tensor with a trailing axis
(real, imaginary) - see ``jax_to_onnx/complex_numbers.py`` for the convention and what the model's
inputs and outputs look like. This module holds the complex handlers of the primitives:

- ``complex``, ``real``, ``imag``, ``conj`` build and take apart the pairs;
- arithmetic: ``add``/``sub``/``neg`` act on the pairs as they are; ``mul`` is (ac - bd, ad + bc);
  ``div`` uses Smith's algorithm (no overflow of c² + d²); ``abs`` is a scaled hypot;
  ``exp``, ``log`` (log|z| + i atan2), ``sqrt`` (principal root), ``sign``, ``square``,
  ``integer_pow`` (repeated multiplication), ``eq``/``ne``; ``dot_general`` is four real products
  (re·re − im·im, re·im + im·re); ``reduce_sum``/``cumsum`` sum the pairs;
- casts: real → complex (imaginary part 0), complex64 ↔ complex128, complex → real (the real
  part, as JAX does with its ComplexWarning);
- layout primitives (transpose, reshape, broadcast_in_dim, slice, squeeze, concatenate, rev,
  dynamic_slice, dynamic_update_slice, select_n) reuse the real handler with the trailing pair
  axis added to their parameters; pad, gather and scatter run the real handler on the real and
  imaginary planes separately; jit, custom_jvp/vjp, remat, cond, while and scan lower their
  bodies as for real values (bodies and carries are typed as pairs).

Accuracy: the same as the real ops they are made of (a complex product rounds like its two real
products and a sum; ``abs``/``div`` avoid overflow and underflow of squared parts by scaling).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import onnx_dtype
from workbench.jax_to_onnx.complex_numbers import is_complex, real_dtype, storage_aval
from workbench.jax_to_onnx.handlers.linalg_kit import reduce_over
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import REGISTRY, Testcase, handler

C64 = jax.ShapeDtypeStruct(("B", 4), np.complex64)
C128 = jax.ShapeDtypeStruct(("B", 4), np.complex128)
C3 = jax.ShapeDtypeStruct((3,), np.complex64)


# ----------------------------------------------------------------------------- pairs
def split(ctx: LoweringContext, z: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(real, imag) of a complex value, each keeping the trailing axis with size 1 (they broadcast)."""
    real = ctx.op("Slice", z, ctx.i64([0]), ctx.i64([1]), ctx.i64([-1]))
    imag = ctx.op("Slice", z, ctx.i64([1]), ctx.i64([2]), ctx.i64([-1]))
    return real, imag


def join(ctx: LoweringContext, real: ir.Value, imag: ir.Value) -> ir.Value:
    """The pair tensor from parts shaped [..., 1]."""
    return ctx.op("Concat", real, imag, axis=-1)


def part(ctx: LoweringContext, z: ir.Value, index: int) -> ir.Value:
    """Real (0) or imaginary (1) part without the pair axis: the logical shape of the value."""
    return ctx.op("Gather", z, ctx.const(np.asarray(index, np.int64)), axis=-1)


def _real_ctx(ctx: LoweringContext, avals_in: Sequence[Any] | None = None, avals_out: Sequence[Any] | None = None) -> LoweringContext:
    """``ctx`` for a real handler: the avals as stored (complex ones with their pair axis), or as given."""
    return dataclasses.replace(
        ctx,
        avals_in=tuple(avals_in) if avals_in is not None else tuple(storage_aval(a) for a in ctx.avals_in),
        avals_out=tuple(avals_out) if avals_out is not None else tuple(storage_aval(a) for a in ctx.avals_out),
    )


def _plane_aval(aval: Any) -> Any:
    """The aval of one part of a complex value (its logical shape, the real dtype)."""
    from jax.core import ShapedArray

    return ShapedArray(tuple(aval.shape), real_dtype(aval.dtype)) if is_complex(aval.dtype) else aval


def _dtype(ctx: LoweringContext, index: int = 0) -> np.dtype:
    return real_dtype(ctx.avals_in[index].dtype)


def _product(ctx: LoweringContext, a: tuple[ir.Value, ir.Value], b: tuple[ir.Value, ir.Value]) -> tuple[ir.Value, ir.Value]:
    (ar, ai), (br, bi) = a, b
    real = ctx.op("Sub", ctx.op("Mul", ar, br), ctx.op("Mul", ai, bi))
    imag = ctx.op("Add", ctx.op("Mul", ar, bi), ctx.op("Mul", ai, br))
    return real, imag


def _quotient(ctx: LoweringContext, a: tuple[ir.Value, ir.Value], b: tuple[ir.Value, ir.Value], dtype: Any) -> tuple[ir.Value, ir.Value]:
    """Smith's algorithm: divide by the larger of |c|, |d| first, so c² + d² is never formed."""
    (ar, ai), (br, bi) = a, b
    c_larger = ctx.op("GreaterOrEqual", ctx.op("Abs", br), ctx.op("Abs", bi))
    one = ctx.scalar(1, dtype)
    safe_br = ctx.op("Where", ctx.op("Equal", br, ctx.scalar(0, dtype)), one, br)
    safe_bi = ctx.op("Where", ctx.op("Equal", bi, ctx.scalar(0, dtype)), one, bi)
    # |c| >= |d|: r = d/c, den = c + d r, ((a + b r) + (b - a r) i) / den
    r1 = ctx.op("Div", bi, safe_br)
    den1 = ctx.op("Add", br, ctx.op("Mul", bi, r1))
    real1 = ctx.op("Div", ctx.op("Add", ar, ctx.op("Mul", ai, r1)), den1)
    imag1 = ctx.op("Div", ctx.op("Sub", ai, ctx.op("Mul", ar, r1)), den1)
    # |c| < |d|: r = c/d, den = c r + d, ((a r + b) + (b r - a) i) / den
    r2 = ctx.op("Div", br, safe_bi)
    den2 = ctx.op("Add", ctx.op("Mul", br, r2), bi)
    real2 = ctx.op("Div", ctx.op("Add", ctx.op("Mul", ar, r2), ai), den2)
    imag2 = ctx.op("Div", ctx.op("Sub", ctx.op("Mul", ai, r2), ar), den2)
    return ctx.op("Where", c_larger, real1, real2), ctx.op("Where", c_larger, imag1, imag2)


def _modulus(ctx: LoweringContext, real: ir.Value, imag: ir.Value, dtype: Any) -> ir.Value:
    """|z| = m sqrt((a/m)² + (b/m)²), m = max(|a|, |b|): no overflow or underflow of the squares."""
    largest = ctx.op("Max", ctx.op("Abs", real), ctx.op("Abs", imag))
    safe = ctx.op("Where", ctx.op("Equal", largest, ctx.scalar(0, dtype)), ctx.scalar(1, dtype), largest)
    a, b = ctx.op("Div", real, safe), ctx.op("Div", imag, safe)
    return ctx.op("Mul", largest, ctx.op("Sqrt", ctx.op("Add", ctx.op("Mul", a, a), ctx.op("Mul", b, b))))


def _atan2(ctx: LoweringContext, y: ir.Value, x: ir.Value, aval: Any) -> ir.Value:
    """atan2 through the real handler (elementwise.py's quadrant-corrected Atan)."""
    return REGISTRY.get("atan2").rule(_real_ctx(ctx, [aval, aval], [aval]), y, x)


# ----------------------------------------------------------------------------- construct / take apart
@handler("complex", onnx_ops=("Unsqueeze", "Concat", "Expand"), complex_numbers=True, testcases=[
    Testcase("complex_from_parts", lambda a, b: lax.complex(a, b), [("B", 4), ("B", 4)]),
    Testcase("complex_scalar_imag", lambda a: a + 2j, [(3,)]),
])
def _complex(ctx: LoweringContext, real: ir.Value, imag: ir.Value) -> ir.Value:
    """x + i y (no params); a scalar part is broadcast to the other's shape first."""
    shape = ctx.shape_value(ctx.aval_out.shape)
    parts = [ctx.op("Unsqueeze", ctx.op("Expand", p, shape), ctx.i64([-1])) for p in (real, imag)]
    return ctx.op("Concat", *parts, axis=-1)


@handler("real", onnx_ops=("Gather",), complex_numbers=True, testcases=[
    Testcase("real", jnp.real, [C64]), Testcase("angle", jnp.angle, [C64], atol=1e-6),
])
def _real(ctx: LoweringContext, z: ir.Value) -> ir.Value:
    return part(ctx, z, 0)


@handler("imag", onnx_ops=("Gather",), complex_numbers=True, testcases=[Testcase("imag", jnp.imag, [C64])])
def _imag(ctx: LoweringContext, z: ir.Value) -> ir.Value:
    return part(ctx, z, 1)


@handler("conj", onnx_ops=("Mul", "Unsqueeze", "Pad"), complex_numbers=True, testcases=[
    Testcase("conj", jnp.conj, [C64]), Testcase("vdot", jnp.vdot, [C3, C3], rtol=1e-5, atol=1e-5),
    Testcase("conj_of_real", lax.conj, [("B", 3)]),
])
def _conj(ctx: LoweringContext, z: ir.Value, *, input_dtype: Any) -> ir.Value:
    """(re, -im); params: input_dtype (the operand's). ``lax.conj`` of a real operand returns the
    complex number (x, 0): its pair gets a zero imaginary part (padding, so inf and nan stay as they are)."""
    if not is_complex(input_dtype):
        rank = len(ctx.avals_in[0].shape)
        pair = ctx.op("Unsqueeze", z, ctx.i64([-1]))
        return ctx.op("Pad", pair, ctx.i64([0] * (rank + 1) + [0] * rank + [1]))
    return ctx.op("Mul", z, ctx.const(np.array([1, -1], dtype=_dtype(ctx))))


# ----------------------------------------------------------------------------- arithmetic
def _pairwise(op_type: str, ctx: LoweringContext, *operands: ir.Value) -> ir.Value:
    """add / sub / neg act on real and imaginary parts alike: the op on the pair tensors."""
    return ctx.op(op_type, *operands)


for _prim, _op, _fn, _n in (
    ("add", "Add", lambda z, w: z + w, 2),
    ("sub", "Sub", lambda z, w: z - w, 2),
    ("neg", "Neg", lambda z: -z, 1),
):
    handler(_prim, onnx_ops=(_op,), complex_numbers=True, testcases=[
        Testcase(f"{_prim}_complex64", _fn, [C64] * _n),
        Testcase(f"{_prim}_complex128", _fn, [C128] * _n, rtol=1e-12, atol=1e-12, x64=True),
    ])(functools.partial(_pairwise, _op))


@handler("mul", onnx_ops=("Mul", "Sub", "Add", "Slice", "Concat"), complex_numbers=True, testcases=[
    Testcase("mul_complex64", lambda z, w: z * w, [C64, C64], rtol=1e-5, atol=1e-5),
    Testcase("mul_complex_literal", lambda z: z * (1.5 - 2j), [C64], rtol=1e-5, atol=1e-5),
    Testcase("mul_complex128", lambda z, w: z * w, [C128, C128], rtol=1e-12, atol=1e-12, x64=True),
])
def _mul(ctx: LoweringContext, z: ir.Value, w: ir.Value, *, out_dtype: Any) -> ir.Value:
    """(ac - bd) + (ad + bc) i. Params: out_dtype (None or the operands' type here)."""
    if out_dtype is not None and np.dtype(out_dtype) != np.dtype(ctx.avals_in[0].dtype):
        raise ConversionError(f"complex mul with out_dtype={np.dtype(out_dtype)} is not supported")
    return join(ctx, *_product(ctx, split(ctx, z), split(ctx, w)))


@handler("div", onnx_ops=("Div", "Mul", "Where", "Abs"), complex_numbers=True, testcases=[
    Testcase("div_complex64", lambda z, w: z / w, [C64, C64], rtol=1e-5, atol=1e-5),
    Testcase("div_complex_extremes", lambda z, w: z / w,
             [np.array([1 + 1j, 3e30 + 1e30j, 1e-30 - 2e-30j, 0j], np.complex64),
              np.array([2 - 1j, 1e30 + 3e30j, 4e-30 + 1e-30j, 1 + 1j], np.complex64)], rtol=1e-5, atol=1e-6),
])
def _div(ctx: LoweringContext, z: ir.Value, w: ir.Value) -> ir.Value:
    return join(ctx, *_quotient(ctx, split(ctx, z), split(ctx, w), _dtype(ctx)))


@handler("abs", onnx_ops=("Abs", "Max", "Div", "Sqrt", "Mul"), complex_numbers=True, testcases=[
    Testcase("abs_complex64", jnp.abs, [C64]),
    Testcase("abs_complex_extremes", jnp.abs, [np.array([3e30 + 4e30j, 3e-30 - 4e-30j, 0j, -2j], np.complex64)]),
    Testcase("power_spectrum", lambda x: jnp.abs(jnp.fft.rfft(x)) ** 2, [("B", 16)], rtol=1e-4, atol=1e-4),
])
def _abs(ctx: LoweringContext, z: ir.Value) -> ir.Value:
    dtype = _dtype(ctx)
    return _modulus(ctx, part(ctx, z, 0), part(ctx, z, 1), dtype)


@handler("sign", onnx_ops=("Div", "Where"), complex_numbers=True, testcases=[
    Testcase("sign_complex", jnp.sign, [np.array([3 + 4j, 0j, -2j, 1e-3 + 0j], np.complex64)]),
])
def _sign(ctx: LoweringContext, z: ir.Value) -> ir.Value:
    """z / |z|, and 0 at 0."""
    dtype = _dtype(ctx)
    real, imag = split(ctx, z)
    modulus = _modulus(ctx, real, imag, dtype)
    safe = ctx.op("Where", ctx.op("Equal", modulus, ctx.scalar(0, dtype)), ctx.scalar(1, dtype), modulus)
    return join(ctx, ctx.op("Div", real, safe), ctx.op("Div", imag, safe))


@handler("exp", onnx_ops=("Exp", "Cos", "Sin", "Mul"), complex_numbers=True, testcases=[
    Testcase("exp_complex", jnp.exp, [C64], rtol=1e-5, atol=1e-5),
])
def _exp(ctx: LoweringContext, z: ir.Value, *, accuracy: Any) -> ir.Value:
    """e^a (cos b + i sin b). Params: accuracy (an XLA hint)."""
    del accuracy
    real, imag = split(ctx, z)
    scale = ctx.op("Exp", real)
    return join(ctx, ctx.op("Mul", scale, ctx.op("Cos", imag)), ctx.op("Mul", scale, ctx.op("Sin", imag)))


@handler("log", onnx_ops=("Log", "Atan", "Div", "Where"), complex_numbers=True, testcases=[
    Testcase("log_complex", jnp.log, [C64], rtol=1e-5, atol=1e-5),
])
def _log(ctx: LoweringContext, z: ir.Value, *, accuracy: Any) -> ir.Value:
    """log|z| + i atan2(b, a) (the principal branch). Params: accuracy (an XLA hint)."""
    del accuracy
    dtype = _dtype(ctx)
    real, imag = split(ctx, z)
    plane = _plane_aval(ctx.avals_in[0])
    from jax.core import ShapedArray

    pair_aval = ShapedArray((*plane.shape, 1), dtype)
    return join(ctx, ctx.op("Log", _modulus(ctx, real, imag, dtype)), _atan2(ctx, imag, real, pair_aval))


@handler("sqrt", onnx_ops=("Sqrt", "Where", "Div"), complex_numbers=True, testcases=[
    Testcase("sqrt_complex", jnp.sqrt, [C64], rtol=1e-5, atol=1e-5),
    Testcase("sqrt_complex_axes", jnp.sqrt, [np.array([-4 + 0j, 4 + 0j, 0j, -1e-3j, 3 - 4j], np.complex64)], rtol=1e-5, atol=1e-6),
])
def _sqrt(ctx: LoweringContext, z: ir.Value, *, accuracy: Any) -> ir.Value:
    """Principal root: t = sqrt((|z| + |a|)/2); a >= 0: (t, b/(2t)), a < 0: (|b|/(2t), sign(b) t).

    This form never subtracts nearly equal numbers (unlike sqrt((|z| - a)/2)).
    Params: accuracy (an XLA hint).
    """
    del accuracy
    dtype = _dtype(ctx)
    real, imag = split(ctx, z)
    zero, two = ctx.scalar(0, dtype), ctx.scalar(2, dtype)
    t = ctx.op("Sqrt", ctx.op("Div", ctx.op("Add", _modulus(ctx, real, imag, dtype), ctx.op("Abs", real)), two))
    safe_t = ctx.op("Where", ctx.op("Equal", t, zero), ctx.scalar(1, dtype), t)
    other = ctx.op("Div", imag, ctx.op("Mul", two, safe_t))  # b / (2t), 0 when z = 0
    negative = ctx.op("Less", real, zero)
    imag_sign = ctx.op("Where", ctx.op("Less", imag, zero), ctx.scalar(-1, dtype), ctx.scalar(1, dtype))
    out_real = ctx.op("Where", negative, ctx.op("Abs", other), t)
    out_imag = ctx.op("Where", negative, ctx.op("Mul", imag_sign, t), other)
    return join(ctx, out_real, out_imag)


@handler("square", onnx_ops=("Mul", "Sub", "Add"), complex_numbers=True, testcases=[
    Testcase("square_complex", jnp.square, [C64], rtol=1e-5, atol=1e-5),
])
def _square(ctx: LoweringContext, z: ir.Value) -> ir.Value:
    parts = split(ctx, z)
    return join(ctx, *_product(ctx, parts, parts))


@handler("integer_pow", onnx_ops=("Mul", "Sub", "Add", "Div"), complex_numbers=True, testcases=[
    Testcase("integer_pow_complex_3", lambda z: z**3, [C64], rtol=1e-5, atol=1e-5),
    Testcase("integer_pow_complex_neg2", lambda z: z**-2, [C64], rtol=1e-4, atol=1e-5),
])
def _integer_pow(ctx: LoweringContext, z: ir.Value, *, y: int) -> ir.Value:
    """z**y by repeated squaring of the pair; negative y divides 1 by the result."""
    dtype = _dtype(ctx)
    base = split(ctx, z)
    result: tuple[ir.Value, ir.Value] | None = None
    power = abs(y)
    while power:
        if power & 1:
            result = base if result is None else _product(ctx, result, base)
        power >>= 1
        if power:
            base = _product(ctx, base, base)
    if result is None:  # z**0
        real, imag = split(ctx, z)
        result = (ctx.op("Add", ctx.op("Mul", real, ctx.scalar(0, dtype)), ctx.scalar(1, dtype)), ctx.op("Mul", imag, ctx.scalar(0, dtype)))
    if y < 0:
        one = (ctx.scalar(1, dtype), ctx.scalar(0, dtype))
        result = _quotient(ctx, one, result, dtype)
    return join(ctx, *result)


def _compare(negate: bool, ctx: LoweringContext, z: ir.Value, w: ir.Value) -> ir.Value:
    both = ctx.op("And", ctx.op("Equal", part(ctx, z, 0), part(ctx, w, 0)), ctx.op("Equal", part(ctx, z, 1), part(ctx, w, 1)))
    return ctx.op("Not", both) if negate else both


_SAME = [np.array([1 + 2j, 3 - 1j, 0j, 2j], np.complex64), np.array([1 + 2j, 3 + 1j, 0j, 1j], np.complex64)]
handler("eq", onnx_ops=("Equal", "And"), complex_numbers=True, testcases=[Testcase("eq_complex", lambda z, w: z == w, _SAME)])(
    functools.partial(_compare, False))
handler("ne", onnx_ops=("Equal", "And", "Not"), complex_numbers=True, testcases=[Testcase("ne_complex", lambda z, w: z != w, _SAME)])(
    functools.partial(_compare, True))


@handler("dot_general", onnx_ops=("MatMul", "Einsum", "Sub", "Add"), complex_numbers=True, testcases=[
    Testcase("matmul_complex", lambda z, w: z @ w, [jax.ShapeDtypeStruct(("B", 3), np.complex64), jax.ShapeDtypeStruct((3, 5), np.complex64)],
             rtol=1e-5, atol=1e-5),
    Testcase("matmul_real_by_complex", lambda a, z: jax.lax.dot_general(a, z, (([1], [0]), ([], [])),
                                                                        preferred_element_type=np.complex64),
             [(3, 3), jax.ShapeDtypeStruct((3, 2), np.complex64)], rtol=1e-5, atol=1e-5),
    Testcase("einsum_complex_batched", lambda z, w: jnp.einsum("bij,bjk->bik", z, w),
             [jax.ShapeDtypeStruct((2, 3, 4), np.complex64), jax.ShapeDtypeStruct((2, 4, 2), np.complex64)], rtol=1e-5, atol=1e-5),
])
def _dot_general(ctx: LoweringContext, lhs: ir.Value, rhs: ir.Value, **params: Any) -> ir.Value:
    """(A + iB)(C + iD) = (AC - BD) + i(AD + BC): the real dot_general on the planes, four times (two
    when one operand is real: JAX's matmul of a real and a complex matrix keeps the real one as is)."""
    return _bilinear("dot_general", ctx, lhs, rhs, **params)


_CONV_X = np.array([[[[1.0 + 0.5j, -0.25 + 1.0j, 2.0 - 1.0j], [0.75 - 0.5j, 1.5 + 0.25j, -1.0j],
                      [0.5 + 0.5j, -2.0 + 0.0j, 1.25 - 0.75j]]]], np.complex64)


def _conv_nchw(x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.conv(x, w, window_strides=(1, 1), padding="VALID")


def _conv_nhwc_same(x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_grouped_strided(x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, w, (2, 1), ((1, 0), (0, 1)), rhs_dilation=(1, 2), feature_group_count=2)


@handler("conv_general_dilated", onnx_ops=("Conv", "Sub", "Add"), complex_numbers=True, testcases=[
    Testcase("conv_complex64", _conv_nchw, [_CONV_X, _CONV_X[:, :, :2, :2] * (0.5 - 1j)], rtol=1e-5, atol=1e-5,
             expect_ops=("Conv",)),
    Testcase("conv_complex64_nhwc_same", _conv_nhwc_same,
             [jax.ShapeDtypeStruct(("B", 5, 4, 2), np.complex64), jax.ShapeDtypeStruct((3, 3, 2, 3), np.complex64)],
             rtol=1e-4, atol=1e-4),
    Testcase("conv_complex128_grouped_strided", _conv_grouped_strided,
             [jax.ShapeDtypeStruct((2, 4, 6, 5), np.complex128), jax.ShapeDtypeStruct((6, 2, 3, 2), np.complex128)],
             rtol=1e-10, atol=1e-10, x64=True),
])
def _conv_general_dilated(ctx: LoweringContext, lhs: ir.Value, rhs: ir.Value, **params: Any) -> ir.Value:
    """(X + iY) * (W + iV) = (X*W - Y*V) + i(X*V + Y*W): the real convolution (conv.py) on the planes, four times."""
    return _bilinear("conv_general_dilated", ctx, lhs, rhs, **params)


def _bilinear(primitive: str, ctx: LoweringContext, lhs: ir.Value, rhs: ir.Value, **params: Any) -> ir.Value:
    """A bilinear primitive (dot_general, conv_general_dilated) of complex operands through its real handler:
    four real products of the planes, two when one operand is real. (Gauss's three-product form saves one
    but loses accuracy to cancellation when the real and imaginary parts differ much in size.)"""
    from jax.core import ShapedArray

    rule = REGISTRY.get(primitive).rule
    plane_out = _plane_aval(ctx.aval_out)
    params = {**params, "preferred_element_type": None}

    def plane_aval(aval: Any) -> Any:  # a real operand is cast to the parts' type
        return ShapedArray(tuple(aval.shape), real_dtype(ctx.aval_out.dtype))

    def planes(x: ir.Value, aval: Any, plane: Any) -> tuple[ir.Value, ir.Value | None]:
        if not is_complex(aval.dtype):
            if np.dtype(aval.dtype) != np.dtype(plane.dtype):
                x = ctx.op("Cast", x, to=onnx_dtype(plane.dtype))
            return x, None
        real, imag = part(ctx, x, 0), part(ctx, x, 1)
        for value in (real, imag):
            ctx.builder.set_type(value, plane)  # the real handler types its intermediates like its operands
        return real, imag

    plane_lhs, plane_rhs = (plane_aval(aval) for aval in ctx.avals_in)
    sub = _real_ctx(ctx, [plane_lhs, plane_rhs], [plane_out])
    a, b = planes(lhs, ctx.avals_in[0], plane_lhs)
    c, d = planes(rhs, ctx.avals_in[1], plane_rhs)

    def dot(x: ir.Value, y: ir.Value) -> ir.Value:
        return rule(sub, x, y, **params)

    if b is None:  # real A: AC + iAD
        real, imag = dot(a, c), dot(a, d)
    elif d is None:  # real C: AC + iBC
        real, imag = dot(a, c), dot(b, c)
    else:
        real = ctx.op("Sub", dot(a, c), dot(b, d))
        imag = ctx.op("Add", dot(a, d), dot(b, c))
    return ctx.op("Concat", ctx.op("Unsqueeze", real, ctx.i64([-1])), ctx.op("Unsqueeze", imag, ctx.i64([-1])), axis=-1)


@handler("reduce_prod", onnx_ops=("ReduceProd", "ReduceSum", "Cos", "Sin"), complex_numbers=True, testcases=[
    Testcase("prod_complex", lambda z: jnp.prod(z, axis=1), [C64], rtol=1e-5, atol=1e-5),
])
def _reduce_prod(ctx: LoweringContext, z: ir.Value, *, axes: Sequence[int]) -> ir.Value:
    """In polar form: the product of the moduli and the sum of the arguments (atan2), back to pairs.

    Exact in meaning, rounding like n multiplications (the arguments add up to within a few ulps
    of 2π per factor). Params: axes.
    """
    if not axes:
        return z
    dtype = _dtype(ctx)
    real, imag = part(ctx, z, 0), part(ctx, z, 1)
    plane = _plane_aval(ctx.avals_in[0])
    modulus = reduce_over(ctx.builder, "ReduceProd", _modulus(ctx, real, imag, dtype), list(axes), keepdims=False)
    angle = ctx.op("ReduceSum", _atan2(ctx, imag, real, plane), ctx.i64(list(axes)), keepdims=0)
    parts = [ctx.op("Unsqueeze", ctx.op("Mul", modulus, ctx.op(op, angle)), ctx.i64([-1])) for op in ("Cos", "Sin")]
    return ctx.op("Concat", *parts, axis=-1)


# ----------------------------------------------------------------------------- casts
@handler("convert_element_type", onnx_ops=("Cast", "Concat", "Gather", "Expand"), complex_numbers=True, testcases=[
    Testcase("real_to_complex", lambda x: x.astype(jnp.complex64) * (1 + 1j), [("B", 4)]),
    Testcase("complex64_to_complex128", lambda z: z.astype(jnp.complex128), [jax.ShapeDtypeStruct((3,), np.complex64)], x64=True),
    Testcase("complex_to_real_part", lambda z: lax.convert_element_type(z, jnp.float32), [C64]),
])
def _convert_element_type(ctx: LoweringContext, x: ir.Value, *, new_dtype: Any, weak_type: bool, sharding: Any) -> ir.Value:
    """real → complex (imaginary part 0), complex → complex (Cast of the pairs), complex → real (the
    real part, then a Cast if needed). Params: new_dtype, weak_type, sharding (placement only)."""
    del weak_type, sharding
    source = np.dtype(ctx.avals_in[0].dtype)
    target = np.dtype(new_dtype)
    if is_complex(source) and is_complex(target):
        return x if source == target else ctx.op("Cast", x, to=onnx_dtype(real_dtype(target)))
    if is_complex(source):
        real = part(ctx, x, 0)
        return real if real_dtype(source) == target else ctx.op("Cast", real, to=onnx_dtype(target))
    parts_dtype = real_dtype(target)
    real = x if source == parts_dtype else ctx.op("Cast", x, to=onnx_dtype(parts_dtype))
    real = ctx.op("Unsqueeze", real, ctx.i64([-1]))
    zeros = ctx.op("Expand", ctx.scalar(0, parts_dtype), ctx.op("Shape", real))
    return ctx.op("Concat", real, zeros, axis=-1)


# ----------------------------------------------------------------------------- layout: the real handler, one more axis
def _with_pair_axis(primitive: str, params_for_pairs: Any, ctx: LoweringContext, *operands: ir.Value, **params: Any) -> ir.Value:
    """The real handler on the pair tensors, its parameters extended to cover the trailing pair axis."""
    return REGISTRY.get(primitive).rule(_real_ctx(ctx), *operands, **params_for_pairs(ctx, params))


def _same(ctx: LoweringContext, params: dict[str, Any]) -> dict[str, Any]:
    return params


def _transpose_params(ctx: LoweringContext, params: dict[str, Any]) -> dict[str, Any]:
    permutation = tuple(params["permutation"])
    return {**params, "permutation": (*permutation, len(permutation))}


def _reshape_params(ctx: LoweringContext, params: dict[str, Any]) -> dict[str, Any]:
    dimensions = params["dimensions"]
    if dimensions is not None:
        dimensions = (*dimensions, len(dimensions))
    return {**params, "new_sizes": (*params["new_sizes"], 2), "dimensions": dimensions}


def _broadcast_params(ctx: LoweringContext, params: dict[str, Any]) -> dict[str, Any]:
    shape = tuple(params["shape"])
    return {**params, "shape": (*shape, 2), "broadcast_dimensions": (*params["broadcast_dimensions"], len(shape))}


def _slice_params(ctx: LoweringContext, params: dict[str, Any]) -> dict[str, Any]:
    strides = params["strides"]
    return {
        **params,
        "start_indices": (*params["start_indices"], 0),
        "limit_indices": (*params["limit_indices"], 2),
        "strides": None if strides is None else (*strides, 1),
    }


def _layout_case(name: str, fn: Any, specs: Sequence[Any]) -> Testcase:
    return Testcase(name, fn, specs)


_C234 = jax.ShapeDtypeStruct((2, 3, 4), np.complex64)
for _prim, _params, _case in (
    ("transpose", _transpose_params, _layout_case("transpose_complex", lambda z: jnp.transpose(z, (2, 0, 1)), [_C234])),
    ("reshape", _reshape_params, _layout_case("reshape_complex", lambda z: z.reshape(6, 4), [_C234])),
    ("broadcast_in_dim", _broadcast_params, _layout_case("broadcast_complex", lambda z: jnp.broadcast_to(z[:, None, :], (z.shape[0], 3, 4)), [C64])),
    ("slice", _slice_params, _layout_case("fftshift_complex", lambda z: jnp.fft.fftshift(z, axes=1), [C64])),
    ("squeeze", _same, _layout_case("squeeze_complex", lambda z: z[:, :1].squeeze(1), [C64])),
    ("concatenate", _same, _layout_case("concatenate_complex", lambda z, w: jnp.concatenate([z, w], axis=1), [C64, C64])),
    ("rev", _same, _layout_case("rev_complex", lambda z: z[:, ::-1], [C64])),
    ("reduce_sum", _same, _layout_case("mean_complex", lambda z: jnp.mean(z, axis=0), [C64])),
    ("cumsum", _same, _layout_case("cumsum_complex", lambda z: jnp.cumsum(z, axis=1), [C64])),
    ("copy", _same, _layout_case("copy_complex", lambda z: jnp.array(z, copy=True) * 2, [C64])),
):
    handler(_prim, onnx_ops=(), complex_numbers=True, testcases=[_case])(functools.partial(_with_pair_axis, _prim, _params))


@handler("dynamic_slice", onnx_ops=("Slice",), complex_numbers=True, testcases=[
    Testcase("dynamic_slice_complex", lambda z, i: lax.dynamic_slice_in_dim(z, i, 2, axis=1), [C64, np.array(1, np.int32)]),
])
def _dynamic_slice(ctx: LoweringContext, operand: ir.Value, *starts: ir.Value, slice_sizes: Sequence[Any]) -> ir.Value:
    """The real handler with a start of 0 and the full size on the pair axis. Params: slice_sizes."""
    from jax.core import ShapedArray

    index_aval = ctx.avals_in[1] if len(ctx.avals_in) > 1 else ShapedArray((), np.int32)
    zero = ctx.const(np.asarray(0, dtype=index_aval.dtype))
    sub = _real_ctx(ctx, [storage_aval(ctx.avals_in[0]), *ctx.avals_in[1:], index_aval])
    return REGISTRY.get("dynamic_slice").rule(sub, operand, *starts, zero, slice_sizes=(*slice_sizes, 2))


@handler("dynamic_update_slice", onnx_ops=("ScatterND", "Slice"), complex_numbers=True, testcases=[
    Testcase("dynamic_update_slice_complex", lambda z, u, i: lax.dynamic_update_slice_in_dim(z, u, i, axis=1),
             [C64, jax.ShapeDtypeStruct(("B", 2), np.complex64), np.array(1, np.int32)]),
])
def _dynamic_update_slice(ctx: LoweringContext, operand: ir.Value, update: ir.Value, *starts: ir.Value) -> ir.Value:
    from jax.core import ShapedArray

    index_aval = ctx.avals_in[2] if len(ctx.avals_in) > 2 else ShapedArray((), np.int32)
    zero = ctx.const(np.asarray(0, dtype=index_aval.dtype))
    sub = _real_ctx(ctx, [storage_aval(ctx.avals_in[0]), storage_aval(ctx.avals_in[1]), *ctx.avals_in[2:], index_aval])
    return REGISTRY.get("dynamic_update_slice").rule(sub, operand, update, *starts, zero)


@handler("select_n", onnx_ops=("Where", "Unsqueeze"), complex_numbers=True, testcases=[
    Testcase("where_complex", lambda z, w: jnp.where(jnp.abs(z) > 1, z, w), [C64, C64]),
])
def _select_n(ctx: LoweringContext, which: ir.Value, *cases: ir.Value) -> ir.Value:
    """The real handler with the selector given a trailing axis of 1 (it then picks both parts)."""
    from jax.core import ShapedArray

    which_aval = ctx.avals_in[0]
    if which_aval.shape:
        which = ctx.op("Unsqueeze", which, ctx.i64([-1]))
        which_aval = ShapedArray((*which_aval.shape, 1), which_aval.dtype)
    sub = _real_ctx(ctx, [which_aval, *(storage_aval(a) for a in ctx.avals_in[1:])])
    return REGISTRY.get("select_n").rule(sub, which, *cases)


# ----------------------------------------------------------------------------- per plane: pad, gather, scatter
def _per_plane(primitive: str, ctx: LoweringContext, *operands: ir.Value, **params: Any) -> ir.Value:
    """The real handler on the real and on the imaginary planes, the results joined into pairs."""
    rule = REGISTRY.get(primitive).rule
    sub = _real_ctx(ctx, [_plane_aval(a) for a in ctx.avals_in], [_plane_aval(a) for a in ctx.avals_out])
    planes = []
    for index in (0, 1):
        inputs = [part(ctx, x, index) if is_complex(aval.dtype) else x for x, aval in zip(operands, ctx.avals_in, strict=True)]
        planes.append(ctx.op("Unsqueeze", rule(sub, *inputs, **params), ctx.i64([-1])))
    return ctx.op("Concat", *planes, axis=-1)


for _prim, _case in (
    ("pad", Testcase("pad_complex", lambda z: jnp.pad(z, ((0, 0), (1, 2))), [C64])),
    ("gather", Testcase("gather_complex", lambda z, i: z[:, i], [C64, np.array([3, 0, 2], np.int32)])),
    ("scatter", Testcase("scatter_complex", lambda z, v: jnp.asarray(z).at[:, 1].set(v), [C64, jax.ShapeDtypeStruct(("B",), np.complex64)])),
    ("scatter-add", Testcase("scatter_add_complex", lambda z, v: jnp.asarray(z).at[:, 1].add(v), [C64, jax.ShapeDtypeStruct(("B",), np.complex64)])),
):
    # the real handler's lowest opset (ScatterND's add reduction exists from opset 16 on)
    handler(_prim, onnx_ops=(), complex_numbers=True, min_opset=16 if _prim == "scatter-add" else 13,
            testcases=[_case])(functools.partial(_per_plane, _prim))


@handler("scatter-mul", onnx_ops=("ScatterND", "Atan", "Cos", "Sin", "Mul"), complex_numbers=True, min_opset=16, testcases=[
    Testcase("scatter_mul_complex_rows", lambda z, i, u: jnp.asarray(z).at[i].multiply(u),
             [jax.ShapeDtypeStruct((5, 4), np.complex64), np.array([0, 2, 2, 8], np.int32), jax.ShapeDtypeStruct((4, 4), np.complex64)],
             rtol=1e-5, atol=1e-5),
    Testcase("scatter_mul_complex_by_real_signs", lambda z: jnp.asarray(z).at[:, 1:3].multiply((-1.0) ** jnp.arange(2)),
             [C64], rtol=1e-5, atol=1e-5),
])
def _scatter_mul(ctx: LoweringContext, operand: ir.Value, indices: ir.Value, updates: ir.Value, **params: Any) -> ir.Value:
    """``z.at[i].multiply(u)``: a factor is scattered in polar form, the updates' moduli multiplied (scatter-mul)
    into ones and their angles added (scatter-add) into zeros, and multiplies ``z`` as complex numbers.

    A complex product is not one per plane, but the product of several updates at one index is the product of
    their moduli at the sum of their angles, so repeated indices are right too. Accuracy: atan2, cos and sin of
    the angles add a few float rounding errors to each factor (a real factor -1 comes back as (-1, ~1e-7)).
    """
    dtype = real_dtype(ctx.avals_in[0].dtype)
    plane_in = [_plane_aval(a) for a in ctx.avals_in]
    sub = _real_ctx(ctx, plane_in, [_plane_aval(a) for a in ctx.avals_out])
    ur, ui = part(ctx, updates, 0), part(ctx, updates, 1)
    modulus = _modulus(ctx, ur, ui, dtype)
    angle = _atan2(ctx, ui, ur, plane_in[2])
    shape = ctx.op("Shape", part(ctx, operand, 0))
    ones = ctx.op("ConstantOfShape", shape, value=ir.tensor(np.ones(1, dtype)))
    zeros = ctx.op("ConstantOfShape", shape, value=ir.tensor(np.zeros(1, dtype)))
    scatter = REGISTRY.get("scatter-mul").rule
    scale = scatter(sub, ones, indices, modulus, **params)
    # the real handler reads its reduction off the equation's primitive: the angles' scatter is an add
    turn = scatter(dataclasses.replace(sub, eqn=ctx.eqn.replace(primitive=lax.scatter_add_p)), zeros, indices, angle, **params)
    factor = (ctx.op("Mul", scale, ctx.op("Cos", turn)), ctx.op("Mul", scale, ctx.op("Sin", turn)))
    real, imag = _product(ctx, (part(ctx, operand, 0), part(ctx, operand, 1)), factor)
    return ctx.op("Concat", ctx.op("Unsqueeze", real, ctx.i64([-1])), ctx.op("Unsqueeze", imag, ctx.i64([-1])), axis=-1)


@handler("iota", onnx_ops=("Range", "Unsqueeze", "Pad"), complex_numbers=True, testcases=[
    Testcase("iota_complex_phases", lambda x: x * jnp.exp(-1j * jnp.arange(4, dtype=jnp.complex64) * 0.3), [C64],
             rtol=1e-5, atol=1e-5),
    Testcase("iota_complex_symbolic", lambda x: x + jnp.arange(x.shape[0], dtype=jnp.complex64)[:, None], [C64]),
])
def _iota(ctx: LoweringContext, *dyn_shape: ir.Value, dtype: Any, shape: Sequence[Any], dimension: int, sharding: Any) -> ir.Value:
    """A complex ``arange``: the real iota as the real part, a zero imaginary part (padded on)."""
    sub = _real_ctx(ctx, [], [_plane_aval(ctx.aval_out)])
    line = REGISTRY.get("iota").rule(sub, *dyn_shape, dtype=real_dtype(dtype), shape=shape, dimension=dimension,
                                     sharding=sharding)
    rank = len(shape)
    return ctx.op("Pad", ctx.op("Unsqueeze", line, ctx.i64([-1])), ctx.i64([0] * (rank + 1) + [0] * rank + [1]))


# ----------------------------------------------------------------------------- calls and control flow: bodies typed as pairs
def _complex_scan(xs: jax.Array) -> Any:
    return lax.scan(lambda c, x: (c * x + 1j, c), jnp.ones(xs.shape[1:], xs.dtype), xs)


def _complex_while(z: jax.Array) -> jax.Array:
    return lax.while_loop(lambda v: jnp.sum(jnp.abs(v)) < 100.0, lambda v: v * (1.5 + 0.5j), z)


@jax.jit
def _jitted_complex(z: jax.Array) -> jax.Array:
    return z * z


for _prim, _case in (
    ("jit", Testcase("jit_complex", lambda z: _jitted_complex(z) + 1, [C64], rtol=1e-5, atol=1e-5)),
    ("cond", Testcase("cond_complex", lambda p, z: lax.cond(p > 0, lambda v: v * 1j, lambda v: -v, z), [np.float32(1.0), C64])),
    ("while", Testcase("while_complex", _complex_while, [jax.ShapeDtypeStruct((3,), np.complex64)], rtol=1e-5, atol=1e-5)),
    ("scan", Testcase("scan_complex", _complex_scan, [jax.ShapeDtypeStruct((5, "B"), np.complex64)], rtol=1e-5, atol=1e-5)),
):
    handler(_prim, onnx_ops=(), area="jax", complex_numbers=True, testcases=[_case])(REGISTRY.get(_prim).rule)
