"""Attention (opset 23+) and RotaryEmbedding.

Attention follows the ONNX spec: 3-D inputs are split into heads, past K/V are
concatenated (returned as present K/V), grouped-query heads are repeated, the
bias combines attn_mask (boolean or additive), is_causal (aligned to the end
of the cache) and the sliding window, rows that are fully masked give 0.

Half precision is computed in float32. float16 is rounded once at the end. bfloat16 is rounded after
every step, as the spec's function body computes in the input type and onnx's reference does with
ml_dtypes: the scaled Q and K, the scores, the softcap steps, the scores plus bias, and in the softmax
the shifted scores, their exponentials, their sum and the quotient; then the probabilities' product
with V. The sum follows the reference's order for rows of up to 64 keys (``rounding.py``). Rounding
once at the end instead left a fifth of the outputs one bfloat16 ulp off the reference.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.rounding import _bfloat16_rounding, _bfloat16_sum, _exact
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _attention(q, k, v, attn_mask, past_key, past_value, nonpad_kv_seqlen, scale, is_causal, q_num_heads,
               kv_num_heads, softmax_precision, softcap, qk_matmul_output_mode, left_window, right_window, n_out):
    rank3 = q.ndim == 3
    if rank3:
        b, sq = q.shape[:2]
        q = jnp.transpose(jnp.reshape(q, (b, sq, q_num_heads, -1)), (0, 2, 1, 3))
        k = jnp.transpose(jnp.reshape(k, (b, k.shape[1], kv_num_heads, -1)), (0, 2, 1, 3))
        v = jnp.transpose(jnp.reshape(v, (b, v.shape[1], kv_num_heads, -1)), (0, 2, 1, 3))
    out_dtype = q.dtype
    rnd = _bfloat16_rounding if out_dtype == jnp.bfloat16 else _exact
    if out_dtype in (jnp.bfloat16, jnp.float16):
        q, k, v = (t.astype(jnp.float32) for t in (q, k, v))
        past_key = None if past_key is None else past_key.astype(jnp.float32)
        past_value = None if past_value is None else past_value.astype(jnp.float32)
        if attn_mask is not None and attn_mask.dtype != jnp.bool_:
            attn_mask = attn_mask.astype(jnp.float32)
    dtype = q.dtype
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[3])
    root = rnd(jnp.asarray(np.sqrt(scale), dtype))
    if past_key is not None:
        k = jnp.concatenate([past_key, k], axis=2)
        v = jnp.concatenate([past_value, v], axis=2)
    present_key, present_value = k, v
    sq, skv = q.shape[2], k.shape[2]
    neg = jnp.asarray(-jnp.inf, dtype)
    bias = jnp.zeros((sq, skv), dtype)
    if attn_mask is not None:
        pad = skv - attn_mask.shape[-1]
        if pad > 0:
            fill = False if attn_mask.dtype == jnp.bool_ else -jnp.inf
            attn_mask = jnp.pad(attn_mask, [(0, 0)] * (attn_mask.ndim - 1) + [(0, pad)], constant_values=fill)
        if attn_mask.dtype == jnp.bool_:
            attn_mask = jnp.where(attn_mask, jnp.asarray(0, dtype), neg)
        bias = bias + attn_mask.astype(dtype)
    rows = jnp.arange(sq)[:, None]
    cols = jnp.arange(skv)[None, :]
    if nonpad_kv_seqlen is not None and past_key is None:
        offset = jnp.reshape(jnp.asarray(nonpad_kv_seqlen) - sq, (-1, 1, 1, 1))
    else:
        offset = past_key.shape[2] if past_key is not None else 0
    if is_causal:
        bias = bias + jnp.where(cols <= rows + offset, jnp.asarray(0, dtype), neg)
    if left_window >= 0 or right_window >= 0:
        diff = rows + offset - cols
        allowed = jnp.ones(jnp.shape(diff), bool)
        if left_window >= 0:
            allowed = allowed & (diff <= left_window)
        if right_window >= 0:
            allowed = allowed & (-diff <= right_window)
        bias = bias + jnp.where(allowed, jnp.asarray(0, dtype), neg)
    if nonpad_kv_seqlen is not None:
        keep = jnp.arange(skv)[None, :] < jnp.asarray(nonpad_kv_seqlen)[:, None]
        bias = bias + jnp.where(keep, jnp.asarray(0, dtype), neg)[:, None, None, :]
    heads_q, heads_k = q.shape[1], k.shape[1]
    if heads_q != heads_k and heads_q % heads_k == 0:
        k = jnp.repeat(k, heads_q // heads_k, axis=1)
        v = jnp.repeat(v, heads_q // heads_k, axis=1)
    # (the bias is 0, -inf or the mask's values: exact in the input type without rounding)
    scores = rnd(jnp.matmul(rnd(q * root), jnp.swapaxes(rnd(k * root), -1, -2)))
    if softcap is not None and softcap > 0:
        cap = rnd(jnp.asarray(softcap, dtype))
        scores = rnd(rnd(jnp.tanh(rnd(scores / cap))) * cap)
    qk_out = scores
    with_bias = rnd(scores + bias)
    if qk_matmul_output_mode == 2:
        qk_out = with_bias
    if softmax_precision is not None:
        with_bias = with_bias.astype(softmax_precision)
    # the softmax is in the input type (rounded) unless softmax_precision names another
    in_softmax = rnd if softmax_precision is None or softmax_precision == jnp.bfloat16 else _exact
    peak = jnp.max(with_bias, axis=-1, keepdims=True)
    peak = jnp.where(jnp.isneginf(peak), 0, peak)
    expd = in_softmax(jnp.exp(in_softmax(with_bias - peak)))
    if in_softmax is _bfloat16_rounding:
        total = _bfloat16_sum(expd, -1)
    else:
        total = jnp.sum(expd, axis=-1, keepdims=True)
    probs = in_softmax(expd / jnp.where(total == 0, 1, total))
    masked_rows = jnp.isneginf(jnp.max(bias, axis=-1, keepdims=True))
    probs = jnp.where(masked_rows, 0, probs)
    if qk_matmul_output_mode == 3:
        qk_out = probs
    probs = rnd(probs.astype(dtype))
    y = rnd(jnp.matmul(probs, v))
    if rank3:
        y = jnp.reshape(jnp.transpose(y, (0, 2, 1, 3)), (y.shape[0], y.shape[2], -1))
    outputs = (y, present_key, present_value, qk_out.astype(dtype))
    return tuple(o.astype(out_dtype) for o in outputs[:n_out])


@emitter("Attention", since=(23, 24))
def attention(ctx: NodeContext) -> str:
    precision = ctx.attr("softmax_precision", None)
    scale = ctx.attr("scale", None)
    softcap = ctx.attr("softcap", None)
    return ctx.call(
        _attention, ctx.x(0), ctx.x(1), ctx.x(2), ctx.opt(3), ctx.opt(4), ctx.opt(5),
        ctx.opt(6) if ctx.opset >= 24 else "None",
        "None" if scale is None else ctx.lit(ctx.fattr("scale")),
        ctx.lit(bool(ctx.attr("is_causal", 0))),
        ctx.lit(ctx.attr("q_num_heads", None)), ctx.lit(ctx.attr("kv_num_heads", None)),
        "None" if precision is None else ctx.onnx_dt(precision),
        "None" if softcap is None else ctx.lit(ctx.fattr("softcap")),
        ctx.lit(ctx.attr("qk_matmul_output_mode", 0)),
        ctx.lit(ctx.attr("left_window_size", -1) if ctx.opset >= 25 else -1),
        ctx.lit(ctx.attr("right_window_size", -1) if ctx.opset >= 25 else -1),
        ctx.lit(ctx.n_out),
    ) + ("" if ctx.n_out > 1 else "[0]")


@runtime_helper
def _rotary_embedding(x, cos_cache, sin_cache, position_ids, interleaved, num_heads, rotary_dim):
    rank3 = x.ndim == 3
    if x.ndim == 4:
        x = jnp.transpose(x, (0, 2, 1, 3))  # (B, H, S, D) -> (B, S, H, D)
    else:
        b, s = x.shape[:2]
        x = jnp.reshape(x, (b, s, num_heads, -1))
    head = x.shape[-1]
    rotary_dim = rotary_dim or head
    if position_ids is not None:
        cos = jnp.take(cos_cache, position_ids, axis=0)
        sin = jnp.take(sin_cache, position_ids, axis=0)
    else:
        cos, sin = cos_cache, sin_cache
    cos = cos[..., : rotary_dim // 2][:, :, None, :]
    sin = sin[..., : rotary_dim // 2][:, :, None, :]
    part, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    if interleaved:
        x1, x2 = part[..., 0::2], part[..., 1::2]
    else:
        x1, x2 = part[..., : rotary_dim // 2], part[..., rotary_dim // 2:]
    r1 = x1 * cos - x2 * sin
    r2 = x2 * cos + x1 * sin
    if interleaved:
        rotated = jnp.reshape(jnp.stack([r1, r2], axis=-1), part.shape)
    else:
        rotated = jnp.concatenate([r1, r2], axis=-1)
    y = jnp.concatenate([rotated, rest], axis=-1)
    if rank3:
        return jnp.reshape(y, (y.shape[0], y.shape[1], -1))
    return jnp.transpose(y, (0, 2, 1, 3))


@emitter("RotaryEmbedding", since=23)
def rotary_embedding(ctx: NodeContext) -> str:
    return ctx.call(
        _rotary_embedding, ctx.x(0), ctx.x(1), ctx.x(2), ctx.opt(3), ctx.lit(bool(ctx.attr("interleaved", 0))),
        ctx.lit(ctx.attr("num_heads", None)), ctx.lit(ctx.attr("rotary_embedding_dim", 0)),
    )
