"""Pre-LN transformer blocks in bfloat16 / float16 as Flax NNX, Flax Linen and Equinox write them (shared by the
half-precision fusion tests and their node budgets)."""

from __future__ import annotations

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

WIDTH, HEADS, HIDDEN, LENGTH = 64, 4, 128, 8


class NnxBlock(nnx.Module):
    """LayerNorm, MultiHeadAttention, LayerNorm, GELU MLP; ``dtype`` computes, ``param_dtype`` stores."""

    def __init__(self, rngs: nnx.Rngs, dtype, param_dtype) -> None:
        common = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.ln = nnx.LayerNorm(WIDTH, **common)
        self.att = nnx.MultiHeadAttention(HEADS, WIDTH, decode=False, **common)
        self.ln2 = nnx.LayerNorm(WIDTH, **common)
        self.fc = nnx.Linear(WIDTH, HIDDEN, **common)
        self.fc2 = nnx.Linear(HIDDEN, WIDTH, **common)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.att(self.ln(x))
        return x + self.fc2(nnx.gelu(self.fc(self.ln2(x))))


class LinenBlock(nn.Module):
    """The same block in Flax Linen."""

    dtype: jnp.dtype
    param_dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = x + nn.MultiHeadDotProductAttention(HEADS, **common)(nn.LayerNorm(**common)(x))
        h = nn.gelu(nn.Dense(HIDDEN, **common)(nn.LayerNorm(**common)(x)))
        return x + nn.Dense(WIDTH, **common)(h)


class EqxBlock(eqx.Module):
    """The same block in Equinox (one sequence: the norms and dense layers under ``vmap``)."""

    ln: eqx.nn.LayerNorm
    att: eqx.nn.MultiheadAttention
    ln2: eqx.nn.LayerNorm
    fc: eqx.nn.Linear
    fc2: eqx.nn.Linear

    def __init__(self, key: jax.Array) -> None:
        keys = jax.random.split(key, 3)
        self.ln, self.ln2 = eqx.nn.LayerNorm(WIDTH), eqx.nn.LayerNorm(WIDTH)
        self.att = eqx.nn.MultiheadAttention(HEADS, WIDTH, key=keys[0])
        self.fc = eqx.nn.Linear(WIDTH, HIDDEN, key=keys[1])
        self.fc2 = eqx.nn.Linear(HIDDEN, WIDTH, key=keys[2])

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.vmap(self.ln)(x)
        x = x + self.att(h, h, h)
        h = jax.nn.gelu(jax.vmap(self.fc)(jax.vmap(self.ln2)(x)))
        return x + jax.vmap(self.fc2)(h)


def nnx_block(dtype, param_dtype=None) -> NnxBlock:
    return NnxBlock(nnx.Rngs(0), dtype, dtype if param_dtype is None else param_dtype)


def linen_block(dtype, param_dtype=None):
    """The Linen block bound to its parameters: a function of ``x``."""
    module = LinenBlock(dtype, dtype if param_dtype is None else param_dtype)
    params = module.init(jax.random.key(0), jnp.ones((1, LENGTH, WIDTH), dtype))

    def apply(x: jax.Array) -> jax.Array:
        return module.apply(params, x)

    return apply


def eqx_block(dtype) -> EqxBlock:
    """The Equinox block with every floating array cast to ``dtype`` (``jax.tree.map``)."""
    block = eqx.nn.inference_mode(EqxBlock(jax.random.key(0)))
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, block)
