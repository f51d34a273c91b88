"""Programs from JAXopt (solvers in JAX), written as its documentation writes them: L-BFGS on an
L2-regularised logistic regression, projected gradient for non-negative least squares, and the gradient of
a hyperparameter through a solver's solution by implicit differentiation. The solvers are while loops with
a tolerance (``solver.run``), so the exported models iterate as JAX does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program


def _data(seed: int, rows: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    weights = rng.standard_normal(features).astype(np.float32)
    return x, x @ weights + 0.1 * rng.standard_normal(rows).astype(np.float32)


@program("jaxopt_lbfgs_logistic_regression", library="jaxopt",
         origin="JAXopt: LBFGS(fun=...).run on an L2-regularised binary logistic regression")
def jaxopt_lbfgs_logistic_regression() -> Built:
    import jaxopt

    def loss(w, x, labels):
        logits = x @ w
        return jnp.mean(jax.nn.softplus(logits) - labels * logits) + 0.05 * jnp.sum(w**2)

    solver = jaxopt.LBFGS(fun=loss, maxiter=30, tol=1e-4)

    def fit(x, labels):
        result = solver.run(jnp.zeros(x.shape[1]), x, labels)
        return result.params, result.state.value, result.state.iter_num

    x, target = _data(0, 32, 4)
    return Built(fit, [(32, 4), (32,)], [x, (target > 0).astype(np.float32)])


@program("jaxopt_projected_gradient_nnls", library="jaxopt",
         origin="JAXopt: ProjectedGradient with projection_non_negative (non-negative least squares)")
def jaxopt_projected_gradient_nnls() -> Built:
    import jaxopt
    from jaxopt.projection import projection_non_negative

    def residual(w, x, y):
        return 0.5 * jnp.mean((x @ w - y) ** 2)

    # a fixed step (below 1/L for these data): with the default backtracking line search, its sufficient-decrease
    # test near convergence compares two float32 values equal to rounding, and XLA's and onnxruntime's
    # rounding chose different steps at iteration 16 (measured: the iterates agree to 2.4e-7 through 15
    # iterations, then differ by 1e-4 and stop 3 iterations apart; LBFGS's line search above does not flip)
    solver = jaxopt.ProjectedGradient(fun=residual, projection=projection_non_negative, stepsize=0.4, maxiter=60,
                                      tol=1e-4)

    def fit(x, y):
        result = solver.run(jnp.zeros(x.shape[1]), x=x, y=y)
        return result.params, result.state.error, result.state.iter_num

    x, y = _data(1, 24, 5)
    return Built(fit, [(24, 5), (24,)], [x, y])


@program("jaxopt_implicit_diff_ridge", library="jaxopt",
         origin="JAXopt: gradient of a validation loss through GradientDescent's solution (implicit differentiation)")
def jaxopt_implicit_diff_ridge() -> Built:
    import jaxopt

    def ridge(w, strength, x, y):
        return 0.5 * jnp.mean((x @ w - y) ** 2) + 0.5 * strength * jnp.sum(w**2)

    solver = jaxopt.GradientDescent(fun=ridge, maxiter=60, tol=1e-5, implicit_diff=True)

    def validation_loss(strength, x, y, x_valid, y_valid):
        w = solver.run(jnp.zeros(x.shape[1]), strength, x, y).params
        return 0.5 * jnp.mean((x_valid @ w - y_valid) ** 2)

    def loss_and_gradient(strength, x, y, x_valid, y_valid):
        return jax.value_and_grad(validation_loss)(strength, x, y, x_valid, y_valid)

    x, y = _data(2, 24, 4)
    x_valid, y_valid = _data(3, 12, 4)
    return Built(loss_and_gradient, [(), (24, 4), (24,), (12, 4), (12,)],
                 [np.float32(0.3), x, y, x_valid, y_valid])
