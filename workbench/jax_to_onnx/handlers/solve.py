"""Linear solves: triangular_solve, custom_linear_solve (what ``jnp.linalg.solve``/``inv`` trace to),
tridiagonal_solve.

- ``triangular_solve``: every ``left_side``/``lower``/``transpose_a``/``unit_diagonal`` variant is
  brought to ``op(A) X = B`` (a right-side solve is the left solve of the transposes) and solved by
  forward (lower) or backward (upper) substitution, one row of X per Loop iteration: a masked row of
  A times the rows of X found so far (a MatMul), then a divide. The triangle that is not used is never
  read (masked to exact zeros), nor the diagonal when ``unit_diagonal``, as LAPACK's ``trsm``
  promises. Accuracy: the same substitution as LAPACK's unblocked ``trsm``; float32 results agree
  with JAX to a few ulps times the condition number (testcases: 1e-5 relative on well-conditioned
  triangles).
- ``custom_linear_solve``: only the forward solve matters for inference, so its ``solve`` jaxpr is
  lowered in place (for ``jnp.linalg.solve`` that is the LU solve: ``lu``, two triangular solves
  and the permutation).
- ``tridiagonal_solve``: LAPACK ``gtsv``'s Gaussian elimination with partial pivoting (the row
  interchanges that keep it stable on systems that are not diagonally dominant), written as two
  Loops (elimination, back substitution); a zero pivot gives inf/NaN as the division does.
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
    as_column,
    as_row,
    counted_loop,
    local_function,
    mask_cmp,
    mask_eq,
    scalar,
    static_size,
    swap_last,
    take,
    take_keep,
)
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler


def _f64(*shape: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, np.float64)


def _well_conditioned(a: jax.Array) -> jax.Array:
    """A triangle-friendly matrix: random entries plus a dominant diagonal (so solves are accurate)."""
    n = a.shape[-1]
    return a + (n + 2.0) * jnp.eye(n, dtype=a.dtype) * jnp.sign(jnp.diagonal(a, axis1=-2, axis2=-1)[..., None] + 0.01)


def _trsm(left_side: bool, lower: bool, transpose_a: bool, unit_diagonal: bool) -> Any:
    def solve(a: jax.Array, b: jax.Array) -> jax.Array:
        # garbage (large values) in the triangle that must not be read
        garbage = 1e3 * jnp.ones_like(a)
        a = _well_conditioned(a)
        a = jnp.where(jnp.tril(jnp.ones_like(a, dtype=bool)) if lower else jnp.triu(jnp.ones_like(a, dtype=bool)), a, garbage)
        return lax.linalg.triangular_solve(a, b, left_side=left_side, lower=lower, transpose_a=transpose_a,
                                           unit_diagonal=unit_diagonal)
    return solve


_TRSM_CASES = [
    Testcase(
        f"triangular_solve_{'left' if left else 'right'}_{'lower' if lower else 'upper'}"
        f"{'_transposed' if trans else ''}{'_unit' if unit else ''}",
        _trsm(left, lower, trans, unit),
        [(4, 4), (4, 3) if left else (2, 4)],
        rtol=1e-5, atol=1e-5,
    )
    for left, lower, trans, unit in [
        (True, True, False, False), (True, False, False, True), (True, True, True, False), (True, False, True, True),
        (False, True, False, True), (False, False, False, False), (False, True, True, False), (False, False, True, True),
    ]
]


@handler("triangular_solve", onnx_ops=("Loop", "MatMul", "Gather", "Where", "Div", "Transpose"), testcases=[
    *_TRSM_CASES,
    Testcase("triangular_solve_batched_symbolic", _trsm(True, True, False, False), [("B", 5, 5), ("B", 5, 2)]),
    Testcase("solve_triangular_scipy_vector", lambda a, b: jax.scipy.linalg.solve_triangular(_well_conditioned(a), b, lower=False),
             [(6, 6), (6,)], rtol=1e-5, atol=1e-5),
    Testcase("triangular_solve_f64", _trsm(True, False, True, False), [_f64(5, 5), _f64(5, 2)],
             rtol=1e-12, atol=1e-12, x64=True),
])
def _triangular_solve(
    ctx: LoweringContext,
    a: ir.Value,
    b: ir.Value,
    *,
    left_side: bool,
    lower: bool,
    transpose_a: bool,
    conjugate_a: bool,
    unit_diagonal: bool,
) -> ir.Value:
    """Solve ``op(a) x = b`` (left_side) or ``x op(a) = b``; params: left_side, lower, transpose_a,
    conjugate_a (no effect on real matrices, the only kind exported), unit_diagonal."""
    del conjugate_a  # real dtypes only: JAX drops it for them too
    a_aval, b_aval = ctx.avals_in
    rank = len(b_aval.shape)
    m = static_size(a_aval.shape[-1], "matrix size", "triangular_solve")
    columns = b_aval.shape[-1] if left_side else b_aval.shape[-2]
    dtype = np.dtype(a_aval.dtype)
    b_spec = Spec((*b_aval.shape[:-2], m, columns), dtype)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        matrix, rhs = inputs
        transposed = transpose_a
        if not left_side:  # x op(a) = b  <=>  op(a)^T x^T = b^T
            rhs = swap_last(g, rhs, rank)
            transposed = not transposed
        is_lower = lower
        if transposed:
            matrix = swap_last(g, matrix, rank)
            is_lower = not is_lower
        x = substitute(g, matrix, rhs, m, b_spec, forward=is_lower, unit_diagonal=unit_diagonal)
        return [swap_last(g, x, rank) if not left_side else x]

    params = (left_side, lower, transpose_a, unit_diagonal)
    return local_function(ctx, "TriangularSolve", [a, b], build, params=params, input_names=["a", "b"])[0]


def substitute(
    g: GraphBuilder, a: ir.Value, b: ir.Value, m: int, spec: Spec, *, forward: bool, unit_diagonal: bool
) -> ir.Value:
    """X with ``a X = b`` for triangular ``a`` ([..., m, m], lower when ``forward``) and ``b`` [..., m, c].

    Row i of X = (b_i - a[i, <i] X[<i]) / a[i, i], rows in order (forward) or reversed (backward);
    the rows of X not found yet are still zero, and the entries of ``a`` outside the strict triangle
    are masked to zero so whatever they hold is never read.
    """
    dtype = spec.dtype
    zero = scalar(g, 0, dtype)
    x0 = g.op("Expand", zero, g.op("Shape", b))

    def step(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        (x,) = state
        i = k if forward else body.op("Sub", scalar(body, m - 1, np.int64), k)
        row = take(body, a, i, -2)  # [..., m]
        strict = body.op("Where", mask_cmp(body, m, "Less" if forward else "Greater", i), row, scalar(body, 0, dtype))
        known = body.op("MatMul", as_row(body, strict), x)  # [..., 1, c]
        value = body.op("Sub", take_keep(body, b, i, -2), known)
        if not unit_diagonal:
            pivot = take(body, row, i, -1)  # [...]
            value = body.op("Div", value, body.op("Unsqueeze", pivot, body.i64([-1, -2])))
        return [body.op("Where", as_column(body, mask_eq(body, m, i)), value, x)]

    return counted_loop(g, m, [x0], [spec], step, name="forward_substitution" if forward else "back_substitution")[0]


# ----------------------------------------------------------------------------- custom_linear_solve
def _solve_batched(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.linalg.solve(a, b)


@handler("custom_linear_solve", onnx_ops=(), area="jnp",
         doc="https://docs.jax.dev/en/latest/_autosummary/jax.lax.custom_linear_solve.html", testcases=[
    Testcase("linalg_solve_matrix", jnp.linalg.solve, [(5, 5), (5, 3)], rtol=1e-4, atol=1e-4),
    Testcase("linalg_solve_batched_symbolic", lambda a, b: jnp.linalg.solve(a, b[..., None])[..., 0],
             [("B", 4, 4), ("B", 4)], rtol=1e-4, atol=1e-4),
    Testcase("linalg_inv", jnp.linalg.inv, [(6, 6)], rtol=1e-4, atol=1e-4),
    Testcase("linalg_inv_f64", jnp.linalg.inv, [_f64("B", 5, 5)], rtol=1e-10, atol=1e-10, x64=True),
    Testcase("custom_linear_solve_lax", lambda a, b: lax.custom_linear_solve(
        lambda x: a @ x, b, solve=lambda mv, r: jnp.linalg.solve(a, r), symmetric=False), [(4, 4), (4,)],
        rtol=1e-4, atol=1e-4),
])
def _custom_linear_solve(ctx: LoweringContext, *operands: ir.Value, const_lengths: Any, jaxprs: Any) -> Any:
    """The ``solve`` jaxpr on its constants and the right-hand side (the other jaxprs, matvec,
    vecmat and transpose_solve, only serve differentiation). Params: const_lengths, jaxprs."""
    start = const_lengths.matvec + const_lengths.vecmat
    solve_consts = list(operands[start : start + const_lengths.solve])
    rhs = list(operands[sum(const_lengths) :])
    return tuple(ctx.lower_inline(jaxprs.solve, [*solve_consts, *rhs]))


# ----------------------------------------------------------------------------- tridiagonal_solve
def _tridiagonal_system(dl: jax.Array, d: jax.Array, du: jax.Array, b: jax.Array) -> jax.Array:
    dl = jnp.asarray(dl).at[..., 0].set(0.0)
    du = jnp.asarray(du).at[..., -1].set(0.0)
    return lax.linalg.tridiagonal_solve(dl, d, du, b)


_TRIDIAG_PIVOTING = [np.array([0.0, 5.0, 0.1, 3.0, 2.0], np.float32), np.array([0.1, 0.2, 4.0, 0.05, 1.0], np.float32),
                     np.array([1.0, 2.0, 0.3, 7.0, 0.0], np.float32), np.arange(10, dtype=np.float32).reshape(5, 2)]


@handler("tridiagonal_solve", onnx_ops=("Loop", "Gather", "Where", "Div", "Abs"), testcases=[
    Testcase("tridiagonal_solve", _tridiagonal_system, [(6,), (6,), (6,), (6, 3)], rtol=1e-4, atol=1e-4),
    Testcase("tridiagonal_solve_pivoting", _tridiagonal_system, _TRIDIAG_PIVOTING, rtol=1e-4, atol=1e-4),
    Testcase("tridiagonal_solve_batched_symbolic", _tridiagonal_system, [("B", 5), ("B", 5), ("B", 5), ("B", 5, 2)],
             rtol=1e-4, atol=1e-4),
])
def _tridiagonal_solve(
    ctx: LoweringContext, dl: ir.Value, d: ir.Value, du: ir.Value, b: ir.Value, *, perturb_singular: bool = False
) -> ir.Value:
    """gtsv: elimination with partial pivoting between neighbouring rows, then back substitution.

    Params: perturb_singular (JAX's option to nudge zero pivots; not supported: refused when set).
    """
    if perturb_singular:
        from workbench.errors import ConversionError

        raise ConversionError("tridiagonal_solve(perturb_singular=True) is not supported; solve without it.")
    b_aval = ctx.avals_in[3]
    m = static_size(b_aval.shape[-2], "system size", "tridiagonal_solve")
    dtype = np.dtype(b_aval.dtype)
    vector = Spec((*b_aval.shape[:-2], m), dtype)
    rhs = Spec(tuple(b_aval.shape), dtype)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        return [_gtsv(g, *inputs, m=m, vector=vector, rhs=rhs)]

    return local_function(ctx, "TridiagonalSolve", [dl, d, du, b], build, input_names=["dl", "d", "du", "b"])[0]


def _gtsv(g: GraphBuilder, dl: ir.Value, d: ir.Value, du: ir.Value, b: ir.Value, *, m: int, vector: Spec, rhs: Spec) -> ir.Value:
    """LAPACK dgtsv on [..., m] diagonals (``dl[i] = A[i, i-1]``, ``du[i] = A[i, i+1]``) and b [..., m, c].

    Elimination step i (0 <= i < m-1) looks at rows i and i+1: without interchange (|d_i| >= |l|,
    l = dl[i+1]) row i+1 -= (l/d_i) row i; with interchange the rows swap first, which fills the
    second superdiagonal ``du2`` (kept in ``second``). Back substitution then uses d, du and du2.
    """
    dtype = vector.dtype
    zero = scalar(g, 0, dtype)
    second0 = g.op("Mul", d, zero)  # du2, zero until an interchange fills it

    def at(body: GraphBuilder, x: ir.Value, i: ir.Value) -> ir.Value:
        return take(body, x, i, -1)

    def put(body: GraphBuilder, x: ir.Value, i: ir.Value, value: ir.Value) -> ir.Value:
        return body.op("Where", mask_eq(body, m, i), body.op("Unsqueeze", value, body.i64([-1])), x)

    def put_row(body: GraphBuilder, x: ir.Value, i: ir.Value, row: ir.Value) -> ir.Value:
        return body.op("Where", as_column(body, mask_eq(body, m, i)), row, x)

    def eliminate(body: GraphBuilder, i: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        d_, du_, second, x = state
        j = body.op("Add", i, scalar(body, 1, np.int64))
        has_next_super = body.op("Less", j, scalar(body, m - 1, np.int64))  # du[i+1] exists as an unknown's coefficient
        di, dj, ui, uj, low = at(body, d_, i), at(body, d_, j), at(body, du_, i), at(body, du_, j), at(body, dl, j)
        uj = body.op("Where", has_next_super, uj, zero)
        bi, bj = take_keep(body, x, i, -2), take_keep(body, x, j, -2)  # [..., 1, c]
        keep = body.op("GreaterOrEqual", body.op("Abs", di), body.op("Abs", low))
        # no interchange
        fact = body.op("Div", low, di)
        dj_keep = body.op("Sub", dj, body.op("Mul", fact, ui))
        bj_keep = body.op("Sub", bj, body.op("Mul", as_row_scalar(body, fact), bi))
        # interchange rows i and i+1
        fact_swap = body.op("Div", di, low)
        dj_swap = body.op("Sub", ui, body.op("Mul", fact_swap, dj))
        uj_swap = body.op("Neg", body.op("Mul", fact_swap, uj))
        bj_swap = body.op("Sub", bi, body.op("Mul", as_row_scalar(body, fact_swap), bj))
        new_di = body.op("Where", keep, di, low)
        new_ui = body.op("Where", keep, ui, dj)
        new_uj = body.op("Where", keep, uj, uj_swap)
        new_dj = body.op("Where", keep, dj_keep, dj_swap)
        new_second = body.op("Where", keep, zero, uj)
        keep_row = body.op("Unsqueeze", keep, body.i64([-1, -2]))
        new_bi = body.op("Where", keep_row, bi, bj)
        new_bj = body.op("Where", keep_row, bj_keep, bj_swap)
        d_ = put(body, put(body, d_, i, new_di), j, new_dj)
        du_ = put(body, put(body, du_, i, new_ui), j, body.op("Where", has_next_super, new_uj, at(body, du_, j)))
        second = put(body, second, i, new_second)
        x = put_row(body, put_row(body, x, i, new_bi), j, new_bj)
        return [d_, du_, second, x]

    d_, du_, second, x = counted_loop(g, max(m - 1, 0), [d, du, second0, b], [vector, vector, vector, rhs], eliminate,
                                      name="gtsv_eliminate")

    def back(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        (x,) = state
        i = body.op("Sub", scalar(body, m - 1, np.int64), k)
        # x_i = (b_i - du_i x_{i+1} - du2_i x_{i+2}) / d_i, with the coefficients past the end masked to 0
        shifted1 = body.op("Where", mask_eq(body, m, body.op("Add", i, scalar(body, 1, np.int64))), du_coefficient(body, du_, i), zero)
        shifted2 = body.op("Where", mask_eq(body, m, body.op("Add", i, scalar(body, 2, np.int64))), du_coefficient(body, second, i), zero)
        known = body.op("MatMul", as_row(body, body.op("Add", shifted1, shifted2)), x)
        value = body.op("Div", body.op("Sub", take_keep(body, x, i, -2), known), as_row_scalar(body, at(body, d_, i)))
        return [put_row(body, x, i, value)]

    return counted_loop(g, m, [x], [rhs], back, name="gtsv_back_substitution")[0]


def du_coefficient(g: GraphBuilder, x: ir.Value, i: ir.Value) -> ir.Value:
    """``x[..., i]`` as [..., 1] (broadcasts against a mask over positions)."""
    return g.op("Unsqueeze", take(g, x, i, -1), g.i64([-1]))


def as_row_scalar(g: GraphBuilder, x: ir.Value) -> ir.Value:
    """A per-matrix scalar [...] as [..., 1, 1], to scale rows."""
    return g.op("Unsqueeze", x, g.i64([-1, -2]))
