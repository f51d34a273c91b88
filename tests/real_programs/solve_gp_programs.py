"""Programs from lineax (linear solves on operators) and tinygp (Gaussian processes), written as their
documentation writes them.

lineax: one system solved by each direct solver its docs list (LU, QR, SVD, Cholesky on a
positive-semidefinite-tagged operator, Tridiagonal on a TridiagonalLinearOperator), vmapped over a batch of
right-hand sides; and the Krylov solvers (CG on a matrix-free FunctionLinearOperator, GMRES, BiCGStab)
whose while loops stop at a tolerance, so their trip count depends on the data. ``throw=False`` as the docs
advise under jit: no host callback checking the result (the solutions' ``result`` codes are returned instead).
tinygp: the docs' GP regression (a scaled ExpSquared plus a Matern-3/2, log-likelihood and the conditioned
predictive mean and variance by the direct solver) and a quasiseparable celerite-style kernel (SHO + Matern32),
whose solver runs its factorisation and solves as lax.scans (``assume_sorted=True``, as the docs advise for speed:
otherwise the solver checks the order of the times in a jax.debug.callback, host Python that no exported file
can hold).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(4950)


def _normal(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * _RNG.standard_normal(shape)).astype(np.float32)


# ----------------------------------------------------------------------------- lineax
@program("lineax_direct_solvers", library="lineax", rtol=2e-3, atol=2e-4,
         origin="lineax.linear_solve with LU, QR, SVD, Cholesky (positive_semidefinite_tag) and Tridiagonal "
                "on MatrixLinearOperator / TridiagonalLinearOperator, vmapped over right-hand sides")
def lineax_direct_solvers() -> Built:
    import lineax as lx

    def solve(matrix: jax.Array, diagonals: jax.Array, rhs: jax.Array) -> tuple[jax.Array, ...]:
        general = lx.MatrixLinearOperator(matrix)
        spd = lx.MatrixLinearOperator(matrix @ matrix.T + 0.5 * jnp.eye(matrix.shape[0]), lx.positive_semidefinite_tag)
        tridiagonal = lx.TridiagonalLinearOperator(2.5 + diagonals[0] ** 2, diagonals[1, :-1], diagonals[2, :-1])

        def each(b: jax.Array) -> tuple[jax.Array, ...]:
            return tuple(lx.linear_solve(operator, b, solver, throw=False).value for operator, solver in (
                (general, lx.LU()), (general, lx.QR()), (general, lx.SVD()), (spd, lx.Cholesky()),
                (tridiagonal, lx.Tridiagonal())))

        return jax.vmap(each)(rhs)

    n = 6
    matrix = _normal(n, n) + 3.0 * np.eye(n, dtype=np.float32)
    return Built(solve, [(n, n), (3, n), ("B", n)], [matrix, _normal(3, n), _normal(4, n)])


@program("lineax_krylov_solvers", library="lineax", rtol=1e-3, atol=1e-4,
         origin="lineax's iterative solvers: CG on a matrix-free FunctionLinearOperator (a 1-D Laplacian stencil "
                "plus a diagonal) and GMRES / BiCGStab on a nonsymmetric matrix, each stopping at its tolerance")
def lineax_krylov_solvers() -> Built:
    import lineax as lx

    def solve(shift: jax.Array, matrix: jax.Array, rhs: jax.Array) -> tuple[jax.Array, ...]:
        def stencil(x: jax.Array) -> jax.Array:
            padded = jnp.pad(x, 1)
            return (2.0 + shift) * x - padded[:-2] - padded[2:]

        structure = jax.ShapeDtypeStruct(rhs.shape, rhs.dtype)
        laplacian = lx.FunctionLinearOperator(stencil, structure, lx.positive_semidefinite_tag)
        cg = lx.linear_solve(laplacian, rhs, lx.CG(rtol=1e-5, atol=1e-5, max_steps=64), throw=False)
        nonsymmetric = lx.MatrixLinearOperator(matrix)
        gmres = lx.linear_solve(nonsymmetric, rhs, lx.GMRES(rtol=1e-5, atol=1e-5, restart=4, max_steps=64),
                                throw=False)
        bicgstab = lx.linear_solve(nonsymmetric, rhs, lx.BiCGStab(rtol=1e-5, atol=1e-5, max_steps=64), throw=False)
        return (cg.value, cg.stats["num_steps"], gmres.value, bicgstab.value, bicgstab.stats["num_steps"])

    n = 10
    matrix = _normal(n, n, scale=0.3) + 2.0 * np.eye(n, dtype=np.float32)
    shift = (0.5 + _RNG.uniform(0, 1, n)).astype(np.float32)
    return Built(solve, [(n,), (n, n), (n,)], [shift, matrix, _normal(n)])


# ----------------------------------------------------------------------------- tinygp
@program("tinygp_regression", library="tinygp", rtol=1e-3, atol=1e-4,
         origin="tinygp's GP regression tutorial: amplitude * ExpSquared + Matern32 kernel, GaussianProcess with "
                "a diagonal noise, log_probability and condition(...).gp's predictive mean and variance")
def tinygp_regression() -> Built:
    from tinygp import GaussianProcess, kernels

    # fixed sizes: condition() builds its noise with jnp.diag_indices(n), which needs a constant n
    def fit(params: jax.Array, x: jax.Array, y: jax.Array, x_test: jax.Array) -> tuple[jax.Array, ...]:
        log_amp, log_scale, log_diag = params[0], params[1], params[2]
        kernel = jnp.exp(2 * log_amp) * kernels.ExpSquared(jnp.exp(log_scale)) + 0.3 * kernels.Matern32(2.0)
        gp = GaussianProcess(kernel, x, diag=jnp.exp(log_diag), mean=0.1)
        conditioned = gp.condition(y, x_test).gp
        return gp.log_probability(y), conditioned.loc, conditioned.variance

    x = np.sort(_RNG.uniform(0, 10, 16)).astype(np.float32)
    y = (np.sin(x) + 0.1 * _RNG.standard_normal(16)).astype(np.float32)
    params = np.array([0.1, 0.2, -2.0], np.float32)
    return Built(fit, [(3,), (16,), (16,), (9,)], [params, x, y, _RNG.uniform(0, 10, 9).astype(np.float32)])


@program("tinygp_quasisep_celerite", library="tinygp", rtol=1e-3, atol=1e-4,
         origin="tinygp's scalable-GP tutorial: quasiseparable SHO + Matern32 kernels on sorted times, the "
                "quasisep solver's Cholesky and solves as lax.scans, log-likelihood, and a Matern52 GP's predictive mean and variance")
def tinygp_quasisep_celerite() -> Built:
    from tinygp import GaussianProcess, kernels

    def fit(params: jax.Array, t: jax.Array, y: jax.Array) -> tuple[jax.Array, ...]:
        kernel = (kernels.quasisep.SHO(omega=jnp.exp(params[0]), quality=jnp.exp(params[1]), sigma=1.0)
                  + 0.5 * kernels.quasisep.Matern32(scale=jnp.exp(params[2])))
        # conditioning on a sum of quasiseparable kernels fails in tinygp 0.3.1 itself (an assertion in its
        # block-matrix to_dense, under plain jax.jit too): the predictive mean uses one Matern-5/2 kernel
        smooth = GaussianProcess(kernels.quasisep.Matern52(scale=jnp.exp(params[2])), t, diag=0.05, assume_sorted=True).condition(y).gp
        return GaussianProcess(kernel, t, diag=0.05, assume_sorted=True).log_probability(y), smooth.loc, smooth.variance

    t = np.sort(_RNG.uniform(0, 20, 40)).astype(np.float32)
    y = (np.sin(1.3 * t) + 0.2 * _RNG.standard_normal(40)).astype(np.float32)
    return Built(fit, [(3,), (40,), (40,)], [np.array([0.3, 1.0, 0.5], np.float32), t, y])
