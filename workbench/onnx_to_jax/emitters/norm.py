"""Normalization ops: BatchNormalization, InstanceNormalization, LayerNormalization,
GroupNormalization, MeanVarianceNormalization, LpNormalization, RMSNormalization."""

from __future__ import annotations

import jax.numpy as jnp

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _channel(v, ndim):
    return jnp.reshape(v, (1, -1) + (1,) * (ndim - 2))


@runtime_helper
def _batch_norm(x, scale, bias, mean, var, epsilon, channels_last=False):
    """Inference BatchNormalization; ``channels_last``: the channels are ``x``'s last axis."""
    inv = scale / jnp.sqrt(var + epsilon)
    if channels_last:
        return x * inv + (bias - mean * inv)
    return x * _channel(inv, x.ndim) + _channel(bias - mean * inv, x.ndim)


@runtime_helper
def _batch_norm_training(x, scale, bias, mean, var, epsilon, momentum):
    axes = (0,) + tuple(range(2, x.ndim))
    batch_mean = jnp.mean(x, axis=axes)
    batch_var = jnp.var(x, axis=axes)
    y = (x - _channel(batch_mean, x.ndim)) / jnp.sqrt(_channel(batch_var, x.ndim) + epsilon)
    y = y * _channel(scale, x.ndim) + _channel(bias, x.ndim)
    running_mean = mean * momentum + batch_mean * (1 - momentum)
    running_var = var * momentum + batch_var * (1 - momentum)
    return y.astype(x.dtype), running_mean.astype(mean.dtype), running_var.astype(var.dtype)


@emitter("BatchNormalization", since=(7, 9, 14, 15))
def batch_norm(ctx: NodeContext):
    eps = ctx.lit(ctx.fattr("epsilon", 1e-5))
    training = ctx.opset >= 14 and ctx.attr("training_mode", 0)
    args = [ctx.x(i) for i in range(5)]
    if training:
        result = ctx.call(_batch_norm_training, *args, eps, ctx.lit(ctx.fattr("momentum", 0.9)))
        return result if ctx.n_out == 3 else f"{result}[:{ctx.n_out}]"
    if ctx.n_out > 1 and any(ctx.has_output(i) for i in range(1, ctx.n_out)):
        raise ctx.unsupported("BatchNormalization's extra outputs exist only in training mode")
    layout = {"channels_last": "True"} if ctx.channels_last else {}
    return [ctx.call(_batch_norm, *args, eps, **layout)] + [None] * (ctx.n_out - 1)


@runtime_helper
def _instance_norm(x, scale, bias, epsilon):
    axes = tuple(range(2, x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.var(x, axis=axes, keepdims=True)
    y = (x - mean) / jnp.sqrt(var + epsilon)
    return (y * _channel(scale, x.ndim) + _channel(bias, x.ndim)).astype(x.dtype)


@emitter("InstanceNormalization", since=6)
def instance_norm(ctx: NodeContext) -> str:
    return ctx.call(_instance_norm, ctx.x(0), ctx.x(1), ctx.x(2), ctx.lit(ctx.fattr("epsilon", 1e-5)))


@runtime_helper
def _layer_norm(x, scale, bias, axis, epsilon, stash_type, n_out):
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    compute = jnp.float32 if stash_type == 1 and x.dtype != jnp.float64 else x.dtype
    xc = x.astype(compute)
    mean = jnp.mean(xc, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(xc - mean), axis=axes, keepdims=True)
    inv_std = 1 / jnp.sqrt(var + epsilon)
    y = (xc - mean) * inv_std * scale
    if bias is not None:
        y = y + bias
    outputs = (y.astype(x.dtype), mean.astype(compute), inv_std.astype(compute))
    return outputs[0] if n_out == 1 else outputs[:n_out]


@emitter("LayerNormalization", since=17)
def layer_norm(ctx: NodeContext) -> str:
    return ctx.call(
        _layer_norm, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.lit(ctx.attr("axis", -1)),
        ctx.lit(ctx.fattr("epsilon", 1e-5)), ctx.lit(ctx.attr("stash_type", 1)), ctx.lit(ctx.n_out),
    )


@runtime_helper
def _group_norm(x, scale, bias, num_groups, epsilon, per_channel_affine):
    n, c = x.shape[:2]
    grouped = jnp.reshape(x, (n, num_groups, -1))
    mean = jnp.mean(grouped, axis=2, keepdims=True)
    var = jnp.var(grouped, axis=2, keepdims=True)
    y = jnp.reshape((grouped - mean) / jnp.sqrt(var + epsilon), x.shape)
    if not per_channel_affine:  # opset 18: scale and bias are per group
        scale = jnp.repeat(scale, c // num_groups)
        bias = jnp.repeat(bias, c // num_groups)
    return (y * _channel(scale, x.ndim) + _channel(bias, x.ndim)).astype(x.dtype)


@emitter("GroupNormalization", since=(18, 21))
def group_norm(ctx: NodeContext) -> str:
    return ctx.call(
        _group_norm, ctx.x(0), ctx.x(1), ctx.x(2), ctx.lit(ctx.attr("num_groups")),
        ctx.lit(ctx.fattr("epsilon", 1e-5)), ctx.lit(ctx.opset >= 21),
    )


@emitter("MeanVarianceNormalization", since=(9, 13))
def mean_variance_norm(ctx: NodeContext) -> str:
    x = ctx.x(0)
    axes = ctx.lit(tuple(ctx.attr("axes", [0, 2, 3])))
    return (f"({x} - jnp.mean({x}, axis={axes}, keepdims=True)) / "
            f"jnp.sqrt(jnp.var({x}, axis={axes}, keepdims=True) + 1e-9)")


@emitter("LpNormalization", since=1)
def lp_norm(ctx: NodeContext) -> str:
    x, axis, p = ctx.x(0), ctx.lit(ctx.attr("axis", -1)), ctx.attr("p", 2)
    if p not in (1, 2):
        raise ctx.error(f"p must be 1 or 2, got {p}")
    norm = (f"jnp.sum(jnp.abs({x}), axis={axis}, keepdims=True)" if p == 1
            else f"jnp.sqrt(jnp.sum(jnp.square({x}), axis={axis}, keepdims=True))")
    return f"jnp.where({norm} == 0, 0, {x} / {norm}).astype({x}.dtype)"


@runtime_helper
def _rms_norm(x, scale, axis, epsilon, stash_type):
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    compute = jnp.float32 if stash_type == 1 and x.dtype != jnp.float64 else x.dtype
    xc = x.astype(compute)
    rms = jnp.sqrt(jnp.mean(jnp.square(xc), axis=axes, keepdims=True) + epsilon)
    return (xc / rms * scale).astype(x.dtype)


@emitter("RMSNormalization", since=23)
def rms_norm(ctx: NodeContext) -> str:
    return ctx.call(
        _rms_norm, ctx.x(0), ctx.x(1), ctx.lit(ctx.attr("axis", -1)), ctx.lit(ctx.fattr("epsilon", 1e-5)),
        ctx.lit(ctx.attr("stash_type", 1)),
    )
