"""Flax programs: the NNX toy examples and tutorials, and the Linen examples (MNIST, VAE, seq2seq, LM...).

Each model follows the architecture of the named Flax example, written against Flax's public API
with random weights.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(0)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def _tokens(high: int, *shape: int) -> np.ndarray:
    return _RNG.integers(0, high, shape).astype(np.int32)


# ----------------------------------------------------------------------------- NNX
def _eval(module: nnx.Module) -> nnx.Module:
    """The module in eval mode: how wb.to_onnx exports NNX modules, so the JAX reference runs the same way."""
    module.eval()
    return module


@program("nnx_mlp_regression", library="flax.nnx", origin="flax examples/nnx_toy_examples (MLP on a 1-D regression)")
def _nnx_mlp() -> Built:
    class Count(nnx.Variable):
        pass

    class MLP(nnx.Module):
        def __init__(self, din: int, dhidden: int, dout: int, *, rngs: nnx.Rngs):
            self.count = Count(jnp.array(0))
            self.linear1 = nnx.Linear(din, dhidden, rngs=rngs)
            self.linear2 = nnx.Linear(dhidden, dout, rngs=rngs)

        def __call__(self, x):
            self.count[...] += 1
            return self.linear2(jax.nn.relu(self.linear1(x)))

    model = MLP(1, 32, 1, rngs=nnx.Rngs(0))
    model.eval()  # the export's mode (Dropout off, BatchNorm running statistics), also for the JAX reference
    return Built(model, [("B", 1)], [_normal(16, 1)])


@program("nnx_mnist_cnn", library="flax.nnx", origin="flax docs: MNIST tutorial (NNX CNN)")
def _nnx_cnn() -> Built:
    class CNN(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs):
            self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
            self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
            self.avg_pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
            self.linear1 = nnx.Linear(7 * 7 * 64, 256, rngs=rngs)
            self.linear2 = nnx.Linear(256, 10, rngs=rngs)

        def __call__(self, x):
            x = self.avg_pool(nnx.relu(self.conv1(x)))
            x = self.avg_pool(nnx.relu(self.conv2(x)))
            x = x.reshape(x.shape[0], -1)
            return self.linear2(nnx.relu(self.linear1(x)))

    return Built(_eval(CNN(rngs=nnx.Rngs(0))), [("B", 28, 28, 1)], [_normal(2, 28, 28, 1)])


class _Encoder(nnx.Module):
    def __init__(self, din: int, dmid: int, dout: int, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(din, dmid, rngs=rngs)
        self.linear_mean = nnx.Linear(dmid, dout, rngs=rngs)
        self.linear_std = nnx.Linear(dmid, dout, rngs=rngs)
        self.rngs = rngs

    def __call__(self, x):
        x = jax.nn.relu(self.linear1(x.reshape((x.shape[0], -1))))
        mean, std = self.linear_mean(x), jnp.exp(self.linear_std(x))
        key = self.rngs.noise()
        return mean + std * jax.random.normal(key, mean.shape), mean, std


class _Decoder(nnx.Module):
    def __init__(self, din: int, dmid: int, dout: int, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(din, dmid, rngs=rngs)
        self.linear2 = nnx.Linear(dmid, dout, rngs=rngs)

    def __call__(self, z):
        return self.linear2(jax.nn.relu(self.linear1(z)))


class _VAE(nnx.Module):
    def __init__(self, din: int, hidden: int, latent: int, *, rngs: nnx.Rngs):
        self.encoder = _Encoder(din, hidden, latent, rngs=rngs)
        self.decoder = _Decoder(latent, hidden, din, rngs=rngs)

    def __call__(self, x):
        z, mean, std = self.encoder(x)
        return jax.nn.sigmoid(self.decoder(z)).reshape(x.shape), mean, std


@program("nnx_vae_sampling", library="flax.nnx", origin="flax examples/nnx_toy_examples/05_vae.py (reparameterised sampling)",
         rtol=1e-4, atol=1e-5)
def _nnx_vae() -> Built:
    model = _eval(_VAE(28 * 28, 64, 8, rngs=nnx.Rngs(0, noise=1)))
    return Built(model, [(3, 28, 28)], [_normal(3, 28, 28)])


@program("nnx_lstm_rnn", library="flax.nnx", origin="flax NNX recurrent API (nnx.RNN over nnx.LSTMCell)")
def _nnx_rnn() -> Built:
    class Tagger(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs):
            self.embed = nnx.Embed(50, 16, rngs=rngs)
            self.rnn = nnx.RNN(nnx.LSTMCell(16, 32, rngs=rngs))
            self.head = nnx.Linear(32, 5, rngs=rngs)

        def __call__(self, tokens):
            return self.head(self.rnn(self.embed(tokens)))

    return Built(_eval(Tagger(rngs=nnx.Rngs(0))), [jax.ShapeDtypeStruct(("B", "T"), jnp.int32)], [_tokens(50, 2, 12)])


@program("nnx_gru_bidirectional", library="flax.nnx", origin="flax NNX recurrent API (nnx.Bidirectional GRU)")
def _nnx_birnn() -> Built:
    class Encoder(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs):
            forward = nnx.RNN(nnx.GRUCell(8, 16, rngs=rngs))
            backward = nnx.RNN(nnx.GRUCell(8, 16, rngs=rngs))
            self.birnn = nnx.Bidirectional(forward, backward)

        def __call__(self, x):
            return self.birnn(x)

    return Built(_eval(Encoder(rngs=nnx.Rngs(0))), [("B", "T", 8)], [_normal(2, 7, 8)])


@program("nnx_transformer_lm", library="flax.nnx", origin="flax examples/gemma-style decoder: MultiHeadAttention LM with causal mask")
def _nnx_lm() -> Built:
    class Block(nnx.Module):
        def __init__(self, d: int, heads: int, *, rngs: nnx.Rngs):
            self.norm1 = nnx.LayerNorm(d, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs)
            self.norm2 = nnx.LayerNorm(d, rngs=rngs)
            self.mlp1 = nnx.Linear(d, 4 * d, rngs=rngs)
            self.mlp2 = nnx.Linear(4 * d, d, rngs=rngs)
            self.dropout = nnx.Dropout(0.1, rngs=rngs)

        def __call__(self, x, mask):
            x = x + self.dropout(self.attn(self.norm1(x), mask=mask))
            return x + self.dropout(self.mlp2(nnx.gelu(self.mlp1(self.norm2(x)))))

    class LM(nnx.Module):
        def __init__(self, vocab: int, d: int, *, rngs: nnx.Rngs):
            self.embed = nnx.Embed(vocab, d, rngs=rngs)
            self.pos = nnx.Embed(64, d, rngs=rngs)
            self.blocks = nnx.List([Block(d, 4, rngs=rngs) for _ in range(2)])
            self.norm = nnx.LayerNorm(d, rngs=rngs)

        def __call__(self, tokens):
            length = tokens.shape[1]
            x = self.embed(tokens) + self.pos(jnp.arange(length))
            mask = nnx.make_causal_mask(tokens)
            for block in self.blocks:
                x = block(x, mask)
            return self.embed.attend(self.norm(x))

    return Built(_eval(LM(100, 32, rngs=nnx.Rngs(0))), [jax.ShapeDtypeStruct(("B", "T"), jnp.int32)], [_tokens(100, 2, 16)],
                 sizes={"T": (5, 30)})  # the position table holds 64


@program("nnx_resnet_block_batchnorm", library="flax.nnx", origin="flax NNX: residual CNN with BatchNorm and Dropout in eval mode")
def _nnx_resnet() -> Built:
    class Residual(nnx.Module):
        def __init__(self, channels: int, *, rngs: nnx.Rngs):
            self.conv1 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
            self.bn1 = nnx.BatchNorm(channels, rngs=rngs)
            self.conv2 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
            self.bn2 = nnx.BatchNorm(channels, rngs=rngs)
            self.dropout = nnx.Dropout(0.2, rngs=rngs)

        def __call__(self, x):
            y = nnx.relu(self.bn1(self.conv1(x)))
            return nnx.relu(x + self.dropout(self.bn2(self.conv2(y))))

    class Net(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs):
            self.stem = nnx.Conv(3, 16, (3, 3), strides=2, rngs=rngs)
            self.blocks = nnx.List([Residual(16, rngs=rngs) for _ in range(2)])
            self.head = nnx.Linear(16, 10, rngs=rngs)

        def __call__(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = block(x)
            return self.head(jnp.mean(x, axis=(1, 2)))

    return Built(_eval(Net(rngs=nnx.Rngs(0))), [("B", 16, 16, 3)], [_normal(2, 16, 16, 3)])


@program("nnx_mc_dropout_sampling", library="flax.nnx", origin="flax NNX: Monte-Carlo dropout (Dropout in training mode, Rngs state)")
def _nnx_mc_dropout() -> Built:
    class Net(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs):
            self.linear1 = nnx.Linear(6, 32, rngs=rngs)
            self.dropout = nnx.Dropout(0.3, deterministic=False, rngs=rngs)
            self.linear2 = nnx.Linear(32, 1, rngs=rngs)

        def __call__(self, x):
            return self.linear2(self.dropout(nnx.relu(self.linear1(x))))

    graphdef, state = nnx.split(Net(rngs=nnx.Rngs(0, dropout=5)))

    def predict(x):
        model = nnx.merge(graphdef, jax.tree.map(lambda leaf: leaf, state))
        return model(x)

    return Built(predict, [(4, 6)], [_normal(4, 6)])


# ----------------------------------------------------------------------------- Linen
class _LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(64, (3, 3))(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(10)(nn.relu(nn.Dense(256)(x)))


@program("linen_mnist_cnn", library="flax.linen", origin="flax examples/mnist (CNN)")
def _linen_cnn() -> Built:
    model = _LinenCNN()
    variables = model.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    return Built(functools.partial(model.apply, variables), [("B", 28, 28, 1)], [_normal(2, 28, 28, 1)])


class _LinenVAE(nn.Module):
    latents: int = 8

    @nn.compact
    def __call__(self, x, z_rng):
        hidden = nn.relu(nn.Dense(64, name="enc_fc1")(x))
        mean, logvar = nn.Dense(self.latents, name="enc_mean")(hidden), nn.Dense(self.latents, name="enc_logvar")(hidden)
        std = jnp.exp(0.5 * logvar)
        z = mean + std * jax.random.normal(z_rng, logvar.shape)
        recon = nn.Dense(x.shape[-1], name="dec_fc2")(nn.relu(nn.Dense(64, name="dec_fc1")(z)))
        return recon, mean, logvar


@program("linen_vae_sampling", library="flax.linen", origin="flax examples/vae (reparameterize with an explicit key)")
def _linen_vae() -> Built:
    model = _LinenVAE()
    variables = model.init(jax.random.key(0), jnp.ones((1, 784)), jax.random.key(1))

    def apply(x, key_data):
        return model.apply(variables, x, jax.random.wrap_key_data(key_data))

    return Built(apply, [("B", 784), jax.ShapeDtypeStruct((2,), jnp.uint32)],
                 [_normal(3, 784), np.asarray(jax.random.key_data(jax.random.key(42)))])


class _Seq2seq(nn.Module):
    """LSTM encoder-decoder with teacher forcing (the flax seq2seq example's architecture)."""

    hidden: int = 32
    vocab: int = 12

    @nn.compact
    def __call__(self, encoder_inputs, decoder_inputs):
        encoder = nn.RNN(nn.OptimizedLSTMCell(self.hidden), return_carry=True, name="encoder")
        carry, _ = encoder(encoder_inputs)
        decoder = nn.RNN(nn.OptimizedLSTMCell(self.hidden), name="decoder")
        outputs = decoder(decoder_inputs, initial_carry=carry)
        logits = nn.Dense(self.vocab)(outputs)
        return logits, jnp.argmax(logits, axis=-1)


@program("linen_seq2seq_lstm", library="flax.linen", origin="flax examples/seq2seq (LSTM encoder-decoder)")
def _linen_seq2seq() -> Built:
    model = _Seq2seq()
    enc, dec = jnp.ones((1, 7, 12)), jnp.ones((1, 5, 12))
    variables = model.init(jax.random.key(0), enc, dec)
    return Built(functools.partial(model.apply, variables), [("B", "S", 12), ("B", "T", 12)], [_normal(2, 7, 12), _normal(2, 5, 12)])


class _LinenDecoderLM(nn.Module):
    """A pre-LN transformer decoder as in the flax lm1b example (token + position embeddings, causal mask)."""

    vocab: int = 200
    d: int = 32
    layers: int = 2

    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(self.vocab, self.d)
        x = embed(tokens) + self.param("pos", nn.initializers.normal(0.02), (1, 64, self.d))[:, : tokens.shape[1]]
        mask = nn.make_causal_mask(tokens)
        for _ in range(self.layers):
            y = nn.MultiHeadDotProductAttention(num_heads=4)(nn.LayerNorm()(x), mask=mask)
            x = x + nn.Dropout(0.1, deterministic=True)(y)
            y = nn.Dense(self.d)(nn.gelu(nn.Dense(4 * self.d)(nn.LayerNorm()(x))))
            x = x + y
        return embed.attend(nn.LayerNorm()(x))


@program("linen_lm_decoder", library="flax.linen", origin="flax examples/lm1b (transformer decoder LM)")
def _linen_lm() -> Built:
    model = _LinenDecoderLM()
    variables = model.init(jax.random.key(0), jnp.ones((1, 16), jnp.int32))
    return Built(functools.partial(model.apply, variables), [jax.ShapeDtypeStruct(("B", "T"), jnp.int32)], [_tokens(200, 2, 16)],
                 sizes={"T": (5, 30)}, constraints=("T <= 64",))  # the position table holds 64


class _ResNetBlock(nn.Module):
    filters: int
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        norm = functools.partial(nn.BatchNorm, use_running_average=True, momentum=0.9)
        y = nn.relu(norm()(nn.Conv(self.filters, (3, 3), self.strides, use_bias=False)(x)))
        y = norm(scale_init=nn.initializers.zeros)(nn.Conv(self.filters, (3, 3), use_bias=False)(y))
        if x.shape != y.shape:
            x = norm()(nn.Conv(self.filters, (1, 1), self.strides, use_bias=False)(x))
        return nn.relu(x + y)


class _ResNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(16, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False)(x)), (3, 3), (2, 2), "SAME")
        for i, filters in enumerate((16, 32)):
            x = _ResNetBlock(filters, strides=(2, 2) if i else (1, 1))(x)
            x = _ResNetBlock(filters)(x)
        return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


