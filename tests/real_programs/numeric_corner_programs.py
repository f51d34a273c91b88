"""Corners of jax.numpy, jax.lax and jax.scipy as numerical code uses them, and optax training steps.

jax.numpy / lax / scipy: batched linear algebra (inverse, log-determinant, Cholesky and QR solves, the
symmetric eigensolver), batched n-dimensional FFTs (rfft2/irfft2, fftn, fftshift), jax.scipy.special's
functions of statistics (gammaln, digamma, erf, erfinv, ndtri, xlogy, betaln, i0e, logsumexp with weights),
segment reductions (jax.ops.segment_sum / segment_max) with jnp.unique(size=) and a multi-operand lax.sort,
and the cumulative reductions (cumprod, cummax, cumlogsumexp).

optax: whole training steps exported as one function of (parameters, optimiser state, batch), as optax's
documentation writes them: loss, gradient, the optimiser's update and optax.apply_updates, with a learning-rate
schedule in the state's step count, gradient clipping, and a masked weight decay.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(5050)


def _normal(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * _RNG.standard_normal(shape)).astype(np.float32)


def _spd(batch: int, n: int) -> np.ndarray:
    """A batch of well-conditioned symmetric positive-definite matrices."""
    a = _RNG.standard_normal((batch, n, n))
    return (a @ np.swapaxes(a, -1, -2) / n + np.eye(n)).astype(np.float32)


# ----------------------------------------------------------------------------- jax.numpy / lax / scipy
@program("jnp_batched_linalg", library="jax.numpy",
         origin="jnp.linalg over a batch of matrices: inv, slogdet, a Cholesky solve (jax.scipy.linalg.cho_solve), "
                "least squares through QR and solve_triangular, and eigvalsh", rtol=2e-3, atol=2e-4)
def jnp_batched_linalg() -> Built:
    import jax.scipy.linalg as jsl

    def solve_all(spd: jax.Array, tall: jax.Array, rhs: jax.Array, observed: jax.Array) -> tuple[jax.Array, ...]:
        inverse = jnp.linalg.inv(spd)
        sign, logdet = jnp.linalg.slogdet(spd)
        x = jsl.cho_solve(jsl.cho_factor(spd, lower=True), rhs)
        q, r = jnp.linalg.qr(tall)
        least_squares = jsl.solve_triangular(r, jnp.swapaxes(q, -1, -2) @ observed, lower=False)
        return inverse, sign * logdet, x, least_squares, jnp.linalg.eigvalsh(spd)

    return Built(solve_all, [("B", 5, 5), ("B", 6, 4), ("B", 5, 3), ("B", 6, 2)],
                 [_spd(3, 5), _normal(3, 6, 4), _normal(3, 5, 3), _normal(3, 6, 2)])


@program("jnp_batched_fft", library="jax.numpy",
         origin="jnp.fft on batches of images: rfft2 / irfft2 low-pass filtering, a centred power spectrum "
                "(fftn, fftshift) and its radial mean", rtol=1e-3, atol=1e-4)
def jnp_batched_fft() -> Built:
    def spectra(images: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        spectrum = jnp.fft.rfft2(images, axes=(-2, -1))
        rows = jnp.fft.fftfreq(images.shape[-2])[:, None]
        columns = jnp.fft.rfftfreq(images.shape[-1])[None, :]
        low_pass = jnp.fft.irfft2(spectrum * (rows**2 + columns**2 < 0.1), s=images.shape[-2:], axes=(-2, -1))
        power = jnp.fft.fftshift(jnp.abs(jnp.fft.fftn(images, axes=(-2, -1))) ** 2, axes=(-2, -1))
        return low_pass, jnp.log1p(power), jnp.mean(power, axis=(-2, -1))

    return Built(spectra, [("B", 3, 8, 10)], [_normal(2, 3, 8, 10)])


@program("jax_scipy_special_stats", library="jax.scipy",
         origin="jax.scipy.special as statistics code uses it: gammaln/betaln (a Beta-binomial log likelihood), "
                "digamma, erf/erfinv/ndtri, xlogy entropy, i0e (von Mises) and a weighted logsumexp",
         rtol=2e-4, atol=2e-5)
def jax_scipy_special_stats() -> Built:
    import jax.scipy.special as jss

    def statistics(counts: jax.Array, alpha: jax.Array, probabilities: jax.Array) -> tuple[jax.Array, ...]:
        n = 20.0
        beta = alpha[::-1] + 0.5
        log_likelihood = (jss.gammaln(n + 1) - jss.gammaln(counts + 1) - jss.gammaln(n - counts + 1)
                          + jss.betaln(counts + alpha, n - counts + beta) - jss.betaln(alpha, beta))
        quantiles = jnp.stack([jss.ndtri(probabilities), jnp.sqrt(2.0) * jss.erfinv(2 * probabilities - 1),
                               jss.erf(probabilities)])
        entropy = -jnp.sum(jss.xlogy(probabilities, probabilities), axis=-1)
        von_mises = jnp.log(jss.i0e(alpha)) + alpha
        mixture = jss.logsumexp(log_likelihood, axis=-1, b=probabilities)
        return log_likelihood, jss.digamma(alpha), quantiles, entropy, von_mises, mixture

    counts = _RNG.integers(0, 21, (4, 6)).astype(np.float32)
    alpha = _RNG.uniform(0.5, 4.0, (6,)).astype(np.float32)
    probabilities = _RNG.uniform(0.05, 0.95, (4, 6)).astype(np.float32)
    return Built(statistics, [("B", 6), (6,), ("B", 6)], [counts, alpha, probabilities])


@program("jnp_segments_unique_sort", library="jax.numpy",
         origin="grouped reductions: jnp.unique(size=, fill_value=) with inverse indices, jax.ops.segment_sum / "
                "segment_max over them, and a stable lax.sort of several operands (keys, then values) with num_keys=2")
def jnp_segments_unique_sort() -> Built:
    def group(labels: jax.Array, values: jax.Array) -> tuple[jax.Array, ...]:
        unique, inverse, counts = jnp.unique(labels, size=8, fill_value=-1, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(labels.shape)
        totals = jax.ops.segment_sum(values, inverse, num_segments=8)
        largest = jax.ops.segment_max(values, inverse, num_segments=8)
        means = totals / jnp.maximum(counts, 1)[:, None]
        order = jnp.arange(labels.shape[0], dtype=jnp.int32)
        by_label, by_value, positions = jax.lax.sort((labels, values[:, 0], order), num_keys=2, is_stable=True)
        return unique, counts, means, jnp.where(counts[:, None] > 0, largest, 0.0), by_label, by_value, positions

    labels = _RNG.choice(np.array([3, 7, 7, 11, 2, 3, 40], np.int32), 15)
    return Built(group, [jax.ShapeDtypeStruct((15,), jnp.int32), (15, 2)], [labels, _normal(15, 2)])


@program("jnp_cumulative_reductions", library="jax.numpy",
         origin="running statistics: jnp.cumprod (discount factors), lax.cummax (drawdown), lax.cumlogsumexp "
                "(log normaliser of a stream), jnp.cumsum in reverse (returns to go) and nancumsum")
def jnp_cumulative_reductions() -> Built:
    def running(rewards: jax.Array, prices: jax.Array, logits: jax.Array) -> tuple[jax.Array, ...]:
        discounts = jnp.cumprod(jnp.full_like(rewards, 0.9), axis=-1) / 0.9
        returns_to_go = jnp.flip(jnp.cumsum(jnp.flip(rewards * discounts, -1), axis=-1), -1) / discounts
        peak = jax.lax.cummax(prices, axis=1)
        drawdown = (peak - prices) / peak
        log_normaliser = jax.lax.cumlogsumexp(logits, axis=1)
        with_gaps = jnp.nancumsum(jnp.where(rewards > 1.0, jnp.nan, rewards), axis=-1)
        return returns_to_go, drawdown, log_normaliser, with_gaps

    prices = np.exp(np.cumsum(0.1 * _RNG.standard_normal((3, 12)), axis=1)).astype(np.float32)
    return Built(running, [("B", 12), ("B", 12), ("B", 12)], [_normal(3, 12), prices, _normal(3, 12)])


# ----------------------------------------------------------------------------- optax training steps
def _mlp_params(sizes: tuple[int, ...]) -> dict[str, dict[str, jax.Array]]:
    return {f"layer{i}": {"w": jnp.asarray(_normal(a, b, scale=1 / np.sqrt(a))), "b": jnp.asarray(_normal(b, scale=0.1))}
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}


def _mlp(params: dict[str, dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    layers = [params[name] for name in sorted(params)]
    for layer in layers[:-1]:
        x = jax.nn.gelu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def _state_after(optimizer: Any, params: Any, loss: Any, x: np.ndarray, y: np.ndarray, steps: int) -> Any:
    """The optimiser state after ``steps`` updates on (x, y): the exported step starts mid-schedule, with
    moments that are not zero."""
    @jax.jit
    def step(params: Any, state: Any) -> tuple[Any, Any]:
        updates, state = optimizer.update(jax.grad(loss)(params, x, y), state, params)
        return jax.tree_util.tree_map(lambda p, u: p + u, params, updates), state

    state = optimizer.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params, state


@program("optax_adamw_train_step", library="optax",
         origin="optax's training-step pattern: softmax cross-entropy, value_and_grad, chain(clip_by_global_norm, "
                "adamw(warmup_cosine_decay_schedule) with a weight-decay mask), apply_updates; one exported step "
                "of (params, opt_state, batch)", rtol=1e-4, atol=1e-5)
def optax_adamw_train_step() -> Built:
    import optax

    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=2, decay_steps=20, end_value=1e-4)
    decay_mask = {"layer0": {"w": True, "b": False}, "layer1": {"w": True, "b": False}}
    optimizer = optax.chain(optax.clip_by_global_norm(0.5),
                            optax.adamw(schedule, weight_decay=1e-2, mask=decay_mask))

    def loss(params: Any, x: jax.Array, labels: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(_mlp(params, x), labels).mean()

    def train_step(params: Any, opt_state: Any, x: jax.Array, labels: jax.Array) -> tuple[Any, Any, jax.Array]:
        value, grads = jax.value_and_grad(loss)(params, x, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    x, labels = _normal(8, 6), _RNG.integers(0, 4, 8).astype(np.int32)
    params, state = _state_after(optimizer, _mlp_params((6, 16, 4)), loss, x, labels, 3)
    return Built(train_step, [params, state, ("B", 6), jax.ShapeDtypeStruct(("B",), jnp.int32)],
                 [params, state, _normal(5, 6), _RNG.integers(0, 4, 5).astype(np.int32)])


@program("optax_adafactor_accumulated_step", library="optax",
         origin="optax.adafactor (factored second moments) under optax.MultiSteps gradient accumulation, with "
                "optax.ema of the parameters and a Huber loss: one exported step", rtol=1e-4, atol=1e-5)
def optax_adafactor_accumulated_step() -> Built:
    import optax

    optimizer = optax.MultiSteps(optax.adafactor(learning_rate=1e-2, min_dim_size_to_factor=4), every_k_schedule=2)
    average = optax.ema(0.9)

    def loss(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return optax.huber_loss(_mlp(params, x), y, delta=0.5).mean()

    def train_step(params: Any, opt_state: Any, ema_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, ...]:
        grads = jax.grad(loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        averaged, ema_state = average.update(params, ema_state)
        return params, opt_state, averaged, ema_state

    x, y = _normal(8, 5), _normal(8, 3)
    params, state = _state_after(optimizer, _mlp_params((5, 12, 3)), loss, x, y, 3)
    ema_state = average.init(params)
    return Built(train_step, [params, state, ema_state, ("B", 5), ("B", 3)],
                 [params, state, ema_state, _normal(6, 5), _normal(6, 3)])
