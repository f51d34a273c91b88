"""onnxruntime's ``com.microsoft::GroupQueryAttention``: the attention of decoder LLMs that
onnxruntime-genai's model builder and onnxruntime's LLaMA/Phi/Mistral optimizations write.

One node holds a decoder layer's attention with its KV cache: ``num_heads`` query heads share
``kv_num_heads`` key/value heads, new keys and values are appended to ``past_key``/``past_value``
(BNSH) at each sequence's own length (``seqlens_k`` = total length - 1 per sequence), optional
rotary embedding of Q and K from cos/sin caches, a causal (optionally local-window) mask, softcap,
a custom scale, and attention sinks (``head_sink`` per head, or ``smooth_softmax``'s zero logit). ``query`` alone may pack Q, K and V. The first call (the prompt) is the one where
``total_sequence_length`` equals the new sequence length; later calls decode with the past.
Checked against onnxruntime's CPU kernel in tests/onnx_to_jax/test_microsoft_ops.py.

Not supported (the emitter refuses them by name): quantized KV caches (``k_quant_type`` /
``v_quant_type``), ``sliding_window_cache``, ``qk_output``, ``q_norm_weight`` / ``k_norm_weight``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.attention import _rotary_embedding
from workbench.onnx_to_jax.registry import emitter, runtime_helper

MS = "com.microsoft"


@runtime_helper
def _gqa_present_length(total_length, past_length, new_length):
    """The present cache length: onnxruntime's max(total_sequence_length, past length). A traced
    total (jax.jit) cannot size an array, so then the past grows by the new tokens (the convention of
    caches that do not share the past buffer; a shared-buffer model has its present length in the graph)."""
    if isinstance(total_length, jax.core.Tracer):
        return past_length + new_length if past_length else new_length
    return max(int(np.asarray(total_length).reshape(())), past_length)


@runtime_helper
def _gqa_append(past, new, starts, present_length):
    """Write ``new`` (B, kvN, S, H) into the cache at each sequence's start (B,), after ``past``."""
    b, heads, _, head = new.shape
    cache = jnp.zeros((b, heads, present_length, head), new.dtype)
    if past is not None:
        kept = min(past.shape[2], present_length)
        cache = cache.at[:, :, :kept].set(past[:, :, :kept].astype(new.dtype))

    def write(row, values, start):
        zero = jnp.zeros_like(start)
        return jax.lax.dynamic_update_slice(row, values, (zero, start, zero))

    return jax.vmap(write)(cache, new, starts)


@runtime_helper
def _group_query_attention(query, key, value, past_key, past_value, seqlens_k, total_length, cos_cache, sin_cache,
                           position_ids, attention_bias, sink, num_heads, kv_num_heads, scale, softcap, local_window,
                           causal, interleaved, present_length):
    """``sink``: None, or each head's logit (N,) that joins every softmax's denominator only (head_sink; 0 for
    smooth_softmax)."""
    batch, length = query.shape[:2]
    if key is None:  # packed QKV: (B, S, (N + 2 kvN) H)
        head = query.shape[-1] // (num_heads + 2 * kv_num_heads)
        q_width, kv_width = num_heads * head, kv_num_heads * head
        query, key, value = (query[..., :q_width], query[..., q_width:q_width + kv_width],
                             query[..., q_width + kv_width:])
    else:
        head = query.shape[-1] // num_heads
    totals = jnp.asarray(seqlens_k).astype(jnp.int32).reshape(batch) + 1
    first_prompt = jnp.asarray(total_length).astype(jnp.int32).reshape(()) == length
    # where each sequence's new tokens go: right after its own past (position 0 in the first prompt)
    starts = jnp.where(first_prompt, 0, totals - length)
    positions = starts[:, None] + jnp.arange(length, dtype=jnp.int32)[None, :]
    if cos_cache is not None:
        rotary_positions = positions if position_ids is None else jnp.where(
            first_prompt, positions, jnp.asarray(position_ids).astype(jnp.int32))
        rotary_dim = 2 * cos_cache.shape[-1]
        query = _rotary_embedding(query, cos_cache, sin_cache, rotary_positions, interleaved, num_heads, rotary_dim)
        key = _rotary_embedding(key, cos_cache, sin_cache, rotary_positions, interleaved, kv_num_heads, rotary_dim)

    def heads(x, n):
        return jnp.transpose(jnp.reshape(x, (batch, length, n, head)), (0, 2, 1, 3))

    present_key = _gqa_append(past_key, heads(key, kv_num_heads), starts, present_length)
    present_value = _gqa_append(past_value, heads(value, kv_num_heads), starts, present_length)
    compute = jnp.float64 if query.dtype == jnp.float64 else jnp.float32
    q = heads(query, num_heads).astype(compute)
    groups = num_heads // kv_num_heads
    k = jnp.repeat(present_key.astype(compute), groups, axis=1)
    v = jnp.repeat(present_value.astype(compute), groups, axis=1)
    scale = (1.0 / np.sqrt(head)) if scale is None else scale
    scores = jnp.matmul(q, jnp.swapaxes(k, -1, -2)) * jnp.asarray(scale, compute)
    if softcap > 0:
        scores = softcap * jnp.tanh(scores / softcap)
    if attention_bias is not None:  # (B or 1, N or 1, S, total length): the cache may be longer (masked there)
        bias = jnp.asarray(attention_bias).astype(compute)[..., :present_length]
        bias = jnp.pad(bias, [(0, 0)] * (bias.ndim - 1) + [(0, present_length - bias.shape[-1])])
        scores = scores + bias
    key_positions = jnp.arange(present_length, dtype=jnp.int32)[None, None, :]
    query_positions = positions[:, :, None]
    allowed = key_positions < totals[:, None, None]
    if causal:
        allowed = allowed & (key_positions <= query_positions)
        if local_window >= 0:
            allowed = allowed & (key_positions > query_positions - local_window)
    scores = jnp.where(allowed[:, None], scores, -jnp.inf)
    if sink is None:
        probs = jax.nn.softmax(scores, axis=-1)
    else:
        sink = jnp.broadcast_to(jnp.asarray(sink).astype(compute), (num_heads,))[None, :, None, None]
        top = jnp.maximum(jnp.max(scores, axis=-1, keepdims=True), sink)
        weights = jnp.exp(scores - top)
        probs = weights / (jnp.sum(weights, axis=-1, keepdims=True) + jnp.exp(sink - top))
    probs = jnp.where(allowed[:, None], probs, 0)
    y = jnp.matmul(probs, v)
    y = jnp.reshape(jnp.transpose(y, (0, 2, 1, 3)), (batch, length, num_heads * head)).astype(query.dtype)
    return y, present_key, present_value


