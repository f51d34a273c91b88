"""Programs from NumPyro: a model's potential energy and log density, as NUTS evaluates them.

A hierarchical regression (partial pooling over groups, Student-t likelihood) and a multivariate mixture
with an LKJ correlation prior; each computes sample-free functions of the model (log densities in
constrained and unconstrained space, their gradients), which exercise lgamma, digamma, log1p/expm1,
triangular solves and numpyro's constraint transforms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(4646)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- NumPyro
def _hierarchical_regression(x, group, y=None, groups: int = 3):
    """A varying-intercept linear regression (the radon/eight-schools shape): partial pooling over groups."""
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(2.0))
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    with numpyro.plate("groups", groups):
        intercept = numpyro.sample("intercept", dist.Normal(mu, tau))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("obs", dist.StudentT(4.0, intercept[group] + slope * x, sigma), obs=y)


@program("numpyro_potential_energy", library="numpyro",
         origin="numpyro.infer.util.potential_energy (and its gradient, what NUTS evaluates) of a hierarchical regression",
         rtol=1e-4, atol=1e-4)
def _numpyro_potential() -> Built:
    from numpyro.infer.util import potential_energy

    def energy(params, x, group, y):
        def potential(p):
            return potential_energy(_hierarchical_regression, (x, group), {"y": y}, p)

        return jax.value_and_grad(potential)(params)

    params = {"mu": np.float32(0.3), "tau": np.float32(-0.2), "slope": np.float32(0.8), "sigma": np.float32(0.1),
              "intercept": _normal(3)}
    specs = [{k: np.shape(v) for k, v in params.items()}, ("N",), jax.ShapeDtypeStruct(("N",), jnp.int32), ("N",)]
    group = _RNG.integers(0, 3, 20).astype(np.int32)
    return Built(energy, specs, [params, _normal(20), group, _normal(20)])


@program("numpyro_log_density", library="numpyro",
         origin="numpyro.infer.util.log_density of a hierarchical regression at constrained values (the model's joint log density)",
         rtol=1e-4, atol=1e-4)
def _numpyro_log_density() -> Built:
    from numpyro.infer.util import log_density

    def joint(params, x, group, y):
        value, _ = log_density(_hierarchical_regression, (x, group), {"y": y}, params)
        return value

    params = {"mu": np.float32(0.3), "tau": np.float32(0.7), "slope": np.float32(0.8), "sigma": np.float32(1.1),
              "intercept": _normal(3)}
    specs = [{k: np.shape(v) for k, v in params.items()}, ("N",), jax.ShapeDtypeStruct(("N",), jnp.int32), ("N",)]
    group = _RNG.integers(0, 3, 20).astype(np.int32)
    return Built(joint, specs, [params, _normal(20), group, _normal(20)])


@program("numpyro_lkj_mixture", library="numpyro",
         origin="numpyro potential energy and gradient of a multivariate model (LKJCholesky correlation prior, "
                "Dirichlet-weighted Gaussian mixture) in unconstrained space",
         rtol=1e-4, atol=1e-4)
def _numpyro_lkj() -> Built:
    from numpyro.infer.util import potential_energy

    def model(points):
        import numpyro
        import numpyro.distributions as dist

        correlation = numpyro.sample("correlation", dist.LKJCholesky(2, concentration=2.0))
        scales = numpyro.sample("scales", dist.LogNormal(0.0, 1.0).expand([2]).to_event(1))
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
        centres = numpyro.sample("centres", dist.Normal(0.0, 3.0).expand([3, 2]).to_event(2))
        scale_tril = scales[:, None] * correlation
        components = dist.MultivariateNormal(centres, scale_tril=scale_tril)
        with numpyro.plate("data", points.shape[0]):
            numpyro.sample("obs", dist.MixtureSameFamily(dist.Categorical(probs=weights), components), obs=points)

    def energy(params, points):
        return jax.value_and_grad(lambda p: potential_energy(model, (points,), {}, p))(params)

    params = {"correlation": _normal(1), "scales": 0.3 * _normal(2), "weights": 0.5 * _normal(2), "centres": _normal(3, 2)}
    return Built(energy, [{k: np.shape(v) for k, v in params.items()}, ("N", 2)], [params, _normal(15, 2)])
