"""Special functions of ``jax.scipy.special`` that XLA expands itself: bessel_i0e, bessel_i1e, zeta,
polygamma, igamma (``gammainc``), igammac (``gammaincc``), igamma_grad_a and
regularized_incomplete_beta (``betainc``).

Two ways, chosen per function:

- **JAX's own expansion, lowered as is.** For ``bessel_i0e``, ``igamma``, ``igammac``,
  ``igamma_grad_a`` and ``regularized_incomplete_beta`` JAX ships the algorithm XLA runs, written
  in lax (Cephes' Chebyshev series for i0e; the power series / continued fraction of the
  incomplete gamma functions with their derivative recurrences; the Lentz continued fraction of
  the incomplete beta), which this handler traces for the equation's operands and lowers
  equation by equation: the ONNX graph computes what JAX computes, with the same iteration counts
  and stopping rules (their ``while`` loops become ONNX Loops). Accuracy: JAX's, to within the
  ~1e-6 of the ``lgamma``/``digamma`` handlers the expansions call (special.py).
- **Written here** where XLA expands the function in C++ (``chlo``):
  ``bessel_i1e``: Chebyshev series of i1e(x)/x on [0, 8] and of i1e(x)·sqrt(x) on [8, ∞) (the
  Cephes split), with coefficients computed for this module in 50-digit arithmetic from
  mpmath's Bessel function (29 and 27 terms for float64, truncated below 1e-9 for float32);
  about 2 ulps. ``zeta``: the Hurwitz zeta by 10 direct terms and the Euler–Maclaurin tail
  with 12 Bernoulli terms (nested, Horner-like), with XLA's conventions at the edges: NaN for
  x < 1 and for non-integer x when q <= 0, +inf at x = 1 and at the poles q = 0, -1, ... for
  even integer x (NaN for odd x there). ~1e-6 relative in float32. ``polygamma(n, x)`` =
  (-1)^(n+1) n! zeta(n+1, x) for integer n >= 1, digamma for n = 0, NaN otherwise.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.compat import special_function_expansion
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import REGISTRY, Testcase, handler

F = ("B", 6)


# ----------------------------------------------------------------------------- JAX's expansions, lowered as is
def _lower_expansion(name: str, ctx: LoweringContext, *operands: ir.Value) -> ir.Value:
    """Trace JAX's expansion of ``name`` for this equation's operand types and lower it in place."""
    specs = [jax.ShapeDtypeStruct(aval.shape, aval.dtype) for aval in ctx.avals_in]
    wide = any(np.dtype(aval.dtype).itemsize == 8 for aval in ctx.avals_in)
    with jax.enable_x64(wide):  # float64 operands keep float64 in the traced expansion
        closed = jax.make_jaxpr(special_function_expansion(name))(*specs)
    (result,) = ctx.lower_inline(closed, operands)
    return result


_POSITIVE = np.array([0.5, 1.0, 2.5, 7.0, 20.0, 0.05], np.float32)
_EDGES_A = np.array([1.0, 2.0, 0.0, -1.0, 3.0, 1.0, 0.5, 30.0], np.float32)
_EDGES_X = np.array([0.0, np.inf, 1.0, 1.0, -0.5, 1e-20, 1e3, 29.0], np.float32)


def _positive(x: jax.Array) -> jax.Array:
    return jnp.abs(x) * 3.0 + 0.05


for _prim, _cases in (
    ("bessel_i0e", [
        Testcase("i0e", jax.scipy.special.i0e, [F], rtol=2e-6, atol=1e-7),
        Testcase("i0e_wide_range", lambda x: jax.scipy.special.i0e(x * 20.0), [F], rtol=2e-6, atol=1e-7),
        Testcase("i0e_f64", jax.scipy.special.i0e, [jax.ShapeDtypeStruct((7,), np.float64)], rtol=1e-13, atol=1e-14, x64=True),
    ]),
    ("igamma", [
        Testcase("gammainc", lambda a, x: jax.scipy.special.gammainc(_positive(a), _positive(x) * 2.0), [F, F],
                 rtol=2e-5, atol=2e-6),
        Testcase("gammainc_edges", jax.scipy.special.gammainc, [_EDGES_A, _EDGES_X], rtol=2e-5, atol=2e-6),
    ]),
    ("igammac", [
        Testcase("gammaincc", lambda a, x: jax.scipy.special.gammaincc(_positive(a), _positive(x) * 2.0), [F, F],
                 rtol=2e-5, atol=2e-6),
        Testcase("gammaincc_edges", jax.scipy.special.gammaincc, [_EDGES_A, _EDGES_X], rtol=2e-5, atol=2e-6),
    ]),
    ("igamma_grad_a", [
        Testcase("gammainc_grad_a", lambda a, x: jax.grad(lambda a: jnp.sum(jax.scipy.special.gammainc(a, x)))(_positive(a)),
                 [F, _POSITIVE], rtol=1e-4, atol=1e-5),
    ]),
    ("regularized_incomplete_beta", [
        Testcase("betainc", lambda a, b, x: jax.scipy.special.betainc(_positive(a), _positive(b), jax.nn.sigmoid(x)),
                 [F, F, F], rtol=2e-5, atol=2e-6),
        Testcase("betainc_edges", jax.scipy.special.betainc,
                 [np.array([1.0, 2.0, 0.0, 3.0, -1.0, 0.5], np.float32), np.array([1.0, 3.0, 2.0, 0.0, 1.0, 0.5], np.float32),
                  np.array([0.5, 0.0, 0.3, 0.7, 0.5, 1.0], np.float32)], rtol=2e-5, atol=2e-6),
    ]),
):
    handler(_prim, onnx_ops=("Loop", "Where", "Log", "Exp", "Mul", "Add", "Div"),
            doc=f"https://docs.jax.dev/en/latest/_autosummary/jax.lax.{_prim}.html", testcases=_cases)(
        functools.partial(_lower_expansion, _prim))


# ----------------------------------------------------------------------------- bessel_i1e
# Chebyshev coefficients (T_0 first) of i1e(z)/z for z = 4(u+1) in [0, 8], and of i1e(z) sqrt(z) for
# z = 16/(u+1) in [8, inf), u in [-1, 1]: computed with mpmath at 50 digits from the cosine sums at 80
# Chebyshev nodes, printed to 17 digits, terms below 1e-18 dropped.
_I1E_NEAR = (
    0.12629359322181683, -0.17641651835783406, 0.1026436586898471, -0.052945981208094991, 0.024726449030626517,
    -0.010564084894626198, 0.0041564229443128882, -0.0015135724506312531, 0.00051228595616857577,
    -0.00016176081582589675, 4.7815651075500542e-5, -1.3273163656039436e-5, 3.4702513081376785e-6,
    -8.5687202646954547e-7, 2.0032947535521353e-7, -4.4450591287963281e-8, 9.3815373864957718e-9,
    -1.8872497517228293e-9, 3.625590281552117e-10, -6.6634897235020277e-11, 1.1736186298890902e-11,
    -1.9839743977649437e-12, 3.2237933659455747e-13, -5.0421855047279117e-14, 7.6006842947354069e-15,
    -1.1055969477353863e-15, 1.5536319577362005e-16, -2.1114212143581661e-17, 2.7779141127610464e-18,
)
_I1E_FAR = (
    0.38928811750914006, -0.0097610974913614684, -0.00011058893876262372, -3.8825648088776904e-6,
    -2.5122362378702089e-7, -2.6314688468895195e-8, -3.835380385964237e-9, -5.5897434621965838e-10,
    -1.8974958123505412e-11, 3.2526035830154882e-11, 1.4125807436613781e-11, 2.0356285441470895e-12,
    -7.1985517762459085e-13, -4.0835511110921973e-13, -2.1015418427726643e-14, 4.2724400167119514e-14,
    1.0420276984128803e-14, -3.8144030724370078e-15, -1.8803547755107824e-15, 3.3082023109209283e-16,
    2.9626289976459501e-16, -3.209525921993424e-17, -4.6503053684893583e-17, 4.4143483230717079e-18,
    7.5172963108421048e-18, -9.3141788673268834e-19, -1.242193275194891e-18,
)


def _kept(coefficients: tuple[float, ...], dtype: Any) -> tuple[float, ...]:
    """The terms that matter at the dtype's precision (all of them in float64)."""
    if np.dtype(dtype) == np.dtype(np.float64):
        return coefficients
    largest = max(abs(c) for c in coefficients)
    last = max(i for i, c in enumerate(coefficients) if abs(c) > 1e-9 * largest)
    return coefficients[: last + 1]