@program("linen_resnet", library="flax.linen", origin="flax examples/imagenet (ResNet, BatchNorm in inference)")
def _linen_resnet() -> Built:
    model = _ResNet()
    variables = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    return Built(functools.partial(model.apply, variables), [("B", 32, 32, 3)], [_normal(2, 32, 32, 3)])


class _ActorCritic(nn.Module):
    actions: int = 4

    @nn.compact
    def __call__(self, x, key_data):
        x = nn.tanh(nn.Dense(64)(x))
        logits = nn.Dense(self.actions)(nn.tanh(nn.Dense(64)(x)))
        value = nn.Dense(1)(x)
        action = jax.random.categorical(jax.random.wrap_key_data(key_data), logits)
        return action, jax.nn.log_softmax(logits), value


@program("linen_ppo_sample_action", library="flax.linen", origin="flax examples/ppo (actor-critic, categorical action sampling)")
def _linen_ppo() -> Built:
    model = _ActorCritic()
    key = np.asarray(jax.random.key_data(jax.random.key(3)))
    variables = model.init(jax.random.key(0), jnp.ones((1, 8)), key)
    return Built(functools.partial(model.apply, variables), [(5, 8), jax.ShapeDtypeStruct((2,), jnp.uint32)], [_normal(5, 8), key])


