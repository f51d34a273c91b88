"""``ai.onnx.preview::FlexAttention`` (preview opset 1): attention whose score and probability
modifiers are graphs.

The op takes rank-4 Q (B, Hq, L, E), K (B, Hkv, S, E) and V (B, Hkv, S, Ev); grouped-query heads
(Hq a multiple of Hkv) repeat K and V. Q and K are each multiplied by sqrt(scale) (scale defaults to
1/sqrt(E), its square root taken in float32 and rounded to the input type) and multiplied in the input
type; the scores then move to the softmax type (``softmax_precision``, else float32 for float16 and
bfloat16 inputs, else the input type). The ``score_mod`` graph maps the scores, a softmax over the
key axis gives the probabilities, the ``prob_mod`` graph maps those, and the product with V (in the
softmax type) is rounded back to V's type. The modifier graphs are emitted as nested functions, as
If / Loop / Scan bodies are (``NodeContext.subgraph``): each takes one tensor and gives one.

A row that every score masks (all -inf after ``score_mod``) gives NaN, as the spec's softmax does.
Ranks, head counts and sizes, ``softmax_precision`` and the modifiers' signatures are checked by ONNX
shape inference, which the reader runs first (its message names the node).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper

PREVIEW = "ai.onnx.preview"
_MODIFIERS = ("score_mod", "prob_mod")


@runtime_helper
def _flex_attention(q, k, v, scale, score_mod, prob_mod, softmax_dtype):
    heads_q, heads_kv = q.shape[1], k.shape[1]
    if heads_q != heads_kv:
        k = jnp.repeat(k, heads_q // heads_kv, axis=1)
        v = jnp.repeat(v, heads_q // heads_kv, axis=1)
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[3])
    root = jnp.asarray(np.sqrt(np.float32(scale)), q.dtype)
    if q.dtype in (jnp.float16, jnp.bfloat16):
        # products summed in float32 and the scores rounded once to the input type (numpy's
        # half-precision matmul, which the reference uses, does the same)
        scores = jnp.matmul((q * root).astype(jnp.float32), jnp.swapaxes(k * root, -1, -2).astype(jnp.float32))
        scores = scores.astype(q.dtype)
    else:
        scores = jnp.matmul(q * root, jnp.swapaxes(k * root, -1, -2))
    compute = softmax_dtype if softmax_dtype is not None else (
        jnp.float32 if q.dtype in (jnp.float16, jnp.bfloat16) else q.dtype)
    scores = scores.astype(compute)
    if score_mod is not None:
        scores = jnp.asarray(score_mod(scores)[0]).astype(compute)
    expd = jnp.exp(scores - jnp.max(scores, axis=-1, keepdims=True))
    probs = expd / jnp.sum(expd, axis=-1, keepdims=True)
    if prob_mod is not None:
        probs = jnp.asarray(prob_mod(probs)[0]).astype(compute)
    return jnp.matmul(probs, v.astype(compute)).astype(v.dtype)


def _modifier(ctx: NodeContext, name: str) -> str:
    """The nested function of the modifier graph ``name``, or "None" when the node has none."""
    return ctx.subgraph(name) if ctx.has_attr(name) else "None"


@emitter("FlexAttention", since=1, domain=PREVIEW)
def flex_attention(ctx: NodeContext) -> str:
    precision = ctx.attr("softmax_precision", None)
    score_mod, prob_mod = (_modifier(ctx, name) for name in _MODIFIERS)
    return ctx.call(
        _flex_attention, ctx.x(0), ctx.x(1), ctx.x(2),
        "None" if not ctx.has_attr("scale") else ctx.lit(ctx.fattr("scale")),
        score_mod, prob_mod, "None" if precision is None else ctx.onnx_dt(precision),
    )
