"""eig: eigenvalues and left/right eigenvectors of a general square matrix (LAPACK geev), complex results.

Outputs are complex, carried in the exported model's complex convention (a trailing (real,
imaginary) axis). The decompositions come from ``nonsymmetric.py`` (complex input: complex
Hessenberg reduction and shifted complex QR, zgeev's way) and ``real_schur.py`` (real input: the
real Schur form by Francis double-shift QR, dgeev's way, so complex eigenvalues come in exactly
conjugate pairs, a pair's eigenvalue with the positive imaginary part first, and real eigenvalues
have an imaginary part of exactly 0). The real Schur form is then made complex triangular (one
unitary 2x2 rotation per pair) and the eigenvectors come from back-substitution on it (ztrevc's,
with its ``smin`` guard for repeated eigenvalues), mapped back by Z and normalised as LAPACK does:
unit 2-norm, largest-modulus component real (here also positive); for real input the vectors of
real eigenvalues are real and a pair's second vector is the exact conjugate of its first.

**Eigenvalue order is unspecified** (LAPACK documents none): ours is the order along the diagonal
of our Schur form. It is often JAX's (the same algorithm family; triangular input keeps its
diagonal order) but not always (LAPACK balances, gebal, before it reduces, and deflates in its
own order). Compare eigenvalues as sets (sort both, or match them) and eigenvectors by their
``A v = lambda v`` residuals, as the testcases do (:func:`eig_matched`). The sign (phase) of JAX's
eigenvectors can differ from ours: dgeev leaves a real eigenvector's sign to its algorithm.

Accuracy (random normal matrices, eigenvalues matched to NumPy's float64 ones): float32 input is
decomposed in float64, so eigenvalues are float32-exact (~3e-8 of max |lambda| at 8x8 to 32x32);
float64/complex128 ~1e-15 to 4e-15 at 8x8 and 16x16; residuals ``|A v - lambda v|`` of the same
size. Eigenvectors of eigenvalues that are close together are as ill-conditioned as in LAPACK.
Balancing as LAPACK's (gebal's power-of-2 scaling, ``nonsymmetric.balance``) keeps badly scaled
matrices accurate; gebal's permutation step (isolating eigenvalues that are exact by structure, such
as a matrix with a zero column below the diagonal) is not done, so a defective structure (a
nilpotent Jordan block, say) gets the eps^(1/k) error of an unbalanced solver. Sizes must be static;
the iteration budget is ``nonsymmetric.iteration_budget`` (LAPACK's 30 per eigenvalue); a matrix
that does not converge comes out all NaN, as JAX reports a LAPACK failure. Cost in onnxruntime
(``tests/benchmarks/bench_math.py --only eigvals``): ~40 ms for a real 8x8, ~0.5 s for 32x32
(complex input about twice that), so this suits the small matrices models carry.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.jax_to_onnx.builder import GraphBuilder
from workbench.jax_to_onnx.complex_numbers import is_complex, real_dtype
from workbench.jax_to_onnx.handlers.linalg_kit import (
    Spec,
    as_column,
    as_row,
    local_function,
    scalar,
    static_size,
)
from workbench.jax_to_onnx.handlers.nonsymmetric import (
    Pair,
    as_output,
    balance,
    c_matmul,
    complex_schur,
    diag_pair,
    left_vectors,
    normalize_columns,
    right_vectors,
    storage_ctx,
    working,
)
from workbench.jax_to_onnx.handlers.real_schur import (
    complexify,
    real_eigenvalues,
    real_schur,
)
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler


def _real_input_symmetry(g: GraphBuilder, v: Pair, real_vector: ir.Value, second: ir.Value, n: int, dtype: Any) -> Pair:
    """For real input: a real eigenvalue's vector is real (its imaginary parts, rounding after the
    normalisation, become 0), a pair's second vector is the conjugate of the first (as dgeev)."""
    real, imag = v[0], g.op("Where", real_vector, scalar(g, 0, dtype), v[1])
    partner = g.op("Sub", g.const(np.arange(n, dtype=np.int64)), g.op("Cast", second, to=ir.DataType.INT64))  # k-1 for seconds
    index = g.op("Unsqueeze", partner, g.i64([-2]))
    index = g.op("Expand", index, g.op("Shape", real))
    real = g.op("GatherElements", real, index, axis=-1)
    imag = g.op("GatherElements", imag, index, axis=-1)
    imag = g.op("Where", as_row(g, second), g.op("Neg", imag), imag)
    return real, imag