def _refuse_unsupported(ctx: NodeContext) -> None:
    for name in ("k_quant_type", "v_quant_type"):
        if ctx.attr(name, "NONE") != "NONE":
            raise ctx.unsupported(f"{name}={ctx.attr(name)!r}: quantized KV caches are not supported")
    for name, meaning in (("sliding_window_cache", "window-sized KV buffers"), ("qk_output", "the QK output")):
        if ctx.attr(name, 0) > 0:
            raise ctx.unsupported(f"{name}={ctx.attr(name)}: {meaning} are not supported")
    for i, name in ((12, "k_scale"), (13, "v_scale"), (14, "q_norm_weight"), (15, "k_norm_weight")):
        if ctx.has(i):
            raise ctx.unsupported(f"the {name} input is not supported")
    if ctx.has_output(3):
        raise ctx.unsupported("the output_qk output is not supported")


@emitter("GroupQueryAttention", since=1, domain=MS)
def group_query_attention(ctx: NodeContext) -> str | list[str]:
    """Attributes: num_heads, kv_num_heads, scale, softcap, local_window_size, do_rotary,
    rotary_interleaved, causal; inputs query, key, value, past_key, past_value, seqlens_k,
    total_sequence_length, cos_cache, sin_cache, position_ids, attention_bias."""
    _refuse_unsupported(ctx)
    num_heads, kv_num_heads = ctx.attr("num_heads"), ctx.attr("kv_num_heads")
    if kv_num_heads <= 0 or num_heads % kv_num_heads:
        raise ctx.error(f"num_heads={num_heads} must be a multiple of kv_num_heads={kv_num_heads}")
    if ctx.has(1) != ctx.has(2):
        raise ctx.error("key and value must be given together (or neither, with packed QKV in query)")
    rotary = bool(ctx.attr("do_rotary", 0))
    if rotary and not (ctx.has(7) and ctx.has(8)):
        raise ctx.error("do_rotary=1 needs the cos_cache and sin_cache inputs")
    scale = ctx.attr("scale", 0.0)
    sink = ctx.x(11) if ctx.has(11) else ("0.0" if ctx.attr("smooth_softmax", -1) > 0 else "None")
    present = ctx.out_shape(1)
    static_length = present[2] if present is not None and len(present) == 4 else None
    if static_length is not None:
        length = ctx.lit(static_length)
    else:
        past = f"{ctx.x(3)}.shape[2]" if ctx.has(3) else "0"
        length = ctx.call(_gqa_present_length, ctx.x(6), past, f"{ctx.x(0)}.shape[1]")
    call = ctx.call(
        _group_query_attention, ctx.x(0), ctx.opt(1), ctx.opt(2), ctx.opt(3), ctx.opt(4), ctx.x(5), ctx.x(6),
        ctx.opt(7) if rotary else "None", ctx.opt(8) if rotary else "None", ctx.opt(9), ctx.opt(10), sink,
        ctx.lit(num_heads), ctx.lit(kv_num_heads), "None" if not scale else ctx.lit(ctx.fattr("scale")),
        ctx.lit(ctx.fattr("softcap", 0.0)), ctx.lit(ctx.attr("local_window_size", -1)),
        ctx.lit(bool(ctx.attr("causal", 1))), ctx.lit(bool(ctx.attr("rotary_interleaved", 0))), length,
    )
    if ctx.n_out == 1:
        return [f"{call}[0]"]
    return call if ctx.n_out == 3 else f"{call}[:{ctx.n_out}]"
