"""Haiku's ``haiku.nets`` (MobileNetV1, ResNet50, the VQ-VAE quantizers) and layer families, and the
Equinox layers beyond the examples' basics (1-D/3-D and transposed convolutions, masked attention,
Embedding, PReLU, RMSNorm, average/max/adaptive pooling, ``eqx.nn.Sequential`` with ``eqx.nn.Lambda``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program
from tests.support.trained_like import haiku_as_trained

_RNG = np.random.default_rng(41)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- Haiku
def haiku_program(forward_fn: Callable[[jax.Array, bool], Any], sample: Any, spec: Any, init_sample: Any = None, *,
           fill_zeros: bool = False) -> Built:
    """``forward_fn(x, is_training)`` initialised in training mode on ``init_sample`` (default ``sample``),
    which makes the BatchNorm/EMA state its batch statistics, and applied in inference with that state;
    ``fill_zeros``: the parameters Haiku zero-initialises get random values (tests/support/trained_like.py)."""
    import haiku as hk

    transformed = hk.transform_with_state(forward_fn)
    init_with = sample if init_sample is None else init_sample
    params, state = haiku_as_trained(transformed, init_with, fill_zeros=fill_zeros, seed=4)

    def forward(x):
        return transformed.apply(params, state, None, x, False)[0]

    return Built(forward, [spec], [sample])


@program("haiku_mobilenet_v1", library="haiku", origin="dm-haiku haiku.nets.MobileNetV1 (inference, BatchNorm state)",
         rtol=1e-3, atol=1e-4)
def _haiku_mobilenet() -> Built:
    import haiku as hk

    def forward(x, is_training):
        return hk.nets.MobileNetV1(num_classes=10)(x, is_training=is_training)

    # initialised on 8 images: its last blocks run on a 1x1 map, where a batch of 2 leaves BatchNorm variances
    # from 2 values each, and the network amplifies float32 rounding ~1e4-fold (jax.jit itself is 0.26 off a
    # float64 run of the same weights; with 8 images both it and onnxruntime are within 8e-5)
    return haiku_program(forward, _normal(2, 32, 32, 3), ("B", 32, 32, 3), init_sample=_normal(8, 32, 32, 3))


@program("haiku_resnet50", library="haiku", origin="dm-haiku haiku.nets.ResNet50 (bottleneck blocks, inference, BatchNorm state)",
         rtol=1e-3, atol=1e-4)
def _haiku_resnet50() -> Built:
    import haiku as hk

    def forward(x, is_training):
        return hk.nets.ResNet50(10)(x, is_training=is_training)

    # zero logits and zero block-final BatchNorm scales as initialised: the output would be 0 for any input
    return haiku_program(forward, _normal(2, 32, 32, 3), ("B", 32, 32, 3), init_sample=_normal(8, 32, 32, 3),
                         fill_zeros=True)


def _vqvae(quantizer_factory: Callable[[], Any]) -> Callable[[jax.Array, bool], Any]:
    """The VQ-VAE example's shape: a strided conv encoder, a vector quantizer, a transposed-conv decoder."""
    import haiku as hk

    def forward(x, is_training):
        z = hk.Conv2D(16, 4, stride=2)(x)
        z = hk.Conv2D(8, 3)(jax.nn.relu(z))
        quantized = quantizer_factory()(z, is_training=is_training)
        reconstruction = hk.Conv2DTranspose(3, 4, stride=2)(jax.nn.relu(hk.Conv2D(16, 3)(quantized["quantize"])))
        return reconstruction, quantized["loss"], quantized["perplexity"], quantized["encoding_indices"]

    return forward


@program("haiku_vqvae", library="haiku",
         origin="dm-haiku examples/vqvae (Conv2D encoder, hk.nets.VectorQuantizer, Conv2DTranspose decoder)")
def _haiku_vqvae() -> Built:
    import haiku as hk

    forward = _vqvae(lambda: hk.nets.VectorQuantizer(embedding_dim=8, num_embeddings=12, commitment_cost=0.25))
    return haiku_program(forward, _normal(2, 8, 8, 3), ("B", 8, 8, 3))


@program("haiku_vqvae_ema", library="haiku",
         origin="dm-haiku examples/vqvae with hk.nets.VectorQuantizerEMA (EMA codebook state, inference)")
def _haiku_vqvae_ema() -> Built:
    import haiku as hk

    forward = _vqvae(lambda: hk.nets.VectorQuantizerEMA(embedding_dim=8, num_embeddings=12, commitment_cost=0.25, decay=0.99))
    return haiku_program(forward, _normal(2, 8, 8, 3), ("B", 8, 8, 3))


@program("haiku_conv_family", library="haiku",
         origin="dm-haiku hk.Conv1D (causal-padded), hk.Conv3D, hk.Conv1DTranspose, hk.Conv3DTranspose")
