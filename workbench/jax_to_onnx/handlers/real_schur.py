"""The real Schur form (LAPACK dgees): ``schur`` of float32/float64 matrices, A = Z T Z^T.

T is real and upper quasi-triangular: a real eigenvalue sits on its diagonal, a complex-conjugate
pair is a 2x2 block in LAPACK's standard form (equal diagonal entries, off-diagonal entries of
opposite signs). Z is orthogonal. The method is dhseqr's small-matrix path (dlahqr):

1. Householder reduction to upper Hessenberg form with Z accumulated (``nonsymmetric.py``'s
   reduction, whose imaginary parts stay exactly zero for real input).
2. Francis double-shift QR sweeps in real arithmetic, one ONNX Loop iteration per sweep: the
   shifts of each unreduced diagonal block are the two eigenvalues of its trailing 2x2 (an
   exceptional pair every 10th sweep), and one pass k = 0 .. n-2 chases every block's bulge with
   3x3 (at the block's end 2x2) Householder reflectors. Blocks are disjoint and a reflector never
   crosses a zero subdiagonal entry, so all blocks of all batch matrices advance in the same pass.
   After a sweep LAPACK's deflation test zeroes the negligible subdiagonal entries. The Loop stops
   when no block is larger than 2x2, or after ``iteration_budget(n)`` sweeps; a matrix that has
   not converged by then comes out all NaN (as JAX reports a LAPACK failure).
3. Each remaining 2x2 block is put in standard form by dlanv2's rotation (real eigenvalues: split
   into a triangle; complex: equal diagonal), applied to the rows and columns of T and to Z.

T and Z are unique only up to the order of the eigenvalues along the diagonal and the signs of Z's
columns (and, for a 2x2 block, its off-diagonal pair), and ours may differ from LAPACK's in both:
compare ``Z T Z^T = A``, ``Z^T Z = I`` and the structure of T, as the testcases do. Accuracy as
``eig`` (``nonsymmetric.py``): float32 input is decomposed in float64; reconstruction errors are
float32 rounding (~1e-7 of ||A||) and ~1e-15 in float64. ``sort_eig_vals`` (a Python predicate)
is refused.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.jax_to_onnx.builder import GraphBuilder
from workbench.jax_to_onnx.handlers.linalg_kit import (
    Spec,
    any_true,
    as_column,
    as_row,
    batch_shape,
    counted_loop,
    local_function,
    mask_eq,
    reduce_over,
    scalar,
    sign_nonnegative,
    static_size,
    take,
)
from workbench.jax_to_onnx.handlers.nonsymmetric import (
    EXCEPTIONAL_EVERY,
    check_unsorted,
    deflate,
    hessenberg_reduce,
    iteration_budget,
    working,
    zeros_like,
)
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler


def _band(g: GraphBuilder, h: ir.Value, n: int, k: int, axis: int, dtype: Any) -> ir.Value:
    """The k-th diagonal of ``h`` as an n-vector indexed along ``axis`` (-1: by row, -2: by column)."""
    return g.op("ReduceSum", g.op("Mul", h, g.const(np.eye(n, k=k, dtype=dtype))), g.i64([axis]), keepdims=0)


def _neighbour(g: GraphBuilder, v: ir.Value, n: int, offset: int, dtype: Any) -> ir.Value:
    """v[j + offset] at j (0 outside), by one exact MatMul with a shifted identity."""
    return g.op("MatMul", v, g.const(np.eye(n, k=-offset, dtype=dtype)))


def _blocks(g: GraphBuilder, h: ir.Value, n: int, dtype: Any) -> tuple[ir.Value, ir.Value]:
    """Per row i: (first row, last row) of the unreduced diagonal block containing i, int64 [..., n]."""
    sub = _band(g, h, n, -1, -1, dtype)  # h[j, j-1] at j (0 at j = 0)
    zero = scalar(g, 0, dtype)
    starts_here = g.op("Equal", sub, zero)
    ends_here = g.op("Equal", _neighbour(g, sub, n, 1, dtype), zero)  # h[j+1, j] == 0 (true at n-1)
    positions = np.arange(n, dtype=np.int64)
    later = g.const(positions[None, :] >= positions[:, None])  # [i, j]: j >= i
    last = g.op("Where", g.op("And", as_row(g, ends_here), later), g.const(positions[None, :]), scalar(g, n, np.int64))
    earlier = g.const(positions[None, :] <= positions[:, None])  # [i, j]: j <= i
    first = g.op("Where", g.op("And", as_row(g, starts_here), earlier), g.const(positions[None, :]), scalar(g, -1, np.int64))
    return (reduce_over(g, "ReduceMax", first, [-1], keepdims=False), reduce_over(g, "ReduceMin", last, [-1], keepdims=False))


def _shifts(g: GraphBuilder, h: ir.Value, n: int, dtype: Any, last: ir.Value, exceptional: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Per row: (sum, product) of the two shifts of its block: the trailing 2x2's trace and determinant,
    or dlahqr's exceptional pair (0.75 s + h[i, i] twice, perturbed) with s = |h[i, i-1]| + |h[i-1, i-2]|."""
    d = _band(g, h, n, 0, -1, dtype)
    sub = _band(g, h, n, -1, -1, dtype)  # h[j, j-1]
    sup = _band(g, h, n, 1, -2, dtype)  # h[j-1, j]
    d_prev = _neighbour(g, d, n, -1, dtype)
    trace = g.op("Add", d_prev, d)
    determinant = g.op("Sub", g.op("Mul", d_prev, d), g.op("Mul", sup, sub))
    s = g.op("Add", g.op("Abs", sub), g.op("Abs", _neighbour(g, sub, n, -1, dtype)))
    h11 = g.op("Add", g.op("Mul", s, scalar(g, 0.75, dtype)), d)
    trace = g.op("Where", exceptional, g.op("Mul", h11, scalar(g, 2, dtype)), trace)
    determinant = g.op("Where", exceptional, g.op("Add", g.op("Mul", h11, h11), g.op("Mul", g.op("Mul", s, s), scalar(g, 0.4375, dtype))),
                       determinant)
    return g.op("GatherElements", trace, last, axis=-1), g.op("GatherElements", determinant, last, axis=-1)


