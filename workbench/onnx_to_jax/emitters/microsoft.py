"""onnxruntime's ``com.microsoft`` operators: what its graph optimizer and quantization tools write.

An onnxruntime-optimized model (``SessionOptions.optimized_model_filepath``) fuses MatMul+Add+Gelu,
the LayerNorm of residual blocks, attention and convolution activations into these ops; dynamic
quantization writes ``DynamicQuantizeMatMul``/``MatMulIntegerToFloat``, static quantization the
``QLinear*`` ops, weight-only quantization ``MatMulNBits``. Each emitter follows onnxruntime's
contrib-op documentation and is checked against onnxruntime in tests/onnx_to_jax/test_domains.py.
``LayerNormalization`` and ``SimplifiedLayerNormalization`` are onnxruntime ops registered in the ONNX
domain itself from version 1 (its optimizer writes them into models of any opset).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.attention import _rotary_embedding
from workbench.onnx_to_jax.emitters.conv import _conv, _conv_attrs
from workbench.onnx_to_jax.emitters.nn import _gemm
from workbench.onnx_to_jax.emitters.norm import _layer_norm, _rms_norm
from workbench.onnx_to_jax.emitters.quant import _divide_exactly, _dynamic_quantize
from workbench.onnx_to_jax.registry import emitter, runtime_helper

MS = "com.microsoft"


# ---- activations and fused linear ops --------------------------------------------------------------
@emitter("Gelu", since=1, domain=MS)
def gelu(ctx: NodeContext) -> str:
    return f"jax.nn.gelu({ctx.x(0)}, approximate=False)"


@emitter("BiasGelu", since=1, domain=MS)
def bias_gelu(ctx: NodeContext) -> str:
    return f"jax.nn.gelu({ctx.x(0)} + {ctx.x(1)}, approximate=False)"


@emitter("FastGelu", since=1, domain=MS)
def fast_gelu(ctx: NodeContext) -> str:
    x = f"({ctx.x(0)} + {ctx.x(1)})" if ctx.has(1) else ctx.x(0)
    return f"jax.nn.gelu({x}, approximate=True)"


@emitter("QuickGelu", since=1, domain=MS)
def quick_gelu(ctx: NodeContext) -> str:
    x = ctx.x(0)
    return f"({x} * jax.nn.sigmoid({ctx.lit(ctx.fattr('alpha', 1.702))} * {x}))"


@runtime_helper
def _fused_matmul(a, b, alpha, trans_a, trans_b):
    a = jnp.swapaxes(a, -1, -2) if trans_a else a
    b = jnp.swapaxes(b, -1, -2) if trans_b else b
    y = jnp.matmul(a, b)
    return y if alpha == 1.0 else (alpha * y).astype(y.dtype)


@emitter("FusedMatMul", since=1, domain=MS)
def fused_matmul(ctx: NodeContext) -> str:
    if ctx.attr("transBatchA", 0) or ctx.attr("transBatchB", 0):
        raise ctx.unsupported("transBatchA/transBatchB are not supported")
    return ctx.call(_fused_matmul, ctx.x(0), ctx.x(1), ctx.lit(ctx.fattr("alpha", 1.0)),
                    ctx.lit(bool(ctx.attr("transA", 0))), ctx.lit(bool(ctx.attr("transB", 0))))


@runtime_helper
def _activation(y, name, params):
    """The activation of a FusedConv or FusedGemm result ``y``: the ONNX op ``name`` with its attributes in
    ``params``, in the op's order (LeakyRelu, Elu, ThresholdedRelu: alpha; HardSigmoid: alpha, beta; Selu:
    alpha, gamma; FusedConv's Clip: min, max)."""
    if name == "Relu":
        return jax.nn.relu(y)
    if name == "Tanh":
        return jnp.tanh(y)
    if name == "Sigmoid":
        return jax.nn.sigmoid(y)
    if name == "Softsign":
        return y / (1 + jnp.abs(y))
    if name == "Softplus":
        return jax.nn.softplus(y)
    if name == "LeakyRelu":
        return jnp.where(y >= 0, y, params[0] * y).astype(y.dtype)
    if name == "Elu":
        return jnp.where(y > 0, y, params[0] * jnp.expm1(y)).astype(y.dtype)
    if name == "ThresholdedRelu":
        return jnp.where(y > params[0], y, 0).astype(y.dtype)
    if name == "Clip":
        return jnp.clip(y, params[0], params[1])
    if name == "HardSigmoid":
        return jnp.clip(params[0] * y + params[1], 0, 1).astype(y.dtype)
    if name == "Selu":
        return (params[1] * jnp.where(y > 0, y, params[0] * jnp.expm1(y))).astype(y.dtype)
    raise ValueError(f"unknown fused activation {name!r}")