def _haiku_convs() -> Built:
    import haiku as hk

    def forward(inputs, is_training):
        sequence, volume = inputs
        s = jax.nn.gelu(hk.Conv1D(12, 5, rate=2, padding=hk.pad.causal)(sequence))
        s = hk.Conv1DTranspose(6, 4, stride=2)(hk.Conv1D(12, 3, stride=2, padding="VALID")(s))
        v = jax.nn.relu(hk.Conv3D(6, 3, stride=(1, 2, 2))(volume))
        v = hk.Conv3DTranspose(4, (2, 3, 3), stride=(2, 1, 1), padding="VALID")(v)
        return s, v

    samples = (_normal(2, 16, 4), _normal(2, 6, 8, 8, 2))
    return haiku_program(forward, samples, (("B", 16, 4), ("B", 6, 8, 8, 2)))


@program("haiku_deep_rnn", library="haiku",
         origin="dm-haiku hk.DeepRNN of hk.GRU and hk.LSTM with hk.dynamic_unroll (time-major) and hk.static_unroll")
def _haiku_deep_rnn() -> Built:
    import haiku as hk

    def forward(x, is_training):
        core = hk.DeepRNN([hk.GRU(16), jax.nn.relu, hk.LSTM(12)])
        outputs, _ = hk.dynamic_unroll(core, x, core.initial_state(x.shape[1]))
        gru = hk.GRU(6)
        reversed_outputs, _ = hk.static_unroll(gru, outputs[::-1], gru.initial_state(x.shape[1]))
        return hk.Linear(3)(jnp.concatenate([outputs[-1], reversed_outputs[-1]], axis=-1))

    return haiku_program(forward, _normal(7, 2, 5), (7, "B", 5))


@program("haiku_norms_convnet", library="haiku",
         origin="dm-haiku hk.BatchNorm (inference), hk.GroupNorm, hk.LayerNorm, hk.RMSNorm in a conv net", rtol=1e-3, atol=1e-4)
def _haiku_norms() -> Built:
    import haiku as hk

    def forward(x, is_training):
        x = hk.Conv2D(16, 3)(x)
        x = jax.nn.relu(hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)(x, is_training=is_training))
        x = hk.GroupNorm(groups=4)(hk.Conv2D(16, 3, stride=2)(x))
        x = hk.LayerNorm(axis=(-3, -2, -1), create_scale=True, create_offset=True)(jax.nn.swish(x))
        x = hk.RMSNorm(axis=-1)(hk.Conv2D(8, 1)(x))
        return hk.Linear(4)(hk.Flatten()(x))

    return haiku_program(forward, _normal(3, 12, 12, 3), ("B", 12, 12, 3))


@program("haiku_causal_attention", library="haiku",
         origin="dm-haiku examples/transformer (hk.MultiHeadAttention with a causal mask, hk.Embed, LayerNorm, MLP)")
def _haiku_causal_attention() -> Built:
    import haiku as hk

    def forward(tokens, is_training):
        x = hk.Embed(vocab_size=30, embed_dim=24)(tokens)
        length = tokens.shape[1]
        causal = jnp.tril(jnp.ones((1, 1, length, length), bool))
        padding = (tokens != 0)[:, None, None, :]
        attention = hk.MultiHeadAttention(num_heads=3, key_size=8, w_init=hk.initializers.VarianceScaling(1.0))
        normed = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
        x = x + attention(normed, normed, normed, mask=causal & padding)
        x = x + hk.nets.MLP([48, 24])(hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x))
        return hk.Linear(30)(x)

    tokens = _RNG.integers(1, 30, (2, 9)).astype(np.int32)
    tokens[1, 6:] = 0
    return haiku_program(forward, tokens, jax.ShapeDtypeStruct(("B", "T"), jnp.int32))


# ----------------------------------------------------------------------------- Equinox
@program("eqx_conv_family", library="equinox",
         origin="equinox eqx.nn.Conv1d/Conv3d (dilation, groups, stride) and ConvTranspose1d/2d/3d (output_padding)")
def _eqx_convs() -> Built:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(2), 6)

    class Convs(eqx.Module):
        conv1: eqx.nn.Conv1d
        up1: eqx.nn.ConvTranspose1d
        conv3: eqx.nn.Conv3d
        up3: eqx.nn.ConvTranspose3d
        up2: eqx.nn.ConvTranspose2d

        def __init__(self) -> None:
            self.conv1 = eqx.nn.Conv1d(4, 8, 3, dilation=2, padding="SAME", groups=2, key=keys[0])
            self.up1 = eqx.nn.ConvTranspose1d(8, 4, 3, stride=2, padding=1, output_padding=1, key=keys[1])
            self.conv3 = eqx.nn.Conv3d(2, 6, 3, stride=(1, 2, 2), padding=1, key=keys[2])
            self.up3 = eqx.nn.ConvTranspose3d(6, 3, 2, stride=2, key=keys[3])
            self.up2 = eqx.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, dilation=1, key=keys[4])

        def __call__(self, sequence: jax.Array, volume: jax.Array) -> tuple[jax.Array, jax.Array]:
            s = self.up1(jax.nn.relu(self.conv1(sequence)))
            v = self.up3(jax.nn.relu(self.conv3(volume)))
            return s, self.up2(v[:, 0])

    return Built(jax.vmap(Convs()), [("B", 4, 10), ("B", 2, 4, 6, 6)], [_normal(2, 4, 10), _normal(2, 2, 4, 6, 6)])


