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