def eig_matched(a: jax.Array, *, left: bool = False, right: bool = True) -> Any:
    """eig's results in an order-independent form for the testcases: eigenvalues sorted by (real, imag)
    with the eigenvectors in that order, phases fixed (largest entry real positive), and the residuals."""
    w, *vectors = lax.linalg.eig(a, compute_left_eigenvectors=left, compute_right_eigenvectors=right)
    order = jnp.lexsort((jnp.round(w.imag, 3), jnp.round(w.real, 3)), axis=-1)
    w_sorted = jnp.take_along_axis(w, order, axis=-1)
    results: list[jax.Array] = [w_sorted]
    for index, v in enumerate(vectors):
        v = jnp.take_along_axis(v, order[..., None, :], axis=-1)
        peak = jnp.argmax(jnp.abs(v), axis=-2, keepdims=True)
        top = jnp.take_along_axis(v, peak, axis=-2)
        v = v * (jnp.conj(top) / jnp.abs(top))
        is_left = left and index == 0
        product = jnp.conj(jnp.swapaxes(v, -1, -2)) @ a if is_left else a @ v
        expected = jnp.conj(jnp.swapaxes(v, -1, -2)) * w_sorted[..., :, None] if is_left else v * w_sorted[..., None, :]
        results += [v, jnp.abs(product - expected)]
    return tuple(results)


def _eig_case(name: str, inputs: list[Any], *, left: bool = False, right: bool = True, **tolerances: Any) -> Testcase:
    options = {"rtol": 1e-4, "atol": 2e-5, **tolerances}
    return Testcase(name, lambda a: eig_matched(a, left=left, right=right), inputs, **options)


def _roots_of_leading_zero(p: jax.Array) -> Any:
    """jnp.roots without stripping: the two roots (sorted) and the NaN that the leading zero makes."""
    roots = jnp.roots(p, strip_zeros=False)
    return jnp.sort(roots[:2]), jnp.isnan(roots[2])


_C = np.complex64
_BADLY_SCALED = np.array([[1.0, 1e6, 0.0], [1e-6, 1.0, 1e6], [0.0, 1e-6, 1.0]], np.float32)  # eigenvalues 1, 1 +- sqrt(2)
_TWO_REAL = np.array([[3.0, 1.0], [0.5, 2.0]], np.float32)
_ROTATION = np.array([[0.0, -2.0], [1.0, 0.5]], np.float32)  # a complex-conjugate pair
_CYCLIC = np.roll(np.eye(5, dtype=np.float32), 1, axis=0)  # eigenvalues: the 5th roots of unity (stagnates without exceptional shifts)