def _put(g: GraphBuilder, m: ir.Value, index: ir.Value, n: int, values: ir.Value, axis: int) -> ir.Value:
    """``m`` with row (axis -2) or column (axis -1) ``index`` replaced by ``values`` [..., n]."""
    mask = mask_eq(g, n, index)
    if axis == -2:
        return g.op("Where", as_column(g, mask), g.op("Unsqueeze", values, g.i64([-2])), m)
    return g.op("Where", as_row(g, mask), g.op("Unsqueeze", values, g.i64([-1])), m)


def _reflect(g: GraphBuilder, m: ir.Value, indices: tuple[ir.Value, ir.Value, ir.Value, ir.Value], n: int,
             v1: ir.Value, v2: ir.Value, tau: ir.Value, axis: int) -> ir.Value:
    """P m (axis -2: rows k, k+1, k+2) or m P (axis -1: columns), P = I - tau v v^T, v = (1, v1, v2).

    ``indices`` = (k, k+1, k+2 clamped into the matrix, k+2 as is): with v2 = 0 the third line is
    not changed, and it is only written back when k+2 is inside the matrix.
    """
    k, k1, k2_read, k2 = indices
    lines = [take(g, m, i, axis) for i in (k, k1, k2_read)]  # [..., n]
    factors = [g.op("Unsqueeze", f, g.i64([-1])) for f in (v1, v2, tau)]
    w = g.op("Add", g.op("Add", lines[0], g.op("Mul", factors[0], lines[1])), g.op("Mul", factors[1], lines[2]))
    tw = g.op("Mul", factors[2], w)
    new = [g.op("Sub", lines[0], tw), g.op("Sub", lines[1], g.op("Mul", factors[0], tw)), g.op("Sub", lines[2], g.op("Mul", factors[1], tw))]
    for index, value in zip((k, k1, k2), new, strict=True):
        m = _put(g, m, index, n, value, axis)
    return m


