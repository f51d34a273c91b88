"""Whole models in the shape of other projects' published examples, beyond the first catalogue's: a Gemma-style
NNX decoder (RMSNorm with (1 + scale), rotary positions, grouped-query attention with a sliding window and
soft-capped logits, a gated GELU MLP, tied and soft-capped output), the NNX and Linen "scan over layers"
patterns (``nnx.vmap``-built stacked blocks under ``nnx.scan``; ``nn.scan`` of ``nn.remat``), Equinox's
vision transformer example (patch convolution, class token, ``eqx.nn.MultiheadAttention``), and Haiku's
character-level LSTM language model (``hk.DeepRNN`` with a one-hot front, teacher-forced logits and a greedy
continuation through ``hk.scan``). Random weights built in code, no downloads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program


def _normal(seed: int, *shape: int) -> np.ndarray:
    """Seeded per program: the same values whichever programs a test worker built before."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _tokens(seed: int, low: int, high: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, shape).astype(np.int32)


# ----------------------------------------------------------------------------- Flax NNX
@program("nnx_gemma_decoder", library="flax.nnx",
         origin="flax examples/gemma (Gemma 2 shape: RMSNorm (1+scale), RoPE, grouped-query attention, sliding "
                "window, attention and final logit soft-capping, gated GELU MLP, tied embedding)")
