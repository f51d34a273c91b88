"""Whole models in the shape of other projects' published examples, beyond the first catalogue's: a Gemma-style
NNX decoder (RMSNorm with (1 + scale), rotary positions, grouped-query attention with a sliding window and
soft-capped logits, a gated GELU MLP, tied and soft-capped output), the NNX and Linen "scan over layers"
patterns (``nnx.vmap``-built stacked blocks under ``nnx.scan``; ``nn.scan`` of ``nn.remat``), Equinox's
vision transformer example (patch convolution, class token, ``eqx.nn.MultiheadAttention``), and Haiku's
character-level LSTM language model (``hk.DeepRNN`` with a one-hot front, teacher-forced logits and a greedy
continuation through ``hk.scan``); and programs people write with plain JAX around such models: Linen's cached
autoregressive decoding, a Linear Recurrent Unit by ``associative_scan``, top-2 mixture-of-experts routing,
Gaussian-process regression, an implicit layer solved by optimistix, diffrax's stiff-ODE example, jax.nn's
fused-attention API, NNX cached decoding, an optax training loop, top-p sampling, beam search, Equinox's
WeightNorm/SpectralNorm, Linen's padding modes, locally connected convolution and nn.RNN/nn.Bidirectional.
Random weights built in code, no downloads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


# ----------------------------------------------------------------------------- decoding, recurrences, routing
@program("linen_cached_greedy_decode", library="flax.linen",
         origin="flax examples/lm1b decoding (MultiHeadDotProductAttention(decode=True) with its 'cache' collection, "
                "one token per step under lax.scan, greedy)")
def _linen_cached_decode() -> Built:
    import flax.linen as nn

    vocab, length, steps = 24, 8, 6

    class Decoder(nn.Module):
        decode: bool = False

        @nn.compact
        def __call__(self, tokens: jax.Array) -> jax.Array:
            x = nn.Embed(vocab, 16)(tokens)
            for _ in range(2):
                h = nn.LayerNorm()(x)
                mask = None if self.decode else nn.make_causal_mask(tokens)
                x = x + nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=16, decode=self.decode,
                                                        deterministic=True)(h, mask=mask)
                x = x + nn.Dense(16)(nn.relu(nn.Dense(32)(nn.LayerNorm()(x))))
            return nn.Dense(vocab)(nn.LayerNorm()(x))

    prompt = _tokens(6, 0, vocab, 2, 1)
    params = Decoder().init(jax.random.key(0), jnp.zeros((2, length), jnp.int32))["params"]
    cache = Decoder(decode=True).init(jax.random.key(0), jnp.zeros((2, length), jnp.int32))["cache"]

    def generate(first: jax.Array) -> tuple[jax.Array, jax.Array]:
        def step(carry, _):
            token, cache = carry
            logits, updated = Decoder(decode=True).apply({"params": params, "cache": cache}, token, mutable=["cache"])
            following = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)[:, None]
            return (following, updated["cache"]), (following[:, 0], logits[:, -1])

        _, (generated, logits) = jax.lax.scan(step, (first, cache), None, length=steps)
        return generated.T, logits

    return Built(generate, [jax.ShapeDtypeStruct((2, 1), jnp.int32)], [prompt])


@program("jnp_lru_associative_scan", library="jax",
         origin="Linear Recurrent Unit (Orvieto et al.'s published minimal JAX code): complex diagonal recurrence "
                "by jax.lax.associative_scan, vmapped over the batch")
def _jnp_lru() -> Built:
    rng = np.random.default_rng(7)
    hidden, features = 8, 6
    nu_log = jnp.asarray(np.log(-np.log(rng.uniform(0.9, 0.99, hidden))), jnp.float32)
    theta_log = jnp.asarray(np.log(rng.uniform(0, 2 * np.pi, hidden)), jnp.float32)
    b_re, b_im = (jnp.asarray(rng.standard_normal((hidden, features)) / np.sqrt(2 * features), jnp.float32) for _ in range(2))
    c_re, c_im = (jnp.asarray(rng.standard_normal((features, hidden)) / np.sqrt(hidden), jnp.float32) for _ in range(2))
    d = jnp.asarray(rng.standard_normal(features), jnp.float32)

    def binary_operator(left, right):
        a_i, bu_i = left
        a_j, bu_j = right
        return a_j * a_i, a_j * bu_i + bu_j

    def lru(inputs: jax.Array) -> jax.Array:  # (T, features)
        diagonal = jnp.exp(-jnp.exp(nu_log) + 1j * jnp.exp(theta_log))
        gamma = jnp.sqrt(1 - jnp.abs(diagonal) ** 2)
        b = (b_re + 1j * b_im) * gamma[:, None]
        c = c_re + 1j * c_im
        bu = jax.vmap(lambda u: b @ u)(inputs.astype(jnp.complex64))
        elements = jnp.repeat(diagonal[None], inputs.shape[0], axis=0)
        _, states = jax.lax.associative_scan(binary_operator, (elements, bu))
        return jax.vmap(lambda x, u: (c @ x).real + d * u)(states, inputs)

    return Built(jax.vmap(lru), [("B", 12, 6)], [_normal(7, 2, 12, 6)])


@program("jnp_moe_top2_routing", library="jax",
         origin="mixture-of-experts layer (Switch/GShard-style): router softmax, lax.top_k(2), one-hot dispatch and "
                "combine tensors with a capacity, expert MLPs by einsum")
def _jnp_moe() -> Built:
    rng = np.random.default_rng(8)
    dim, hidden, experts, capacity = 12, 24, 4, 5
    router = jnp.asarray(rng.standard_normal((dim, experts)), jnp.float32)
    w_in = jnp.asarray(rng.standard_normal((experts, dim, hidden)) / np.sqrt(dim), jnp.float32)
    w_out = jnp.asarray(rng.standard_normal((experts, hidden, dim)) / np.sqrt(hidden), jnp.float32)

    def moe(tokens: jax.Array) -> tuple[jax.Array, jax.Array]:  # (T, dim): one group
        probabilities = jax.nn.softmax(tokens @ router, axis=-1)
        gates, chosen = jax.lax.top_k(probabilities, 2)
        gates = gates / gates.sum(axis=-1, keepdims=True)
        mask = jax.nn.one_hot(chosen, experts, dtype=jnp.int32)  # (T, 2, E)
        # position of each token in its expert's buffer, the first choices before the second ones
        flat = mask.transpose(1, 0, 2).reshape(-1, experts)
        position = (jnp.cumsum(flat, axis=0) - 1).reshape(2, -1, experts).transpose(1, 0, 2)
        kept = mask * (position < capacity)
        slot = jax.nn.one_hot(jnp.sum(position * kept, axis=-1), capacity)  # (T, 2, C)
        combine = jnp.einsum("tk,tke,tkc->tec", gates, kept.astype(jnp.float32), slot)
        dispatch = (combine > 0).astype(tokens.dtype)
        expert_inputs = jnp.einsum("tec,td->ecd", dispatch, tokens)
        expert_outputs = jnp.einsum("ech,ehd->ecd", jax.nn.gelu(jnp.einsum("ecd,edh->ech", expert_inputs, w_in)), w_out)
        load = kept.sum(axis=(0, 1))
        return jnp.einsum("tec,ecd->td", combine, expert_outputs), load

    return Built(jax.vmap(moe), [("B", 10, 12)], [_normal(8, 2, 10, 12)])


@program("jnp_gaussian_process", library="jax",
         origin="Gaussian-process regression as in JAX-based GP tutorials (tinygp/GPJax style): RBF kernel, "
                "Cholesky, cho_solve, predictive mean/variance and log marginal likelihood")
def _jnp_gp() -> Built:
    def rbf(a: jax.Array, b: jax.Array, scale: jax.Array) -> jax.Array:
        return jnp.exp(-0.5 * jnp.sum((a[:, None] - b[None]) ** 2, axis=-1) / scale ** 2)

    def posterior(x: jax.Array, y: jax.Array, query: jax.Array, log_scale: jax.Array):
        scale, noise = jnp.exp(log_scale), 0.1
        k = rbf(x, x, scale) + noise * jnp.eye(x.shape[0])
        factor = jax.scipy.linalg.cho_factor(k, lower=True)
        alpha = jax.scipy.linalg.cho_solve(factor, y)
        k_star = rbf(query, x, scale)
        mean = k_star @ alpha
        v = jax.scipy.linalg.solve_triangular(factor[0], k_star.T, lower=True)
        variance = 1.0 - jnp.sum(v ** 2, axis=0)
        log_likelihood = (-0.5 * y @ alpha - jnp.sum(jnp.log(jnp.diagonal(factor[0])))
                          - 0.5 * x.shape[0] * jnp.log(2 * jnp.pi))
        return mean, variance, log_likelihood

    rng = np.random.default_rng(9)
    x = rng.uniform(-3, 3, (12, 2)).astype(np.float32)
    y = (np.sin(x[:, 0]) + 0.5 * np.cos(x[:, 1])).astype(np.float32)
    query = rng.uniform(-3, 3, (7, 2)).astype(np.float32)
    log_scale = np.array(0.3, np.float32)
    return Built(posterior, [(12, 2), (12,), ("Q", 2), ()], [x, y, query, log_scale])


@program("optimistix_implicit_layer", library="optimistix",
         origin="deep-equilibrium (implicit) layer as in the implicit-layers tutorial, solved with optimistix's "
                "root_find(Newton) over the whole batch (lineax's linear_solve inside)")
def _optimistix_implicit_layer() -> Built:
    import optimistix as optx

    rng = np.random.default_rng(10)
    weight = jnp.asarray(0.5 * rng.standard_normal((6, 6)) / np.sqrt(6), jnp.float32)
    head = jnp.asarray(rng.standard_normal((6, 3)), jnp.float32)

    def layer(x: jax.Array) -> jax.Array:
        def residual(z, features):
            return z - jnp.tanh(z @ weight.T + features)

        # throw=False: no runtime check of convergence (a host callback); a fixed step budget instead. Not
        # vmapped: under vmap the solve is equinox's vprim around linear_solve, here linear_solve itself.
        solution = optx.root_find(residual, optx.Newton(rtol=1e-6, atol=1e-6), jnp.zeros_like(x), args=x,
                                  max_steps=20, throw=False)
        return solution.value @ head

    return Built(layer, [(3, 6)], [_normal(10, 3, 6)])


@program("diffrax_stiff_kvaerno5", library="diffrax", env={"EQX_ON_ERROR": "nan"}, rtol=1e-3, atol=1e-6,
         origin="diffrax examples/stiff_ode (Robertson's chemical kinetics, implicit Kvaerno5 with a PID controller: "
                "Newton iterations and lineax solves inside the adaptive loop)")
def _diffrax_stiff() -> Built:
    import diffrax

    def robertson(t, y, args):
        k1, k2, k3 = 0.04, 3e7, 1e4
        y1, y2, y3 = y
        return jnp.stack([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 ** 2 - k3 * y2 * y3, k2 * y2 ** 2])

    def solve(y0: jax.Array) -> jax.Array:
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(robertson), diffrax.Kvaerno5(), 0.0, 10.0, 0.01, y0,
            stepsize_controller=diffrax.PIDController(rtol=1e-3, atol=1e-6),
            saveat=diffrax.SaveAt(ts=jnp.array([1.0, 5.0, 10.0])), max_steps=256)
        return solution.ys

    return Built(solve, [(3,)], [np.array([1.0, 0.0, 0.0], np.float32)])


@program("jax_nn_dot_product_attention", library="jax",
         origin="jax.nn.dot_product_attention (the fused-attention API): is_causal, and a local window (2 back, 0 ahead)")
def _jax_dot_product_attention() -> Built:
    def attention(q: jax.Array, k: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        return (jax.nn.dot_product_attention(q, k, v, is_causal=True),
                jax.nn.dot_product_attention(q, k, v, local_window_size=(2, 0)))

    samples = [_normal(seed, 2, 6, 2, 8) for seed in (11, 12, 13)]
    return Built(attention, [("B", 6, 2, 8)] * 3, samples)


@program("nnx_cached_decode", library="flax.nnx",
         origin="flax NNX autoregressive decoding: nnx.MultiHeadAttention(decode=True) after init_cache, one position "
                "per call (the module's Cache variables updated in place)")
def _nnx_cached_decode() -> Built:
    from flax import nnx

    class Decoder(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs) -> None:
            self.attention = nnx.MultiHeadAttention(2, 16, decode=True, rngs=rngs)
            self.attention.init_cache((2, 6, 16))
            self.out = nnx.Linear(16, 5, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            steps = [self.attention(x[:, i:i + 1]) for i in range(x.shape[1])]
            return self.out(jnp.concatenate(steps, axis=1))

    return Built(Decoder(rngs=nnx.Rngs(0)), [(2, 6, 16)], [_normal(14, 2, 6, 16)])


@program("optax_lion_schedule_scan", library="optax",
         origin="optax training loop: chain(clip, lion(warmup_cosine_decay_schedule)) for 5 steps under lax.scan")
def _optax_lion() -> Built:
    import optax

    params = {"w": jnp.asarray(_normal(15, 5, 3)), "b": jnp.zeros(3)}
    optimizer = optax.chain(optax.clip(1.0), optax.lion(optax.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 10)))
    initial = optimizer.init(params)

    def train(x: jax.Array, y: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
        def loss(p):
            return jnp.mean((jnp.tanh(x @ p["w"] + p["b"]) - y) ** 2)

        def step(carry, _):
            p, state = carry
            updates, state = optimizer.update(jax.grad(loss)(p), state, p)
            return (optax.apply_updates(p, updates), state), loss(p)

        (trained, _), losses = jax.lax.scan(step, (params, initial), None, length=5)
        return trained, losses

    return Built(train, [("B", 5), ("B", 3)], [_normal(16, 4, 5), _normal(17, 4, 3)])


@program("jnp_top_p_sampling", library="jax",
         origin="nucleus (top-p) sampling as in LLM samplers (e.g. the Gemma sampler): temperature, sort, cumsum "
                "cut-off, jax.random.categorical from a key passed in as key data")
def _jnp_top_p() -> Built:
    def sample(logits: jax.Array, key_data: jax.Array) -> tuple[jax.Array, jax.Array]:
        probabilities = jax.nn.softmax(logits / 0.8, axis=-1)
        descending = jnp.sort(probabilities, axis=-1)[..., ::-1]
        last_kept = jnp.argmax(jnp.cumsum(descending, axis=-1) >= 0.9, axis=-1)
        cutoff = jnp.take_along_axis(descending, last_kept[..., None], axis=-1)
        filtered = jnp.where(probabilities < cutoff, -jnp.inf, logits)
        return jax.random.categorical(jax.random.wrap_key_data(key_data), filtered, axis=-1), filtered

    key_data = np.asarray(jax.random.key_data(jax.random.key(3)))
    return Built(sample, [("B", 12), jax.ShapeDtypeStruct(key_data.shape, key_data.dtype)],
                 [2 * _normal(18, 3, 12), key_data])


@program("jnp_beam_search", library="jax",
         origin="beam search in the shape of flax examples/wmt's decode.py: log-softmax scores, top_k over "
                "beams x vocabulary, parent beams gathered, tokens written by dynamic_update_slice in a fori_loop")
def _jnp_beam_search() -> Built:
    vocab, beams, steps = 7, 3, 4
    transitions = jnp.asarray(_normal(19, vocab, vocab))

    def search(start: jax.Array) -> tuple[jax.Array, jax.Array]:  # start: (B,) first tokens
        batch = start.shape[0]
        scores = jnp.broadcast_to(jnp.array([0.0] + [-1e9] * (beams - 1)), (batch, beams))
        sequences = jnp.zeros((batch, beams, steps), jnp.int32)
        last = jnp.broadcast_to(start[:, None], (batch, beams))

        def body(i, carry):
            sequences, scores, last = carry
            log_probabilities = jax.nn.log_softmax(transitions[last], axis=-1)  # (B, beams, vocab)
            best, flat = jax.lax.top_k((scores[..., None] + log_probabilities).reshape(batch, -1), beams)
            parent, token = flat // vocab, flat % vocab
            sequences = jnp.take_along_axis(sequences, parent[..., None], axis=1)
            sequences = jax.lax.dynamic_update_slice_in_dim(sequences, token[..., None], i, axis=2)
            return sequences, best, token

        sequences, scores, _ = jax.lax.fori_loop(0, steps, body, (sequences, scores, last))
        return sequences, scores

    return Built(search, [jax.ShapeDtypeStruct(("B",), jnp.int32)], [np.array([1, 4], np.int32)])


@program("eqx_weight_spectral_norm", library="equinox",
         origin="equinox eqx.nn.WeightNorm and eqx.nn.SpectralNorm (stateful power iteration, inference mode) around Linear")
def _eqx_weight_spectral_norm() -> Built:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(20), 3)
    weight_normed = eqx.nn.WeightNorm(eqx.nn.Linear(6, 8, key=keys[0]))
    spectral, state = eqx.nn.make_with_state(eqx.nn.SpectralNorm)(eqx.nn.Linear(8, 4, key=keys[1]), "weight", key=keys[2])
    spectral = eqx.nn.inference_mode(spectral)

    def forward(x: jax.Array) -> jax.Array:
        hidden = jax.vmap(weight_normed)(x)
        return jax.vmap(lambda h: spectral(jax.nn.relu(h), state)[0])(hidden)

    return Built(forward, [("B", 6)], [_normal(20, 3, 6)])


@program("linen_padding_and_local_convs", library="flax.linen",
         origin="flax linen nn.Conv padding='CIRCULAR'/'REFLECT'/explicit with kernel dilation, nn.ConvLocal, "
                "avg_pool(count_include_pad=False) and max_pool with SAME padding")
def _linen_padding_convs() -> Built:
    import flax.linen as nn

    class Convs(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
            circular = nn.Conv(4, (3, 3), padding="CIRCULAR")(x)
            reflected = nn.Conv(4, (3, 3), padding="REFLECT")(x)
            local = nn.ConvLocal(3, (3, 3))(x)
            explicit = nn.Conv(4, (3, 3), padding=((2, 0), (1, 1)), kernel_dilation=(1, 2))(x)
            return (nn.avg_pool(circular, (3, 3), strides=(2, 2), padding="SAME", count_include_pad=False),
                    nn.max_pool(reflected, (2, 2), strides=(2, 2), padding="SAME"), local, explicit)

    sample = _normal(21, 2, 7, 7, 3)
    module = Convs()
    params = module.init(jax.random.key(0), sample)
    return Built(lambda x: module.apply(params, x), [("B", 7, 7, 3)], [sample])


@program("linen_rnn_bidirectional", library="flax.linen",
         origin="flax linen nn.RNN / nn.Bidirectional (OptimizedLSTMCell forward, GRUCell backward) with seq_lengths, "
                "then nn.RNN(SimpleCell, return_carry=True)")
def _linen_rnn_bidirectional() -> Built:
    import flax.linen as nn

    class Recurrent(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array, lengths: jax.Array) -> Any:
            both = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(8)), nn.RNN(nn.GRUCell(8)))(x, seq_lengths=lengths)
            return nn.RNN(nn.SimpleCell(5), return_carry=True)(both, seq_lengths=lengths)

    sample, lengths = _normal(22, 2, 6, 3), np.array([6, 4], np.int32)
    module = Recurrent()
    params = module.init(jax.random.key(0), sample, lengths)
    def arguments(sizes: Mapping[str, int], rng: np.random.Generator) -> list[np.ndarray]:
        """Sequences of ``sizes`` and each row's length, between 1 and the sequence length."""
        batch, length = sizes["B"], sizes["T"]
        return [rng.standard_normal((batch, length, 3)).astype(np.float32),
                rng.integers(1, length + 1, batch).astype(np.int32)]

    return Built(lambda x, n: module.apply(params, x, n),
                 [("B", "T", 3), jax.ShapeDtypeStruct(("B",), jnp.int32)], [sample, lengths], resize=arguments)
