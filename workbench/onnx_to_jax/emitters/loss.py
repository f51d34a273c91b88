"""Loss ops: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _nll_loss(x, target, weight, reduction, ignore_index):
    target = jnp.asarray(target).astype(jnp.int64)
    keep = jnp.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    safe = jnp.where(keep, target, 0)
    picked = -jnp.squeeze(jnp.take_along_axis(x, jnp.expand_dims(safe, 1), axis=1), 1)
    w = jnp.ones(target.shape, x.dtype) if weight is None else jnp.take(weight, safe)
    w = jnp.where(keep, w, 0).astype(x.dtype)
    loss = picked * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    return (jnp.sum(loss) / jnp.sum(w)).astype(x.dtype)


def _reduction(ctx: NodeContext) -> str:
    reduction = ctx.attr("reduction", "mean")
    if reduction not in ("none", "sum", "mean"):
        raise ctx.error(f"reduction must be none/sum/mean, got {reduction!r}")
    return ctx.lit(reduction)


@emitter("NegativeLogLikelihoodLoss", since=(12, 13))
def nll_loss(ctx: NodeContext) -> str:
    return ctx.call(_nll_loss, ctx.x(0), ctx.x(1), ctx.opt(2), _reduction(ctx),
                    ctx.lit(ctx.attr("ignore_index", None)))


@runtime_helper
def _softmax_cross_entropy(scores, labels, weight, reduction, ignore_index, n_out):
    log_prob = jax.nn.log_softmax(scores, axis=1)
    loss = _nll_loss(log_prob, labels, weight, reduction, ignore_index)
    return (loss, log_prob) if n_out == 2 else loss


@emitter("SoftmaxCrossEntropyLoss", since=(12, 13))
def softmax_cross_entropy(ctx: NodeContext) -> str:
    return ctx.call(_softmax_cross_entropy, ctx.x(0), ctx.x(1), ctx.opt(2), _reduction(ctx),
                    ctx.lit(ctx.attr("ignore_index", None)), ctx.lit(ctx.n_out))