def _nnx_gemma() -> Built:
    from flax import nnx

    scales = iter(range(100, 200))

    class RMSNorm(nnx.Module):
        def __init__(self, dim: int) -> None:
            self.scale = nnx.Param(jnp.asarray(0.1 * _normal(next(scales), dim)))

        def __call__(self, x: jax.Array) -> jax.Array:
            variance = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
            return x * jax.lax.rsqrt(variance + 1e-6) * (1 + self.scale[...])

    def rope(x: jax.Array, positions: jax.Array, base: float = 10_000.0) -> jax.Array:
        half = x.shape[-1] // 2
        timescale = base ** (2 * jnp.arange(half, dtype=jnp.float32) / x.shape[-1])
        angles = positions[..., None].astype(jnp.float32) / timescale  # (B, T, half)
        sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]
        first, second = jnp.split(x, 2, axis=-1)
        return jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)

    class Attention(nnx.Module):
        def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, window: int | None, *, rngs: nnx.Rngs):
            self.heads, self.kv_heads, self.head_dim, self.window = heads, kv_heads, head_dim, window
            self.q = nnx.Einsum("BTD,DNH->BTNH", (dim, heads, head_dim), rngs=rngs)
            self.kv = nnx.Einsum("BSD,CDKH->CBSKH", (2, dim, kv_heads, head_dim), rngs=rngs)
            self.out = nnx.Einsum("BTNH,NHD->BTD", (heads, head_dim, dim), rngs=rngs)

        def __call__(self, x: jax.Array, positions: jax.Array, mask: jax.Array) -> jax.Array:
            q = rope(self.q(x), positions) * self.head_dim ** -0.5
            k, v = self.kv(x)
            k = rope(k, positions)
            batch, length = q.shape[0], q.shape[1]
            groups = self.heads // self.kv_heads
            q = q.reshape(batch, length, self.kv_heads, groups, self.head_dim)
            logits = jnp.einsum("BTKGH,BSKH->BTKGS", q, k)
            logits = jnp.tanh(logits / 50.0) * 50.0
            if self.window is not None:
                t = jnp.arange(length)
                mask = mask & ((t[:, None] - t[None, :]) < self.window)[None]
            logits = jnp.where(mask[:, :, None, None, :], logits, -2.3819763e38)
            probabilities = jax.nn.softmax(logits, axis=-1)
            encoded = jnp.einsum("BTKGS,BSKH->BTKGH", probabilities, v).reshape(batch, length, self.heads, self.head_dim)
            return self.out(encoded)

    class MLP(nnx.Module):
        def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
            self.gate = nnx.Linear(dim, hidden, use_bias=False, rngs=rngs)
            self.up = nnx.Linear(dim, hidden, use_bias=False, rngs=rngs)
            self.down = nnx.Linear(hidden, dim, use_bias=False, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.down(jax.nn.gelu(self.gate(x), approximate=True) * self.up(x))

    class Block(nnx.Module):
        def __init__(self, dim: int, window: int | None, *, rngs: nnx.Rngs):
            self.pre_attention, self.post_attention = RMSNorm(dim), RMSNorm(dim)
            self.pre_mlp, self.post_mlp = RMSNorm(dim), RMSNorm(dim)
            self.attention = Attention(dim, 4, 2, 8, window, rngs=rngs)
            self.mlp = MLP(dim, 64, rngs=rngs)

        def __call__(self, x: jax.Array, positions: jax.Array, mask: jax.Array) -> jax.Array:
            x = x + self.post_attention(self.attention(self.pre_attention(x), positions, mask))
            return x + self.post_mlp(self.mlp(self.pre_mlp(x)))

    class Gemma(nnx.Module):
        def __init__(self, vocab: int, dim: int, *, rngs: nnx.Rngs):
            self.dim = dim
            self.embedder = nnx.Embed(vocab, dim, rngs=rngs)
            self.blocks = nnx.List([Block(dim, 4, rngs=rngs), Block(dim, None, rngs=rngs)])  # local, then global
            self.final_norm = RMSNorm(dim)

        def __call__(self, tokens: jax.Array) -> jax.Array:
            positions = jnp.cumsum(tokens != 0, axis=-1) - 1  # left padding: positions start at the first token
            valid = tokens != 0
            length = tokens.shape[1]
            causal = jnp.tril(jnp.ones((length, length), bool))
            mask = causal[None] & valid[:, None, :]
            x = self.embedder(tokens) * self.dim ** 0.5
            for block in self.blocks:
                x = block(x, positions, mask)
            logits = self.embedder.attend(self.final_norm(x))
            return jnp.tanh(logits / 30.0) * 30.0

    model = Gemma(64, 32, rngs=nnx.Rngs(0))
    model.eval()
    tokens = _tokens(1, 1, 64, 2, 12)
    tokens[1, :3] = 0  # left padding
    return Built(model, [jax.ShapeDtypeStruct(("B", "T"), jnp.int32)], [tokens])


@program("nnx_scan_over_layers", library="flax.nnx",
         origin="flax NNX docs: scan over layers (blocks built by nnx.vmap over split Rngs, applied by nnx.scan)")
def _nnx_scan_layers() -> Built:
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, dim: int, *, rngs: nnx.Rngs):
            self.linear = nnx.Linear(dim, dim, rngs=rngs)
            self.norm = nnx.LayerNorm(dim, rngs=rngs)
            self.dropout = nnx.Dropout(0.1, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return x + self.dropout(nnx.gelu(self.linear(self.norm(x))))

    class Stack(nnx.Module):
        def __init__(self, dim: int, depth: int, *, rngs: nnx.Rngs):
            @nnx.split_rngs(splits=depth)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def create(rngs: nnx.Rngs) -> Block:
                return Block(dim, rngs=rngs)

            self.blocks = create(rngs)
            self.head = nnx.Linear(dim, 3, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
            def forward(h: jax.Array, block: Block) -> jax.Array:
                return block(h)

            return self.head(forward(x, self.blocks))

    model = Stack(16, 4, rngs=nnx.Rngs(0))
    model.eval()
    return Built(model, [("B", 5, 16)], [_normal(2, 2, 5, 16)])


# ----------------------------------------------------------------------------- Flax Linen
@program("linen_scan_remat_layers", library="flax.linen",
         origin="flax linen docs: nn.scan over nn.remat'd transformer layers (the stacked-weights pattern of t5x/maxtext)")
def _linen_scan_layers() -> Built:
    import flax.linen as nn

    class Layer(nn.Module):
        dim: int

        @nn.compact
        def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
            h = nn.LayerNorm()(x)
            attention = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=self.dim, deterministic=True)
            h = attention(h, mask=nn.make_causal_mask(x[..., 0]))
            x = x + h
            h = nn.Dense(2 * self.dim)(nn.LayerNorm()(x))
            return x + nn.Dense(self.dim)(nn.gelu(h)), None

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            stack = nn.scan(nn.remat(Layer), variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
            x, _ = stack(16, name="layers")(nn.Dense(16)(x), None)
            return nn.Dense(4)(x)

    sample = _normal(3, 2, 6, 5)
    module = Model()
    params = module.init(jax.random.key(0), sample)
    return Built(lambda x: module.apply(params, x), [("B", 6, 5)], [sample])


# ----------------------------------------------------------------------------- Equinox
@program("eqx_vision_transformer", library="equinox",
         origin="equinox examples/vision_transformer (Conv2d patches, class token, learned positions, "
                "MultiheadAttention, LayerNorm, GELU MLP, Dropout in inference)")
def _eqx_vit() -> Built:
    import equinox as eqx

    keys = iter(jax.random.split(jax.random.key(7), 16))

    class AttentionBlock(eqx.Module):
        norm1: eqx.nn.LayerNorm
        attention: eqx.nn.MultiheadAttention
        norm2: eqx.nn.LayerNorm
        linear1: eqx.nn.Linear
        linear2: eqx.nn.Linear
        dropout: eqx.nn.Dropout

        def __init__(self, dim: int, hidden: int, heads: int) -> None:
            self.norm1, self.norm2 = eqx.nn.LayerNorm(dim), eqx.nn.LayerNorm(dim)
            self.attention = eqx.nn.MultiheadAttention(heads, dim, key=next(keys))
            self.linear1 = eqx.nn.Linear(dim, hidden, key=next(keys))
            self.linear2 = eqx.nn.Linear(hidden, dim, key=next(keys))
            self.dropout = eqx.nn.Dropout(0.1, inference=True)

        def __call__(self, x: jax.Array) -> jax.Array:
            normed = jax.vmap(self.norm1)(x)
            x = x + self.dropout(self.attention(normed, normed, normed))
            h = jax.vmap(lambda t: self.linear2(self.dropout(jax.nn.gelu(self.linear1(t)))))(jax.vmap(self.norm2)(x))
            return x + self.dropout(h)

    class VisionTransformer(eqx.Module):
        patches: eqx.nn.Conv2d
        class_token: jax.Array
        positions: jax.Array
        blocks: list[AttentionBlock]
        norm: eqx.nn.LayerNorm
        head: eqx.nn.Linear

        def __init__(self, dim: int = 24, patch: int = 4, size: int = 16) -> None:
            count = (size // patch) ** 2
            self.patches = eqx.nn.Conv2d(3, dim, patch, stride=patch, key=next(keys))
            self.class_token = jax.random.normal(next(keys), (1, dim))
            self.positions = jax.random.normal(next(keys), (count + 1, dim))
            self.blocks = [AttentionBlock(dim, 48, 4) for _ in range(2)]
            self.norm = eqx.nn.LayerNorm(dim)
            self.head = eqx.nn.Linear(dim, 10, key=next(keys))

        def __call__(self, image: jax.Array) -> jax.Array:
            x = self.patches(image)
            x = x.reshape(x.shape[0], -1).T
            x = jnp.concatenate([self.class_token, x], axis=0) + self.positions
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x[0]))

    return Built(jax.vmap(VisionTransformer()), [("B", 3, 16, 16)], [_normal(4, 2, 3, 16, 16)])


# ----------------------------------------------------------------------------- Haiku
@program("haiku_char_lstm_lm", library="haiku",
         origin="dm-haiku examples/rnn (character LM: hk.DeepRNN of one-hot, LSTM, relu, LSTM, MLP; teacher-forced "
                "logits by hk.dynamic_unroll and a greedy continuation by hk.scan)")
def _haiku_char_lm() -> Built:
    import haiku as hk

    vocab, continuation = 20, 5

    def network() -> hk.DeepRNN:
        return hk.DeepRNN([
            lambda x: jax.nn.one_hot(x, vocab),
            hk.LSTM(24),
            jax.nn.relu,
            hk.LSTM(24),
            hk.nets.MLP([24, vocab]),
        ], name="char_lm")

    def forward(tokens: jax.Array) -> tuple[jax.Array, jax.Array]:  # tokens: (T, B), time-major
        core = network()
        logits, state = hk.dynamic_unroll(core, tokens, core.initial_state(tokens.shape[1]))

        def step(carry, _):
            token, state = carry
            step_logits, state = core(token, state)
            following = jnp.argmax(step_logits, axis=-1).astype(tokens.dtype)
            return (following, state), following

        first = jnp.argmax(logits[-1], axis=-1).astype(tokens.dtype)
        _, generated = hk.scan(step, (first, state), None, length=continuation)
        return logits, jnp.concatenate([first[None], generated], axis=0)

    transformed = hk.without_apply_rng(hk.transform(forward))
    tokens = _tokens(5, 0, vocab, 8, 2)
    params = transformed.init(jax.random.key(0), tokens)
    return Built(lambda t: transformed.apply(params, t), [jax.ShapeDtypeStruct((8, "B"), jnp.int32)], [tokens])
