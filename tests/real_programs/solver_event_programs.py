"""diffrax and optimistix forms the catalogue's first programs leave out, as their documentation writes them.

diffrax: a solve stopped by an event (``diffrax.Event`` with a condition function, its crossing located by
optimistix's Newton root finder: a falling ball that stops when it reaches the ground); an SDE driven by a
``VirtualBrownianTree`` (``MultiTerm`` of a drift and a diagonal ``ControlTerm``, Euler-Maruyama); the
neural controlled differential equation of diffrax's examples (Hermite cubic interpolation of the observations,
``ControlTerm(...).to_ode()``, Tsit5 with the observation times as ``jump_ts``); dense output
(``SaveAt(dense=True)``, the solution evaluated and differentiated at query times).
optimistix: a least-squares curve fit by Levenberg-Marquardt and a BFGS minimisation, both with
``throw=False`` as the docs advise under jit (the ``result`` code returned instead of a host check).

Iteration counts are not compared: in float32 they are rounding noise of the stopping test. Measured on the
Levenberg-Marquardt fit here: JAX jitted takes 8 steps, JAX op by op 7, and 1e-7 perturbations of the data
give 7, 8 or 9 (at ``rtol=1e-6``: 10, 12 or 14); the fitted values agree to 1e-4 whichever step stops.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_EQX_NAN = {"EQX_ON_ERROR": "nan"}  # diffrax's Brownian tree and interpolations check their inputs with eqx.error_if


def _normal(seed: int, *shape: int, scale: float = 1.0) -> np.ndarray:
    """Normal samples from their own seed (a program's data do not depend on which programs were built before)."""
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


@program("diffrax_event_falling_ball", library="diffrax", rtol=1e-3, atol=1e-4,
         origin="diffrax's events: a ball falling with linear drag, the solve stopped by diffrax.Event(cond_fn="
                "height) and the ground contact located by optimistix.Newton; Tsit5 with a PID controller")
def diffrax_event_falling_ball() -> Built:
    import diffrax
    import optimistix as optx

    def field(t: Any, y: jax.Array, drag: jax.Array) -> jax.Array:
        return jnp.stack([y[1], -9.81 - drag * y[1]])

    def height(t: Any, y: jax.Array, args: Any, **kwargs: Any) -> jax.Array:
        return y[0]

    def fall(y0: jax.Array, drag: jax.Array) -> tuple[jax.Array, ...]:
        event = diffrax.Event(height, root_finder=optx.Newton(rtol=1e-5, atol=1e-5))
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(field), diffrax.Tsit5(), 0.0, 10.0, 0.01, y0, args=drag, event=event,
            stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-6), max_steps=128, throw=False)
        return solution.ts, solution.ys, solution.event_mask

    return Built(fall, [(2,), ()], [np.array([10.0, 1.0], np.float32), np.float32(0.1)])


@program("diffrax_sde_brownian_tree", library="diffrax", env=_EQX_NAN,
         origin="diffrax's SDE usage: MultiTerm(ODETerm(drift), ControlTerm(diagonal diffusion, "
                "VirtualBrownianTree(key))) solved by Euler (Euler-Maruyama), saved at fixed times")
def diffrax_sde_brownian_tree() -> Built:
    import diffrax
    import lineax

    def sample_paths(key_data: jax.Array, y0: jax.Array, theta: jax.Array) -> jax.Array:
        brownian = diffrax.VirtualBrownianTree(0.0, 1.0, tol=1e-2, shape=(3,), key=jax.random.wrap_key_data(key_data))
        drift = diffrax.ODETerm(lambda t, y, args: -args * y)
        diffusion = diffrax.ControlTerm(lambda t, y, args: lineax.DiagonalLinearOperator(0.3 * jnp.cos(y)), brownian)
        solution = diffrax.diffeqsolve(diffrax.MultiTerm(drift, diffusion), diffrax.Euler(), 0.0, 1.0, 0.05, y0,
                                       args=theta, saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 1.0, 6)), throw=False)
        return solution.ys

    key_data = np.asarray(jax.random.key_data(jax.random.key(3)))
    return Built(sample_paths, [jax.ShapeDtypeStruct((2,), jnp.uint32), (3,), ()],
                 [key_data, _normal(1, 3), np.float32(0.5)])


@program("diffrax_neural_cde", library="diffrax", env=_EQX_NAN, rtol=1e-3, atol=1e-4,
         origin="diffrax examples/neural_cde: observations interpolated by backward_hermite_coefficients and "
                "CubicInterpolation, an eqx.nn.MLP vector field in ControlTerm(...).to_ode(), Tsit5 with a PID "
                "controller stepping onto the observation times (jump_ts), a linear readout of the final state")
