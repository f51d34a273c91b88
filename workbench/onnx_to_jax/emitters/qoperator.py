"""onnxruntime's QOperator-format quantized ops (``com.microsoft``): what
``onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QOperator)`` writes besides the
ONNX QLinearConv/QLinearMatMul (QGemm, QLinearConcat, QLinearAveragePool, QLinearSoftmax,
QLinearWhere), and what ``quantize_dynamic`` makes of an optimized BERT's Attention and
EmbedLayerNormalization: QAttention and QEmbedLayerNormalization.

Each op works on dequantized values and requantizes its result (round half to even, saturate), as
the op documentation defines it; the integer products are exact int32. onnxruntime's kernels compute
some of these through lookup tables or fixed-point requantization, so a result on a rounding boundary
can land one quantization step away: tests/onnx_to_jax/test_microsoft_ops.py measures which.
Not emitted: com.microsoft ops that onnxruntime's schemas define but its CPU provider cannot run (no
kernel in onnxruntime 1.31's CPU build, so no reference to check them against): BiasAdd, BiasSplitGelu,
BiasSoftmax, GemmFastGelu (CUDA/ROCm fusions) and QLinearReduceMean.
"""

from __future__ import annotations

import jax.numpy as jnp

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.microsoft import (
    _dequantized, _embed_layer_norm, _integer_matmul_to_float, _projected_attention, _requantized,
)
from workbench.onnx_to_jax.emitters.conv import _conv_attrs
from workbench.onnx_to_jax.emitters.nn import _softmax, _softmax_2d
from workbench.onnx_to_jax.emitters.pooling import _pool
from workbench.onnx_to_jax.registry import emitter, runtime_helper

MS = "com.microsoft"


@runtime_helper
def _qgemm(a, a_scale, a_zero, b, b_scale, b_zero, c, y_scale, y_zero, alpha, trans_a, trans_b):
    """alpha * a_scale * b_scale * ((A - a_zero) @ (B - b_zero) + C) with an int32 C; B's scale and zero
    point per tensor or per column; quantized to (y_scale, y_zero) when given, else float."""
    a = jnp.swapaxes(a, -1, -2) if trans_a else a
    b = jnp.swapaxes(b, -1, -2) if trans_b else b
    a_int = a.astype(jnp.int32) - jnp.asarray(a_zero).astype(jnp.int32)
    b_int = b.astype(jnp.int32) - jnp.asarray(b_zero).astype(jnp.int32)
    acc = jnp.matmul(a_int, b_int, preferred_element_type=jnp.int32)
    if c is not None:
        acc = acc + jnp.asarray(c).astype(jnp.int32)
    multiplier = jnp.float32(alpha) * jnp.asarray(a_scale, jnp.float32) * jnp.asarray(b_scale, jnp.float32)
    real = acc.astype(jnp.float32) * multiplier
    if y_scale is None:
        return real
    return _requantized(real, y_scale, y_zero, jnp.asarray(y_zero).dtype)


@emitter("QGemm", since=1, domain=MS)
def qgemm(ctx: NodeContext) -> str:
    """Inputs A, a_scale, a_zero_point, B, b_scale, b_zero_point, C, y_scale, y_zero_point; attributes
    alpha, transA, transB."""
    if ctx.has(7) != ctx.has(8):
        raise ctx.error("y_scale and y_zero_point must be given together (a float output has neither)")
    return ctx.call(_qgemm, *[ctx.x(i) for i in range(6)], ctx.opt(6), ctx.opt(7), ctx.opt(8),
                    ctx.lit(ctx.fattr("alpha", 1.0)), ctx.lit(bool(ctx.attr("transA", 0))),
                    ctx.lit(bool(ctx.attr("transB", 0))))


@emitter("QLinearConcat", since=1, domain=MS)
def qlinear_concat(ctx: NodeContext) -> str:
    """Inputs Y_scale, Y_zero_point, then (X, x_scale, x_zero_point) per concatenated tensor; attribute axis."""
    if (ctx.n_in - 2) % 3 or ctx.n_in < 5:
        raise ctx.error(f"expects Y_scale, Y_zero_point and (tensor, scale, zero point) triples; got {ctx.n_in} inputs")
    parts = [ctx.call(_dequantized, ctx.x(i), ctx.x(i + 1), ctx.opt(i + 2)) for i in range(2, ctx.n_in, 3)]
    real = f"jnp.concatenate([{', '.join(parts)}], axis={ctx.lit(ctx.attr('axis'))})"
    return ctx.call(_requantized, real, ctx.x(0), ctx.x(1), f"{ctx.x(1)}.dtype")


