"""The training domain (``ai.onnx.preview.training``): the optimizer steps Adagrad, Momentum and Adam.

Each takes the learning rate R and the step count T (scalars), then n tensors of each state group
(Adagrad: X, G, H; Momentum: X, G, V; Adam: X, G, V, H) and returns the updated groups, following the
spec's formulas. The step count selects a branch (bias correction, first-step momentum) with
``jnp.where``, so the update stays jit-able.
"""

from __future__ import annotations

import jax.numpy as jnp

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper

TRAINING = "ai.onnx.preview.training"


@runtime_helper
def _adagrad(r, t, groups, decay_factor, epsilon, norm_coefficient):
    xs, gs, hs = groups
    rate = r / (1 + t * decay_factor)
    new_x, new_h = [], []
    for x, g, h in zip(xs, gs, hs):
        g = norm_coefficient * x + g
        h_new = h + g * g
        new_x.append((x - rate * g / (jnp.sqrt(h_new) + epsilon)).astype(x.dtype))
        new_h.append(h_new.astype(h.dtype))
    return tuple(new_x + new_h)


@runtime_helper
def _momentum(r, t, groups, alpha, beta, nesterov, norm_coefficient):
    xs, gs, vs = groups
    beta_now = jnp.where(t > 0, beta, 1.0)  # the first step takes the whole gradient
    new_x, new_v = [], []
    for x, g, v in zip(xs, gs, vs):
        g = norm_coefficient * x + g
        v_new = alpha * v + beta_now * g
        step = g + alpha * v_new if nesterov else v_new
        new_x.append((x - r * step).astype(x.dtype))
        new_v.append(v_new.astype(v.dtype))
    return tuple(new_x + new_v)


@runtime_helper
def _adam(r, t, groups, alpha, beta, epsilon, norm_coefficient, norm_coefficient_post):
    xs, gs, vs, hs = groups
    t = jnp.asarray(t, jnp.float64 if jnp.asarray(r).dtype == jnp.float64 else jnp.float32)
    corrected = r * jnp.sqrt(1 - beta ** t) / (1 - alpha ** t)
    rate = jnp.where(t > 0, corrected, r)  # bias correction from the first step on
    new_x, new_v, new_h = [], [], []
    for x, g, v, h in zip(xs, gs, vs, hs):
        g = norm_coefficient * x + g
        v_new = alpha * v + (1 - alpha) * g
        h_new = beta * h + (1 - beta) * (g * g)
        x_new = x - rate * (v_new / (jnp.sqrt(h_new) + epsilon))
        new_x.append(((1 - norm_coefficient_post) * x_new).astype(x.dtype))
        new_v.append(v_new.astype(v.dtype))
        new_h.append(h_new.astype(h.dtype))
    return tuple(new_x + new_v + new_h)


def _groups(ctx: NodeContext, count: int) -> str:
    """The optimizer's state inputs after R and T, as a tuple of ``count`` tuples of n tensors."""
    states = [ctx.x(i) for i in range(2, ctx.n_in)]
    if len(states) % count:
        raise ctx.error(f"expected {count} groups of equally many tensors after R and T, got {len(states)} tensors")
    n = len(states) // count
    parts = [f"({', '.join(states[k * n:(k + 1) * n])},)" for k in range(count)]
    return f"({', '.join(parts)},)"


@emitter("Adagrad", since=1, domain=TRAINING)
def adagrad(ctx: NodeContext) -> str:
    return ctx.call(_adagrad, ctx.x(0), ctx.x(1), _groups(ctx, 3), ctx.lit(ctx.fattr("decay_factor", 0.0)),
                    ctx.lit(ctx.fattr("epsilon", 1e-6)), ctx.lit(ctx.fattr("norm_coefficient", 0.0)))


@emitter("Momentum", since=1, domain=TRAINING)
def momentum(ctx: NodeContext) -> str:
    mode = ctx.attr("mode")
    if mode not in ("standard", "nesterov"):
        raise ctx.error(f"mode must be 'standard' or 'nesterov', got {mode!r}")
    return ctx.call(_momentum, ctx.x(0), ctx.x(1), _groups(ctx, 3), ctx.lit(ctx.fattr("alpha")),
                    ctx.lit(ctx.fattr("beta")), ctx.lit(mode == "nesterov"), ctx.lit(ctx.fattr("norm_coefficient")))


@emitter("Adam", since=1, domain=TRAINING)
def adam(ctx: NodeContext) -> str:
    return ctx.call(_adam, ctx.x(0), ctx.x(1), _groups(ctx, 4), ctx.lit(ctx.fattr("alpha", 0.9)),
                    ctx.lit(ctx.fattr("beta", 0.999)), ctx.lit(ctx.fattr("epsilon", 1e-6)),
                    ctx.lit(ctx.fattr("norm_coefficient", 0.0)), ctx.lit(ctx.fattr("norm_coefficient_post", 0.0)))
