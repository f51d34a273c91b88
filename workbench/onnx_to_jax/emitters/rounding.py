"""bfloat16 arithmetic as onnx's reference computes it (numpy with ml_dtypes), for Attention and Softmax.

ml_dtypes computes each bfloat16 operation in float32 and rounds the result to bfloat16, and numpy's
reduction over a bfloat16 axis adds its elements in order, rounding after each addition. XLA rounds
each elementwise bfloat16 operation the same way (under jax.jit once excess precision is off:
jit_options.py), but sums a bfloat16 reduction in float32 and rounds once, so the softmax denominators differ by an ulp and so do a fifth of the attention outputs
(the node suite's bfloat16 Attention cases ask rtol 1e-3, below bfloat16's resolution).

:func:`_bfloat16_sum` adds in order, rounding after each addition, for rows of up to
64 terms: the additions unroll into the softmax's fused loop (measured on bfloat16 attention of 16 heads x
512 queries, one call: 3.35 against 3.47 CPU ms with 48 keys, 4.29 against 3.42 with 64; load 8).
Longer rows are summed in float32 and rounded once: in order they would need a sequential loop over
the row (measured: 16 heads x 512 x 512 bfloat16 attention took 95 instead of 50 CPU ms per call),
and the in-order bfloat16 sum is the less accurate of the two (bfloat16 attention against float64: largest
error 0.0058 with 100 keys and 0.0041 with 1,000 summed in float32, 0.018 and 0.067 in order).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from workbench.onnx_to_jax.registry import runtime_helper

@runtime_helper
def _exact(x):
    return x


@runtime_helper
def _bfloat16_rounding(x):
    """``x`` (float32) rounded to the nearest bfloat16, kept in float32 (``lax.reduce_precision``, which
    XLA keeps where it may drop a float32 -> bfloat16 -> float32 round trip)."""
    return lax.reduce_precision(x, exponent_bits=8, mantissa_bits=7)


@runtime_helper
def _bfloat16_sum(x, axis):
    """The sum of ``x`` (bfloat16 values, in float32 or bfloat16) over ``axis``, kept, in ``x``'s dtype: added
    in order and rounded to bfloat16 after each addition for up to 64 terms, else in float32 and rounded once."""
    wide = jnp.asarray(x).astype(jnp.float32)
    axis = axis % wide.ndim
    if wide.shape[axis] > 64:
        return _bfloat16_rounding(jnp.sum(wide, axis=axis, keepdims=True)).astype(x.dtype)
    total = jnp.zeros(wide.shape[:axis] + (1,) + wide.shape[axis + 1:], jnp.float32)
    for j in range(wide.shape[axis]):
        total = _bfloat16_rounding(total + lax.slice_in_dim(wide, j, j + 1, axis=axis))
    return total.astype(x.dtype)