@emitter("QLinearAveragePool", since=1, domain=MS)
def qlinear_average_pool(ctx: NodeContext) -> str:
    """AveragePool on dequantized X (attributes kernel_shape, strides, pads, auto_pad, ceil_mode,
    count_include_pad, channels_last), requantized to (y_scale, y_zero_point)."""
    attrs = _conv_attrs(ctx)
    x = ctx.call(_dequantized, ctx.x(0), ctx.x(1), ctx.opt(2))
    pooled = ctx.call(
        _pool, x, ctx.lit("avg"), ctx.lit(tuple(ctx.attr("kernel_shape"))), attrs["strides"], attrs["pads"], "None",
        attrs["auto_pad"], ctx.lit(bool(ctx.attr("ceil_mode", 0))), ctx.lit(bool(ctx.attr("count_include_pad", 0))),
        "2", channels_last=ctx.lit(bool(ctx.attr("channels_last", 0))),
    )
    return ctx.call(_requantized, pooled, ctx.x(3), ctx.opt(4), f"{ctx.x(0)}.dtype")


@emitter("QLinearSoftmax", since=1, domain=MS)
def qlinear_softmax(ctx: NodeContext) -> str:
    """Softmax of dequantized X along ``axis`` (rows of the 2-D coercion when the ``opset`` attribute,
    the Softmax version it stands for, is below 13), requantized to (y_scale, y_zero_point)."""
    x = ctx.call(_dequantized, ctx.x(0), ctx.x(1), ctx.opt(2))
    axis = ctx.attr("axis", -1)
    if ctx.attr("opset") < 13:
        real = ctx.call(_softmax_2d, ctx.helper(_softmax), x, ctx.lit(axis))
    else:
        real = ctx.call(_softmax, x, ctx.lit(axis))
    return ctx.call(_requantized, real, ctx.x(3), ctx.x(4), f"{ctx.x(4)}.dtype")


@emitter("QLinearWhere", since=1, domain=MS)
def qlinear_where(ctx: NodeContext) -> str:
    """Where(condition, X, Y) on dequantized X and Y, requantized to (z_scale, z_zero_point)."""
    x = ctx.call(_dequantized, ctx.x(1), ctx.x(2), ctx.x(3))
    y = ctx.call(_dequantized, ctx.x(4), ctx.x(5), ctx.x(6))
    return ctx.call(_requantized, f"jnp.where({ctx.x(0)}, {x}, {y})", ctx.x(7), ctx.x(8), f"{ctx.x(8)}.dtype")


@runtime_helper
def _qattention(x, weights, bias, x_scale, w_scale, mask_index, x_zero, w_zero, num_heads, scale, causal,
                mask_filter_value):
    """QAttention: the Q|K|V projection as an exact integer product scaled to float, then Attention."""
    projected = _integer_matmul_to_float(x, weights, x_scale, w_scale, x_zero, w_zero, bias)
    return _projected_attention(projected, mask_index, None, num_heads, scale, causal, mask_filter_value, None)


@emitter("QAttention", since=1, domain=MS)
def qattention(ctx: NodeContext) -> list[str]:
    """Inputs input, weight, bias, input_scale, weight_scale, mask_index, input_zero_point,
    weight_zero_point (past is not supported); attributes num_heads, unidirectional, scale,
    mask_filter_value."""
    if ctx.has(8) or ctx.has_output(1):
        raise ctx.unsupported("QAttention with past/present state is not supported")
    if ctx.attr("do_rotary", 0):
        raise ctx.unsupported("QAttention with do_rotary is not supported")
    scale = ctx.attr("scale", 0.0)
    return [ctx.call(
        _qattention, *[ctx.x(i) for i in range(5)], ctx.opt(5), ctx.opt(6), ctx.opt(7),
        ctx.lit(ctx.attr("num_heads")), "None" if not scale else ctx.lit(ctx.fattr("scale")),
        ctx.lit(bool(ctx.attr("unidirectional", 0))), ctx.lit(ctx.fattr("mask_filter_value", -10000.0)),
    )] + [None] * (ctx.n_out - 1)



@emitter("QEmbedLayerNormalization", since=1, domain=MS)
def qembed_layer_normalization(ctx: NodeContext) -> str | list[str]:
    """EmbedLayerNormalization with 8-bit embedding tables, gamma and beta, each dequantized with its scale
    (inputs 8-12) and zero point (inputs 13-17); outputs the normalized embeddings and mask_index."""
    if len({ctx.has(1), ctx.has(4), ctx.has(10), ctx.has(15)}) > 1:
        raise ctx.error("segment_ids, segment_embedding, its scale and its zero point must be given together")
    tables = {index: ctx.call(_dequantized, ctx.x(index), ctx.x(scale), ctx.x(zero)) if ctx.has(index) else "None"
              for index, scale, zero in ((2, 8, 13), (3, 9, 14), (4, 10, 15), (5, 11, 16), (6, 12, 17))}
    call = ctx.call(_embed_layer_norm, ctx.x(0), ctx.opt(1), tables[2], tables[3], tables[4], tables[5], tables[6],
                    ctx.opt(7), "None", ctx.lit(ctx.fattr("epsilon", 1e-12)))
    return [f"{call}[0]"] if ctx.n_out == 1 else f"{call}[:2]"
