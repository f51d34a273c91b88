"""Complex Schur decomposition (LAPACK zgees) and the complex machinery of ``eig``: the ``schur``
handler for complex matrices, and the building blocks ``eig.py`` uses.

Inside the local functions every complex matrix is a pair of real tensors (real part, imaginary
part); inputs and outputs use the model's complex convention (a trailing (real, imaginary) axis,
see ``complex_numbers.py``). The method is LAPACK's, written with ONNX ops:

1. Hessenberg reduction by complex Householder reflectors (zgehrd's), accumulating Z.
2. Shifted QR iterations on the Hessenberg matrix in complex arithmetic (one Wilkinson shift per
   unreduced diagonal block, an exceptional shift every 10th iteration to break cycles such as
   permutation matrices), as one ONNX Loop: each iteration zeroes the negligible subdiagonal entries
   (|h[j+1, j]| <= eps (|h[j, j]| + |h[j+1, j+1]|), LAPACK's test), then takes one explicit QR step
   ``H - D = Q R``, ``H <- R Q + D`` (Givens rotations, ``D`` the per-block shifts) on every block
   at once; a split subdiagonal stays exactly zero, so the blocks run independently. The Loop
   stops when every subdiagonal entry is zero, or after :func:`iteration_budget` iterations
   (LAPACK's 30 per eigenvalue); a matrix that has not converged by then comes out all NaN, as JAX
   reports a LAPACK failure.
3. For ``eig``: eigenvectors of the triangular T by back-substitution (ztrevc's, with its ``smin``
   guard against a zero divisor for repeated eigenvalues), mapped back by Z and normalised as zgeev
   does (unit 2-norm, largest component real; here also positive).

float32/complex64 matrices are decomposed in float64 (rounded to float32 at the end), as ``eigen.py``
does for eigh. ``schur`` of a complex matrix returns T upper triangular and Z unitary (unsorted);
both are unique only up to the order of the eigenvalues and the phases of Z's columns, so compare
``Z T Z^H = A`` and the triangle of T. ``schur`` of a real matrix (dgees' quasi-triangular form) is
in ``real_schur.py``.

Accuracy (random normal matrices): eigenvalues within ~3e-8 of max |lambda| for complex64 input,
~1e-15 to 4e-15 for complex128 at 8x8 and 16x16. ``eig`` balances first (:func:`balance`, gebal's
scaling); ``schur`` does not (dgees/zgees only permute, which is not done here either).

Size and budget: matrix sizes must be static. Every QR iteration is an explicit Givens step (an
inner Loop of n-1 rotations) on all unreduced blocks at once; 2-4 iterations per eigenvalue are
typical, the budget is :func:`iteration_budget`. In onnxruntime 8x8 takes ~40 ms, 16x16 ~0.2 s,
32x32 ~1 s: this suits the small matrices models carry, not large ones. Batch axes ride along.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import GraphBuilder
from workbench.jax_to_onnx.complex_numbers import real_dtype, storage_aval
from workbench.jax_to_onnx.handlers.linalg_kit import (
    Spec,
    any_true,
    as_column,
    as_row,
    batched_eye,
    counted_loop,
    leading_shape,
    local_function,
    mask_cmp,
    mask_eq,
    reduce_over,
    scalar,
    static_size,
    take,
)
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

Pair = tuple[ir.Value, ir.Value]  # (real part, imaginary part) of a complex tensor, same shapes
EXCEPTIONAL_EVERY = 10  # LAPACK's zlahqr takes an exceptional shift after 10 iterations without deflation


def iteration_budget(n: int) -> int:
    """The QR Loop's iteration limit for an n x n matrix: LAPACK's 30 per eigenvalue (at least 10 sizes' worth)."""
    return 30 * max(n, 10)


# ----------------------------------------------------------------------------- complex arithmetic on pairs
# Written here on the builder (not through complex_ops.py's handlers, which work on the trailing
# pair axis of a LoweringContext): inside the loops the two parts are separate tensors, so every
# product is plain real MatMul/Mul without slicing the pair axis again and again.
def c_add(g: GraphBuilder, a: Pair, b: Pair) -> Pair:
    return g.op("Add", a[0], b[0]), g.op("Add", a[1], b[1])


def c_sub(g: GraphBuilder, a: Pair, b: Pair) -> Pair:
    return g.op("Sub", a[0], b[0]), g.op("Sub", a[1], b[1])


def c_mul(g: GraphBuilder, a: Pair, b: Pair) -> Pair:
    (ar, ai), (br, bi) = a, b
    return (g.op("Sub", g.op("Mul", ar, br), g.op("Mul", ai, bi)), g.op("Add", g.op("Mul", ar, bi), g.op("Mul", ai, br)))


def c_scale(g: GraphBuilder, a: Pair, factor: ir.Value) -> Pair:
    """``a`` times a real ``factor``."""
    return g.op("Mul", a[0], factor), g.op("Mul", a[1], factor)


def c_conj(g: GraphBuilder, a: Pair) -> Pair:
    return a[0], g.op("Neg", a[1])


def c_matmul(g: GraphBuilder, a: Pair, b: Pair) -> Pair:
    (ar, ai), (br, bi) = a, b
    real = g.op("Sub", g.op("MatMul", ar, br), g.op("MatMul", ai, bi))
    return real, g.op("Add", g.op("MatMul", ar, bi), g.op("MatMul", ai, br))


def c_where(g: GraphBuilder, condition: ir.Value, a: Pair, b: Pair) -> Pair:
    return g.op("Where", condition, a[0], b[0]), g.op("Where", condition, a[1], b[1])


def c_take(g: GraphBuilder, a: Pair, index: ir.Value, axis: int) -> Pair:
    return take(g, a[0], index, axis), take(g, a[1], index, axis)


def c_unsqueeze(g: GraphBuilder, a: Pair, axis: int) -> Pair:
    axes = g.i64([axis])
    return g.op("Unsqueeze", a[0], axes), g.op("Unsqueeze", a[1], axes)


def cabs1(g: GraphBuilder, a: Pair) -> ir.Value:
    """|re| + |im|: LAPACK's cheap modulus for convergence tests."""
    return g.op("Add", g.op("Abs", a[0]), g.op("Abs", a[1]))


def c_abs(g: GraphBuilder, a: Pair, dtype: Any) -> ir.Value:
    """|a| = m sqrt((re/m)^2 + (im/m)^2), m = max(|re|, |im|): no overflow or underflow of the squares."""
    largest = g.op("Max", g.op("Abs", a[0]), g.op("Abs", a[1]))
    safe = g.op("Where", g.op("Equal", largest, scalar(g, 0, dtype)), scalar(g, 1, dtype), largest)
    x, y = g.op("Div", a[0], safe), g.op("Div", a[1], safe)
    return g.op("Mul", largest, g.op("Sqrt", g.op("Add", g.op("Mul", x, x), g.op("Mul", y, y))))


def c_div(g: GraphBuilder, a: Pair, b: Pair, dtype: Any) -> Pair:
    """a / b by Smith's algorithm (no c^2 + d^2 is formed); the caller keeps b away from 0."""
    (ar, ai), (br, bi) = a, b
    one, zero = scalar(g, 1, dtype), scalar(g, 0, dtype)
    real_larger = g.op("GreaterOrEqual", g.op("Abs", br), g.op("Abs", bi))
    safe_br = g.op("Where", g.op("Equal", br, zero), one, br)
    safe_bi = g.op("Where", g.op("Equal", bi, zero), one, bi)
    r1 = g.op("Div", bi, safe_br)
    d1 = g.op("Add", br, g.op("Mul", bi, r1))
    re1, im1 = g.op("Div", g.op("Add", ar, g.op("Mul", ai, r1)), d1), g.op("Div", g.op("Sub", ai, g.op("Mul", ar, r1)), d1)
    r2 = g.op("Div", br, safe_bi)
    d2 = g.op("Add", g.op("Mul", br, r2), bi)
    re2, im2 = g.op("Div", g.op("Add", g.op("Mul", ar, r2), ai), d2), g.op("Div", g.op("Sub", g.op("Mul", ai, r2), ar), d2)
    return g.op("Where", real_larger, re1, re2), g.op("Where", real_larger, im1, im2)


def c_sqrt(g: GraphBuilder, a: Pair, dtype: Any) -> Pair:
    """Principal square root: t = sqrt((|a| + |re|) / 2), then (t, im / 2t) or (|im| / 2t, sign(im) t)."""
    zero, two = scalar(g, 0, dtype), scalar(g, 2, dtype)
    real, imag = a
    t = g.op("Sqrt", g.op("Div", g.op("Add", c_abs(g, a, dtype), g.op("Abs", real)), two))
    safe_t = g.op("Where", g.op("Equal", t, zero), scalar(g, 1, dtype), t)
    other = g.op("Div", imag, g.op("Mul", two, safe_t))
    negative = g.op("Less", real, zero)
    sign = g.op("Where", g.op("Less", imag, zero), scalar(g, -1, dtype), scalar(g, 1, dtype))
    return g.op("Where", negative, g.op("Abs", other), t), g.op("Where", negative, g.op("Mul", sign, t), other)


def c_put_rows(g: GraphBuilder, a: Pair, row_mask: ir.Value, rows: Pair) -> Pair:
    """``a`` with the rows where ``row_mask`` ([n]) holds replaced by ``rows`` (broadcast [..., 1, n])."""
    return c_where(g, as_column(g, row_mask), rows, a)


def c_put_columns(g: GraphBuilder, a: Pair, column_mask: ir.Value, columns: Pair) -> Pair:
    return c_where(g, as_row(g, column_mask), columns, a)


def zeros_like(g: GraphBuilder, x: ir.Value, dtype: Any) -> ir.Value:
    return g.op("Expand", scalar(g, 0, dtype), g.op("Shape", x))


# ----------------------------------------------------------------------------- 1. Hessenberg reduction
def hessenberg_reduce(g: GraphBuilder, h: Pair, n: int, spec: Spec) -> tuple[Pair, Pair]:
    """Complex Householder reduction to upper Hessenberg form: (H, Z) with H = Z^H A Z.

    Reflector k (zlarfg's form) maps column k below row k to beta e_{k+1} with a real beta; H is
    applied as ``A <- H^H A H`` and accumulated into ``Z <- Z H``.
    """
    dtype = spec.dtype
    eye = batched_eye(g, h[0], n, n, dtype)
    z = (eye, zeros_like(g, eye, dtype))
    if n <= 2:
        return h, z
    zero, one = scalar(g, 0, dtype), scalar(g, 1, dtype)

    def step(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        a, q = (state[0], state[1]), (state[2], state[3])
        pivot = body.op("Add", k, scalar(body, 1, np.int64))
        x = c_take(body, a, k, -1)  # column k: [..., n]
        below_mask = mask_cmp(body, n, "Greater", pivot)
        alpha = c_take(body, x, pivot, -1)  # [...]
        below = c_where(body, below_mask, x, (zero, zero))
        below_sq = body.op("ReduceSum", body.op("Add", body.op("Mul", below[0], below[0]), body.op("Mul", below[1], below[1])),
                           body.i64([-1]), keepdims=0)
        untouched = body.op("And", body.op("Equal", below_sq, zero), body.op("Equal", alpha[1], zero))
        norm = body.op("Sqrt", body.op("Add", body.op("Add", body.op("Mul", alpha[0], alpha[0]), body.op("Mul", alpha[1], alpha[1])), below_sq))
        sign = body.op("Where", body.op("Less", alpha[0], zero), scalar(body, -1, dtype), one)
        beta = body.op("Neg", body.op("Mul", sign, norm))
        safe_beta = body.op("Where", untouched, one, beta)
        tau = (body.op("Div", body.op("Sub", beta, alpha[0]), safe_beta), body.op("Div", body.op("Neg", alpha[1]), safe_beta))
        tau = c_where(body, untouched, (zero, zero), tau)
        scale = c_where(body, untouched, (one, zero), (body.op("Sub", alpha[0], beta), alpha[1]))  # alpha - beta
        v = c_div(body, below, c_unsqueeze(body, scale, -1), dtype)
        v = c_where(body, mask_eq(body, n, pivot), (one, zero), c_where(body, below_mask, v, (zero, zero)))
        v_col, v_row = c_unsqueeze(body, v, -1), c_unsqueeze(body, v, -2)  # [..., n, 1], [..., 1, n]
        v_row_conj = c_conj(body, v_row)
        tau_m = c_unsqueeze(body, c_unsqueeze(body, tau, -1), -1)
        # A <- (I - conj(tau) v v^H) A = A - conj(tau) v (v^H A)
        a = c_sub(body, a, c_mul(body, c_conj(body, tau_m), c_matmul(body, v_col, c_matmul(body, v_row_conj, a))))
        # A <- A (I - tau v v^H) = A - tau (A v) v^H;  Z likewise
        a = c_sub(body, a, c_mul(body, tau_m, c_matmul(body, c_matmul(body, a, v_col), v_row_conj)))
        q = c_sub(body, q, c_mul(body, tau_m, c_matmul(body, c_matmul(body, q, v_col), v_row_conj)))
        return [*a, *q]

    out = counted_loop(g, n - 2, [*h, *z], [spec] * 4, step, name="hessenberg_columns")
    keep = g.const(np.tril(np.ones((n, n), bool), -2))  # exact zeros below the subdiagonal
    hess = (g.op("Where", keep, zero, out[0]), g.op("Where", keep, zero, out[1]))
    return hess, (out[2], out[3])


# ----------------------------------------------------------------------------- 2. shifted QR iterations
def _shift_matrix(g: GraphBuilder, n: int, k: int, dtype: Any) -> ir.Value:
    return g.const(np.eye(n, k=k, dtype=dtype))


def deflate(g: GraphBuilder, h: Pair, n: int, dtype: Any, scale: ir.Value) -> Pair:
    """Zero the negligible subdiagonal entries: |h[j+1, j]| <= max(eps (|h[j, j]| + |h[j+1, j+1]|), tiny)."""
    eps = float(np.finfo(dtype).eps)
    tiny = float(np.finfo(dtype).tiny) * n / eps
    sub_mask = g.const(np.eye(n, k=-1, dtype=bool))
    diag = diag_pair(g, h, n, dtype)
    d_abs = cabs1(g, diag)  # [..., n]
    # row j+1 of the subdiagonal compares with d_abs[j] + d_abs[j+1]: neighbours by one exact MatMul
    d_prev = g.op("MatMul", d_abs, _shift_matrix(g, n, 1, dtype))  # [..., n]: d_abs[j-1] at j
    test = g.op("Add", d_abs, d_prev)
    test = g.op("Where", g.op("Equal", test, scalar(g, 0, dtype)), scale, test)
    bound = g.op("Max", g.op("Mul", test, scalar(g, eps, dtype)), scalar(g, tiny, dtype))  # per row j (entry [j, j-1])
    sub_abs = g.op("Add", g.op("Abs", h[0]), g.op("Abs", h[1]))
    small = g.op("And", sub_mask, g.op("LessOrEqual", sub_abs, as_column(g, bound)))
    zero = scalar(g, 0, dtype)
    return g.op("Where", small, zero, h[0]), g.op("Where", small, zero, h[1])


def diag_pair(g: GraphBuilder, a: Pair, n: int, dtype: Any) -> Pair:
    eye = g.const(np.eye(n, dtype=dtype))
    return tuple(g.op("ReduceSum", g.op("Mul", part, eye), g.i64([-1]), keepdims=0) for part in a)  # type: ignore[return-value]


def band(g: GraphBuilder, a: Pair, n: int, k: int, axis: int, dtype: Any) -> Pair:
    """The k-th diagonal of ``a`` as an n-vector indexed along ``axis`` (-1: by row, -2: by column), 0 elsewhere."""
    mask = _shift_matrix(g, n, k, dtype)
    return tuple(g.op("ReduceSum", g.op("Mul", part, mask), g.i64([axis]), keepdims=0) for part in a)  # type: ignore[return-value]


def _block_shifts(g: GraphBuilder, h: Pair, n: int, dtype: Any, exceptional: ir.Value) -> Pair:
    """One shift per row: the Wilkinson shift of the trailing 2x2 of the unreduced block the row is in
    (the eigenvalue of that 2x2 closer to its last entry), or on exceptional iterations that entry
    plus 3/4 of |subdiagonal|."""
    d = diag_pair(g, h, n, dtype)  # d[j] = h[j, j]
    s = band(g, h, n, -1, -1, dtype)  # s[j] = h[j, j-1] (0 at j = 0)
    u = band(g, h, n, 1, -2, dtype)  # u[j] = h[j-1, j] (0 at j = 0)
    up = _shift_matrix(g, n, 1, dtype)
    down = _shift_matrix(g, n, -1, dtype)
    d_prev = (g.op("MatMul", d[0], up), g.op("MatMul", d[1], up))  # d[j-1] at j
    half = scalar(g, 0.5, dtype)
    t = c_scale(g, c_sub(g, d_prev, d), half)
    bc = c_mul(g, u, s)
    disc = c_sqrt(g, c_add(g, c_mul(g, t, t), bc), dtype)
    flip = g.op("Less", g.op("Add", g.op("Mul", t[0], disc[0]), g.op("Mul", t[1], disc[1])), scalar(g, 0, dtype))
    disc = c_where(g, flip, (g.op("Neg", disc[0]), g.op("Neg", disc[1])), disc)
    denominator = c_add(g, t, disc)
    zero_den = g.op("Equal", cabs1(g, denominator), scalar(g, 0, dtype))
    one_pair = (scalar(g, 1, dtype), scalar(g, 0, dtype))
    correction = c_div(g, bc, c_where(g, zero_den, one_pair, denominator), dtype)
    correction = c_where(g, zero_den, (scalar(g, 0, dtype), scalar(g, 0, dtype)), correction)
    wilkinson = c_sub(g, d, correction)
    exceptional_shift = (g.op("Add", d[0], g.op("Mul", cabs1(g, s), scalar(g, 0.75, dtype))), d[1])
    shift = c_where(g, exceptional, exceptional_shift, wilkinson)
    # the block each row is in ends at the first row j >= i whose h[j+1, j] is zero
    next_sub = (g.op("MatMul", s[0], down), g.op("MatMul", s[1], down))  # h[j+1, j] at j (0 at j = n-1)
    ends_here = g.op("Equal", cabs1(g, next_sub), scalar(g, 0, dtype))  # [..., n]
    positions = np.arange(n, dtype=np.int64)
    candidates = g.op("Where", g.op("And", as_row(g, ends_here), g.const(positions[None, :] >= positions[:, None])),
                      g.const(positions[None, :]), scalar(g, n, np.int64))
    block_end = reduce_over(g, "ReduceMin", candidates, [-1], keepdims=False)  # [..., n]
    return g.op("GatherElements", shift[0], block_end, axis=-1), g.op("GatherElements", shift[1], block_end, axis=-1)


def _givens_qr(g: GraphBuilder, r: Pair, n: int, spec: Spec) -> tuple[Pair, Pair]:
    """QR of the upper Hessenberg ``r`` by Givens rotations: (R, Q) with ``r = Q R``.

    Rotation k, ``G = [[c, s], [-conj(s), c]]`` with real c, maps (r[k, k], r[k+1, k]) to (rho, 0);
    a zero subdiagonal entry gives exactly G = I, so split blocks stay apart.
    """
    dtype = spec.dtype
    zero, one = scalar(g, 0, dtype), scalar(g, 1, dtype)
    eye = batched_eye(g, r[0], n, n, dtype)
    q0 = (eye, zeros_like(g, eye, dtype))

    def rotate(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        rr, qq = (state[0], state[1]), (state[2], state[3])
        k1 = body.op("Add", k, scalar(body, 1, np.int64))
        row_k, row_k1 = c_take(body, rr, k, -2), c_take(body, rr, k1, -2)  # [..., n]
        a, b = c_take(body, row_k, k, -1), c_take(body, row_k1, k, -1)  # [...]
        abs_a, abs_b = c_abs(body, a, dtype), c_abs(body, b, dtype)
        big = body.op("Max", abs_a, abs_b)
        safe_big = body.op("Where", body.op("Equal", big, zero), one, big)
        xa, xb = body.op("Div", abs_a, safe_big), body.op("Div", abs_b, safe_big)
        norm = body.op("Mul", safe_big, body.op("Sqrt", body.op("Add", body.op("Mul", xa, xa), body.op("Mul", xb, xb))))
        norm_zero = body.op("Equal", big, zero)
        safe_norm = body.op("Where", norm_zero, one, norm)
        a_zero = body.op("Equal", abs_a, zero)
        safe_abs_a = body.op("Where", a_zero, one, abs_a)
        phase = c_where(body, a_zero, (one, zero), (body.op("Div", a[0], safe_abs_a), body.op("Div", a[1], safe_abs_a)))
        c = body.op("Where", norm_zero, one, body.op("Div", abs_a, safe_norm))
        s = c_mul(body, phase, c_scale(body, c_conj(body, b), body.op("Reciprocal", safe_norm)))
        c_col, s_col = body.op("Unsqueeze", c, body.i64([-1])), c_unsqueeze(body, s, -1)  # [..., 1]
        new_k = c_add(body, c_scale(body, row_k, c_col), c_mul(body, s_col, row_k1))
        new_k1 = c_sub(body, c_scale(body, row_k1, c_col), c_mul(body, c_conj(body, s_col), row_k))
        exact_zero = mask_eq(body, n, k)
        new_k1 = c_where(body, exact_zero, (zero, zero), new_k1)
        rr = c_put_rows(body, rr, mask_eq(body, n, k), c_unsqueeze(body, new_k, -2))
        rr = c_put_rows(body, rr, mask_eq(body, n, k1), c_unsqueeze(body, new_k1, -2))
        # Q <- Q G^H: columns k, k+1 become c q_k + conj(s) q_k1 and -s q_k + c q_k1
        col_k, col_k1 = c_take(body, qq, k, -1), c_take(body, qq, k1, -1)
        q_k = c_add(body, c_scale(body, col_k, c_col), c_mul(body, c_conj(body, s_col), col_k1))
        q_k1 = c_sub(body, c_scale(body, col_k1, c_col), c_mul(body, s_col, col_k))
        qq = c_put_columns(body, qq, mask_eq(body, n, k), c_unsqueeze(body, q_k, -1))
        qq = c_put_columns(body, qq, mask_eq(body, n, k1), c_unsqueeze(body, q_k1, -1))
        return [*rr, *qq]

    out = counted_loop(g, n - 1, [*r, *q0], [spec] * 4, rotate, name="givens_rows")
    return (out[0], out[1]), (out[2], out[3])


def qr_iterations(g: GraphBuilder, h: Pair, z: Pair, n: int, spec: Spec) -> tuple[Pair, Pair, ir.Value]:
    """Shifted QR on the Hessenberg ``h`` until it is triangular: (T, Z T-accumulated, converged [...] bool)."""
    dtype = spec.dtype
    scale = g.op("ReduceSum", cabs1(g, h), g.i64([-2, -1]), keepdims=1)  # ||H||_1-like, for all-zero diagonals
    scale = g.op("Squeeze", scale, g.i64([-1]))  # [..., 1]: broadcasts over the rows
    h = deflate(g, h, n, dtype, scale)
    if n == 1:
        return h, z, _all_deflated(g, h, n, dtype)
    eye = g.const(np.eye(n, dtype=dtype))

    def iterate(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        hh, zz = (state[0], state[1]), (state[2], state[3])
        countdown = body.op("Mod", body.op("Add", k, scalar(body, 1, np.int64)), scalar(body, EXCEPTIONAL_EVERY, np.int64))
        exceptional = body.op("Equal", countdown, scalar(body, 0, np.int64))
        mu = _block_shifts(body, hh, n, dtype, exceptional)  # [..., n] per row
        shift = (body.op("Mul", eye, as_column(body, mu[0])), body.op("Mul", eye, as_column(body, mu[1])))
        r, q = _givens_qr(body, c_sub(body, hh, shift), n, spec)
        hh = deflate(body, c_add(body, c_matmul(body, r, q), shift), n, dtype, scale)
        zz = c_matmul(body, zz, q)
        return [*hh, *zz]

    def keep_going(body: GraphBuilder, outputs: list[ir.Value]) -> ir.Value:
        return any_true(body, body.op("Not", _all_deflated(body, (outputs[0], outputs[1]), n, dtype)))

    out = counted_loop(g, iteration_budget(n), [*h, *z], [spec] * 4, iterate, name="qr_iterations", keep_going=keep_going)
    t, z = (out[0], out[1]), (out[2], out[3])
    return t, z, _all_deflated(g, t, n, dtype)


def _all_deflated(g: GraphBuilder, h: Pair, n: int, dtype: Any) -> ir.Value:
    """Per matrix: every subdiagonal entry is exactly zero (bool [...])."""
    sub = band(g, h, n, -1, -1, dtype)
    nonzero = g.op("ReduceSum", cabs1(g, sub), g.i64([-1]), keepdims=0)
    return g.op("Equal", nonzero, scalar(g, 0, dtype))


# ----------------------------------------------------------------------------- 3. eigenvectors
def _divisors(g: GraphBuilder, d: Pair, n: int, dtype: Any) -> Pair:
    """den[j, k] = T[j, j] - T[k, k] [..., n, n], moved to smin (ztrevc's guard) where it is smaller."""
    den = c_sub(g, c_unsqueeze(g, d, -1), c_unsqueeze(g, d, -2))
    eps = float(np.finfo(dtype).eps)
    smin = g.op("Max", g.op("Mul", cabs1(g, c_unsqueeze(g, d, -2)), scalar(g, eps, dtype)), scalar(g, float(np.finfo(dtype).tiny) * n / eps, dtype))
    small = g.op("Less", cabs1(g, den), smin)
    return g.op("Where", small, g.op("Expand", smin, g.op("Shape", den[0])), den[0]), g.op("Where", small, scalar(g, 0, dtype), den[1])


def right_vectors(g: GraphBuilder, t: Pair, n: int, spec: Spec) -> Pair:
    """X with T X = X diag(T): unit upper triangular, row j from the rows below it (j = n-1 .. 0)."""
    dtype = spec.dtype
    den = _divisors(g, diag_pair(g, t, n, dtype), n, dtype)
    eye = batched_eye(g, t[0], n, n, dtype)
    x0 = (eye, zeros_like(g, eye, dtype))
    zero = scalar(g, 0, dtype)

    def row(body: GraphBuilder, step: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        x = (state[0], state[1])
        j = body.op("Sub", scalar(body, n - 1, np.int64), step)
        later = mask_cmp(body, n, "Greater", j)  # columns l > j of T's row, and entries k > j of X's row
        t_row = c_where(body, later, c_take(body, t, j, -2), (zero, zero))  # [..., n]
        rhs = c_matmul(body, c_unsqueeze(body, t_row, -2), x)  # [..., 1, n]: sum_l T[j, l] X[l, k]
        value = c_div(body, (body.op("Neg", rhs[0]), body.op("Neg", rhs[1])), c_unsqueeze(body, c_take(body, den, j, -2), -2), dtype)
        current = c_unsqueeze(body, c_take(body, x, j, -2), -2)
        new_row = c_where(body, later, value, current)
        return list(c_put_rows(body, x, mask_eq(body, n, j), new_row))

    out = counted_loop(g, n, list(x0), [spec, spec], row, name="back_substitution")
    return out[0], out[1]


def left_vectors(g: GraphBuilder, t: Pair, n: int, spec: Spec) -> Pair:
    """Y with T^H Y = Y conj(diag(T)) (so y^H T = lambda y^H): unit lower triangular, rows j = 0 .. n-1."""
    dtype = spec.dtype
    den = c_conj(g, _divisors(g, diag_pair(g, t, n, dtype), n, dtype))
    eye = batched_eye(g, t[0], n, n, dtype)
    y0 = (eye, zeros_like(g, eye, dtype))
    zero = scalar(g, 0, dtype)

    def row(body: GraphBuilder, j: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        y = (state[0], state[1])
        earlier = mask_cmp(body, n, "Less", j)
        t_col = c_where(body, earlier, c_conj(body, c_take(body, t, j, -1)), (zero, zero))  # conj(T[l, j]), l < j
        rhs = c_matmul(body, c_unsqueeze(body, t_col, -2), y)
        value = c_div(body, (body.op("Neg", rhs[0]), body.op("Neg", rhs[1])), c_unsqueeze(body, c_take(body, den, j, -2), -2), dtype)
        current = c_unsqueeze(body, c_take(body, y, j, -2), -2)
        return list(c_put_rows(body, y, mask_eq(body, n, j), c_where(body, earlier, value, current)))

    out = counted_loop(g, n, list(y0), [spec, spec], row, name="forward_substitution")
    return out[0], out[1]


def normalize_columns(g: GraphBuilder, v: Pair, n: int, dtype: Any) -> Pair:
    """zgeev's normalisation: each column to unit 2-norm, then rotated so its largest-modulus entry
    (the first of equals) is real and positive; that entry's imaginary part is set to exactly 0."""
    largest = reduce_over(g, "ReduceMax", cabs1(g, v), [-2], keepdims=True)  # [..., 1, n]
    safe = g.op("Where", g.op("Equal", largest, scalar(g, 0, dtype)), scalar(g, 1, dtype), largest)
    v = (g.op("Div", v[0], safe), g.op("Div", v[1], safe))
    squares = g.op("Add", g.op("Mul", v[0], v[0]), g.op("Mul", v[1], v[1]))
    norm = g.op("Sqrt", g.op("ReduceSum", squares, g.i64([-2]), keepdims=1))
    v = (g.op("Div", v[0], norm), g.op("Div", v[1], norm))
    squares = g.op("Add", g.op("Mul", v[0], v[0]), g.op("Mul", v[1], v[1]))
    top = g.op("ArgMax", squares, axis=-2, keepdims=1, select_last_index=0)  # [..., 1, n]
    peak = (g.op("GatherElements", v[0], top, axis=-2), g.op("GatherElements", v[1], top, axis=-2))
    modulus = c_abs(g, peak, dtype)
    rotation = (g.op("Div", peak[0], modulus), g.op("Neg", g.op("Div", peak[1], modulus)))
    v = c_mul(g, v, rotation)
    at_peak = g.op("Equal", g.const(np.arange(n, dtype=np.int64)[:, None]), top)
    return v[0], g.op("Where", at_peak, scalar(g, 0, dtype), v[1])


# ----------------------------------------------------------------------------- balancing (eig)
BALANCE_SWEEPS = 20  # gebal's sweeps stop when nothing changes, typically after 2-5


def balance(g: GraphBuilder, a: Pair, n: int, spec: Spec) -> tuple[Pair, ir.Value]:
    """gebal's scaling (JOB='S' part; no permutation): D^-1 A D with D = diag(scale) of powers of 2, so
    rows and columns of comparable norm; exact (powers of two), and the eigenvalues of a badly scaled
    matrix come out as accurately as LAPACK's dgeev/zgeev get them. Returns (D^-1 A D, scale [..., n]).

    One sweep visits i = 0 .. n-1 in turn, as gebal: with c, r the 2-norms of column and row i, the
    power of 2 f closest to balancing them (c f ~ r / f) is applied when it shrinks c + r by 5%.
    """
    dtype = spec.dtype
    ones = g.op("Expand", scalar(g, 1, dtype), leading_shape(g, a[0], 1))  # [..., n]
    log4 = float(np.log(4.0))

    def visit(b: GraphBuilder, i: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        re, im, scale, changed = state
        def norm(axis: int) -> ir.Value:  # of column i (axis -1) or row i (axis -2)
            line_re, line_im = take(b, re, i, axis), take(b, im, i, axis)
            squares = b.op("Add", b.op("Mul", line_re, line_re), b.op("Mul", line_im, line_im))
            return b.op("Sqrt", b.op("ReduceSum", squares, b.i64([-1]), keepdims=0))

        c, r = norm(-1), norm(-2)
        zero, one, two = scalar(b, 0, dtype), scalar(b, 1, dtype), scalar(b, 2, dtype)
        usable = b.op("And", b.op("Greater", c, zero), b.op("Greater", r, zero))
        safe_c, safe_r = b.op("Where", usable, c, one), b.op("Where", usable, r, one)
        # gebal's doubling/halving loops in closed form: up while 2 c 4^k < r, down while c >= 2 r 4^k
        up = b.op("Ceil", b.op("Div", b.op("Log", b.op("Div", safe_r, b.op("Mul", two, safe_c))), scalar(b, log4, dtype)))
        down = b.op("Add", b.op("Floor", b.op("Div", b.op("Log", b.op("Div", safe_c, b.op("Mul", two, safe_r))), scalar(b, log4, dtype))), one)
        exponent = b.op("Sub", b.op("Max", up, zero), b.op("Where", b.op("GreaterOrEqual", safe_c, b.op("Mul", two, safe_r)), down, zero))
        f = b.op("Pow", two, exponent)
        shrinks = b.op("Less", b.op("Add", b.op("Mul", c, f), b.op("Div", r, f)), b.op("Mul", scalar(b, 0.95, dtype), b.op("Add", c, r)))
        apply = b.op("And", usable, b.op("And", shrinks, b.op("Not", b.op("Equal", f, one))))
        f = b.op("Where", apply, f, one)
        at_i = mask_eq(b, n, i)
        column_factor = b.op("Where", at_i, b.op("Unsqueeze", f, b.i64([-1])), one)  # [..., n]
        row_factor = b.op("Reciprocal", column_factor)
        factor = b.op("Mul", as_row(b, column_factor), as_column(b, row_factor))  # A[j, i] f, A[i, j] / f
        return [b.op("Mul", re, factor), b.op("Mul", im, factor), b.op("Mul", scale, column_factor), b.op("Or", changed, apply)]

    def sweep(b: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        del k
        re, im, scale, _ = state
        no_change = b.op("Expand", b.const(np.asarray(False)), leading_shape(b, scale, 1))
        bool_spec = Spec(spec.shape[:-2], np.dtype(np.bool_))
        return counted_loop(b, n, [re, im, scale, no_change], [spec, spec, spec.batch(n), bool_spec], visit, name="balance_rows")

    start = g.op("Expand", g.const(np.asarray(True)), leading_shape(g, ones, 1))
    bool_spec = Spec(spec.shape[:-2], np.dtype(np.bool_))
    re, im, scale, _ = counted_loop(g, BALANCE_SWEEPS, [*a, ones, start], [spec, spec, spec.batch(n), bool_spec], sweep,
                                    name="balance_sweeps", keep_going=lambda b, outputs: any_true(b, outputs[3]))
    return (re, im), scale


# ----------------------------------------------------------------------------- the decomposition
def working(g: GraphBuilder, x: ir.Value, complex_input: bool, spec: Spec) -> tuple[Pair, Spec]:
    """The input as a pair of float64 (float32 input) or float64/float32-as-given real tensors."""
    work = np.dtype(np.float64) if spec.dtype == np.dtype(np.float32) else spec.dtype
    if work != spec.dtype:
        x = g.op("Cast", x, to=ir.DataType.DOUBLE)
    if complex_input:
        pair = (g.op("Gather", x, scalar(g, 0, np.int64), axis=-1), g.op("Gather", x, scalar(g, 1, np.int64), axis=-1))
    else:
        pair = (x, zeros_like(g, x, work))
    return pair, Spec(spec.shape, work)


def complex_schur(g: GraphBuilder, a: Pair, n: int, spec: Spec) -> tuple[Pair, Pair, ir.Value]:
    """(T, Z, converged): A = Z T Z^H with T upper triangular."""
    h, z = hessenberg_reduce(g, a, n, spec)
    return qr_iterations(g, h, z, n, spec)


def as_output(g: GraphBuilder, value: Pair, ok: ir.Value, extra_axes: int, work: np.dtype, out_dtype: np.dtype) -> ir.Value:
    """Pairs → the [..., 2] output tensor in the output's real type, NaN where the QR did not converge."""
    joined = g.op("Concat", g.op("Unsqueeze", value[0], g.i64([-1])), g.op("Unsqueeze", value[1], g.i64([-1])), axis=-1)
    flag = g.op("Unsqueeze", ok, g.i64(list(range(-(extra_axes + 1), 0))))
    joined = g.op("Where", flag, joined, scalar(g, np.nan, work))
    if np.dtype(out_dtype) == np.dtype(np.float32):
        joined = g.op("Cast", joined, to=ir.DataType.FLOAT)
    return joined


def storage_ctx(ctx: LoweringContext) -> LoweringContext:
    return dataclasses.replace(
        ctx, avals_in=tuple(storage_aval(a) for a in ctx.avals_in), avals_out=tuple(storage_aval(a) for a in ctx.avals_out)
    )


# ----------------------------------------------------------------------------- schur
def schur_invariants(a: jax.Array) -> Any:
    """schur's results as comparable quantities: Z T Z^H (= A), Z^H Z (= I), the strictly lower triangle
    of T (zeros) and T's diagonal sorted (the eigenvalues)."""
    t, z = lax.linalg.schur(a)
    zh = jnp.conj(jnp.swapaxes(z, -1, -2))
    d = jnp.diagonal(t, axis1=-2, axis2=-1)
    order = jnp.lexsort((jnp.round(d.imag, 3), jnp.round(d.real, 3)), axis=-1)
    return z @ t @ zh, zh @ z, jnp.tril(t, -1), jnp.take_along_axis(d, order, axis=-1)


_C4 = jax.ShapeDtypeStruct((4, 4), np.complex64)


@handler("schur", complex_numbers=True, onnx_ops=("Loop", "MatMul", "Where", "Sqrt", "Div"),
         testcases=[
    Testcase("schur_complex_invariants", schur_invariants, [_C4], rtol=1e-4, atol=2e-5),
    Testcase("schur_complex_batched", schur_invariants, [jax.ShapeDtypeStruct(("B", 3, 3), np.complex64)], rtol=1e-4, atol=2e-5),
    Testcase("schur_complex_no_vectors", lambda a: jnp.sort(jnp.diagonal(lax.linalg.schur(a, compute_schur_vectors=False)[0]).real),
             [_C4], rtol=1e-4, atol=2e-5),
    Testcase("schur_complex128", schur_invariants, [jax.ShapeDtypeStruct((5, 5), np.complex128)], rtol=1e-9, atol=1e-10, x64=True),
])
def _schur_complex(ctx: LoweringContext, x: ir.Value, *, compute_schur_vectors: bool, sort_eig_vals: bool,
                   select_callable: Any) -> tuple[ir.Value, ...]:
    """(T, Z if compute_schur_vectors) of a complex matrix: A = Z T Z^H, T upper triangular (zgees).

    Params: compute_schur_vectors, sort_eig_vals (must be False: ordering by a Python predicate
    cannot be exported), select_callable (the predicate; must be None).
    """
    check_unsorted(sort_eig_vals, select_callable)
    aval = ctx.avals_in[0]
    n = static_size(aval.shape[-1], "matrix size", "schur")
    spec = Spec(tuple(aval.shape), real_dtype(aval.dtype))
    out_dtype = real_dtype(ctx.avals_out[0].dtype)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        a, work = working(g, inputs[0], True, spec)
        t, z, ok = complex_schur(g, a, n, work)
        upper = g.const(np.triu(np.ones((n, n), bool)))
        t = (g.op("Where", upper, t[0], scalar(g, 0, work.dtype)), g.op("Where", upper, t[1], scalar(g, 0, work.dtype)))
        outputs = [as_output(g, t, ok, 2, work.dtype, out_dtype)]
        if compute_schur_vectors:
            outputs.append(as_output(g, z, ok, 2, work.dtype, out_dtype))
        return outputs

    return local_function(storage_ctx(ctx), "Schur", [x], build, params=(bool(compute_schur_vectors),), input_names=["a"])


def check_unsorted(sort_eig_vals: bool, select_callable: Any) -> None:
    if sort_eig_vals or select_callable is not None:
        raise ConversionError(
            "schur(sort_eig_vals=True, select_callable=...) orders the eigenvalues by a Python predicate, which an "
            "ONNX graph cannot run; export with sort_eig_vals=False (JAX's CPU default)."
        )