class _SST2Classifier(nn.Module):
    @nn.compact
    def __call__(self, tokens, lengths):
        x = nn.Embed(300, 24)(tokens)
        cell = nn.LSTMCell(32)
        carry, outputs = nn.RNN(cell, return_carry=True)(x, seq_lengths=lengths)
        return nn.Dense(2)(carry[1])


@program("linen_sst2_lstm_classifier", library="flax.linen", origin="flax examples/sst2 (embedding + LSTM with sequence lengths)")
def _linen_sst2() -> Built:
    model = _SST2Classifier()
    tokens, lengths = _tokens(300, 3, 10), np.array([10, 4, 7], np.int32)
    variables = model.init(jax.random.key(0), tokens, lengths)

    def arguments(sizes: Mapping[str, int], rng: np.random.Generator) -> list[np.ndarray]:
        """Tokens of ``sizes`` and each row's length, between 1 and the sequence length."""
        batch, length = sizes["B"], sizes["T"]
        return [rng.integers(0, 300, (batch, length)).astype(np.int32), rng.integers(1, length + 1, batch).astype(np.int32)]

    return Built(functools.partial(model.apply, variables),
                 [jax.ShapeDtypeStruct(("B", "T"), jnp.int32), jax.ShapeDtypeStruct(("B",), jnp.int32)],
                 [tokens, lengths], resize=arguments)
