"""How the convolution-form tests run a generated module: its jaxpr as text (which primitives a form
uses) and its output in each way a user calls it (eager, `jax.jit` with the weights as arguments, the
prepared weights jitted, and `wb.jit_forward` with the model's XLA options)."""

from __future__ import annotations

import jax
import numpy as np

import workbench as wb


def jaxpr_text(forward, params, x) -> str:
    """The jaxpr of ``forward(params, x)`` as text (with the jitted parts' bodies)."""
    return str(jax.make_jaxpr(forward)(params, x))


def outputs_in_every_form(generated, x: np.ndarray) -> list[np.ndarray]:
    """``generated``'s output for ``x``: eager, jitted, jitted on prepared weights, and jit_forward'ed."""
    params = generated.params
    prepared = generated.prepare(params)
    return [np.asarray(y) for y in (
        generated.forward(params, x),
        jax.jit(generated.forward)(params, x),
        jax.jit(generated.forward_prepared)(prepared, x),
        wb.jit_forward(generated.forward_prepared, prepared)(x),
    )]