@emitter("FusedConv", since=1, domain=MS)
def fused_conv(ctx: NodeContext) -> str:
    activation = ctx.attr("activation", None)
    if activation not in (None, "Relu", "Tanh", "Sigmoid", "LeakyRelu", "Clip", "HardSigmoid"):
        raise ctx.unsupported(f"FusedConv activation {activation!r} is not supported")
    conv = ctx.call(_conv, ctx.x(0), ctx.x(1), ctx.opt(2), group=ctx.lit(ctx.attr("group", 1)), **_conv_attrs(ctx))
    if ctx.has(3):  # Z: added before the activation (a fused residual)
        conv = f"({conv} + {ctx.x(3)})"
    if activation is None:
        return conv
    params = tuple(float(np.float32(p)) for p in ctx.attr("activation_params", []))
    return ctx.call(_activation, conv, ctx.lit(activation), ctx.lit(params))


# FusedGemm's activations (onnxruntime's Gemm + activation fusion) with the ONNX ops' attributes in their
# order and their defaults, which the fused node carries as activation_alpha / activation_beta / activation_gamma
_GEMM_ACTIVATIONS = {
    "Relu": {}, "Tanh": {}, "Sigmoid": {}, "Softsign": {}, "Softplus": {},
    "LeakyRelu": {"alpha": 0.01}, "Elu": {"alpha": 1.0}, "ThresholdedRelu": {"alpha": 1.0},
    "HardSigmoid": {"alpha": 0.2, "beta": 0.5},
    "Selu": {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
}  # fmt: skip


@emitter("FusedGemm", since=1, domain=MS)
def fused_gemm(ctx: NodeContext) -> str:
    """Gemm(A, B, C; alpha, beta, transA, transB) followed by ``activation`` (required, as onnxruntime's kernel
    requires it)."""
    activation = ctx.attr("activation")
    if activation not in _GEMM_ACTIVATIONS:
        raise ctx.unsupported(f"FusedGemm activation {activation!r} is not supported; known: {sorted(_GEMM_ACTIVATIONS)}")
    gemm = ctx.call(_gemm, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.lit(ctx.fattr("alpha", 1.0)),
                    ctx.lit(ctx.fattr("beta", 1.0)), ctx.lit(bool(ctx.attr("transA", 0))),
                    ctx.lit(bool(ctx.attr("transB", 0))))
    params = tuple(ctx.fattr(f"activation_{key}", default) for key, default in _GEMM_ACTIVATIONS[activation].items())
    return ctx.call(_activation, gemm, ctx.lit(activation), ctx.lit(params))


# ---- normalization ---------------------------------------------------------------------------------
@runtime_helper
def _skip_layer_norm(x, skip, gamma, beta, bias, epsilon, simplified, n_out):
    total = x + skip
    if bias is not None:
        total = total + bias
    compute = total.astype(jnp.float32) if total.dtype != jnp.float64 else total
    if simplified:
        mean = jnp.zeros(compute.shape[:-1] + (1,), compute.dtype)
        variance = jnp.mean(jnp.square(compute), axis=-1, keepdims=True)
        normalized = compute * jax.lax.rsqrt(variance + epsilon)
    else:
        mean = jnp.mean(compute, axis=-1, keepdims=True)
        variance = jnp.mean(jnp.square(compute - mean), axis=-1, keepdims=True)
        normalized = (compute - mean) * jax.lax.rsqrt(variance + epsilon)
    y = normalized * gamma
    if beta is not None:
        y = y + beta
    outputs = (y.astype(x.dtype), mean, jax.lax.rsqrt(variance + epsilon), total)
    return outputs[:n_out]


def _skip_norm(simplified: bool):
    def emit(ctx: NodeContext):
        beta = "None" if simplified else ctx.opt(3)
        bias = ctx.opt(3) if simplified else ctx.opt(4)
        call = ctx.call(_skip_layer_norm, ctx.x(0), ctx.x(1), ctx.x(2), beta, bias,
                        ctx.lit(ctx.fattr("epsilon", 1e-12)), ctx.lit(simplified), ctx.lit(ctx.n_out))
        return call if ctx.n_out > 1 else [f"{call}[0]"]

    return emit


emitter("SkipLayerNormalization", since=1, domain=MS)(_skip_norm(False))
emitter("SkipSimplifiedLayerNormalization", since=1, domain=MS)(_skip_norm(True))


@runtime_helper
def _embed_layer_norm(input_ids, segment_ids, words, positions, segments, gamma, beta, mask, position_ids, epsilon):
    """BERT's embeddings: word + position (+ segment) rows, layer-normalized; mask_index counts each row's
    non-zero mask entries (zeros without a mask); the third output is the sum before normalization."""
    length = input_ids.shape[1]
    if position_ids is None:
        position_ids = jnp.arange(length)[None, :]
    total = jnp.take(words, input_ids, axis=0) + jnp.take(positions, jnp.asarray(position_ids), axis=0)
    if segments is not None:
        total = total + jnp.take(segments, segment_ids, axis=0)
    y = _layer_norm(total, gamma, beta, -1, epsilon, 1, 1)
    if mask is None:
        mask_index = jnp.zeros((input_ids.shape[0],), jnp.int32)
    else:
        mask_index = jnp.sum(jnp.asarray(mask) != 0, axis=1).astype(jnp.int32)
    return y, mask_index, total


@emitter("EmbedLayerNormalization", since=1, domain=MS)
def embed_layer_normalization(ctx: NodeContext) -> str | list[str]:
    """onnxruntime's BERT embedding fusion (its transformers optimizer writes it): inputs input_ids,
    segment_ids, word/position/segment embeddings, gamma, beta, mask, position_ids; attribute epsilon."""
    if ctx.has(1) != ctx.has(4):
        raise ctx.error("segment_ids and segment_embedding must be given together")
    call = ctx.call(_embed_layer_norm, ctx.x(0), ctx.opt(1), ctx.x(2), ctx.x(3), ctx.opt(4), ctx.x(5), ctx.x(6),
                    ctx.opt(7), ctx.opt(8), ctx.lit(ctx.fattr("epsilon", 1e-12)))
    if ctx.n_out == 1:
        return [f"{call}[0]"]
    return call if ctx.n_out == 3 else f"{call}[:{ctx.n_out}]"


@emitter("LayerNormalization", since=1)
def runtime_layer_norm(ctx: NodeContext) -> str:
    """onnxruntime's LayerNormalization in the ONNX domain (before ONNX's own, opset 17)."""
    return ctx.call(
        _layer_norm, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.lit(ctx.attr("axis", -1)),
        ctx.lit(ctx.fattr("epsilon", 1e-5)), ctx.lit(ctx.attr("stash_type", 1)), ctx.lit(ctx.n_out),
    )


@emitter("SimplifiedLayerNormalization", since=1)
def runtime_simplified_layer_norm(ctx: NodeContext) -> str:
    """onnxruntime's RMS normalization (no mean subtraction, no bias)."""
    if ctx.n_out > 1 and any(ctx.has_output(i) for i in range(1, ctx.n_out)):
        raise ctx.unsupported("SimplifiedLayerNormalization's inv_std_var output is not supported")
    return [ctx.call(_rms_norm, ctx.x(0), ctx.x(1), ctx.lit(ctx.attr("axis", -1)),
                     ctx.lit(ctx.fattr("epsilon", 1e-5)), ctx.lit(ctx.attr("stash_type", 1)))] + [None] * (ctx.n_out - 1)


# ---- quantized ops ----------------------------------------------------------------------------------
@runtime_helper
def _integer_matmul_to_float(a, b, a_scale, b_scale, a_zero, b_zero, bias):
    """(A - a_zero) @ (B - b_zero) in int32, scaled to float (per-tensor or per-column B scales)."""
    a_int = a.astype(jnp.int32) - (0 if a_zero is None else jnp.asarray(a_zero).astype(jnp.int32))
    b_int = b.astype(jnp.int32) - (0 if b_zero is None else jnp.asarray(b_zero).astype(jnp.int32))
    product = jnp.matmul(a_int, b_int, preferred_element_type=jnp.int32).astype(jnp.float32)
    y = product * (jnp.asarray(a_scale, jnp.float32) * jnp.asarray(b_scale, jnp.float32))
    if bias is not None:
        y = y + bias
    return y


@emitter("MatMulIntegerToFloat", since=1, domain=MS)
def matmul_integer_to_float(ctx: NodeContext) -> str:
    return ctx.call(_integer_matmul_to_float, ctx.x(0), ctx.x(1), ctx.x(2), ctx.x(3), ctx.opt(4), ctx.opt(5),
                    ctx.opt(6))


@runtime_helper
def _dynamic_quantize_matmul(a, b, b_scale, b_zero, bias):
    a_q, a_scale, a_zero = _dynamic_quantize(a)
    return _integer_matmul_to_float(a_q, b, a_scale, b_scale, a_zero, b_zero, bias).astype(a.dtype)


@emitter("DynamicQuantizeMatMul", since=1, domain=MS)
def dynamic_quantize_matmul(ctx: NodeContext) -> str:
    return ctx.call(_dynamic_quantize_matmul, ctx.x(0), ctx.x(1), ctx.x(2), ctx.opt(3), ctx.opt(4))


@runtime_helper
def _dequantized(x, scale, zero):
    return (x.astype(jnp.float32) - (0 if zero is None else jnp.asarray(zero).astype(jnp.float32))) * jnp.asarray(
        scale, jnp.float32)


@runtime_helper
def _requantized(real, scale, zero, dtype):
    info = jnp.iinfo(dtype)
    offset = 0 if zero is None else jnp.asarray(zero).astype(jnp.float32)
    scaled = _divide_exactly(real.astype(jnp.float32), jnp.asarray(scale, jnp.float32))
    return jnp.clip(jnp.round(scaled) + offset, info.min, info.max).astype(dtype)


def _qlinear_binary(fn: str):
    def emit(ctx: NodeContext) -> str:
        a = ctx.call(_dequantized, ctx.x(0), ctx.x(1), ctx.opt(2))
        b = ctx.call(_dequantized, ctx.x(3), ctx.x(4), ctx.opt(5))
        return ctx.call(_requantized, f"{fn}({a}, {b})", ctx.x(6), ctx.opt(7), f"{ctx.x(0)}.dtype")

    return emit


emitter("QLinearAdd", since=1, domain=MS)(_qlinear_binary("jnp.add"))
emitter("QLinearMul", since=1, domain=MS)(_qlinear_binary("jnp.multiply"))


@emitter("QLinearSigmoid", since=1, domain=MS)
def qlinear_sigmoid(ctx: NodeContext) -> str:
    real = f"jax.nn.sigmoid({ctx.call(_dequantized, ctx.x(0), ctx.x(1), ctx.opt(2))})"
    return ctx.call(_requantized, real, ctx.x(3), ctx.opt(4), f"{ctx.x(0)}.dtype")


@emitter("QLinearLeakyRelu", since=1, domain=MS)
def qlinear_leaky_relu(ctx: NodeContext) -> str:
    x = ctx.call(_dequantized, ctx.x(0), ctx.x(1), ctx.opt(2))
    real = f"jax.nn.leaky_relu({x}, negative_slope={ctx.lit(ctx.fattr('alpha', 0.01))})"
    return ctx.call(_requantized, real, ctx.x(3), ctx.opt(4), f"{ctx.x(0)}.dtype")


@emitter("QLinearGlobalAveragePool", since=1, domain=MS)
def qlinear_global_average_pool(ctx: NodeContext) -> str:
    x = ctx.call(_dequantized, ctx.x(0), ctx.x(1), ctx.opt(2))
    axes = "tuple(range(1, jnp.ndim({0}) - 1))" if ctx.attr("channels_last", 0) else "tuple(range(2, jnp.ndim({0})))"
    real = f"jnp.mean({x}, axis={axes.format(ctx.x(0))}, keepdims=True)"
    return ctx.call(_requantized, real, ctx.x(3), ctx.opt(4), f"{ctx.x(0)}.dtype")


@runtime_helper
def _matmul_nbits(a, b, scales, zero_points, bias, n, k, bits, block_size):
    """Weight-only quantized MatMul: B packs ``bits``-bit columns (low bits first) per block of K."""
    blocks = -(-k // block_size)
    packed = jnp.reshape(b, (n, blocks, -1)).astype(jnp.uint8)
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    values = jnp.stack([(packed >> (bits * i)) & mask for i in range(per_byte)], axis=-1)
    q = jnp.reshape(values, (n, blocks, -1))[:, :, :block_size].astype(jnp.float32)
    scale = jnp.reshape(scales, (n, blocks, 1)).astype(jnp.float32)
    if zero_points is None:
        zero = jnp.float32(1 << (bits - 1))
    elif jnp.issubdtype(jnp.asarray(zero_points).dtype, jnp.floating):
        zero = jnp.reshape(zero_points, (n, blocks, 1)).astype(jnp.float32)
    else:
        zp = jnp.reshape(zero_points, (n, -1)).astype(jnp.uint8)
        unpacked = jnp.stack([(zp >> (bits * i)) & mask for i in range(per_byte)], axis=-1)
        zero = jnp.reshape(unpacked, (n, -1))[:, :blocks, None].astype(jnp.float32)
    weight = jnp.reshape((q - zero) * scale, (n, blocks * block_size))[:, :k]
    y = jnp.matmul(a.astype(jnp.float32), weight.T).astype(a.dtype)
    return y if bias is None else y + bias


@emitter("MatMulNBits", since=1, domain=MS)
def matmul_nbits(ctx: NodeContext) -> str:
    bits = ctx.attr("bits", 4)
    if bits not in (2, 4, 8):
        raise ctx.unsupported(f"{bits}-bit weights are not supported")
    if ctx.has(4):
        raise ctx.unsupported("g_idx (act-order) is not supported")
    return ctx.call(_matmul_nbits, ctx.x(0), ctx.x(1), ctx.x(2), ctx.opt(3), ctx.opt(5), ctx.lit(ctx.attr("N")),
                    ctx.lit(ctx.attr("K")), ctx.lit(bits), ctx.lit(ctx.attr("block_size")))


# ---- attention --------------------------------------------------------------------------------------
@runtime_helper
def _heads(x, num_heads):
    b, s, hidden = x.shape
    return jnp.transpose(jnp.reshape(x, (b, s, num_heads, hidden // num_heads)), (0, 2, 1, 3))


@runtime_helper
def _mha_core(q, k, v, num_heads, scale, causal, key_mask, attention_bias, mask_filter_value):
    """Scaled dot-product attention over (B, S, hidden) q and (B, L, hidden) k/v; key_mask (B, L) keeps 1s."""
    qh, kh, vh = _heads(q, num_heads), _heads(k, num_heads), _heads(v, num_heads)
    head = qh.shape[-1]
    scale = (1.0 / np.sqrt(head)) if scale is None else scale
    scores = jnp.matmul(qh, jnp.swapaxes(kh, -1, -2)) * jnp.asarray(scale, q.dtype)
    if key_mask is not None:
        keep = jnp.asarray(key_mask)[:, None, None, :] != 0
        scores = jnp.where(keep, scores, scores + jnp.asarray(mask_filter_value, q.dtype))
    if attention_bias is not None:
        scores = scores + attention_bias
    if causal:
        s, length = scores.shape[-2:]
        allowed = jnp.arange(length)[None, :] <= jnp.arange(s)[:, None] + (length - s)
        scores = jnp.where(allowed, scores, jnp.asarray(mask_filter_value, q.dtype) + scores)
    probs = jax.nn.softmax(scores, axis=-1)
    y = jnp.matmul(probs, vh)
    b, _, s, _ = y.shape
    return jnp.reshape(jnp.transpose(y, (0, 2, 1, 3)), (b, s, -1))


@runtime_helper
def _ms_attention(x, weights, bias, mask_index, attention_bias, num_heads, scale, causal, mask_filter_value,
                  qkv_sizes):
    """com.microsoft Attention: one projection to Q, K, V, then multi-head attention (no past state)."""
    projected = jnp.matmul(x, weights)
    if bias is not None:
        projected = projected + bias
    return _projected_attention(projected, mask_index, attention_bias, num_heads, scale, causal, mask_filter_value,
                                qkv_sizes)


@runtime_helper
def _projected_attention(projected, mask_index, attention_bias, num_heads, scale, causal, mask_filter_value,
                         qkv_sizes):
    """Attention's (and QAttention's) multi-head attention of the (B, S, 3 hidden) Q|K|V projection."""
    hidden = projected.shape[-1] // 3
    sizes = qkv_sizes or (hidden, hidden, hidden)
    q = projected[..., : sizes[0]]
    k = projected[..., sizes[0]: sizes[0] + sizes[1]]
    v = projected[..., sizes[0] + sizes[1]:]
    key_mask = None
    if mask_index is not None:
        mask_index = jnp.asarray(mask_index)
        if mask_index.ndim == 2:  # (B, total length) 1 = attend
            key_mask = mask_index
        elif mask_index.ndim == 1:  # (B,) end positions: keys before them are attended
            key_mask = (jnp.arange(k.shape[1])[None, :] < mask_index[: projected.shape[0], None]).astype(jnp.int32)
        else:
            raise ValueError(f"mask_index of rank {mask_index.ndim} is not supported")
    return _mha_core(q, k, v, num_heads, scale, causal, key_mask, attention_bias, mask_filter_value)


@emitter("Attention", since=1, domain=MS)
def ms_attention(ctx: NodeContext) -> list[str]:
    if ctx.has(4) or ctx.has(6) or ctx.has_output(1):
        raise ctx.unsupported("Attention with past/present state is not supported")
    if ctx.attr("do_rotary", 0):
        raise ctx.unsupported("Attention with do_rotary is not supported")
    sizes = ctx.attr("qkv_hidden_sizes", None)
    scale = ctx.attr("scale", None)
    return [ctx.call(
        _ms_attention, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.opt(3), ctx.opt(5), ctx.lit(ctx.attr("num_heads")),
        "None" if scale is None else ctx.lit(ctx.fattr("scale")), ctx.lit(bool(ctx.attr("unidirectional", 0))),
        ctx.lit(ctx.fattr("mask_filter_value", -10000.0)), "None" if sizes is None else ctx.lit(tuple(sizes)),
    )] + [None] * (ctx.n_out - 1)


@runtime_helper
def _multi_head_attention(q, k, v, bias, key_padding_mask, attention_bias, num_heads, scale, causal,
                          mask_filter_value):
    if bias is not None:
        hq, hk = q.shape[-1], k.shape[-1]
        q, k, v = q + bias[:hq], k + bias[hq:hq + hk], v + bias[hq + hk:]
    return _mha_core(q, k, v, num_heads, scale, causal, key_padding_mask, attention_bias, mask_filter_value)


@emitter("MultiHeadAttention", since=1, domain=MS)
def multi_head_attention(ctx: NodeContext) -> list[str]:
    if any(ctx.has(i) for i in (6, 7, 8, 9)) or any(ctx.has_output(i) for i in (1, 2, 3)):
        raise ctx.unsupported("MultiHeadAttention with past/present state or qk output is not supported")
    if not ctx.has(1) or ctx.rank(0) not in (None, 3) or ctx.rank(1) not in (None, 3):
        raise ctx.unsupported("packed QKV/KV forms of MultiHeadAttention are not supported (3-D q, k, v only)")
    scale = ctx.attr("scale", None)
    return [ctx.call(
        _multi_head_attention, ctx.x(0), ctx.x(1), ctx.x(2), ctx.opt(3), ctx.opt(4), ctx.opt(5),
        ctx.lit(ctx.attr("num_heads")), "None" if scale is None else ctx.lit(ctx.fattr("scale")),
        ctx.lit(bool(ctx.attr("unidirectional", 0))), ctx.lit(ctx.fattr("mask_filter_value", -10000.0)),
    )] + [None] * (ctx.n_out - 1)


@runtime_helper
def _ms_rotary(x, position_ids, cos_cache, sin_cache, interleaved, num_heads, rotary_dim):
    """com.microsoft RotaryEmbedding: position_ids (B, S), or one offset for every sequence."""
    sequence = x.shape[1] if x.ndim == 3 else x.shape[2]
    position_ids = jnp.asarray(position_ids)
    if position_ids.size == 1 and not (position_ids.ndim == 2 and sequence == 1):
        start = jnp.reshape(position_ids, ())
        position_ids = jnp.broadcast_to(start + jnp.arange(sequence)[None, :], (x.shape[0], sequence))
    return _rotary_embedding(x, cos_cache, sin_cache, position_ids, interleaved, num_heads, rotary_dim)


@emitter("RotaryEmbedding", since=1, domain=MS)
def ms_rotary_embedding(ctx: NodeContext) -> str:
    if ctx.attr("is_packed_batching", 0):
        raise ctx.unsupported("is_packed_batching is not supported")
    num_heads = ctx.attr("num_heads", 0)
    return ctx.call(_ms_rotary, ctx.x(0), ctx.x(1), ctx.x(2), ctx.x(3), ctx.lit(bool(ctx.attr("interleaved", 0))),
                    ctx.lit(num_heads or None), ctx.lit(ctx.attr("rotary_embedding_dim", 0)))