def diffrax_neural_cde() -> Built:
    import diffrax
    import equinox as eqx

    hidden, channels = 4, 3
    keys = jax.random.split(jax.random.key(11), 3)
    field = eqx.nn.MLP(hidden, hidden * channels, 16, 1, activation=jax.nn.softplus, final_activation=jnp.tanh,
                       key=keys[0])
    initial = eqx.nn.Linear(channels, hidden, key=keys[1])
    readout = eqx.nn.Linear(hidden, 1, key=keys[2])

    def classify(ts: jax.Array, observations: jax.Array) -> jax.Array:
        control = diffrax.CubicInterpolation(ts, diffrax.backward_hermite_coefficients(ts, observations))
        term = diffrax.ControlTerm(lambda t, y, args: field(y).reshape(hidden, channels), control).to_ode()
        solution = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), ts[0], ts[-1], None, initial(control.evaluate(ts[0])),
            stepsize_controller=diffrax.PIDController(rtol=1e-3, atol=1e-5, jump_ts=ts),
            saveat=diffrax.SaveAt(t1=True), max_steps=128, throw=False)
        return jax.nn.sigmoid(readout(solution.ys[-1]))

    ts = np.linspace(0.0, 3.0, 10).astype(np.float32)
    observations = np.stack([ts, np.sin(2 * ts), np.cos(ts)], axis=-1).astype(np.float32) + _normal(2, 10, 3, scale=0.1)
    return Built(classify, [(10,), (10, channels)], [ts, observations])


@program("diffrax_dense_output", library="diffrax", rtol=1e-3, atol=1e-4,
         origin="diffrax's dense output: an oscillator solved by Dopri5 with SaveAt(dense=True), the solution's "
                "interpolant evaluated (solution.evaluate) and differentiated (solution.derivative) at query times")
def diffrax_dense_output() -> Built:
    import diffrax

    def oscillator(t: Any, y: jax.Array, stiffness: jax.Array) -> jax.Array:
        return jnp.stack([y[1], -stiffness * y[0] - 0.1 * y[1]])

    def interpolate(y0: jax.Array, stiffness: jax.Array, queries: jax.Array) -> tuple[jax.Array, jax.Array]:
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(oscillator), diffrax.Dopri5(), 0.0, 4.0, 0.1, y0, args=stiffness,
            stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-6), saveat=diffrax.SaveAt(dense=True),
            max_steps=128, throw=False)
        return jax.vmap(solution.evaluate)(queries), jax.vmap(solution.derivative)(queries)

    queries = np.sort(np.random.default_rng(3).uniform(0.05, 3.95, 7)).astype(np.float32)
    return Built(interpolate, [(2,), (), ("N",)], [np.array([1.0, 0.0], np.float32), np.float32(2.0), queries],
                 resize=lambda sizes, rng: [np.array([1.0, 0.0], np.float32), np.float32(2.0),
                                            np.sort(rng.uniform(0.0, 4.0, sizes["N"])).astype(np.float32)])


@program("optimistix_levenberg_marquardt_fit", library="optimistix", rtol=1e-3, atol=1e-4,
         origin="optimistix.least_squares with LevenbergMarquardt: a decaying exponential a*exp(-b*t)+c fitted to "
                "noisy samples (the residuals' Jacobian and the damped normal equations, lineax inside), throw=False")
def optimistix_levenberg_marquardt_fit() -> Built:
    import optimistix as optx

    def residuals(p: jax.Array, data: tuple[jax.Array, jax.Array]) -> jax.Array:
        t, y = data
        return p[0] * jnp.exp(-p[1] * t) + p[2] - y

    def fit(t: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        solution = optx.least_squares(residuals, optx.LevenbergMarquardt(rtol=1e-4, atol=1e-4),
                                      jnp.array([1.0, 1.0, 0.0]), args=(t, y), max_steps=64, throw=False)
        return solution.value, jnp.sum(residuals(solution.value, (t, y)) ** 2)

    t = np.linspace(0.0, 4.0, 20).astype(np.float32)
    # 20 samples, fixed: the QR factorisation inside (geqrf) needs static matrix dimensions in the export
    return Built(fit, [(20,), (20,)], [t, (2.0 * np.exp(-0.7 * t) + 0.3 + _normal(4, 20, scale=0.01)).astype(np.float32)])


@program("optimistix_bfgs_minimise", library="optimistix", rtol=1e-3, atol=1e-4,
         origin="optimistix.minimise with BFGS on the Rosenbrock function of the docs' examples (a batch of "
                "starting points under jax.vmap, the curvature scale an input), throw=False")
def optimistix_bfgs_minimise() -> Built:
    import optimistix as optx

    def rosenbrock(x: jax.Array, scale: jax.Array) -> jax.Array:
        return jnp.sum(scale * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def minimise(starts: jax.Array, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
        def one(x0: jax.Array) -> tuple[jax.Array, jax.Array]:
            solution = optx.minimise(rosenbrock, optx.BFGS(rtol=1e-4, atol=1e-4), x0, args=scale, max_steps=200,
                                     throw=False)
            return solution.value, rosenbrock(solution.value, scale)

        return jax.vmap(one)(starts)

    starts = np.array([[-1.0, 1.2, 0.5, 0.8], [0.3, 0.2, 0.1, 1.5], [1.5, 1.0, 0.5, 0.2]], np.float32)
    return Built(minimise, [("B", 4), ()], [starts, np.float32(10.0)])
