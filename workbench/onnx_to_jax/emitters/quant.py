"""Quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul,
ConvInteger, QLinearConv. Per-tensor, per-axis and (opset 21+) blocked scales."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.conv import _conv
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _expand_scale(scale, x, axis, block_size):
    """Broadcast a per-tensor, per-axis or blocked scale (or zero point) against ``x``."""
    scale = jnp.asarray(scale)
    if scale.ndim == 0 or x.ndim == 0:
        return scale
    axis = axis % x.ndim
    if block_size:
        return jnp.repeat(scale, block_size, axis=axis)[tuple(slice(0, n) for n in x.shape)]
    if scale.ndim == 1:
        shape = [1] * x.ndim
        shape[axis] = scale.shape[0]
        return jnp.reshape(scale, shape)
    return scale


@runtime_helper
def _divide_exactly(x, divisor):
    """``x / divisor`` rounded as IEEE division, as onnxruntime's quantizers divide.

    XLA rewrites a division by a broadcast scalar (a quantization scale) into a multiplication by
    its reciprocal, which rounds differently in about half the cases: a value on a rounding
    boundary then lands in the next quantization bucket, and the difference grows layer by layer
    (a dynamically quantized ResNet-18 drifted by 0.4% of its logits). The barrier hides the
    broadcast from that rewrite.
    """
    x = jnp.asarray(x)
    divisor = jnp.broadcast_to(jnp.asarray(divisor, x.dtype), jnp.broadcast_shapes(x.shape, jnp.shape(divisor)))
    return x / lax.optimization_barrier(divisor)


@runtime_helper
def _quantize(x, scale, zero_point, axis, block_size, dtype, saturate):
    x = jnp.asarray(x)
    target = jnp.dtype(dtype)
    s = _expand_scale(scale, x, axis, block_size)
    scaled = _divide_exactly(x.astype(jnp.float32), s.astype(jnp.float32))
    if jnp.issubdtype(target, jnp.integer):
        info = jnp.iinfo(target)
        z = 0 if zero_point is None else _expand_scale(zero_point, x, axis, block_size).astype(jnp.float32)
        return jnp.clip(jnp.round(scaled) + z, info.min, info.max).astype(target)
    if saturate and target.name.startswith("float8"):
        limit = float(jnp.finfo(target).max)
        scaled = jnp.where(jnp.isinf(scaled) | jnp.isnan(scaled), scaled, jnp.clip(scaled, -limit, limit))
        if target.name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2fnuz"):
            scaled = jnp.clip(scaled, -limit, limit)
    return scaled.astype(target)


@emitter("QuantizeLinear", since=(10, 13, 19, 21, 23))
def quantize_linear(ctx: NodeContext) -> str:
    if ctx.has(2) and ctx.dtype(2) is not None:
        dtype = ctx.dtype(2)
    elif ctx.attr("output_dtype", 0):
        dtype = ctx.onnx_np_dtype(ctx.attr("output_dtype"))
    elif ctx.out_dtype(0) is not None:
        dtype = ctx.out_dtype(0)
    else:
        dtype = np.dtype(np.uint8)
    return ctx.call(
        _quantize, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.lit(ctx.attr("axis", 1)),
        ctx.lit(ctx.attr("block_size", 0)), ctx.dt(dtype), ctx.lit(bool(ctx.attr("saturate", 1))),
    )


@runtime_helper
def _dequantize(x, scale, zero_point, axis, block_size, dtype):
    x = jnp.asarray(x)
    s = _expand_scale(scale, x, axis, block_size)
    out = x.astype(jnp.float32)
    if zero_point is not None:
        out = out - _expand_scale(zero_point, x, axis, block_size).astype(jnp.float32)
    return (out * s.astype(jnp.float32)).astype(dtype if dtype is not None else s.dtype)


@emitter("DequantizeLinear", since=(10, 13, 19, 21, 23))
def dequantize_linear(ctx: NodeContext) -> str:
    out = ctx.out_dtype(0)
    return ctx.call(
        _dequantize, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.lit(ctx.attr("axis", 1)),
        ctx.lit(ctx.attr("block_size", 0)), "None" if out is None else ctx.dt(out),
    )


@runtime_helper
def _dynamic_quantize(x):
    """DynamicQuantizeLinear as onnxruntime computes it. An all-zero input has no range: the spec's scale
    (max - min) / 255 would be 0 and x / scale 0 / 0, whose cast to uint8 XLA leaves undefined;
    onnxruntime takes the scale 1 there (values and zero point 0), and so does this."""
    lo = jnp.minimum(jnp.min(x), 0).astype(jnp.float32)
    hi = jnp.maximum(jnp.max(x), 0).astype(jnp.float32)
    scale = jnp.where(hi > lo, _divide_exactly(hi - lo, 255), jnp.float32(1))
    zero = jnp.clip(jnp.round(_divide_exactly(-lo, scale)), 0, 255)
    y = jnp.clip(jnp.round(_divide_exactly(x, scale)) + zero, 0, 255).astype(jnp.uint8)
    return y, scale.astype(jnp.float32), zero.astype(jnp.uint8)


@emitter("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(ctx: NodeContext) -> str:
    return ctx.call(_dynamic_quantize, ctx.x(0))


@runtime_helper
def _qlinear_matmul(a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero):
    a_real = (a.astype(jnp.int32) - jnp.asarray(a_zero).astype(jnp.int32)).astype(jnp.float32)
    b_zero = jnp.asarray(b_zero).astype(jnp.int32)
    b_real = (b.astype(jnp.int32) - b_zero).astype(jnp.float32)
    product = jnp.matmul(a_real, b_real) * (jnp.asarray(a_scale, jnp.float32) * jnp.asarray(b_scale, jnp.float32))
    dtype = jnp.asarray(y_zero).dtype
    info = jnp.iinfo(dtype)
    y = jnp.round(_divide_exactly(product, jnp.asarray(y_scale, jnp.float32))) + jnp.asarray(y_zero).astype(jnp.float32)
    return jnp.clip(y, info.min, info.max).astype(dtype)


@emitter("QLinearMatMul", since=(10, 21))
def qlinear_matmul(ctx: NodeContext) -> str:
    return ctx.call(_qlinear_matmul, *[ctx.x(i) for i in range(8)])


@runtime_helper
def _conv_integer(x, w, x_zero, w_zero, strides, pads, dilations, group, auto_pad):
    xi = x.astype(jnp.int32) - (0 if x_zero is None else jnp.asarray(x_zero).astype(jnp.int32))
    wz = 0 if w_zero is None else jnp.asarray(w_zero).astype(jnp.int32)
    if jnp.ndim(wz) == 1:
        wz = jnp.reshape(wz, (-1,) + (1,) * (w.ndim - 1))
    wi = w.astype(jnp.int32) - wz
    return _integer_conv_in_float32(xi, wi, strides, pads, dilations, group, auto_pad)


@runtime_helper
def _integer_conv_in_float32(xi, wi, strides, pads, dilations, group, auto_pad):
    """The int32 convolution of centered 8-bit values (each in [-255, 255]), computed exactly in float32.

    XLA CPU has no fast integer convolution: a dynamically quantized ResNet-18 ran for 10 s per
    image through its generic int32 kernel. A float32 convolution of integers is exact while every
    partial sum stays below 2**24, whatever the order of the additions; with ``terms`` products per
    output and products of at most 255 * 255 that holds up to 258 terms. Longer sums split the
    activations (and, past 4,112 terms, the weights too) into 4-bit halves (``v = 16 * (v >> 4) +
    (v & 15)``), convolve each pair of halves in float32 exactly, and add the parts in int32 (which
    wraps as onnxruntime's int32 accumulator does). Past 65,536 terms the int32 kernel runs.
    """
    terms = int(np.prod(wi.shape[1:]))  # input channels per group x kernel taps

    def conv(a, b):
        y = _conv(a.astype(jnp.float32), b.astype(jnp.float32), None, strides, pads, dilations, group, auto_pad)
        return y.astype(jnp.int32)

    def halves(v):
        return [(jnp.right_shift(v, 4), 16), (jnp.bitwise_and(v, 15), 1)]

    limit = 2 ** 24
    if terms * 255 * 255 <= limit:
        return conv(xi, wi)
    if terms * 16 * 255 <= limit:
        x_parts, w_parts = halves(xi), [(wi, 1)]
    elif terms * 16 * 16 <= limit:
        x_parts, w_parts = halves(xi), halves(wi)
    else:
        return _conv(xi, wi, None, strides, pads, dilations, group, auto_pad).astype(jnp.int32)
    total = None
    for x_part, x_weight in x_parts:
        for w_part, w_weight in w_parts:
            part = conv(x_part, w_part) * (x_weight * w_weight)
            total = part if total is None else total + part
    return total


def _conv_kwargs(ctx: NodeContext) -> dict[str, str]:
    def opt_tuple(name: str) -> str:
        value = ctx.attr(name, None)
        return "None" if value is None else ctx.lit(tuple(value))

    return {"strides": opt_tuple("strides"), "pads": opt_tuple("pads"), "dilations": opt_tuple("dilations"),
            "group": ctx.lit(ctx.attr("group", 1)), "auto_pad": ctx.lit(ctx.attr("auto_pad", "NOTSET"))}


@emitter("ConvInteger", since=10)
def conv_integer(ctx: NodeContext) -> str:
    return ctx.call(_conv_integer, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.opt(3), **_conv_kwargs(ctx))


@runtime_helper
def _qlinear_conv(x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero, bias, strides, pads, dilations,
                  group, auto_pad):
    acc = _conv_integer(x, w, x_zero, w_zero, strides, pads, dilations, group, auto_pad)
    if bias is not None:
        acc = acc + jnp.reshape(bias, (1, -1) + (1,) * (x.ndim - 2))
    w_scale = jnp.asarray(w_scale, jnp.float32)
    if w_scale.ndim == 1:
        w_scale = jnp.reshape(w_scale, (1, -1) + (1,) * (x.ndim - 2))
    real = acc.astype(jnp.float32) * jnp.asarray(x_scale, jnp.float32) * w_scale
    dtype = jnp.asarray(y_zero).dtype
    info = jnp.iinfo(dtype)
    y = jnp.round(_divide_exactly(real, jnp.asarray(y_scale, jnp.float32))) + jnp.asarray(y_zero).astype(jnp.float32)
    return jnp.clip(y, info.min, info.max).astype(dtype)


@emitter("QLinearConv", since=10)
def qlinear_conv(ctx: NodeContext) -> str:
    return ctx.call(_qlinear_conv, *[ctx.x(i) for i in range(8)], ctx.opt(8), **_conv_kwargs(ctx))


__all__ = ["lax"]
