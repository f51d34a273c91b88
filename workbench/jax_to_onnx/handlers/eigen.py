"""Spectral decompositions by Jacobi rotations: eigh (symmetric eigendecomposition) and svd.

Both run the parallel cyclic Jacobi method (Brent–Luk ordering): the matrix is kept with its
indices in "pair order", so one Loop iteration rotates the n/2 disjoint pairs (0,1), (2,3), ...
at once with elementwise ops, then moves the indices to the next round of a round-robin
tournament by one fixed permutation (a Gather); n-1 rounds make a sweep in which every pair
meets once. An odd size gets one zero row/column that no rotation ever mixes in (its rotation
angle is exactly 0) and that is dropped at the end.

- ``eigh``: two-sided rotations ``B <- J^T B J`` (accumulated in ``W``) until the off-diagonal
  part of every matrix is below ``n * eps`` of its norm (checked after every round, at most
  :data:`MAX_SWEEPS` sweeps). Eigenvalues ascending, as JAX. Accuracy (float32): eigenvalues to
  ~1e-6 of ||A||, eigenvectors to ~1e-6 / (relative gap to the nearest other eigenvalue).
- ``svd``: one-sided (Hestenes) rotations of the columns of A (or A^T when A is wide) until
  every pair is orthogonal to ``eps`` (checked once per sweep); singular values are the column
  norms, sorted descending; U comes from a Householder QR of the rotated columns, which also gives
  the orthonormal completion for ``full_matrices`` and for zero singular values. This is the
  method LAPACK's ``gesvj`` uses: singular values to high relative accuracy, far better than the
  eigenvalues of A^T A (whose small singular values lose half their digits).

Sign and order conventions: eigen/singular vectors are only defined up to sign (LAPACK's choice
is an accident of its algorithm). The exported models fix it: **each eigenvector, and each left
singular vector, has its largest-magnitude component positive** (the right singular vector flips
with it), except for a single-column A (m x 1, 1 x 1 included), whose SVD is ``U = a/|a|``, ``V = 1``
(LAPACK's and JAX's result for that shape, so such outputs compare directly). JAX's own results differ by those signs, so the testcases compare after applying the
same normalization to JAX's output (:func:`canonical_signs`), plus invariant quantities
(reconstructions, orthogonality). For repeated eigen/singular values the vectors of the shared
subspace are not unique at all and only such invariants compare in general; the results are put back
from pair layout into index order before sorting, so a matrix that needs no rotation (a diagonal A, an
identity, as CMA-ES starts from) gives its unit vectors in index order, as LAPACK does; the completion columns of
``full_matrices`` U/V are an arbitrary orthonormal basis, as in LAPACK.

``eig`` and ``schur`` of non-symmetric matrices: see ``nonsymmetric.py``.
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
from workbench.jax_to_onnx.handlers.factorizations import _geqrf_loop
from workbench.jax_to_onnx.handlers.linalg_kit import (
    Spec,
    any_true,
    batch_shape,
    arange,
    batched_eye,
    counted_loop,
    diagonal,
    local_function,
    reduce_over,
    scalar,
    sign_nonnegative,
    static_size,
    swap_last,
    symmetric_from,
    take,
)
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

MAX_SWEEPS = 30  # Jacobi converges quadratically: 5-10 sweeps in practice; this bounds pathological cases


# ----------------------------------------------------------------------------- round-robin ordering
def round_robin(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(first layout, step permutation) for an even ``n``: pairs are adjacent positions (0,1), (2,3)...

    The circle method: index 0 stays, the others rotate by one place per round; over n-1 rounds
    every pair of indices is adjacent exactly once, and after n-1 steps the layout is back.
    ``layout[position]`` is the index at a position; the next round's layout is ``layout[step]``.
    """
    def layout_of(circle: list[int]) -> list[int]:
        order = []
        for i in range(n // 2):
            order += [circle[i], circle[n - 1 - i]]
        return order

    circle = list(range(n))
    first = layout_of(circle)
    rotated = [circle[0], circle[-1], *circle[1:-1]]
    second = layout_of(rotated)
    position = {index: p for p, index in enumerate(first)}
    step = np.array([position[index] for index in second], np.int64)
    return np.array(first, np.int64), step


def _jacobi_angle(g: GraphBuilder, app: ir.Value, aqq: ir.Value, apq: ir.Value, dtype: Any) -> tuple[ir.Value, ir.Value]:
    """(c, s) zeroing the off-diagonal entry of [[app, apq], [apq, aqq]] by J^T (.) J, J = [[c, s], [-s, c]].

    Golub & Van Loan's sym.schur2: tau = (aqq - app) / (2 apq), t = sign(tau) / (|tau| + sqrt(1 + tau^2))
    (the smaller root, so the rotation angle stays within 45 degrees), c = 1 / sqrt(1 + t^2), s = t c.
    A pair already decoupled to rounding, |apq| <= eps sqrt(|app aqq|), is not rotated at all (c = 1,
    s = 0 exactly, Rutishauser's threshold): rotations by tiny angles would only add rounding error,
    sweep after sweep, and this is also what keeps the padding row/column inert (apq = 0).
    """
    zero, one = scalar(g, 0, dtype), scalar(g, 1, dtype)
    threshold = g.op("Mul", scalar(g, float(np.finfo(dtype).eps), dtype), g.op("Sqrt", g.op("Abs", g.op("Mul", app, aqq))))
    is_zero = g.op("LessOrEqual", g.op("Abs", apq), threshold)
    safe = g.op("Where", is_zero, one, apq)
    tau = g.op("Div", g.op("Sub", aqq, app), g.op("Mul", scalar(g, 2, dtype), safe))
    root = g.op("Sqrt", g.op("Add", one, g.op("Mul", tau, tau)))
    t = g.op("Div", sign_nonnegative(g, tau, dtype), g.op("Add", g.op("Abs", tau), root))
    t = g.op("Where", is_zero, zero, t)
    c = g.op("Reciprocal", g.op("Sqrt", g.op("Add", one, g.op("Mul", t, t))))
    return c, g.op("Mul", t, c)


def canonical_signs(vectors: jax.Array, *, also: jax.Array | None = None) -> Any:
    """Flip each column of ``vectors`` so its largest-magnitude entry is positive (the exported
    models' convention); ``also`` (rows matching those columns, e.g. V^T) flips with it."""
    index = jnp.argmax(jnp.abs(vectors), axis=-2, keepdims=True)
    sign = jnp.where(jnp.take_along_axis(vectors, index, axis=-2) < 0, -1.0, 1.0).astype(vectors.dtype)
    if also is None:
        return vectors * sign
    return vectors * sign, also * jnp.swapaxes(sign, -1, -2)


def _canonical_signs(g: GraphBuilder, vectors: ir.Value, dtype: Any) -> ir.Value:
    """The per-column sign [..., 1, columns] that makes each column's largest-magnitude entry positive."""
    index = g.op("ArgMax", g.op("Abs", vectors), axis=-2, keepdims=1, select_last_index=0)
    largest = g.op("GatherElements", vectors, index, axis=-2)
    return g.op("Where", g.op("Less", largest, scalar(g, 0, dtype)), scalar(g, -1, dtype), scalar(g, 1, dtype))


def _sort_positions(g: GraphBuilder, keys: ir.Value, k: int, *, largest: bool) -> tuple[ir.Value, ir.Value]:
    """TopK over the last axis: (sorted keys [..., k], their positions [..., k])."""
    values, positions = g.op("TopK", keys, g.i64([k]), axis=-1, largest=int(largest), sorted=1, num_outputs=2)
    return values, positions


def _gather_columns(g: GraphBuilder, x: ir.Value, positions: ir.Value, rows: int, k: int) -> ir.Value:
    """Columns ``positions`` ([..., k]) of x [..., rows, n] → [..., rows, k] (exact copies)."""
    index = g.op("Unsqueeze", positions, g.i64([-2]))
    index = g.op("Expand", index, g.op("Concat", batch_shape(g, x), g.i64([rows, k]), axis=0))
    return g.op("GatherElements", x, index, axis=-1)


# ----------------------------------------------------------------------------- working precision
def in_working_precision(g: GraphBuilder, x: ir.Value, spec: Spec) -> tuple[ir.Value, Spec]:
    """float32 matrices are decomposed in float64: a Jacobi sweep rotates every column n-1 times and
    each rotation rounds, so in float32 the accumulated error reaches ~3e-6 relative at n = 50 (a
    random walk of some hundreds of roundings), where LAPACK's float32 routines reach ~1e-7. In
    float64 the same walk stays far below float32's own rounding of the result."""
    if spec.dtype != np.dtype(np.float32):
        return x, spec
    return g.op("Cast", x, to=ir.DataType.DOUBLE), Spec(spec.shape, np.dtype(np.float64))


def out_of_working_precision(g: GraphBuilder, values: Any, spec: Spec) -> list[ir.Value]:
    values = list(values)
    if spec.dtype != np.dtype(np.float32):
        return values
    return [g.op("Cast", value, to=ir.DataType.FLOAT) for value in values]


# ----------------------------------------------------------------------------- eigh
def _spd_or_sym(a: jax.Array) -> jax.Array:
    return (a + jnp.swapaxes(a, -1, -2)) / 2


def _eigh_canonical(a: jax.Array) -> Any:
    w, v = jnp.linalg.eigh(_spd_or_sym(a))
    return w, canonical_signs(v)


def _eigh_invariants(a: jax.Array) -> Any:
    """Reconstruction V diag(w) V^T and V^T V: comparable whatever the eigenvector signs."""
    w, v = jnp.linalg.eigh(a)
    vt = jnp.swapaxes(v, -1, -2)
    return w, (v * w[..., None, :]) @ vt, vt @ v


_REPEATED = np.diag(np.array([2.0, 2.0, 2.0, -1.0], np.float32)) + np.float32(0.0)
# diagonal matrices with tied values (and an identity, as CMA-ES starts from): no rotation happens, and the
# vectors must come out exactly as JAX's (LAPACK's order among ties), compared without any normalization
_DIAGONAL_TIES = np.diag(np.array([2.0, 1.0, 2.0, 1.0, 3.0], np.float32))
_IDENTITY_AND_TIES = np.stack([np.eye(4, dtype=np.float32), np.diag(np.array([3.0, 1.0, 2.0, 1.0], np.float32))])


@handler("eigh", onnx_ops=("Loop", "Mul", "Sqrt", "Div", "Gather", "ArgMin", "GatherElements"), testcases=[
    Testcase("eigh_canonical_signs", _eigh_canonical, [(5, 5)], rtol=1e-4, atol=2e-5),
    Testcase("eigh_even_batched_symbolic", _eigh_canonical, [("B", 4, 4)], rtol=1e-4, atol=2e-5),
    Testcase("eigvalsh", lambda a: jnp.linalg.eigvalsh(_spd_or_sym(a)), [(7, 7)], rtol=1e-4, atol=2e-5),
    Testcase("eigh_invariants_repeated_eigenvalues", _eigh_invariants, [_REPEATED], rtol=1e-5, atol=1e-5),
    Testcase("eigh_diagonal_ties_as_lapack", jnp.linalg.eigh, [_DIAGONAL_TIES], rtol=1e-6, atol=1e-6),
    Testcase("eigh_identity_batch_as_lapack", jnp.linalg.eigh, [_IDENTITY_AND_TIES], rtol=1e-6, atol=1e-6),
    Testcase("eigh_upper_triangle", lambda a: canonical_signs(lax.linalg.eigh(a, lower=False, symmetrize_input=False)[0]),
             [(4, 4)], rtol=1e-4, atol=2e-5),
    Testcase("eigh_f64", _eigh_canonical, [jax.ShapeDtypeStruct((6, 6), np.float64)], rtol=1e-10, atol=1e-10, x64=True),
])
def _eigh(
    ctx: LoweringContext, x: ir.Value, *, lower: bool, sort_eigenvalues: bool, subset_by_index: Any, algorithm: Any
) -> tuple[ir.Value, ir.Value]:
    """(v, w) of the symmetric matrix in ``x``'s ``lower`` (or upper) triangle.

    Params: lower, sort_eigenvalues (always sorted ascending here, as JAX on CPU), subset_by_index
    (``(start, end)``: the eigenpairs of those ascending positions; all are computed, then sliced, which
    is what JAX's TPU kernel returns; JAX on CPU refuses a subset), algorithm (ignored: Jacobi is used).
    """
    del sort_eigenvalues, algorithm
    aval = ctx.avals_in[0]
    n = static_size(aval.shape[-1], "matrix size", "eigh")
    spec = Spec.of(aval)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        a, work = in_working_precision(g, inputs[0], spec)
        return out_of_working_precision(g, _jacobi_eigh(g, a, n, work, lower=lower, target=spec.dtype), spec)

    window = _subset_window(subset_by_index, n, "eigh")
    if window is None:
        return local_function(ctx, "Eigh", [x], build, params=(lower,), input_names=["a"])
    every = (aval.update(shape=aval.shape), aval.update(shape=aval.shape[:-1]))  # the function computes all pairs
    vectors, values = local_function(dataclasses.replace(ctx, avals_out=every), "Eigh", [x], build, params=(lower,),
                                     input_names=["a"])
    return _slice_last(ctx, vectors, window, -1), _slice_last(ctx, values, window, -1)


def _subset_window(subset_by_index: Any, count: int, primitive: str) -> tuple[int, int] | None:
    """The (start, end) positions a ``subset_by_index`` asks for; None for all of them."""
    if subset_by_index is None or tuple(subset_by_index) == (0, count):
        return None
    start, end = (int(i) for i in subset_by_index)
    if not 0 <= start < end <= count:
        raise ConversionError(f"{primitive}(subset_by_index={tuple(subset_by_index)}) is outside [0, {count}]; "
                              "pass 0 <= start < end <= the number of values.")
    return start, end


def _slice_last(ctx: LoweringContext, x: ir.Value, window: tuple[int, int], axis: int) -> ir.Value:
    return ctx.op("Slice", x, ctx.i64([window[0]]), ctx.i64([window[1]]), ctx.i64([axis]))


def _pad_square(g: GraphBuilder, a: ir.Value, rank: int, extra: int) -> ir.Value:
    if not extra:
        return a
    pads = [0] * (2 * rank)
    pads[rank + rank - 2] = pads[rank + rank - 1] = extra
    return g.op("Pad", a, g.i64(pads))


def _jacobi_eigh(g: GraphBuilder, x: ir.Value, n: int, spec: Spec, *, lower: bool, target: np.dtype) -> tuple[ir.Value, ir.Value]:
    """Two-sided parallel Jacobi on the symmetric matrix in ``x``'s ``lower`` (or upper) triangle.

    The matrix ``B`` is kept in pair layout and ``W`` accumulates the rotations (``B = W^T A W``);
    a round is ``B <- M^T B M``, ``W <- W M`` with ``M = J P^T`` (the pair rotations, then the
    move to the next round's layout). Sweeps stop once the off-diagonal part is below
    ``n * eps(target)`` of the norm for every matrix (``target`` is the result's type).
    """
    dtype = spec.dtype
    rank = len(spec.shape)
    size = n + (n % 2)
    layout, step_permutation = round_robin(size)
    a = _pad_square(g, symmetric_from(g, x, n, dtype, rank, lower=lower), rank, size - n)
    first = g.const(layout)
    b0 = g.op("Gather", g.op("Gather", a, first, axis=-2), first, axis=-1)
    w0 = g.op("Gather", batched_eye(g, a, size, size, dtype), first, axis=-1)
    off_mask = g.const((1 - np.eye(size)).astype(dtype))
    tolerance = (size * float(np.finfo(target).eps)) ** 2
    square = spec.with_shape(size, size)

    def round_(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        del k
        b, w = state
        app, aqq, apq = _pair_blocks(body, b, size, rank)
        c, s = _jacobi_angle(body, app, aqq, apq, dtype)
        step = _round_matrix(body, c, s, size, step_permutation, dtype)
        b = body.op("MatMul", body.op("MatMul", swap_last(body, step, rank), b), step)
        return [b, body.op("MatMul", w, step)]

    def sweep(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        del k
        b, w, _ = state
        b, w = counted_loop(body, size - 1, [b, w], [square, square], round_, name="jacobi_round")
        squares = body.op("Mul", b, b)
        off = body.op("ReduceSum", body.op("Mul", squares, off_mask), body.i64([-2, -1]), keepdims=0)
        total = body.op("ReduceSum", squares, body.i64([-2, -1]), keepdims=0)
        return [b, w, any_true(body, body.op("Greater", off, body.op("Mul", total, scalar(body, tolerance, dtype))))]

    b, w, _ = counted_loop(
        g, MAX_SWEEPS, [b0, w0, g.const(np.asarray(True))], [square, square, Spec((), np.dtype(np.bool_))], sweep,
        name="jacobi_sweep", keep_going=lambda body, outputs: outputs[2],
    )
    # back from pair layout to index order, so equal eigenvalues keep their vectors in index order (TopK puts
    # the lower position first): a diagonal A gives the identity's columns in order, as LAPACK does
    index_order = g.const(np.argsort(layout))
    eigenvalues = g.op("Gather", diagonal(g, b, size, dtype), index_order, axis=-1)
    w = g.op("Gather", w, index_order, axis=-1)
    keys = eigenvalues
    if size != n:  # the padding's eigenvalue 0 sits where W's padded row holds its 1: sorted last, dropped
        padded = g.op("Equal", take(g, w, g.const(np.asarray(n, np.int64)), -2), scalar(g, 1, dtype))
        keys = g.op("Where", padded, scalar(g, np.inf, dtype), eigenvalues)
        w = g.op("Slice", w, g.i64([0]), g.i64([n]), g.i64([-2]))
    values, positions = _selection_sort(g, keys, n, size, spec)
    vectors = _gather_columns(g, w, positions, n, n)
    vectors = g.op("Mul", vectors, _canonical_signs(g, vectors, dtype))
    return vectors, values


def _selection_sort(g: GraphBuilder, keys: ir.Value, n: int, size: int, spec: Spec) -> tuple[ir.Value, ir.Value]:
    """The ``n`` smallest of ``keys`` [..., size] ascending, with their positions, ordered among equal keys as
    LAPACK's symmetric eigensolver (xSTEQR) leaves them: a selection sort that swaps the first smallest of
    the rest into place, step by step (not a stable sort: diag(2, 1, 2, 1, 3) gives e1, e3, e2, e0, e4).
    With the keys in index order this matches JAX on CPU for matrices that need no rotation, identity
    included; distinct keys come out as any ascending sort does. A Loop of ``min(n, size - 1)`` steps."""
    positions = g.op("Expand", arange(g, size), g.op("Shape", keys))
    key_spec, position_spec = spec.with_shape(size), spec.batch(size, dtype=np.int64)

    def step(body: GraphBuilder, i: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        rest_keys, order = state
        places = arange(body, size)
        before = body.op("Less", places, i)
        candidates = body.op("Where", before, scalar(body, np.inf, spec.dtype), rest_keys)
        smallest = body.op("ArgMin", candidates, axis=-1, keepdims=1, select_last_index=0)  # [..., 1]
        at_i = body.op("Equal", places, i)
        at_smallest = body.op("Equal", places, smallest)
        index = body.op("Unsqueeze", i, body.i64([0]))

        def swapped(x: ir.Value) -> ir.Value:
            x_i = body.op("Gather", x, index, axis=-1)
            x_smallest = body.op("GatherElements", x, smallest, axis=-1)
            return body.op("Where", at_i, x_smallest, body.op("Where", at_smallest, x_i, x))

        return [swapped(rest_keys), swapped(order)]

    keys, positions = counted_loop(g, min(n, size - 1), [keys, positions], [key_spec, position_spec], step,
                                   name="eigh_sort")
    return (g.op("Slice", keys, g.i64([0]), g.i64([n]), g.i64([-1])),
            g.op("Slice", positions, g.i64([0]), g.i64([n]), g.i64([-1])))


def _pair_blocks(g: GraphBuilder, b: ir.Value, size: int, rank: int) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(B[2i, 2i], B[2i+1, 2i+1], B[2i, 2i+1]) for every pair i: three Gathers on the flattened matrix."""
    flat = g.op("Reshape", b, g.i64([0] * (rank - 2) + [size * size]))
    pairs = np.arange(size // 2, dtype=np.int64)
    first, second = 2 * pairs, 2 * pairs + 1
    return (
        g.op("Gather", flat, g.const(first * size + first), axis=-1),
        g.op("Gather", flat, g.const(second * size + second), axis=-1),
        g.op("Gather", flat, g.const(first * size + second), axis=-1),
    )


def _round_matrix(g: GraphBuilder, c: ir.Value, s: ir.Value, size: int, step_permutation: np.ndarray, dtype: Any) -> ir.Value:
    """M = J P^T [..., n, n]: J rotates each pair (2i, 2i+1) by [[c, s], [-s, c]], P moves the indices to
    the next round's layout, so one MatMul (or two) does a whole round."""
    pair_of = g.const(np.arange(size, dtype=np.int64) // 2)
    c_rows = g.op("Unsqueeze", g.op("Gather", c, pair_of, axis=-1), g.i64([-1]))
    s_rows = g.op("Unsqueeze", g.op("Gather", s, pair_of, axis=-1), g.i64([-1]))
    signs = np.zeros((size, size), dtype)
    for i in range(size // 2):
        signs[2 * i, 2 * i + 1], signs[2 * i + 1, 2 * i] = 1, -1
    rotation = g.op("Add", g.op("Mul", c_rows, g.const(np.eye(size, dtype=dtype))), g.op("Mul", s_rows, g.const(signs)))
    return g.op("Gather", rotation, g.const(step_permutation), axis=-1)


# ----------------------------------------------------------------------------- svd
def _svd_canonical(full: bool) -> Any:
    def fn(a: jax.Array) -> Any:
        u, s, vh = jnp.linalg.svd(a, full_matrices=full)
        k = s.shape[-1]
        u_k, vh_k = canonical_signs(u[..., :k], also=vh[..., :k, :])
        reconstruction = (u_k * s[..., None, :]) @ vh_k
        u_orthogonal = jnp.swapaxes(u, -1, -2) @ u
        v_orthogonal = vh @ jnp.swapaxes(vh, -1, -2)
        return s, u_k, vh_k, reconstruction, u_orthogonal, v_orthogonal
    return fn


_RANK_DEFICIENT = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], np.float32)


def _svd_rank_deficient(a: jax.Array) -> Any:
    u, s, vh = jnp.linalg.svd(a, full_matrices=True)
    return s, (u[..., :, :3] * s[..., None, :]) @ vh, jnp.swapaxes(u, -1, -2) @ u, vh @ jnp.swapaxes(vh, -1, -2)


@handler("svd", onnx_ops=("Loop", "ReduceSum", "Mul", "Sqrt", "TopK", "GatherElements", "MatMul"), testcases=[
    Testcase("svd_tall_reduced", _svd_canonical(False), [(6, 4)], rtol=1e-4, atol=2e-5),
    Testcase("svd_wide_full", _svd_canonical(True), [(3, 5)], rtol=1e-4, atol=2e-5),
    Testcase("svd_square_batched_symbolic", _svd_canonical(False), [("B", 5, 5)], rtol=1e-4, atol=2e-5),
    Testcase("svd_rank_deficient_full", _svd_rank_deficient, [_RANK_DEFICIENT], rtol=1e-4, atol=2e-5),
    Testcase("svdvals", lambda a: jnp.linalg.svd(a, compute_uv=False), [(7, 5)], rtol=1e-5, atol=2e-5),
    Testcase("linalg_pinv", jnp.linalg.pinv, [(5, 3)], rtol=1e-4, atol=2e-5),
    Testcase("linalg_lstsq", lambda a, b: jnp.linalg.lstsq(a, b)[0], [(6, 3), (6, 2)], rtol=1e-4, atol=2e-5),
    Testcase("linalg_norm_2_and_nuclear", lambda a: (jnp.linalg.norm(a, 2), jnp.linalg.norm(a, "nuc"), jnp.linalg.cond(a)),
             [(4, 4)], rtol=1e-4, atol=2e-5),
    Testcase("matrix_rank", jnp.linalg.matrix_rank, [_RANK_DEFICIENT]),
    Testcase("svd_single_column", lambda a: jnp.linalg.svd(a, full_matrices=False), [(4, 1)], rtol=1e-5, atol=1e-6),
    Testcase("svd_1x1_negative", lax.linalg.svd, [np.array([[-2.0]], np.float32)], rtol=1e-6, atol=1e-6),
    Testcase("svd_identity_and_ties_in_index_order", jnp.linalg.svd,
             [np.stack([np.eye(4, dtype=np.float32), np.diag(np.array([2.0, 1.0, 2.0, 1.0], np.float32))])],
             rtol=1e-6, atol=1e-6),
    Testcase("svd_f64", _svd_canonical(False), [jax.ShapeDtypeStruct((5, 4), np.float64)], rtol=1e-10, atol=1e-10, x64=True),
])
def _svd(
    ctx: LoweringContext, x: ir.Value, *, full_matrices: bool, compute_uv: bool, subset_by_index: Any, algorithm: Any
) -> tuple[ir.Value, ...]:
    """(s) or (s, u, vh) by one-sided Jacobi. Params: full_matrices, compute_uv, subset_by_index
    (``(start, end)``: the singular triplets of those descending positions, computed all and sliced, as
    JAX's TPU kernel returns them; JAX on CPU refuses a subset), algorithm (ignored: Jacobi is used)."""
    del algorithm
    aval = ctx.avals_in[0]
    m = static_size(aval.shape[-2], "row count", "svd")
    n = static_size(aval.shape[-1], "column count", "svd")
    window = _subset_window(subset_by_index, min(m, n), "svd")
    if window is not None and full_matrices and compute_uv:
        raise ConversionError("svd(subset_by_index=...) needs full_matrices=False (as in JAX).")
    spec = Spec.of(aval)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        a, work = in_working_precision(g, inputs[0], spec)
        svd = _jacobi_svd(g, a, m, n, work, full_matrices=full_matrices, compute_uv=compute_uv, target=spec.dtype)
        return out_of_working_precision(g, svd, spec)

    if window is None:
        return local_function(ctx, "SVD", [x], build, params=(full_matrices, compute_uv), input_names=["a"])
    batch, k = tuple(aval.shape[:-2]), min(m, n)
    every = (aval.update(shape=(*batch, k)), aval.update(shape=(*batch, m, k)), aval.update(shape=(*batch, k, n)))
    outputs = local_function(dataclasses.replace(ctx, avals_out=every[: len(ctx.avals_out)]), "SVD", [x], build,
                             params=(full_matrices, compute_uv), input_names=["a"])
    if not compute_uv:
        return (_slice_last(ctx, outputs[0], window, -1),)
    s, u, vh = outputs
    return _slice_last(ctx, s, window, -1), _slice_last(ctx, u, window, -1), _slice_last(ctx, vh, window, -2)


def _jacobi_svd(
    g: GraphBuilder, x: ir.Value, m: int, n: int, spec: Spec, *, full_matrices: bool, compute_uv: bool, target: np.dtype
) -> list[ir.Value]:
    """One-sided parallel Jacobi on the columns of A (of A^T when A is wide): G <- G M, V <- V M per
    round, until a whole sweep finds every pair orthogonal to sqrt(rows) * eps(target)."""
    dtype = spec.dtype
    rank = len(spec.shape)
    wide = m < n
    rows, columns = (n, m) if wide else (m, n)  # the working matrix G has at least as many rows as columns
    size = columns + (columns % 2)
    layout, step_permutation = round_robin(size)
    zero, one = scalar(g, 0, dtype), scalar(g, 1, dtype)

    work = swap_last(g, x, rank) if wide else x
    # scale by the largest |entry| so squared column norms cannot overflow (undone on the singular values)
    largest = reduce_over(g, "ReduceMax", g.op("Abs", work), [-2, -1], keepdims=True)
    scale = g.op("Where", g.op("Equal", largest, zero), one, largest)
    work = g.op("Div", work, scale)
    if size != columns:
        pads = [0] * (2 * rank)
        pads[2 * rank - 1] = 1
        work = g.op("Pad", work, g.i64(pads))
    first = g.const(layout)
    g0 = g.op("Gather", work, first, axis=-1)
    v0 = g.op("Gather", batched_eye(g, work, size, size, dtype), first, axis=-1)
    tolerance = float(np.finfo(target).eps) * rows ** 0.5
    columns_spec, square = spec.with_shape(rows, size), spec.with_shape(size, size)
    scalar_spec = Spec((), dtype)

    def round_(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        del k
        matrix, v, worst = state
        gram = body.op("MatMul", swap_last(body, matrix, rank), matrix)  # column inner products
        alpha, beta, gamma = _pair_blocks(body, gram, size, rank)
        # the rotation of the Gram matrix [[alpha, gamma], [gamma, beta]], applied to the columns
        c, s = _jacobi_angle(body, alpha, beta, gamma, dtype)
        step = _round_matrix(body, c, s, size, step_permutation, dtype)
        # how far from orthogonal the pairs were: |gamma| / sqrt(alpha beta), the worst of the sweep
        norms = body.op("Sqrt", body.op("Mul", alpha, beta))
        empty = body.op("Equal", norms, zero)
        cosine = body.op("Div", body.op("Abs", gamma), body.op("Where", empty, one, norms))
        cosine = body.op("Where", empty, zero, cosine)
        worst = body.op("Max", worst, body.op("ReduceMax", cosine, keepdims=0))
        return [body.op("MatMul", matrix, step), body.op("MatMul", v, step), worst]

    def sweep(body: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        del k
        matrix, v, _ = state
        matrix, v, worst = counted_loop(body, size - 1, [matrix, v, zero], [columns_spec, square, scalar_spec], round_,
                                        name="jacobi_round")
        return [matrix, v, body.op("Not", body.op("Less", worst, scalar(body, tolerance, dtype)))]

    matrix, v, _ = counted_loop(
        g, MAX_SWEEPS, [g0, v0, g.const(np.asarray(True))], [columns_spec, square, Spec((), np.dtype(np.bool_))],
        sweep, name="jacobi_sweep", keep_going=lambda body, outputs: outputs[2],
    )
    index_order = g.const(np.argsort(layout))  # index order: equal singular values keep their columns in order
    matrix, v = g.op("Gather", matrix, index_order, axis=-1), g.op("Gather", v, index_order, axis=-1)
    norms = g.op("Sqrt", g.op("ReduceSum", g.op("Mul", matrix, matrix), g.i64([-2]), keepdims=0))  # [..., size]
    keys = norms
    if size != columns:  # the padding column: V's padded row holds its 1; sorted last, dropped
        padded = g.op("Equal", take(g, v, g.const(np.asarray(columns, np.int64)), -2), one)
        keys = g.op("Where", padded, scalar(g, -1, dtype), norms)
        v = g.op("Slice", v, g.i64([0]), g.i64([columns]), g.i64([-2]))
    values, positions = _sort_positions(g, keys, columns, largest=True)
    singular = g.op("Mul", values, g.op("Squeeze", scale, g.i64([-1])))
    if not compute_uv:
        return [singular]
    sorted_matrix = _gather_columns(g, matrix, positions, rows, columns)  # G V: orthogonal columns
    v_sorted = _gather_columns(g, v, positions, columns, columns)
    # G V = Q R with R diagonal up to rounding: Q's first columns are the left singular vectors up to
    # the signs of R's diagonal, and Q's others complete them to an orthonormal basis
    r, _, q = _geqrf_loop(g, sorted_matrix, rows, columns, spec.with_shape(rows, columns), accumulate_q=True, pack=False)
    r_diagonal = diagonal(g, g.op("Slice", r, g.i64([0]), g.i64([columns]), g.i64([-2])), columns, dtype)
    left = g.op("Slice", q, g.i64([0]), g.i64([columns]), g.i64([-1]))
    left = g.op("Mul", left, g.op("Unsqueeze", sign_nonnegative(g, r_diagonal, dtype), g.i64([-2])))
    completion = g.op("Slice", q, g.i64([columns]), g.i64([rows]), g.i64([-1])) if full_matrices and rows > columns else None
    # G = left diag(s) v_sorted^T; for a wide A = G^T the roles swap
    u_k, v_k = (v_sorted, left) if wide else (left, v_sorted)
    # [..., 1, k]; a single column a has one natural SVD, U = a/|a| and V = 1, which LAPACK returns too
    signs = sign_nonnegative(g, v_k, dtype) if n == 1 else _canonical_signs(g, u_k, dtype)
    u_k, v_k = g.op("Mul", u_k, signs), g.op("Mul", v_k, signs)
    u, v = u_k, v_k
    if completion is not None:
        if wide:
            v = g.op("Concat", v_k, completion, axis=-1)
        else:
            u = g.op("Concat", u_k, completion, axis=-1)
    return [singular, u, swap_last(g, v, rank)]