def _chebyshev(ctx: LoweringContext, u: ir.Value, coefficients: tuple[float, ...], dtype: Any) -> ir.Value:
    """sum_k c_k T_k(u) by Clenshaw's recurrence: b_k = c_k + 2u b_{k+1} - b_{k+2}; result c_0 + u b_1 - b_2."""
    two_u = ctx.op("Mul", u, ctx.scalar(2.0, dtype))
    later = ctx.scalar(0.0, dtype)  # b_{k+2}
    current = ctx.scalar(0.0, dtype)  # b_{k+1}
    for c in reversed(coefficients[1:]):
        later, current = current, ctx.op("Add", ctx.op("Sub", ctx.op("Mul", two_u, current), later), ctx.scalar(c, dtype))
    return ctx.op("Add", ctx.op("Sub", ctx.op("Mul", u, current), later), ctx.scalar(coefficients[0], dtype))


@handler("bessel_i1e", onnx_ops=("Abs", "Mul", "Add", "Sub", "Div", "Sqrt", "Where", "Sign"), testcases=[
    Testcase("i1e", jax.scipy.special.i1e, [F], rtol=2e-6, atol=1e-7),
    Testcase("i1e_wide_range", lambda x: jax.scipy.special.i1e(x * 20.0), [F], rtol=2e-6, atol=1e-7),
    Testcase("i1e_f64", lambda x: jax.scipy.special.i1e(x * 10.0), [jax.ShapeDtypeStruct((9,), np.float64)],
             rtol=1e-13, atol=1e-15, x64=True),
])
def _bessel_i1e(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    """exp(-|x|) I1(x), odd in x (no params)."""
    dtype = np.dtype(ctx.avals_in[0].dtype)
    z = ctx.op("Abs", x)
    near = ctx.op("Mul", _chebyshev(ctx, ctx.op("Sub", ctx.op("Div", z, ctx.scalar(4.0, dtype)), ctx.scalar(1.0, dtype)),
                                    _kept(_I1E_NEAR, dtype), dtype), z)
    safe = ctx.op("Max", z, ctx.scalar(8.0, dtype))
    far = ctx.op("Div", _chebyshev(ctx, ctx.op("Sub", ctx.op("Div", ctx.scalar(16.0, dtype), safe), ctx.scalar(1.0, dtype)),
                                   _kept(_I1E_FAR, dtype), dtype), ctx.op("Sqrt", safe))
    magnitude = ctx.op("Where", ctx.op("LessOrEqual", z, ctx.scalar(8.0, dtype)), near, far)
    return ctx.op("Mul", ctx.op("Sign", x), magnitude)


# ----------------------------------------------------------------------------- zeta / polygamma
_ZETA_DIRECT_TERMS = 10
_ZETA_BERNOULLI_TERMS = 12


def _bernoulli_even(count: int) -> list[Fraction]:
    """B_2, B_4, ..., B_2count exactly (Akiyama–Tanigawa algorithm)."""
    numbers: list[Fraction] = []
    row: list[Fraction] = []
    for m in range(2 * count + 1):
        row.append(Fraction(1, m + 1))
        for j in range(m, 0, -1):
            row[j - 1] = j * (row[j - 1] - row[j])
        if m >= 2 and m % 2 == 0:
            numbers.append(row[0])
    return numbers


# B_2j / (2j)!: the Euler–Maclaurin coefficients
_EULER_MACLAURIN = tuple(
    float(b / math.factorial(2 * (j + 1))) for j, b in enumerate(_bernoulli_even(_ZETA_BERNOULLI_TERMS))
)


def hurwitz_zeta(ctx: LoweringContext, x: ir.Value, q: ir.Value, dtype: Any) -> ir.Value:
    """zeta(x, q) = sum_k (q + k)^-x: N direct terms, then at w = q + N the Euler–Maclaurin tail

    w^(1-x)/(x-1) + w^-x/2 + w^-x (x/w) [c_1 + (x+1)(x+2)/w² (c_2 + (x+3)(x+4)/w² (c_3 + ...))]
    with c_j = B_2j/(2j)!, evaluated from the innermost bracket out.
    """
    def c(value: float) -> ir.Value:
        return ctx.scalar(value, dtype)

    minus_x = ctx.op("Neg", x)
    direct = ctx.op("Pow", q, minus_x)
    for k in range(1, _ZETA_DIRECT_TERMS):
        direct = ctx.op("Add", direct, ctx.op("Pow", ctx.op("Add", q, c(k)), minus_x))
    w = ctx.op("Add", q, c(_ZETA_DIRECT_TERMS))
    w_power = ctx.op("Pow", w, minus_x)  # w^-x
    inverse_w2 = ctx.op("Reciprocal", ctx.op("Mul", w, w))
    nested = c(_EULER_MACLAURIN[-1])
    for j in range(_ZETA_BERNOULLI_TERMS - 1, 0, -1):  # bracket j (1-based) holds c_j + (x+2j-1)(x+2j)/w² (...)
        rising = ctx.op("Mul", ctx.op("Add", x, c(2 * j - 1)), ctx.op("Add", x, c(2 * j)))
        nested = ctx.op("Add", c(_EULER_MACLAURIN[j - 1]), ctx.op("Mul", ctx.op("Mul", rising, inverse_w2), nested))
    tail = ctx.op("Div", ctx.op("Mul", w_power, w), ctx.op("Sub", x, c(1.0)))  # w^(1-x)/(x-1)
    tail = ctx.op("Add", tail, ctx.op("Mul", w_power, c(0.5)))
    tail = ctx.op("Add", tail, ctx.op("Mul", ctx.op("Mul", w_power, ctx.op("Div", x, w)), nested))
    result = ctx.op("Add", direct, tail)
    # the edges, as XLA defines them
    nan, inf = c(np.nan), c(np.inf)
    x_integer = ctx.op("Equal", x, ctx.op("Floor", x))
    q_not_positive = ctx.op("LessOrEqual", q, c(0.0))
    result = ctx.op("Where", ctx.op("Less", x, c(1.0)), nan, result)
    result = ctx.op("Where", ctx.op("And", q_not_positive, ctx.op("Not", x_integer)), nan, result)
    at_pole = ctx.op("And", q_not_positive, ctx.op("Equal", q, ctx.op("Floor", q)))
    x_even = ctx.op("And", x_integer, ctx.op("Equal", ctx.op("Mod", x, c(2.0), fmod=1), c(0.0)))
    result = ctx.op("Where", at_pole, ctx.op("Where", x_even, inf, nan), result)
    return ctx.op("Where", ctx.op("Equal", x, c(1.0)), inf, result)


_ZETA_X = np.array([2.0, 2.0, 2.0, 0.5, 1.0, 3.0, 3.0, 2.0, 4.5, 1.5, 50.0, 2.0], np.float32)
_ZETA_Q = np.array([-1.5, -2.0, 1.0, 1.0, 1.0, 0.0, -0.5, 0.1, 20.0, 2.0, 0.7, 1e4], np.float32)


@handler("zeta", onnx_ops=("Pow", "Add", "Mul", "Div", "Where", "Floor", "Mod"), testcases=[
    Testcase("zeta", lambda x, q: jax.scipy.special.zeta(jnp.abs(x) * 3.0 + 1.1, jnp.abs(q) * 2.0 + 0.1), [F, F],
             rtol=2e-6, atol=1e-7),
    Testcase("zeta_edges", jax.scipy.special.zeta, [_ZETA_X, _ZETA_Q], rtol=1e-5, atol=1e-7),
    Testcase("zeta_f64", lambda x, q: jax.scipy.special.zeta(jnp.abs(x) * 3.0 + 1.1, jnp.abs(q) + 0.5),
             [jax.ShapeDtypeStruct((8,), np.float64)] * 2, rtol=1e-12, atol=1e-14, x64=True),
])
def _zeta(ctx: LoweringContext, x: ir.Value, q: ir.Value) -> ir.Value:
    """The Hurwitz zeta function zeta(x, q) (no params)."""
    return hurwitz_zeta(ctx, x, q, np.dtype(ctx.avals_in[0].dtype))


@handler("polygamma", onnx_ops=("Pow", "Exp", "Where", "Floor", "Mod"), testcases=[
    Testcase("polygamma_orders", lambda x: [jax.scipy.special.polygamma(n, jnp.abs(x) * 3.0 + 0.2) for n in (0, 1, 2, 3)],
             [F], rtol=2e-5, atol=1e-5),
    Testcase("polygamma_lax_edges", lax.polygamma, [np.array([0, 1, 2, 3, 1.5, -1, 2, 4], np.float32),
                                                     np.array([0.5, 0.5, 2.0, -1.5, 2.0, 2.0, -2.0, 10.0], np.float32)],
             rtol=2e-5, atol=1e-6),
])
def _polygamma(ctx: LoweringContext, n: ir.Value, x: ir.Value) -> ir.Value:
    """psi^(n)(x) = (-1)^(n+1) n! zeta(n+1, x) for integer n >= 1, digamma(x) for n = 0, NaN for other n."""
    dtype = np.dtype(ctx.avals_in[1].dtype)
    one = ctx.scalar(1.0, dtype)
    order = ctx.op("Add", n, one)
    sign = ctx.op("Sub", ctx.op("Mul", ctx.scalar(2.0, dtype), ctx.op("Mod", n, ctx.scalar(2.0, dtype), fmod=1)), one)
    factorial = ctx.op("Exp", REGISTRY.get("lgamma").rule(ctx, order))
    result = ctx.op("Mul", ctx.op("Mul", sign, factorial), hurwitz_zeta(ctx, order, x, dtype))
    digamma = REGISTRY.get("digamma").rule(_single_operand(ctx, 1), x)
    result = ctx.op("Where", ctx.op("Equal", n, ctx.scalar(0.0, dtype)), digamma, result)
    natural = ctx.op("And", ctx.op("Equal", n, ctx.op("Floor", n)), ctx.op("GreaterOrEqual", n, ctx.scalar(0.0, dtype)))
    return ctx.op("Where", natural, result, ctx.scalar(np.nan, dtype))


def _single_operand(ctx: LoweringContext, index: int) -> LoweringContext:
    """``ctx`` as seen by a unary handler applied to operand ``index``."""
    import dataclasses

    return dataclasses.replace(ctx, avals_in=(ctx.avals_in[index],))