@handler("eig", complex_numbers=True, onnx_ops=("Loop", "MatMul", "Where", "Sqrt", "Div", "GatherElements", "ArgMax"), testcases=[
    Testcase("eig_1x1", lambda a: lax.linalg.eig(a), [np.array([[2.5]], np.float32)]),
    _eig_case("eig_2x2_real_eigenvalues", [_TWO_REAL]),
    _eig_case("eig_2x2_complex_pair", [_ROTATION]),
    _eig_case("eig_4x4", [(4, 4)]),
    _eig_case("eig_8x8", [(8, 8)], rtol=1e-3, atol=1e-4),
    _eig_case("eig_batched_symbolic", [("B", 3, 3)]),
    _eig_case("eig_complex_input", [jax.ShapeDtypeStruct((4, 4), _C)]),
    _eig_case("eig_values_only", [(5, 5)], right=False),
    _eig_case("eig_left_only", [(4, 4)], left=True, right=False),
    _eig_case("eig_left_and_right", [(4, 4)], left=True, right=True),
    # its eigenvectors' entries all have modulus 1/sqrt(5): the "largest" one is a tie, so compare the
    # eigenvalues and the residuals only
    Testcase("eig_cyclic_permutation", lambda a: eig_matched(a)[0::2], [_CYCLIC], rtol=1e-4, atol=2e-5),
    _eig_case("eig_f64", [jax.ShapeDtypeStruct((6, 6), np.float64)], rtol=1e-9, atol=1e-10, x64=True),
    _eig_case("eig_complex128", [jax.ShapeDtypeStruct((5, 5), np.complex128)], left=True, rtol=1e-9, atol=1e-10, x64=True),
    # rows and columns 1e6 apart: without balancing (gebal's scaling) the eigenvalues are off by ~1
    Testcase("eigvals_badly_scaled_balanced", lambda a: jnp.sort(jnp.linalg.eigvals(a)), [_BADLY_SCALED], rtol=1e-5, atol=1e-5),
    Testcase("eigvals_upper_triangular_order", lambda a: jnp.linalg.eigvals(jnp.triu(a)), [(4, 4)]),
    # jnp.roots: eig of the companion matrix; sorted (by (real, imag), the complex sort) to compare as
    # sets. (x - 1)(x - 3)(x^2 + 2): simple roots (a double root is ill-conditioned: JAX's float32 LAPACK
    # splits one into 1 +- 5e-4 i, where our float64 work keeps it real)
    Testcase("roots_real_and_complex_sorted", lambda p: jnp.sort(jnp.roots(p, strip_zeros=False)),
             [np.array([1.0, -4.0, 5.0, -8.0, 6.0], np.float32)], rtol=1e-4, atol=1e-5),
    Testcase("roots_leading_zero_nan", _roots_of_leading_zero, [np.array([0.0, 1.0, -3.0, 2.0], np.float32)], rtol=1e-4, atol=1e-5),
])
def _eig(
    ctx: LoweringContext,
    x: ir.Value,
    *,
    compute_left_eigenvectors: bool,
    compute_right_eigenvectors: bool,
    enable_eigvec_derivs: bool = False,
    implementation: Any = None,
) -> tuple[ir.Value, ...]:
    """(w, vl if compute_left_eigenvectors, vr if compute_right_eigenvectors) of a square matrix.

    Params: compute_left_eigenvectors (``vl[:, k]^H A = w[k] vl[:, k]^H``), compute_right_eigenvectors
    (``A vr[:, k] = w[k] vr[:, k]``), enable_eigvec_derivs (only changes JAX's derivative rule),
    implementation (a backend choice; ignored). Outputs are complex (pairs).
    """
    del enable_eigvec_derivs, implementation
    aval = ctx.avals_in[0]
    n = static_size(aval.shape[-1], "matrix size", "eig")
    complex_input = is_complex(aval.dtype)
    spec = Spec(tuple(aval.shape), real_dtype(aval.dtype))
    out_dtype = real_dtype(ctx.avals_out[0].dtype)

    def build(g: GraphBuilder, inputs: list[ir.Value]) -> list[ir.Value]:
        a, work = working(g, inputs[0], complex_input, spec)
        dtype = work.dtype
        a, scale = balance(g, a, n, work)  # as dgeev/zgeev: D^-1 A D, eigenvectors mapped back by D below
        if complex_input:
            t, z, ok = complex_schur(g, a, n, work)
            w = diag_pair(g, t, n, dtype)
            real_vector: ir.Value | None = None
            second: ir.Value | None = None
        else:  # dgeev's way: the real Schur form, its eigenvalues exact, then the complex triangular form
            real_t, real_z, ok = real_schur(g, a[0], n, work)
            wr, wi, second = real_eigenvalues(g, real_t, n, dtype)
            w = (wr, wi)
            real_vector = as_row(g, g.op("Equal", wi, scalar(g, 0, dtype)))
            t, z = complexify(g, real_t, real_z, n, work, w) if (compute_left_eigenvectors or compute_right_eigenvectors) else (None, None)
        outputs = [as_output(g, w, ok, 1, dtype, out_dtype)]
        for wanted, solve in ((compute_left_eigenvectors, left_vectors), (compute_right_eigenvectors, right_vectors)):
            if not wanted:
                continue
            v = c_matmul(g, z, solve(g, t, n, work))
            rows = as_column(g, scale if solve is right_vectors else g.op("Reciprocal", scale))  # right: D v, left: D^-1 u
            v = normalize_columns(g, (g.op("Mul", v[0], rows), g.op("Mul", v[1], rows)), n, dtype)
            if real_vector is not None and second is not None:
                v = _real_input_symmetry(g, v, real_vector, second, n, dtype)
            outputs.append(as_output(g, v, ok, 2, dtype, out_dtype))
        return outputs

    params = (bool(compute_left_eigenvectors), bool(compute_right_eigenvectors))
    return local_function(storage_ctx(ctx), "Eig", [x], build, params=params, input_names=["a"])