@program("eqx_decoder_lm", library="equinox",
         origin="equinox small causal LM (eqx.nn.Embedding, RMSNorm, MultiheadAttention with a causal/padding mask, PReLU MLP)")
def _eqx_decoder_lm() -> Built:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(3), 5)

    class DecoderLM(eqx.Module):
        embedding: eqx.nn.Embedding
        norm1: eqx.nn.RMSNorm
        attention: eqx.nn.MultiheadAttention
        norm2: eqx.nn.RMSNorm
        up: eqx.nn.Linear
        activation: eqx.nn.PReLU
        down: eqx.nn.Linear
        head: eqx.nn.Linear

        def __init__(self) -> None:
            self.embedding = eqx.nn.Embedding(40, 24, key=keys[0])
            self.norm1 = eqx.nn.RMSNorm(24)
            self.attention = eqx.nn.MultiheadAttention(4, 24, key=keys[1])
            self.norm2 = eqx.nn.RMSNorm(24, use_bias=False)
            self.up = eqx.nn.Linear(24, 48, key=keys[2])
            self.activation = eqx.nn.PReLU(0.1)
            self.down = eqx.nn.Linear(48, 24, key=keys[3])
            self.head = eqx.nn.Linear(24, 40, use_bias=False, key=keys[4])

        def __call__(self, tokens: jax.Array, length: jax.Array) -> jax.Array:
            x = jax.vmap(self.embedding)(tokens)
            positions = jnp.arange(tokens.shape[0])
            mask = (positions[:, None] >= positions[None, :]) & (positions[None, :] < length)
            normed = jax.vmap(self.norm1)(x)
            x = x + self.attention(normed, normed, normed, mask=mask)
            x = x + jax.vmap(lambda h: self.down(self.activation(self.up(self.norm2(h)))))(x)
            return jax.vmap(self.head)(x)

    def arguments(sizes: Mapping[str, int], rng: np.random.Generator) -> list[np.ndarray]:
        """Tokens of ``sizes`` and each row's valid length, between 1 and the sequence length."""
        batch, length = sizes["B"], sizes["T"]
        return [rng.integers(0, 40, (batch, length)).astype(np.int32), rng.integers(1, length + 1, batch).astype(np.int32)]

    tokens = _RNG.integers(0, 40, (2, 10)).astype(np.int32)
    return Built(jax.vmap(DecoderLM()),
                 [jax.ShapeDtypeStruct(("B", "T"), jnp.int32), jax.ShapeDtypeStruct(("B",), jnp.int32)],
                 [tokens, np.array([10, 6], np.int32)], resize=arguments)


@program("eqx_sequential_pools", library="equinox",
         origin="equinox eqx.nn.Sequential with eqx.nn.Lambda: AvgPool/MaxPool 1d/2d/3d, AdaptiveAvgPool2d, AdaptiveMaxPool1d")
def _eqx_pools() -> Built:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(4), 3)
    image = eqx.nn.Sequential([
        eqx.nn.Conv2d(3, 8, 3, padding=1, key=keys[0]),
        eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.AvgPool2d(2, stride=2),
        eqx.nn.MaxPool2d(3, stride=1, padding=1),
        eqx.nn.AdaptiveAvgPool2d((3, 2)),
        eqx.nn.Lambda(jnp.ravel),
        eqx.nn.Linear(48, 5, key=keys[1]),
    ])
    sequence = eqx.nn.Sequential([
        eqx.nn.Conv1d(2, 6, 3, key=keys[2]),
        eqx.nn.MaxPool1d(2, stride=2),
        eqx.nn.AvgPool1d(3, stride=1, padding=1),
        eqx.nn.AdaptiveMaxPool1d(4),
    ])
    volume = eqx.nn.Sequential([eqx.nn.MaxPool3d(2, stride=2), eqx.nn.AvgPool3d(2, stride=1), eqx.nn.Lambda(jnp.tanh)])

    def forward(images: jax.Array, sequences: jax.Array, volumes: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        return jax.vmap(image)(images), jax.vmap(sequence)(sequences), jax.vmap(volume)(volumes)

    return Built(forward, [("B", 3, 14, 14), ("B", 2, 17), ("B", 2, 6, 6, 6)],
                 [_normal(2, 3, 14, 14), _normal(2, 2, 17), _normal(2, 2, 6, 6, 6)])