def _francis_sweeps(g: GraphBuilder, h: ir.Value, z: ir.Value, n: int, spec: Spec) -> tuple[ir.Value, ir.Value]:
    dtype = spec.dtype
    scale = g.op("Squeeze", g.op("ReduceSum", g.op("Abs", h), g.i64([-2, -1]), keepdims=1), g.i64([-1]))
    below = g.const(np.tril(np.ones((n, n), bool), -2))

    def clean(b: GraphBuilder, m: ir.Value) -> ir.Value:
        m = b.op("Where", below, scalar(b, 0, dtype), m)
        return deflate(b, (m, zeros_like(b, m, dtype)), n, dtype, scale)[0]

    h = clean(g, h)

    def sweep(body: GraphBuilder, iteration: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        hh, zz = state
        countdown = body.op("Mod", body.op("Add", iteration, scalar(body, 1, np.int64)), scalar(body, EXCEPTIONAL_EVERY, np.int64))
        exceptional = body.op("Equal", countdown, scalar(body, 0, np.int64))
        first, last = _blocks(body, hh, n, dtype)
        trace, determinant = _shifts(body, hh, n, dtype, last, exceptional)

        def chase(b: GraphBuilder, k: ir.Value, inner: list[ir.Value]) -> list[ir.Value]:
            m, q = inner
            one = scalar(b, 1, np.int64)
            k1 = b.op("Add", k, one)
            k2 = b.op("Add", k1, one)
            k2_read = b.op("Min", k2, scalar(b, n - 1, np.int64))
            km1 = b.op("Max", b.op("Sub", k, one), scalar(b, 0, np.int64))
            lo, hi = take(b, first, k, -1), take(b, last, k, -1)  # [...]
            big = b.op("GreaterOrEqual", b.op("Sub", hi, lo), scalar(b, 2, np.int64))  # a block of 3 or more
            is_start = b.op("And", big, b.op("Equal", k, lo))
            in_chase = b.op("And", big, b.op("And", b.op("Greater", k, lo), b.op("Less", k, hi)))
            third = b.op("LessOrEqual", k2, hi)
            r0, r1, r2 = (take(b, m, i, -2) for i in (k, k1, k2_read))
            # the first column of (H - s1 I)(H - s2 I) at the block's start, else the bulge below column k-1
            h00, h01, h10, h11, h21 = (take(b, r, i, -1) for r, i in ((r0, k), (r0, k1), (r1, k), (r1, k1), (r2, k1)))
            s, t = take(b, trace, k, -1), take(b, determinant, k, -1)
            x0 = b.op("Add", b.op("Sub", b.op("Add", b.op("Mul", h00, h00), b.op("Mul", h01, h10)), b.op("Mul", s, h00)), t)
            x1 = b.op("Mul", h10, b.op("Sub", b.op("Add", h00, h11), s))
            x2 = b.op("Mul", h10, h21)
            x0 = b.op("Where", is_start, x0, take(b, r0, km1, -1))
            x1 = b.op("Where", is_start, x1, take(b, r1, km1, -1))
            x2 = b.op("Where", third, b.op("Where", is_start, x2, take(b, r2, km1, -1)), scalar(b, 0, dtype))
            # dlarfg on (x0, x1, x2); tau = 0 (P = I) when nothing is to be done here
            zero, unit = scalar(b, 0, dtype), scalar(b, 1, dtype)
            tail = b.op("Add", b.op("Mul", x1, x1), b.op("Mul", x2, x2))
            idle = b.op("Or", b.op("Equal", tail, zero), b.op("Not", b.op("Or", is_start, in_chase)))
            beta = b.op("Neg", b.op("Mul", sign_nonnegative(b, x0, dtype), b.op("Sqrt", b.op("Add", b.op("Mul", x0, x0), tail))))
            tau = b.op("Where", idle, zero, b.op("Div", b.op("Sub", beta, x0), b.op("Where", idle, unit, beta)))
            denominator = b.op("Where", idle, unit, b.op("Sub", x0, beta))
            v1 = b.op("Where", idle, zero, b.op("Div", x1, denominator))
            v2 = b.op("Where", idle, zero, b.op("Div", x2, denominator))
            indices = (k, k1, k2_read, k2)
            m = _reflect(b, m, indices, n, v1, v2, tau, -2)
            m = _reflect(b, m, indices, n, v1, v2, tau, -1)
            q = _reflect(b, q, indices, n, v1, v2, tau, -1)
            # the chased bulge entries are zero by construction: make them exactly zero
            rows = b.op("Or", mask_eq(b, n, k1), mask_eq(b, n, k2))
            spot = b.op("And", as_column(b, rows), as_row(b, mask_eq(b, n, km1)))
            spot = b.op("And", spot, b.op("Unsqueeze", in_chase, b.i64([-2, -1])))
            return [b.op("Where", spot, zero, m), q]

        hh, zz = counted_loop(body, n - 1, [hh, zz], [spec, spec], chase, name="francis_bulge_chase")
        return [clean(body, hh), zz]

    def keep_going(body: GraphBuilder, outputs: list[ir.Value]) -> ir.Value:
        return any_true(body, _has_big_block(body, outputs[0], n, dtype))

    h, z = counted_loop(g, iteration_budget(n), [h, z], [spec, spec], sweep, name="francis_sweeps", keep_going=keep_going)
    return h, z


def _has_big_block(g: GraphBuilder, h: ir.Value, n: int, dtype: Any) -> ir.Value:
    """Per matrix: two consecutive nonzero subdiagonal entries, i.e. an unreduced block of 3 or more."""
    sub = g.op("Not", g.op("Equal", _band(g, h, n, -1, -1, dtype), scalar(g, 0, dtype)))
    after = g.op("Not", g.op("Equal", _neighbour(g, _band(g, h, n, -1, -1, dtype), n, 1, dtype), scalar(g, 0, dtype)))
    pairs = g.op("Cast", g.op("And", sub, after), to=ir.DataType.INT32)
    return g.op("Cast", g.op("ReduceSum", pairs, g.i64([-1]), keepdims=0), to=ir.DataType.BOOL)


def _fsign(g: GraphBuilder, x: ir.Value, dtype: Any) -> ir.Value:
    return sign_nonnegative(g, x, dtype)


def _hypot(g: GraphBuilder, x: ir.Value, y: ir.Value, dtype: Any) -> ir.Value:
    big = g.op("Max", g.op("Abs", x), g.op("Abs", y))
    safe = g.op("Where", g.op("Equal", big, scalar(g, 0, dtype)), scalar(g, 1, dtype), big)
    a, b = g.op("Div", x, safe), g.op("Div", y, safe)
    return g.op("Mul", big, g.op("Sqrt", g.op("Add", g.op("Mul", a, a), g.op("Mul", b, b))))


def _standard_rotation(g: GraphBuilder, a: ir.Value, b: ir.Value, c: ir.Value, d: ir.Value,
                       dtype: Any) -> tuple[ir.Value, ir.Value, ir.Value, ir.Value]:
    """dlanv2's rotation (cs, sn) for the 2x2 block [[a, b], [c, d]] with c != 0, and whether the
    rotated block is (triangular, a complex pair with equal diagonal)."""
    zero, one, half = scalar(g, 0, dtype), scalar(g, 1, dtype), scalar(g, 0.5, dtype)
    eps = float(np.finfo(dtype).eps)

    def safe(x: ir.Value) -> ir.Value:
        return g.op("Where", g.op("Equal", x, zero), one, x)

    b_zero = g.op("Equal", b, zero)
    opposite = g.op("Not", g.op("Equal", _fsign(g, b, dtype), _fsign(g, c, dtype)))
    already = g.op("And", g.op("Equal", a, d), opposite)
    p = g.op("Mul", half, g.op("Sub", a, d))
    bcmax = g.op("Max", g.op("Abs", b), g.op("Abs", c))
    bcmis = g.op("Mul", g.op("Min", g.op("Abs", b), g.op("Abs", c)), g.op("Mul", _fsign(g, b, dtype), _fsign(g, c, dtype)))
    scl = safe(g.op("Max", g.op("Abs", p), bcmax))
    z = g.op("Add", g.op("Mul", g.op("Div", p, scl), p), g.op("Mul", g.op("Div", bcmax, scl), bcmis))
    real_split = g.op("GreaterOrEqual", z, scalar(g, 4 * eps, dtype))
    # real eigenvalues: rotate to triangular directly
    zr = g.op("Add", p, g.op("Mul", _fsign(g, p, dtype), g.op("Mul", g.op("Sqrt", scl), g.op("Sqrt", g.op("Max", z, zero)))))
    tau_r = safe(_hypot(g, c, zr, dtype))
    cs_r, sn_r = g.op("Div", zr, tau_r), g.op("Div", c, tau_r)
    # complex or nearly equal: make the diagonal equal
    sigma = g.op("Add", b, c)
    tau_c = safe(_hypot(g, sigma, g.op("Sub", a, d), dtype))
    cs_c = g.op("Sqrt", g.op("Mul", half, g.op("Add", one, g.op("Div", g.op("Abs", sigma), tau_c))))
    sn_c = g.op("Mul", g.op("Neg", g.op("Div", p, g.op("Mul", tau_c, cs_c))), _fsign(g, sigma, dtype))
    aa = g.op("Add", g.op("Mul", a, cs_c), g.op("Mul", b, sn_c))
    bb = g.op("Add", g.op("Neg", g.op("Mul", a, sn_c)), g.op("Mul", b, cs_c))
    cc = g.op("Add", g.op("Mul", c, cs_c), g.op("Mul", d, sn_c))
    dd = g.op("Add", g.op("Neg", g.op("Mul", c, sn_c)), g.op("Mul", d, cs_c))
    b2 = g.op("Add", g.op("Mul", bb, cs_c), g.op("Mul", dd, sn_c))
    c2 = g.op("Add", g.op("Neg", g.op("Mul", aa, sn_c)), g.op("Mul", cc, cs_c))
    c2_zero, b2_zero = g.op("Equal", c2, zero), g.op("Equal", b2, zero)
    same = g.op("Equal", _fsign(g, b2, dtype), _fsign(g, c2, dtype))
    # nearly equal real eigenvalues after all: a second rotation splits them
    sab, sac = g.op("Sqrt", g.op("Abs", b2)), g.op("Sqrt", g.op("Abs", c2))
    tau2 = g.op("Reciprocal", g.op("Sqrt", safe(g.op("Abs", g.op("Add", b2, c2)))))
    cs1, sn1 = g.op("Mul", sab, tau2), g.op("Mul", sac, tau2)
    cs_s = g.op("Sub", g.op("Mul", cs_c, cs1), g.op("Mul", sn_c, sn1))
    sn_s = g.op("Add", g.op("Mul", cs_c, sn1), g.op("Mul", sn_c, cs1))
    split_again = g.op("And", g.op("Not", c2_zero), g.op("And", g.op("Not", b2_zero), same))
    swap = g.op("And", g.op("Not", c2_zero), b2_zero)
    cs = g.op("Where", split_again, cs_s, g.op("Where", swap, g.op("Neg", sn_c), cs_c))
    sn = g.op("Where", split_again, sn_s, g.op("Where", swap, cs_c, sn_c))
    pair_c = g.op("And", g.op("Not", c2_zero), g.op("And", g.op("Not", b2_zero), g.op("Not", same)))
    cs = g.op("Where", real_split, cs_r, cs)
    sn = g.op("Where", real_split, sn_r, sn)
    pair = g.op("And", g.op("Not", real_split), pair_c)
    cs = g.op("Where", already, one, g.op("Where", b_zero, zero, cs))
    sn = g.op("Where", already, zero, g.op("Where", b_zero, one, sn))
    pair = g.op("Or", already, g.op("And", g.op("Not", b_zero), pair))
    return cs, sn, g.op("Not", pair), pair


def _standardize(g: GraphBuilder, t: ir.Value, z: ir.Value, n: int, spec: Spec) -> tuple[ir.Value, ir.Value]:
    """Every 2x2 diagonal block to dlanv2's standard form, the rotation applied to T's rows and columns and Z's columns."""
    dtype = spec.dtype

    def block(b: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        m, q = state
        k1 = b.op("Add", k, scalar(b, 1, np.int64))
        row_k, row_k1 = take(b, m, k, -2), take(b, m, k1, -2)
        a, bb, c, d = take(b, row_k, k, -1), take(b, row_k, k1, -1), take(b, row_k1, k, -1), take(b, row_k1, k1, -1)
        present = b.op("Not", b.op("Equal", c, scalar(b, 0, dtype)))
        cs, sn, triangular, pair = _standard_rotation(b, a, bb, c, d, dtype)
        cs = b.op("Where", present, cs, scalar(b, 1, dtype))
        sn = b.op("Where", present, sn, scalar(b, 0, dtype))
        cs_, sn_ = b.op("Unsqueeze", cs, b.i64([-1])), b.op("Unsqueeze", sn, b.i64([-1]))

        def rotate(x: ir.Value, axis: int) -> ir.Value:
            first, second = take(b, x, k, axis), take(b, x, k1, axis)
            new_first = b.op("Add", b.op("Mul", cs_, first), b.op("Mul", sn_, second))
            new_second = b.op("Sub", b.op("Mul", cs_, second), b.op("Mul", sn_, first))
            return _put(b, _put(b, x, k, n, new_first, axis), k1, n, new_second, axis)

        m = rotate(rotate(m, -2), -1)
        q = rotate(q, -1)
        # exact structure: a split block's subdiagonal entry is 0, a pair's diagonal entries are equal
        at = b.op("Unsqueeze", b.op("And", present, triangular), b.i64([-2, -1]))
        m = b.op("Where", b.op("And", at, b.op("And", as_column(b, mask_eq(b, n, k1)), as_row(b, mask_eq(b, n, k)))), scalar(b, 0, dtype), m)
        row_k, row_k1 = take(b, m, k, -2), take(b, m, k1, -2)
        mean = b.op("Mul", b.op("Add", take(b, row_k, k, -1), take(b, row_k1, k1, -1)), scalar(b, 0.5, dtype))
        on_pair = b.op("Unsqueeze", b.op("And", present, pair), b.i64([-2, -1]))
        diagonal_spots = b.op("And", b.const(np.eye(n, dtype=bool)), as_column(b, b.op("Or", mask_eq(b, n, k), mask_eq(b, n, k1))))
        m = b.op("Where", b.op("And", on_pair, diagonal_spots), b.op("Unsqueeze", mean, b.i64([-2, -1])), m)
        return [m, q]

    t, z = counted_loop(g, n - 1, [t, z], [spec, spec], block, name="standardize_blocks")
    return t, z


def real_schur(g: GraphBuilder, a: ir.Value, n: int, spec: Spec) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(T, Z, converged [...]) with A = Z T Z^T, T in standard real Schur form."""
    dtype = spec.dtype
    (h, _), (z, _) = hessenberg_reduce(g, (a, zeros_like(g, a, dtype)), n, spec)
    if n == 1:
        return h, z, g.op("Expand", g.const(np.asarray(True)), batch_shape(g, h))
    if n > 2:
        h, z = _francis_sweeps(g, h, z, n, spec)
    converged = g.op("Not", _has_big_block(g, h, n, dtype))
    t, z = _standardize(g, h, z, n, spec)
    return t, z, converged


# ----------------------------------------------------------------------------- to complex triangular form (eig)
def real_eigenvalues(g: GraphBuilder, t: ir.Value, n: int, dtype: Any) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(real parts, imaginary parts, second-of-a-pair flags) [..., n] read off the standard form T, as
    dgeev does: a pair's block [[a, b], [c, a]] gives a +- i sqrt(|b|) sqrt(|c|), exact conjugates; a
    real eigenvalue has an imaginary part of exactly 0."""
    sub = _band(g, t, n, -1, -1, dtype)  # t[j, j-1]
    sup = _band(g, t, n, 1, -2, dtype)  # t[j-1, j]
    zero = scalar(g, 0, dtype)
    second = g.op("Not", g.op("Equal", sub, zero))
    first = g.op("Not", g.op("Equal", _neighbour(g, sub, n, 1, dtype), zero))
    omega_second = g.op("Mul", g.op("Sqrt", g.op("Abs", sup)), g.op("Sqrt", g.op("Abs", sub)))
    omega_first = _neighbour(g, omega_second, n, 1, dtype)
    imag = g.op("Where", first, omega_first, g.op("Where", second, g.op("Neg", omega_second), zero))
    return _band(g, t, n, 0, -1, dtype), imag, second


def complexify(g: GraphBuilder, t: ir.Value, z: ir.Value, n: int, spec: Spec,
               eigenvalues: tuple[ir.Value, ir.Value]) -> tuple[tuple[ir.Value, ir.Value], tuple[ir.Value, ir.Value]]:
    """The complex triangular Schur form from the real one (as SciPy's rsf2csf): each pair's block
    [[a, b], [c, a]] is triangularized by the unitary G = [[p, iq], [iq, p]] whose first column is its
    eigenvector (b, i omega) / r, applied as T <- G^H T G on rows/columns k, k+1 and Z <- Z G. Returns
    (T, Z) as (real, imaginary) pairs; T's diagonal is set to the eigenvalues exactly."""
    dtype = spec.dtype
    wr, wi = eigenvalues
    zeros = zeros_like(g, t, dtype)

    def block(b: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        tr, ti, zr, zi = state
        k1 = b.op("Add", k, scalar(b, 1, np.int64))
        zero, one = scalar(b, 0, dtype), scalar(b, 1, dtype)
        present = b.op("Not", b.op("Equal", take(b, take(b, tr, k1, -2), k, -1), zero))  # a pair starts at k
        above = take(b, take(b, tr, k, -2), k1, -1)  # b of the block (still real here)
        omega = take(b, wi, k, -1)
        r = b.op("Sqrt", b.op("Add", b.op("Mul", above, above), b.op("Mul", omega, omega)))
        safe_r = b.op("Where", present, r, one)
        p = b.op("Unsqueeze", b.op("Where", present, b.op("Div", above, safe_r), one), b.i64([-1]))
        q = b.op("Unsqueeze", b.op("Where", present, b.op("Div", omega, safe_r), zero), b.i64([-1]))

        def mix(first: tuple[ir.Value, ir.Value], second: tuple[ir.Value, ir.Value], sign: float) -> tuple[ir.Value, ir.Value]:
            """p first + sign i q second."""
            qs = b.op("Mul", q, scalar(b, sign, dtype))
            return (b.op("Sub", b.op("Mul", p, first[0]), b.op("Mul", qs, second[1])),
                    b.op("Add", b.op("Mul", p, first[1]), b.op("Mul", qs, second[0])))

        def apply(re: ir.Value, im: ir.Value, axis: int, sign: float) -> tuple[ir.Value, ir.Value]:
            line_k = (take(b, re, k, axis), take(b, im, k, axis))
            line_k1 = (take(b, re, k1, axis), take(b, im, k1, axis))
            new_k, new_k1 = mix(line_k, line_k1, sign), mix(line_k1, line_k, sign)
            for index, (new_re, new_im) in ((k, new_k), (k1, new_k1)):
                re, im = _put(b, re, index, n, new_re, axis), _put(b, im, index, n, new_im, axis)
            return re, im

        tr, ti = apply(tr, ti, -2, -1.0)  # G^H from the left: rows p r_k - iq r_k1, p r_k1 - iq r_k
        tr, ti = apply(tr, ti, -1, 1.0)  # G from the right: columns p c_k + iq c_k1, p c_k1 + iq c_k
        zr, zi = apply(zr, zi, -1, 1.0)
        spot = b.op("And", b.op("Unsqueeze", present, b.i64([-2, -1])),
                    b.op("And", as_column(b, mask_eq(b, n, k1)), as_row(b, mask_eq(b, n, k))))
        return [b.op("Where", spot, zero, tr), b.op("Where", spot, zero, ti), zr, zi]

    if n > 1:
        tr, ti, zr, zi = counted_loop(g, n - 1, [t, zeros, z, zeros], [spec] * 4, block, name="complex_blocks")
    else:
        tr, ti, zr, zi = t, zeros, z, zeros
    on_diagonal = g.const(np.eye(n, dtype=bool))
    tr = g.op("Where", on_diagonal, g.op("Unsqueeze", wr, g.i64([-1])), tr)
    ti = g.op("Where", on_diagonal, g.op("Unsqueeze", wi, g.i64([-1])), ti)
    return (tr, ti), (zr, zi)


# ----------------------------------------------------------------------------- the handler
def real_schur_invariants(a: jax.Array) -> Any:
    """Comparable quantities of a real Schur decomposition: Z T Z^T (= A), Z^T Z (= I), T below its
    subdiagonal (zeros), products of neighbouring subdiagonal entries (zeros: blocks are at most 2x2),
    and T's diagonal sorted (real eigenvalues and the real parts of the pairs)."""
    t, z = lax.linalg.schur(a)
    zt = jnp.swapaxes(z, -1, -2)
    sub = jnp.diagonal(t, offset=-1, axis1=-2, axis2=-1)
    return z @ t @ zt, zt @ z, jnp.tril(t, -2), sub[..., 1:] * sub[..., :-1], jnp.sort(jnp.diagonal(t, axis1=-2, axis2=-1), axis=-1)


def _pair_standard_form(a: jax.Array) -> Any:
    """A complex pair's 2x2 block: equal diagonal entries, off-diagonal product negative (-imag^2)."""
    t, _ = lax.linalg.schur(a)
    return (*real_schur_invariants(a), t[0, 0] - t[1, 1], t[0, 1] * t[1, 0])


_PAIR = np.array([[0.0, -2.0], [1.0, 0.5]], np.float32)
_SPLIT = np.array([[3.0, 1.0], [0.5, 2.0]], np.float32)
_CYCLIC = np.roll(np.eye(5, dtype=np.float32), 1, axis=0)


@handler("schur", onnx_ops=("Loop", "MatMul", "Where", "Sqrt", "Div", "GatherElements"), testcases=[
    Testcase("schur_1x1_real", lambda a: lax.linalg.schur(a), [np.array([[3.0]], np.float32)]),
    Testcase("schur_2x2_complex_pair_standard_form", _pair_standard_form, [_PAIR], rtol=1e-5, atol=1e-5),
    Testcase("schur_2x2_real_split", real_schur_invariants, [_SPLIT], rtol=1e-5, atol=1e-5),
    Testcase("schur_real_4x4", real_schur_invariants, [(4, 4)], rtol=1e-4, atol=2e-5),
    Testcase("schur_real_8x8", real_schur_invariants, [(8, 8)], rtol=1e-4, atol=5e-5),
    Testcase("schur_real_batched_symbolic", real_schur_invariants, [("B", 5, 5)], rtol=1e-4, atol=2e-5),
    Testcase("schur_real_cyclic_permutation", real_schur_invariants, [_CYCLIC], rtol=1e-4, atol=2e-5),
    Testcase("schur_real_no_vectors", lambda a: jnp.sort(jnp.diagonal(lax.linalg.schur(a, compute_schur_vectors=False)[0])),
             [(6, 6)], rtol=1e-4, atol=2e-5),
    Testcase("schur_real_f64", real_schur_invariants, [jax.ShapeDtypeStruct((6, 6), np.float64)], rtol=1e-9, atol=1e-10, x64=True),
])
def _schur_real(ctx: LoweringContext, x: ir.Value, *, compute_schur_vectors: bool, sort_eig_vals: bool,
                select_callable: Any) -> tuple[ir.Value, ...]:
    """(T, Z if compute_schur_vectors) of a real matrix: A = Z T Z^T, T quasi-triangular (dgees, unsorted).

    Params: compute_schur_vectors, sort_eig_vals (must be False: ordering by a Python predicate
    cannot be exported), select_callable (the predicate; must be None).
    """
    check_unsorted(sort_eig_vals, select_callable)
    aval = ctx.avals_in[0]
    n = static_size(aval.shape[-1], "matrix size", "schur")
    spec = Spec.of(aval)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        (a, _), work = working(g, inputs[0], False, spec)
        t, z, ok = real_schur(g, a, n, work)
        outputs = [t, z] if compute_schur_vectors else [t]
        flag = g.op("Unsqueeze", ok, g.i64([-2, -1]))
        outputs = [g.op("Where", flag, value, scalar(g, np.nan, work.dtype)) for value in outputs]
        if work.dtype != spec.dtype:
            outputs = [g.op("Cast", value, to=ir.DataType.FLOAT) for value in outputs]
        return outputs

    return local_function(ctx, "RealSchur", [x], build, params=(bool(compute_schur_vectors),), input_names=["a"])
