"""Matrix factorizations: cholesky, lu (+ lu_pivots_to_permutation), qr / geqrf / householder_product /
ormqr (Householder), hessenberg, tridiagonal, cholesky_update, symmetric_product.

Each is an ONNX local function (domain ``workbench.linalg``) holding one Loop over the columns
(see ``linalg_kit.py``); batch axes, static or symbolic, ride along. Conventions follow LAPACK,
which JAX calls on CPU, so the outputs are the same matrices, not merely equivalent ones:

- ``cholesky``: column by column (``L[:, j] = (A[:, j] - L L[j, :]^T) / sqrt(...)``), reading only
  the lower triangle; a matrix that is not positive definite comes out all NaN, as JAX reports
  ``potrf`` failures. Accuracy: float32 ~1e-6 relative to ||A|| on well-conditioned matrices.
- ``lu``: partial pivoting by the first largest |entry| of the column (LAPACK's ``idamax``), rows
  swapped exactly (GatherElements, no arithmetic), a zero pivot leaves its column unscaled as
  ``getrf`` does. Returns ``lu``, ``pivots`` and ``permutation`` (int32). The same pivots as JAX
  unless two candidates tie to rounding (then both factorizations are valid, but different).
- Householder reflectors (``qr``, ``geqrf``, ``hessenberg``, ``tridiagonal``) use LAPACK's
  ``dlarfg`` convention: ``beta = -sign(alpha) * ||x||`` with sign(0) = +1, ``tau = 0`` when the
  part below the pivot is already zero. So Q and R have JAX's signs (R's diagonal may be negative),
  not merely up to sign. ``qr(pivoting=True)`` (column-pivoted ``geqp3``) is refused.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import GraphBuilder
from workbench.jax_to_onnx.handlers.linalg_kit import (
    Spec,
    arange,
    as_column,
    as_row,
    batch_shape,
    batched_eye,
    counted_loop,
    diagonal,
    leading_shape,
    local_function,
    mask_cmp,
    mask_eq,
    nan_unless,
    scalar,
    sign_nonnegative,
    static_size,
    symmetric_from,
    take,
    take_keep,
    take_per_batch,
)
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler


def _f64(*shape: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, np.float64)


def _spd(a: jax.Array) -> jax.Array:
    """A symmetric positive-definite matrix built from any square ``a``."""
    n = a.shape[-1]
    return a @ jnp.swapaxes(a, -1, -2) + n * jnp.eye(n, dtype=a.dtype)


# ----------------------------------------------------------------------------- cholesky
_NOT_SPD = np.array([[4.0, 2.0, 0.0], [2.0, -3.0, 1.0], [0.0, 1.0, 2.0]], np.float32)


@handler("cholesky", onnx_ops=("Loop", "MatMul", "Gather", "Sqrt", "Div", "Where"), testcases=[
    Testcase("cholesky", lambda a: jnp.linalg.cholesky(_spd(a)), [(5, 5)], rtol=1e-5, atol=1e-5),
    Testcase("cholesky_batched_symbolic", lambda a: jnp.linalg.cholesky(_spd(a)), [("B", 4, 4)], rtol=1e-5, atol=1e-5),
    Testcase("cholesky_not_positive_definite_nan", jnp.linalg.cholesky, [_NOT_SPD]),
    Testcase("cho_solve_scipy", lambda a, b: jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(_spd(a)), b),
             [(4, 4), (4, 2)], rtol=1e-4, atol=1e-5),
    Testcase("cholesky_f64", lambda a: jnp.linalg.cholesky(_spd(a)), [_f64(6, 6)], rtol=1e-12, atol=1e-12, x64=True),
])
def _cholesky(ctx: LoweringContext, x: ir.Value) -> ir.Value:
    """Lower Cholesky factor of the lower triangle of ``x`` (no params); all-NaN where it fails."""
    aval = ctx.avals_in[0]
    n = static_size(aval.shape[-1], "matrix size", "cholesky")
    spec = Spec.of(aval)
    dtype = spec.dtype

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        (a,) = inputs
        zero = scalar(g, 0, dtype)
        l0 = g.op("Expand", zero, g.op("Shape", a))

        def column(body: GraphBuilder, j: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
            (lower,) = state
            a_col = take(body, a, j, -1)  # [..., n]
            l_row = take(body, lower, j, -2)  # [..., n]: L[j, <j], zeros from j on
            v = body.op("Sub", a_col, body.op("Squeeze", body.op("MatMul", lower, as_column(body, l_row)), body.i64([-1])))
            root = body.op("Sqrt", take(body, v, j, -1))
            col = body.op("Div", v, body.op("Unsqueeze", root, body.i64([-1])))
            col = body.op("Where", mask_cmp(body, n, "GreaterOrEqual", j), col, zero)
            return [body.op("Where", as_row(body, mask_eq(body, n, j)), as_column(body, col), lower)]

        (lower,) = counted_loop(g, n, [l0], [spec], column, name="cholesky_columns")
        failed = g.op("Not", g.op("Greater", diagonal(g, lower, n, dtype), zero))  # NaN, zero or negative pivot
        failures = g.op("ReduceSum", g.op("Cast", failed, to=ir.DataType.INT32), g.i64([-1]), keepdims=0)
        return [nan_unless(g, g.op("Equal", failures, scalar(g, 0, np.int32)), lower, dtype, 2)]

    return local_function(ctx, "Cholesky", [x], build, input_names=["a"])[0]


# ----------------------------------------------------------------------------- lu
def _lu_outputs(a: jax.Array) -> Any:
    return lax.linalg.lu(a)


@handler("lu", onnx_ops=("Loop", "ArgMax", "GatherElements", "Where", "Div", "Mul", "Sub"), testcases=[
    Testcase("lu_square", _lu_outputs, [(5, 5)], rtol=1e-5, atol=1e-5),
    Testcase("lu_wide", _lu_outputs, [(3, 5)], rtol=1e-5, atol=1e-5),
    Testcase("lu_tall_batched_symbolic", _lu_outputs, [("B", 5, 3)], rtol=1e-5, atol=1e-5),
    Testcase("lu_singular_zero_pivot", _lu_outputs, [np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 4.0], [0.0, 5.0, 7.0]], np.float32)]),
    Testcase("lu_factor_scipy", lambda a: jax.scipy.linalg.lu_factor(a), [(6, 6)], rtol=1e-5, atol=1e-5),
    Testcase("scipy_lu_plu", lambda a: jax.scipy.linalg.lu(a), [(4, 4)], rtol=1e-5, atol=1e-5),
    Testcase("linalg_det", jnp.linalg.det, [("B", 5, 5)], rtol=1e-4, atol=1e-4),
    Testcase("linalg_slogdet", jnp.linalg.slogdet, [(6, 6)], rtol=1e-4, atol=1e-4),
    Testcase("lu_f64", _lu_outputs, [_f64(6, 6)], rtol=1e-12, atol=1e-12, x64=True),
])
def _lu(ctx: LoweringContext, x: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """``P A = L U`` with partial pivoting (no params): (lu, pivots, permutation)."""
    aval = ctx.avals_in[0]
    m = static_size(aval.shape[-2], "row count", "lu")
    n = static_size(aval.shape[-1], "column count", "lu")
    spec = Spec.of(aval)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        (a,) = inputs
        lu, pivots, permutation = lu_decompose(g, a, m, n, spec)
        return [lu, g.op("Cast", pivots, to=ir.DataType.INT32), g.op("Cast", permutation, to=ir.DataType.INT32)]

    return local_function(ctx, "LU", [x], build, input_names=["a"])


def lu_decompose(g: GraphBuilder, a: ir.Value, m: int, n: int, spec: Spec) -> tuple[ir.Value, ir.Value, ir.Value]:
    """getrf on [..., m, n]: (packed L\\U, int64 pivots [..., min(m, n)], int64 permutation [..., m])."""
    dtype = spec.dtype
    steps = min(m, n)
    zero = scalar(g, 0, dtype)
    batch = batch_shape(g, a)
    permutation0 = g.op("Expand", arange(g, m), g.op("Concat", batch, g.i64([m]), axis=0))
    pivots0 = g.op("Expand", g.const(np.zeros(steps, np.int64)), g.op("Concat", batch, g.i64([steps]), axis=0))
    row_index_shape = g.op("Concat", batch, g.i64([1, n]), axis=0)
    int_spec = spec.batch(m, dtype=np.int64)
    pivot_spec = spec.batch(steps, dtype=np.int64)

    def step(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        lu, pivots, permutation = state
        column = take(body, lu, k, -1)  # [..., m]
        candidates = body.op("Where", mask_cmp(body, m, "GreaterOrEqual", k), body.op("Abs", column), scalar(body, -1, dtype))
        p = body.op("ArgMax", candidates, axis=-1, keepdims=1, select_last_index=0)  # [..., 1], first of the largest
        at_k, at_p = mask_eq(body, m, k), body.op("Equal", arange(body, m), p)  # [m], [..., m]
        # swap rows k and p (an exact copy: GatherElements picks, Where places)
        row_k = take_keep(body, lu, k, -2)  # [..., 1, n]
        row_p = take_per_batch(body, lu, body.op("Expand", body.op("Unsqueeze", p, body.i64([-1])), row_index_shape), -2)
        lu = body.op("Where", as_column(body, at_k), row_p, body.op("Where", as_column(body, at_p), row_k, lu))
        perm_k = take_keep(body, permutation, k, -1)
        perm_p = take_per_batch(body, permutation, p, -1)
        permutation = body.op("Where", at_k, perm_p, body.op("Where", at_p, perm_k, permutation))
        pivots = body.op("Where", mask_eq(body, steps, k), p, pivots)
        # scale the column below the pivot (left alone when the pivot is zero, as getrf does)
        pivot_row = take(body, lu, k, -2)  # [..., n]
        pivot = body.op("Unsqueeze", take(body, pivot_row, k, -1), body.i64([-1]))  # [..., 1]
        column = take(body, lu, k, -1)
        below = body.op("And", mask_cmp(body, m, "Greater", k), body.op("Not", body.op("Equal", pivot, zero)))
        column = body.op("Where", below, body.op("Div", column, pivot), column)
        lu = body.op("Where", as_row(body, mask_eq(body, n, k)), as_column(body, column), lu)
        # rank-1 update of the trailing block
        trailing = body.op("And", as_column(body, mask_cmp(body, m, "Greater", k)), as_row(body, mask_cmp(body, n, "Greater", k)))
        # the outer product as a MatMul over a length-1 axis: exact, and ONNX's data propagation
        # (which shape inference runs) mistakes a Mul of two unsqueezed vectors for 1-D shape arithmetic
        update = body.op("MatMul", as_column(body, column), as_row(body, pivot_row))
        lu = body.op("Sub", lu, body.op("Where", trailing, update, zero))
        return [lu, pivots, permutation]

    lu, pivots, permutation = counted_loop(
        g, steps, [a, pivots0, permutation0], [spec, pivot_spec, int_spec], step, name="lu_columns"
    )
    return lu, pivots, permutation


# ----------------------------------------------------------------------------- lu_pivots_to_permutation
@handler("lu_pivots_to_permutation", onnx_ops=("Loop", "GatherElements", "Where"), testcases=[
    Testcase("lu_pivots_to_permutation", lambda p: lax.linalg.lu_pivots_to_permutation(p, 6),
             [np.array([[2, 3, 2, 5], [0, 1, 4, 4]], np.int32)]),
    Testcase("lu_pivots_to_permutation_from_lu", lambda a: lax.linalg.lu_pivots_to_permutation(lax.linalg.lu(a)[1], 5),
             [("B", 5, 4)]),
])
def _lu_pivots_to_permutation(ctx: LoweringContext, pivots: ir.Value, *, permutation_size: int) -> ir.Value:
    """Apply the row swaps ``pivots`` [..., k] to ``arange(permutation_size)``. Params: permutation_size."""
    aval = ctx.avals_in[0]
    k = static_size(aval.shape[-1], "pivot count", "lu_pivots_to_permutation")
    size = int(permutation_size)
    spec = Spec((*aval.shape[:-1], size), np.dtype(np.int64))

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        swaps = g.op("Cast", inputs[0], to=ir.DataType.INT64)
        batch = leading_shape(g, swaps, 1)
        permutation0 = g.op("Expand", arange(g, size), g.op("Concat", batch, g.i64([size]), axis=0))

        def step(body: GraphBuilder, i: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
            (permutation,) = state
            j = take_keep(body, swaps, i, -1)  # [..., 1]
            at_i, at_j = mask_eq(body, size, i), body.op("Equal", arange(body, size), j)
            value_i, value_j = take_keep(body, permutation, i, -1), take_per_batch(body, permutation, j, -1)
            return [body.op("Where", at_i, value_j, body.op("Where", at_j, value_i, permutation))]

        (permutation,) = counted_loop(g, k, [permutation0], [spec], step, name="apply_swaps")
        return [g.op("Cast", permutation, to=ir.DataType.INT32)]

    return local_function(ctx, "PivotsToPermutation", [pivots], build, params=(size,), input_names=["pivots"])[0]


# ----------------------------------------------------------------------------- Householder reflectors
def householder(
    g: GraphBuilder, x: ir.Value, pivot: ir.Value, m: int, dtype: Any
) -> tuple[ir.Value, ir.Value, ir.Value]:
    """LAPACK's dlarfg on the column ``x`` [..., m] from position ``pivot`` down: (v [..., m], tau [...], beta [...]).

    ``H = I - tau v v^T`` maps x[pivot:] to beta e_pivot; v is 0 above ``pivot``, 1 at it. With
    alpha = x[pivot] and ||x_below||: beta = -sign(alpha) * ||x[pivot:]|| (sign(0) = +1), tau =
    (beta - alpha) / beta; when x_below is already zero, tau = 0 and beta = alpha (H = I).
    """
    zero, one = scalar(g, 0, dtype), scalar(g, 1, dtype)
    below_mask = mask_cmp(g, m, "Greater", pivot)
    alpha = take(g, x, pivot, -1)  # [...]
    below = g.op("Where", below_mask, x, zero)
    below_sq = g.op("ReduceSum", g.op("Mul", below, below), g.i64([-1]), keepdims=0)
    untouched = g.op("Equal", below_sq, zero)
    norm = g.op("Sqrt", g.op("Add", g.op("Mul", alpha, alpha), below_sq))
    beta = g.op("Neg", g.op("Mul", sign_nonnegative(g, alpha, dtype), norm))
    tau = g.op("Where", untouched, zero, g.op("Div", g.op("Sub", beta, alpha), beta))
    scale = g.op("Where", untouched, one, g.op("Sub", alpha, beta))
    v = g.op("Where", below_mask, g.op("Div", x, g.op("Unsqueeze", scale, g.i64([-1]))), zero)
    v = g.op("Where", mask_eq(g, m, pivot), one, v)
    return v, tau, g.op("Where", untouched, alpha, beta)


def reflect_left(
    g: GraphBuilder, v: ir.Value, tau: ir.Value, a: ir.Value, dtype: Any, columns: ir.Value | None = None
) -> ir.Value:
    """(I - tau v v^T) a, on the columns where the bool mask ``columns`` ([n]) holds (all when None)."""
    update = g.op("MatMul", as_column(g, v), g.op("MatMul", as_row(g, v), a))  # v (v^T a)
    update = g.op("Mul", update, g.op("Unsqueeze", tau, g.i64([-1, -2])))
    if columns is not None:
        update = g.op("Where", as_row(g, columns), update, scalar(g, 0, dtype))
    return g.op("Sub", a, update)


def reflect_right(g: GraphBuilder, v: ir.Value, tau: ir.Value, a: ir.Value) -> ir.Value:
    """a (I - tau v v^T)."""
    update = g.op("MatMul", g.op("MatMul", a, as_column(g, v)), as_row(g, v))  # (a v) v^T
    return g.op("Sub", a, g.op("Mul", update, g.op("Unsqueeze", tau, g.i64([-1, -2]))))


def _geqrf_loop(g: GraphBuilder, a: ir.Value, m: int, n: int, spec: Spec, *, accumulate_q: bool, pack: bool) -> list[ir.Value]:
    """Householder QR of a [..., m, n]: [R (reflectors below the diagonal when ``pack``), taus, Q if accumulated]."""
    dtype = spec.dtype
    steps = min(m, n)
    zero = scalar(g, 0, dtype)
    taus0 = g.op("Expand", g.const(np.zeros(steps, dtype)), g.op("Concat", batch_shape(g, a), g.i64([steps]), axis=0))
    carried = [a, taus0]
    specs = [spec, spec.batch(steps)]
    if accumulate_q:
        carried.append(batched_eye(g, a, m, m, dtype))
        specs.append(spec.batch(m, m))

    def step(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        r, taus = state[:2]
        column = take(body, r, k, -1)
        v, tau, beta = householder(body, column, k, m, dtype)
        r = reflect_left(body, v, tau, r, dtype, mask_cmp(body, n, "Greater", k))
        below = mask_cmp(body, m, "Greater", k)
        new_column = body.op("Where", below, v if pack else zero, column)
        new_column = body.op("Where", mask_eq(body, m, k), body.op("Unsqueeze", beta, body.i64([-1])), new_column)
        r = body.op("Where", as_row(body, mask_eq(body, n, k)), as_column(body, new_column), r)
        taus = body.op("Where", mask_eq(body, steps, k), body.op("Unsqueeze", tau, body.i64([-1])), taus)
        if not accumulate_q:
            return [r, taus]
        return [r, taus, reflect_right(body, v, tau, state[2])]

    return counted_loop(g, steps, carried, specs, step, name="householder_columns")


def _qr_outputs(full: bool) -> Any:
    return lambda a: jnp.linalg.qr(a, mode="complete" if full else "reduced")


@handler("qr", onnx_ops=("Loop", "MatMul", "ReduceSum", "Sqrt", "Where", "Slice"), testcases=[
    Testcase("qr_reduced_tall", _qr_outputs(False), [(6, 4)], rtol=1e-4, atol=1e-5),
    Testcase("qr_complete_tall", _qr_outputs(True), [(5, 3)], rtol=1e-4, atol=1e-5),
    Testcase("qr_wide", _qr_outputs(False), [(3, 5)], rtol=1e-4, atol=1e-5),
    Testcase("qr_batched_symbolic", _qr_outputs(False), [("B", 4, 4)], rtol=1e-4, atol=1e-5),
    Testcase("qr_rank_deficient_column", _qr_outputs(True), [np.array([[1.0, 0.0, 2.0], [2.0, 0.0, 1.0], [2.0, 0.0, -1.0]], np.float32)],
             rtol=1e-5, atol=1e-5),
    Testcase("qr_f64", _qr_outputs(False), [_f64(6, 4)], rtol=1e-12, atol=1e-12, x64=True),
])
def _qr(ctx: LoweringContext, x: ir.Value, *, pivoting: bool, full_matrices: bool, use_magma: Any) -> tuple[ir.Value, ...]:
    """Householder QR (geqrf + orgqr). Params: full_matrices (Q m×m and R m×n, else m×k and k×n,
    k = min(m, n)), pivoting (column pivoting, refused), use_magma (GPU only)."""
    del use_magma
    if pivoting:
        raise ConversionError("qr(pivoting=True) (column-pivoted QR, LAPACK geqp3) is not supported; use pivoting=False.")
    aval = ctx.avals_in[0]
    m = static_size(aval.shape[-2], "row count", "qr")
    n = static_size(aval.shape[-1], "column count", "qr")
    spec = Spec.of(aval)
    k = min(m, n)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        r, _, q = _geqrf_loop(g, inputs[0], m, n, spec, accumulate_q=True, pack=False)
        if not full_matrices and k < m:
            q = g.op("Slice", q, g.i64([0]), g.i64([k]), g.i64([-1]))
            r = g.op("Slice", r, g.i64([0]), g.i64([k]), g.i64([-2]))
        return [q, r]

    return local_function(ctx, "QR", [x], build, params=(full_matrices,), input_names=["a"])


@handler("geqrf", onnx_ops=("Loop", "MatMul", "ReduceSum", "Sqrt", "Where"), testcases=[
    Testcase("qr_raw", lambda a: jnp.linalg.qr(a, mode="raw"), [(5, 3)], rtol=1e-4, atol=1e-5),
    Testcase("qr_raw_wide_batched", lambda a: jnp.linalg.qr(a, mode="raw"), [("B", 3, 4)], rtol=1e-4, atol=1e-5),
])
def _geqrf(ctx: LoweringContext, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """LAPACK geqrf (no params): R on and above the diagonal, the reflectors below it, and their taus."""
    aval = ctx.avals_in[0]
    m = static_size(aval.shape[-2], "row count", "geqrf")
    n = static_size(aval.shape[-1], "column count", "geqrf")

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        return _geqrf_loop(g, inputs[0], m, n, Spec.of(aval), accumulate_q=False, pack=True)

    return local_function(ctx, "Geqrf", [x], build, input_names=["a"])


def _reflector(g: GraphBuilder, a: ir.Value, i: ir.Value, m: int, dtype: Any, *, offset: int = 0) -> ir.Value:
    """The i-th stored reflector: column i of ``a`` below row i + offset, 1 at that row, 0 above."""
    pivot = i if offset == 0 else g.op("Add", i, scalar(g, offset, np.int64))
    column = take(g, a, i, -1)
    v = g.op("Where", mask_cmp(g, m, "Greater", pivot), column, scalar(g, 0, dtype))
    return g.op("Where", mask_eq(g, m, pivot), scalar(g, 1, dtype), v)


def _stored_qr(a: jax.Array) -> Any:
    packed, taus = jnp.linalg.qr(a, mode="raw")
    return jnp.swapaxes(packed, -1, -2), taus


@handler("householder_product", onnx_ops=("Loop", "MatMul", "Where"), testcases=[
    Testcase("householder_product", lambda a: lax.linalg.householder_product(*_stored_qr(a)), [(5, 3)], rtol=1e-4, atol=1e-5),
    Testcase("householder_product_batched_symbolic", lambda a: lax.linalg.householder_product(*_stored_qr(a)),
             [("B", 4, 4)], rtol=1e-4, atol=1e-5),
])
def _householder_product(ctx: LoweringContext, a: ir.Value, taus: ir.Value) -> ir.Value:
    """orgqr (no params): the first n columns of H_0 H_1 ... H_{k-1}, applied to the identity right to left."""
    aval, taus_aval = ctx.avals_in
    m = static_size(aval.shape[-2], "row count", "householder_product")
    n = static_size(aval.shape[-1], "column count", "householder_product")
    k = static_size(taus_aval.shape[-1], "reflector count", "householder_product")
    spec = Spec.of(aval)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        reflectors, factors = inputs

        def step(body: GraphBuilder, j: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
            i = body.op("Sub", scalar(body, k - 1, np.int64), j)
            v = _reflector(body, reflectors, i, m, spec.dtype)
            return [reflect_left(body, v, take(body, factors, i, -1), state[0], spec.dtype)]

        return counted_loop(g, k, [batched_eye(g, reflectors, m, n, spec.dtype)], [spec], step, name="apply_reflectors")

    return local_function(ctx, "HouseholderProduct", [a, taus], build, input_names=["a", "taus"])[0]


def _ormqr_case(left: bool, transpose: bool) -> Any:
    def fn(a: jax.Array, c: jax.Array) -> jax.Array:
        packed, taus = _stored_qr(a)
        return lax.linalg.ormqr(packed, taus, c, left=left, transpose=transpose)
    return fn


@handler("ormqr", onnx_ops=("Loop", "MatMul", "Where"), testcases=[
    Testcase("ormqr_left", _ormqr_case(True, False), [(5, 3), (5, 2)], rtol=1e-4, atol=1e-5),
    Testcase("ormqr_left_transposed", _ormqr_case(True, True), [(5, 3), (5, 2)], rtol=1e-4, atol=1e-5),
    Testcase("ormqr_right", _ormqr_case(False, False), [(4, 4), (2, 4)], rtol=1e-4, atol=1e-5),
    Testcase("ormqr_right_transposed_batched", _ormqr_case(False, True), [("B", 4, 3), ("B", 2, 4)], rtol=1e-4, atol=1e-5),
])
def _ormqr(ctx: LoweringContext, a: ir.Value, taus: ir.Value, c: ir.Value, *, left: bool, transpose: bool) -> ir.Value:
    """Q c, Q^T c, c Q or c Q^T without forming Q. Params: left, transpose (as JAX's own lowering)."""
    aval, taus_aval, c_aval = ctx.avals_in
    m = static_size(aval.shape[-2], "row count", "ormqr")
    k = static_size(taus_aval.shape[-1], "reflector count", "ormqr")
    spec = Spec.of(c_aval)
    reverse = left != transpose

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        reflectors, factors, matrix = inputs

        def step(body: GraphBuilder, j: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
            i = body.op("Sub", scalar(body, k - 1, np.int64), j) if reverse else j
            v = _reflector(body, reflectors, i, m, spec.dtype)
            tau = take(body, factors, i, -1)
            return [reflect_left(body, v, tau, state[0], spec.dtype) if left else reflect_right(body, v, tau, state[0])]

        return counted_loop(g, k, [matrix], [spec], step, name="apply_reflectors")

    return local_function(ctx, "Ormqr", [a, taus, c], build, params=(left, transpose), input_names=["a", "taus", "c"])[0]


# ----------------------------------------------------------------------------- hessenberg / tridiagonal
def _hessenberg_loop(g: GraphBuilder, a: ir.Value, n: int, spec: Spec) -> tuple[ir.Value, ir.Value]:
    """gehrd: H_k (k = 0..n-2) zeroes column k below row k+1; A <- H A H, reflectors stored below the subdiagonal."""
    dtype = spec.dtype
    taus0 = g.op("Expand", g.const(np.zeros(n - 1, dtype)), g.op("Concat", batch_shape(g, a), g.i64([n - 1]), axis=0))

    def step(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        h, taus = state
        pivot = body.op("Add", k, scalar(body, 1, np.int64))
        column = take(body, h, k, -1)
        v, tau, beta = householder(body, column, pivot, n, dtype)
        h = reflect_right(body, v, tau, h)
        h = reflect_left(body, v, tau, h, dtype, mask_cmp(body, n, "Greater", k))
        new_column = body.op("Where", mask_cmp(body, n, "Greater", pivot), v, column)
        new_column = body.op("Where", mask_eq(body, n, pivot), body.op("Unsqueeze", beta, body.i64([-1])), new_column)
        h = body.op("Where", as_row(body, mask_eq(body, n, k)), as_column(body, new_column), h)
        taus = body.op("Where", mask_eq(body, n - 1, k), body.op("Unsqueeze", tau, body.i64([-1])), taus)
        return [h, taus]

    h, taus = counted_loop(g, n - 1, [a, taus0], [spec, spec.batch(n - 1)], step, name="hessenberg_columns")
    return h, taus


@handler("hessenberg", onnx_ops=("Loop", "MatMul", "ReduceSum", "Sqrt", "Where"), testcases=[
    Testcase("hessenberg", lambda a: lax.linalg.hessenberg(a), [(5, 5)], rtol=1e-4, atol=1e-5),
    Testcase("hessenberg_scipy_with_q", lambda a: jax.scipy.linalg.hessenberg(a, calc_q=True), [(4, 4)], rtol=1e-4, atol=1e-5),
    Testcase("hessenberg_batched_symbolic", lambda a: lax.linalg.hessenberg(a), [("B", 4, 4)], rtol=1e-4, atol=1e-5),
])
def _hessenberg(ctx: LoweringContext, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Upper Hessenberg form with the reflectors below the subdiagonal, and the taus (no params)."""
    aval = ctx.avals_in[0]
    n = static_size(aval.shape[-1], "matrix size", "hessenberg")

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        return list(_hessenberg_loop(g, inputs[0], n, Spec.of(aval)))

    return local_function(ctx, "Hessenberg", [x], build, input_names=["a"])


@handler("tridiagonal", onnx_ops=("Loop", "MatMul", "ReduceSum", "Sqrt", "Where"), testcases=[
    Testcase("tridiagonal_lower", lambda a: lax.linalg.tridiagonal(a, lower=True), [(5, 5)], rtol=1e-4, atol=1e-5),
    Testcase("tridiagonal_upper", lambda a: lax.linalg.tridiagonal(a, lower=False), [(5, 5)], rtol=1e-4, atol=1e-5),
    Testcase("tridiagonal_batched_symbolic", lambda a: lax.linalg.tridiagonal(a), [("B", 4, 4)], rtol=1e-4, atol=1e-5),
])
def _tridiagonal(ctx: LoweringContext, x: ir.Value, *, lower: bool) -> tuple[ir.Value, ...]:
    """sytrd: Q^T A Q = T for the symmetric matrix read from the ``lower`` (or upper) triangle.

    Returns (a, d, e, taus) as LAPACK: ``lower`` keeps T's diagonal and subdiagonal and the
    reflectors below it, and leaves the other triangle as it was; ``lower=False`` is the mirror
    image (the reduction runs from the last row up), computed as the lower reduction of the
    matrix with rows and columns reversed.
    """
    aval = ctx.avals_in[0]
    n = static_size(aval.shape[-1], "matrix size", "tridiagonal")
    spec = Spec.of(aval)
    rank = len(aval.shape)
    dtype = spec.dtype

    def reverse(g: GraphBuilder, value: ir.Value, axes: list[int]) -> ir.Value:
        size = len(axes)
        return g.op("Slice", value, g.i64([-1] * size), g.i64([np.iinfo(np.int64).min] * size), g.i64(axes), g.i64([-1] * size))

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        (a,) = inputs
        source = a if lower else reverse(g, a, [-2, -1])
        symmetric = symmetric_from(g, source, n, dtype, rank, lower=True)
        h, taus = _hessenberg_loop(g, symmetric, n, spec)
        diag = diagonal(g, h, n, dtype)
        sub = g.op("ReduceSum", g.op("Mul", h, g.const(np.eye(n, k=-1, dtype=dtype))), g.i64([-1]), keepdims=0)
        sub = g.op("Slice", sub, g.i64([1]), g.i64([n]), g.i64([-1]))
        kept = g.op("Where", g.const(np.tril(np.ones((n, n), bool))), h, source)  # the other triangle as given
        if lower:
            return [kept, diag, sub, taus]
        return [reverse(g, kept, [-2, -1]), reverse(g, diag, [-1]), reverse(g, sub, [-1]), reverse(g, taus, [-1])]

    return local_function(ctx, "Tridiagonal", [x], build, params=(lower,), input_names=["a"])


# ----------------------------------------------------------------------------- cholesky_update / symmetric_product
def _cholesky_update_case(a: jax.Array, w: jax.Array) -> jax.Array:
    r = jnp.linalg.cholesky(_spd(a)).T
    return lax.linalg.cholesky_update(r, w)


@handler("cholesky_update", onnx_ops=("Loop", "Gather", "Where", "Sqrt", "Div"), testcases=[
    Testcase("cholesky_update", _cholesky_update_case, [(5, 5), (5,)], rtol=1e-4, atol=1e-5),
    Testcase("cholesky_update_zero_entries", _cholesky_update_case,
             [(4, 4), np.array([0.0, 1.5, 0.0, -2.0], np.float32)], rtol=1e-4, atol=1e-5),
])
def _cholesky_update(ctx: LoweringContext, r: ir.Value, w: ir.Value) -> ir.Value:
    """R' with R'^T R' = R^T R + w w^T (no params): JAX's own Givens sweep (drotg/drot per row), unbatched."""
    aval = ctx.avals_in[0]
    n = static_size(aval.shape[-1], "matrix size", "cholesky_update")
    spec = Spec.of(aval)
    dtype = spec.dtype

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        def step(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
            matrix, z = state
            row = take(body, matrix, k, -2)
            x, y = take(body, row, k, -1), take(body, z, k, -1)
            ax, ay = body.op("Abs", x), body.op("Abs", y)
            denominator = body.op("Where", body.op("Greater", ax, ay), ax, ay)
            xs, ys = body.op("Div", x, denominator), body.op("Div", y, denominator)
            rh = body.op("Reciprocal", body.op("Sqrt", body.op("Add", body.op("Mul", xs, xs), body.op("Mul", ys, ys))))
            y_zero = body.op("Equal", y, scalar(body, 0, dtype))
            c = body.op("Where", y_zero, scalar(body, 1, dtype), body.op("Mul", xs, rh))
            s = body.op("Where", y_zero, scalar(body, 0, dtype), body.op("Neg", body.op("Mul", ys, rh)))
            new_row = body.op("Sub", body.op("Mul", c, row), body.op("Mul", s, z))
            z = body.op("Add", body.op("Mul", c, z), body.op("Mul", s, row))
            return [body.op("Where", as_column(body, mask_eq(body, n, k)), as_row(body, new_row), matrix), z]

        matrix, _ = counted_loop(g, n, list(inputs), [spec, Spec((n,), dtype)], step, name="givens_rows")
        return [matrix]

    return local_function(ctx, "CholeskyUpdate", [r, w], build, input_names=["r", "w"])[0]


@handler("symmetric_product", onnx_ops=("MatMul", "Transpose", "Mul", "Add"), testcases=[
    Testcase("symmetric_product", lambda a, c: lax.linalg.symmetric_product(a, c, alpha=0.5, beta=2.0), [(4, 3), (4, 4)],
             rtol=1e-5, atol=1e-5),
    Testcase("symmetric_product_symmetrized_batched", lambda a, c: lax.linalg.symmetric_product(a, c, symmetrize_output=True),
             [("B", 3, 5), ("B", 3, 3)], rtol=1e-5, atol=1e-5),
])
def _symmetric_product(ctx: LoweringContext, a: ir.Value, c: ir.Value, *, alpha: float, beta: float) -> ir.Value:
    """alpha a a^T + beta c (the whole matrix, as JAX's CPU lowering). Params: alpha, beta."""
    dtype = np.dtype(ctx.avals_in[0].dtype)
    rank = len(ctx.avals_in[0].shape)
    product = ctx.op("MatMul", a, ctx.op("Transpose", a, perm=[*range(rank - 2), rank - 1, rank - 2]))
    return ctx.op("Add", ctx.op("Mul", product, ctx.scalar(alpha, dtype)), ctx.op("Mul", c, ctx.scalar(beta, dtype)))
