"""Regression: the generated code is differentiable under ``jax.jit`` (Conv, BatchNorm, MaxPool, AveragePool).

``lax.reduce_window`` only gets its gradient rule (max/sum monoid) when its init value is
concrete; the pooling helpers used ``jnp.array(...)`` inits, which are tracers under jit, so
``jax.jit(jax.grad(loss))`` failed with "Linearization failed to produce known values"
(found by the zoo round trip on the CNNs). The reference is a central finite difference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import workbench as wb
from tests.support.codegen_models import cnn


def test_jit_grad_through_conv_and_pooling_matches_finite_differences():
    forward, params = wb.to_jax(cnn())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    weights = rng.standard_normal((2, 5)).astype(np.float32)

    def loss(inputs: jax.Array) -> jax.Array:
        y, _batch = forward(params, inputs)
        return jnp.sum(y * weights)

    grad = np.asarray(jax.jit(jax.grad(loss))(x))
    assert np.abs(grad).max() > 0
    np.testing.assert_allclose(grad, np.asarray(jax.grad(loss)(x)), rtol=1e-4, atol=1e-5)  # eager agrees
    # finite difference in float64 (small step, so no ReLU/max kink is crossed)
    direction = rng.standard_normal(x.shape)
    eps = 1e-6
    with jax.enable_x64(True):
        params64 = {k: (np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else v) for k, v in params.items()}
        weights64 = weights.astype(np.float64)

        def loss64(inputs: np.ndarray) -> float:
            y, _batch = forward(params64, inputs)
            return float(jnp.sum(y * weights64))

        x64 = x.astype(np.float64)
        numeric = (loss64(x64 + eps * direction) - loss64(x64 - eps * direction)) / (2 * eps)
    analytic = float(np.sum(grad.astype(np.float64) * direction))
    assert abs(numeric - analytic) <= 1e-3 * max(1.0, abs(analytic)), (numeric, analytic)

def test_jit_grad_with_respect_to_params():
    forward, params = wb.to_jax(cnn())
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    float_params = {k: v for k, v in params.items() if np.asarray(v).dtype.kind == "f"}
    fixed = {k: v for k, v in params.items() if k not in float_params}

    def loss(trainable: dict) -> jax.Array:
        return jnp.sum(forward({**fixed, **trainable}, x)[0] ** 2)

    grads = jax.jit(jax.grad(loss))(float_params)
    assert set(grads) == set(float_params)
    assert np.abs(np.asarray(grads["conv.w"])).max() > 0  # the gradient reaches the first layer through both pools
