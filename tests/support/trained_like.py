"""Parameters as after training, for test models whose libraries zero-initialise some of them.

Haiku's ResNets start their logits layer at zero and every residual block's last BatchNorm scale at zero
(a training trick): freshly initialised, such a network outputs exactly 0 for any input, or ignores its
residual branches, so a parity check on it compares nothing of its convolutions. Tests that build these
models fill the all-zero parameters with random values first.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def fill_zero_initialised(params: Any, seed: int) -> Any:
    """``params`` (a pytree) with every all-zero floating-point leaf replaced by random values: a vector
    (a scale, an offset, a bias) uniform in [0.1, 0.3], a larger array (a kernel) normal with deviation 0.02:
    small, as a residual block's last scale is after training, so that activations stay of order 1."""
    rng = np.random.default_rng(seed)

    def fill(leaf: Any) -> Any:
        array = np.asarray(leaf)
        if array.dtype.kind != "f" or array.size == 0 or np.any(array):
            return leaf
        values = rng.uniform(0.1, 0.3, array.shape) if array.ndim <= 1 else 0.02 * rng.standard_normal(array.shape)
        return jnp.asarray(values, dtype=array.dtype)

    return jax.tree_util.tree_map(fill, params)


def restart_moving_averages(state: Any) -> Any:
    """Haiku ``state`` with every ExponentialMovingAverage restarted (``counter``, ``hidden`` and ``average``
    zero), so that the next training-mode call sets each average to exactly that call's batch statistic
    (Haiku debiases an average by its update count)."""
    return jax.tree_util.tree_map(jnp.zeros_like, state)


def haiku_as_trained(transformed: Any, init_sample: Any, *, fill_zeros: bool, seed: int) -> tuple[Any, Any]:
    """``(params, state)`` of a ``hk.transform_with_state`` of ``forward(x, is_training)``: initialised in training
    mode on ``init_sample``; with ``fill_zeros`` the all-zero parameters filled (``fill_zero_initialised``) and
    the BatchNorm moving statistics then measured again on ``init_sample`` with the filled parameters. Without
    that second measurement the statistics would be those of the network whose residual branches were still
    switched off by their zero scales, and each block would amplify its input (Haiku's ResNet-18 reached
    logits of ~5e3, where float32 rounding alone moves them by 1e-3 relative)."""
    params, state = jax.jit(transformed.init, static_argnums=2)(jax.random.key(0), init_sample, True)
    if not fill_zeros:
        return params, state
    params = fill_zero_initialised(params, seed=seed)
    apply_training = jax.jit(transformed.apply, static_argnums=4)
    _, state = apply_training(params, restart_moving_averages(state), None, init_sample, True)
    return params, state
