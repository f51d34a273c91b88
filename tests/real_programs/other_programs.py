"""Programs from Hugging Face transformers (Flax models), Haiku, Equinox, diffrax, Keras 3 and plain jax.numpy.

Transformers' Flax models are built from small configs with random weights (``from_config``-style
construction, no download); Haiku, Equinox, diffrax and Keras models use the libraries' own layers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program
from tests.real_programs.haiku_equinox_programs import haiku_program
from tests.real_programs.hf_flax import (
    MAX_POSITIONS, SMALL_SEQ2SEQ, SMALL_TEXT, TEXT_LENGTHS, seq2seq_model, text_model, token_spec, vision_model,
)

_RNG = np.random.default_rng(1)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def _tokens(high: int, *shape: int) -> np.ndarray:
    return _RNG.integers(0, high, shape).astype(np.int32)


# ----------------------------------------------------------------------------- Hugging Face transformers (Flax)
@program("hf_flax_bert", library="transformers", origin="transformers FlaxBertModel (small config)")
def _hf_bert() -> Built:
    import transformers

    return text_model(transformers.FlaxBertModel(transformers.BertConfig(**SMALL_TEXT), seed=0), _RNG)


@program("hf_flax_roberta", library="transformers", origin="transformers FlaxRobertaModel (small config)")
def _hf_roberta() -> Built:
    import transformers

    return text_model(transformers.FlaxRobertaModel(transformers.RobertaConfig(**SMALL_TEXT), seed=0), _RNG)


@program("hf_flax_distilbert", library="transformers", origin="transformers FlaxDistilBertModel (small config)")
def _hf_distilbert() -> Built:
    import transformers

    config = transformers.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                           max_position_embeddings=64)
    return text_model(transformers.FlaxDistilBertModel(config, seed=0), _RNG)


@program("hf_flax_gpt2_lm", library="transformers", origin="transformers FlaxGPT2LMHeadModel (small config)")
def _hf_gpt2() -> Built:
    import transformers

    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return text_model(transformers.FlaxGPT2LMHeadModel(config, seed=0), _RNG)


@program("hf_flax_vit", library="transformers", origin="transformers FlaxViTModel (small config)")
def _hf_vit() -> Built:
    import transformers

    cfg = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=64)
    return vision_model(transformers.FlaxViTModel(cfg, seed=0), _RNG)


@program("hf_flax_bart", library="transformers", origin="transformers FlaxBartModel encoder-decoder (small config)")
def _hf_bart() -> Built:
    import transformers

    return seq2seq_model(transformers.FlaxBartModel(transformers.BartConfig(**SMALL_SEQ2SEQ), seed=0), _RNG)


@program("hf_flax_electra", library="transformers", origin="transformers FlaxElectraModel (small config)")
def _hf_electra() -> Built:
    import transformers

    return text_model(transformers.FlaxElectraModel(transformers.ElectraConfig(embedding_size=16, **SMALL_TEXT), seed=0), _RNG)


@program("hf_flax_albert", library="transformers", origin="transformers FlaxAlbertModel (small config)")
def _hf_albert() -> Built:
    import transformers

    return text_model(transformers.FlaxAlbertModel(transformers.AlbertConfig(embedding_size=16, **SMALL_TEXT), seed=0), _RNG)


@program("hf_flax_clip_text", library="transformers", origin="transformers FlaxCLIPTextModel (small config)")
def _hf_clip_text() -> Built:
    import transformers

    return text_model(transformers.FlaxCLIPTextModel(transformers.CLIPTextConfig(**SMALL_TEXT), seed=0), _RNG)


@program("hf_flax_gpt_neo", library="transformers", origin="transformers FlaxGPTNeoModel, global + local attention (small config)")
def _hf_gpt_neo() -> Built:
    import transformers

    config = transformers.GPTNeoConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
                                       attention_types=[[["global", "local"], 1]], max_position_embeddings=64, window_size=8)
    return text_model(transformers.FlaxGPTNeoModel(config, seed=0), _RNG)


@program("hf_flax_bert_sequence_classification", library="transformers",
         origin="transformers FlaxBertForSequenceClassification with a head mask (small config)")
def _hf_bert_cls() -> Built:
    import transformers

    cfg = transformers.BertConfig(num_labels=3, **SMALL_TEXT)
    model = transformers.FlaxBertForSequenceClassification(cfg, seed=0)
    params = model.params
    head_mask = np.ones((2, 4), np.int32)
    head_mask[1, 2] = 0

    def forward(input_ids):
        return model(input_ids=input_ids, head_mask=head_mask, params=params, train=False)[0]

    return Built(forward, [token_spec("T")], [_tokens(100, 2, 12)], sizes={"T": TEXT_LENGTHS},
                 constraints=(f"T <= {MAX_POSITIONS}",))


# ----------------------------------------------------------------------------- Haiku
@program("haiku_mlp", library="haiku", origin="dm-haiku haiku.nets.MLP")
def _haiku_mlp() -> Built:
    import haiku as hk

    return haiku_program(lambda x, is_training: hk.nets.MLP([64, 32, 10])(x), _normal(4, 20), ("B", 20))


@program("haiku_resnet18", library="haiku", origin="dm-haiku haiku.nets.ResNet18 (inference, BatchNorm state)", rtol=1e-3, atol=1e-4)
def _haiku_resnet() -> Built:
    import haiku as hk

    def forward(x, is_training):
        return hk.nets.ResNet18(10, resnet_v2=False)(x, is_training=is_training)

    # zero logits and zero block-final BatchNorm scales as initialised: the output would be 0 for any input;
    # statistics from 8 images: its last stage runs on a 1x1 map (as haiku_mobilenet_v1's)
    return haiku_program(forward, _normal(2, 32, 32, 3), ("B", 32, 32, 3), init_sample=_normal(8, 32, 32, 3),
                         fill_zeros=True)


@program("haiku_lstm_unroll", library="haiku", origin="dm-haiku hk.LSTM with hk.dynamic_unroll")
def _haiku_lstm() -> Built:
    import haiku as hk

    def forward(x, is_training):
        core = hk.LSTM(24)
        outputs, _ = hk.dynamic_unroll(core, x, core.initial_state(x.shape[1]))
        return hk.Linear(3)(outputs[-1])

    return haiku_program(forward, _normal(9, 2, 6), (9, "B", 6))


@program("haiku_transformer_block", library="haiku", origin="dm-haiku hk.MultiHeadAttention + LayerNorm block")
def _haiku_attention() -> Built:
    import haiku as hk

    def forward(x, is_training):
        attn = hk.MultiHeadAttention(num_heads=4, key_size=8, w_init=hk.initializers.VarianceScaling(1.0))
        norm = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)
        x = x + attn(norm(x), norm(x), norm(x))
        return x + hk.nets.MLP([64, 32])(hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x))

    return haiku_program(forward, _normal(2, 10, 32), ("B", "T", 32))


@program("haiku_dropout_training", library="haiku", origin="dm-haiku hk.dropout with hk.next_rng_key (training mode)")
def _haiku_dropout() -> Built:
    import haiku as hk

    transformed = hk.transform(lambda x: hk.Linear(3)(hk.dropout(hk.next_rng_key(), 0.4, jax.nn.relu(hk.Linear(16)(x)))))
    params = transformed.init(jax.random.key(0), jnp.ones((1, 5)))

    def forward(x, key_data):
        return transformed.apply(params, jax.random.wrap_key_data(key_data), x)

    key = np.asarray(jax.random.key_data(jax.random.key(11)))
    return Built(forward, [(4, 5), jax.ShapeDtypeStruct((2,), jnp.uint32)], [_normal(4, 5), key])


# ----------------------------------------------------------------------------- Equinox
@program("eqx_mlp", library="equinox", origin="equinox eqx.nn.MLP")
def _eqx_mlp() -> Built:
    import equinox as eqx

    model = eqx.nn.MLP(8, 3, 32, 2, key=jax.random.key(0))
    return Built(jax.vmap(model), [("B", 8)], [_normal(4, 8)])


@program("eqx_mnist_cnn", library="equinox", origin="equinox examples/mnist (Conv2d, MaxPool2d, Linear)")
def _eqx_cnn() -> Built:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(0), 4)

    class CNN(eqx.Module):
        layers: list

        def __init__(self):
            self.layers = [
                eqx.nn.Conv2d(1, 3, kernel_size=4, key=keys[0]), eqx.nn.MaxPool2d(kernel_size=2), jax.nn.relu, jnp.ravel,
                eqx.nn.Linear(1728, 512, key=keys[1]), jax.nn.sigmoid, eqx.nn.Linear(512, 64, key=keys[2]), jax.nn.relu,
                eqx.nn.Linear(64, 10, key=keys[3]), jax.nn.log_softmax,
            ]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    model = CNN()
    return Built(jax.vmap(model), [("B", 1, 28, 28)], [_normal(2, 1, 28, 28)])


@program("eqx_attention", library="equinox", origin="equinox eqx.nn.MultiheadAttention + LayerNorm")
def _eqx_attention() -> Built:
    import equinox as eqx

    k1, k2 = jax.random.split(jax.random.key(0))
    attention = eqx.nn.MultiheadAttention(4, 32, key=k1)
    norm = eqx.nn.LayerNorm(32)
    linear = eqx.nn.Linear(32, 32, key=k2)

    def forward(x):
        y = jax.vmap(norm)(x)
        y = x + attention(y, y, y)
        return jax.vmap(linear)(y)

    return Built(forward, [("T", 32)], [_normal(10, 32)])


@program("eqx_gru_scan", library="equinox", origin="equinox eqx.nn.GRUCell scanned over a sequence (examples/train_rnn)")
def _eqx_gru() -> Built:
    import equinox as eqx

    k1, k2 = jax.random.split(jax.random.key(0))
    cell = eqx.nn.GRUCell(4, 16, key=k1)
    head = eqx.nn.Linear(16, 1, key=k2)

    def forward(xs):
        final, _ = jax.lax.scan(lambda h, x: (cell(x, h), None), jnp.zeros(16), xs)
        return jax.nn.sigmoid(head(final))

    return Built(jax.vmap(forward), [("B", "T", 4)], [_normal(3, 12, 4)])


@program("eqx_lstm_cell", library="equinox", origin="equinox eqx.nn.LSTMCell scanned over a sequence")
def _eqx_lstm() -> Built:
    import equinox as eqx

    cell = eqx.nn.LSTMCell(5, 12, key=jax.random.key(1))

    def forward(xs):
        (h, c), _ = jax.lax.scan(lambda state, x: (cell(x, state), None), (jnp.zeros(12), jnp.zeros(12)), xs)
        return h + c

    return Built(forward, [("T", 5)], [_normal(7, 5)])


@program("eqx_dropout_inference", library="equinox", origin="equinox eqx.nn.Dropout in inference mode (key plumbing unused)")
def _eqx_dropout() -> Built:
    import equinox as eqx

    class Net(eqx.Module):
        linear: eqx.nn.Linear
        dropout: eqx.nn.Dropout

        def __init__(self, key):
            self.linear = eqx.nn.Linear(6, 6, key=key)
            self.dropout = eqx.nn.Dropout(0.5)

        def __call__(self, x, key):  # tanh, not relu: a relu of 6 units was 0 on every unit for the sample
            return self.dropout(jnp.tanh(self.linear(x)), key=key)

    net = eqx.nn.inference_mode(Net(jax.random.key(0)))
    return Built(lambda x: net(x, jax.random.key(3)), [(6,)], [_normal(6)])


# ----------------------------------------------------------------------------- diffrax
# equinox's runtime checks inside diffrax are host callbacks unless EQX_ON_ERROR=nan (read at import)
_EQX_NAN = {"EQX_ON_ERROR": "nan"}


@program("diffrax_ode_tsit5", library="diffrax", origin="diffrax: an ODE solve with Tsit5 and a PID step-size controller",
         env=_EQX_NAN)
def _diffrax_ode() -> Built:
    import diffrax

    def vector_field(t, y, args):
        return -args * y + jnp.sin(t)

    def solve(y0, rate):
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field), diffrax.Tsit5(), t0=0.0, t1=2.0, dt0=0.1, y0=y0, args=rate,
            saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 2.0, 5)),
            stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-6), max_steps=64,
        )
        return solution.ys

    return Built(solve, [(3,), ()], [np.array([1.0, 2.0, -0.5], np.float32), np.float32(0.7)])


@program("diffrax_neural_ode", library="diffrax", origin="diffrax examples/neural_ode (eqx.nn.MLP vector field, fixed-step Heun)",
         env=_EQX_NAN)
def _diffrax_neural_ode() -> Built:
    import diffrax
    import equinox as eqx

    mlp = eqx.nn.MLP(2, 2, 16, 2, activation=jax.nn.softplus, key=jax.random.key(0))

    def solve(y0):
        term = diffrax.ODETerm(lambda t, y, args: mlp(y))
        solution = diffrax.diffeqsolve(term, diffrax.Heun(), t0=0.0, t1=1.0, dt0=0.05, y0=y0,
                                       saveat=diffrax.SaveAt(t1=True), max_steps=32)
        return solution.ys[-1]

    return Built(solve, [(2,)], [np.array([0.5, -0.3], np.float32)])


# ----------------------------------------------------------------------------- Keras 3 (JAX backend)
def _keras_model(build) -> Built:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras is using the {keras.backend.backend()!r} backend; set KERAS_BACKEND=jax before importing it")
    model, sample = build(keras)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(x):
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return outputs

    return Built(forward, [("B", *sample.shape[1:])], [sample])


@program("keras_functional_mlp", library="keras", origin="keras 3 functional API (Dense, Dropout, BatchNormalization) via stateless_call")
def _keras_mlp() -> Built:
    def build(keras):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((12,))
        x = keras.layers.Dense(32, activation="relu")(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Dropout(0.3)(x)
        outputs = keras.layers.Dense(4, activation="softmax")(x)
        return keras.Model(inputs, outputs), _normal(3, 12)

    return _keras_model(build)


@program("keras_cnn", library="keras", origin="keras 3 examples: simple MNIST convnet (Conv2D, MaxPooling2D, Flatten, Dense)")
def _keras_cnn() -> Built:
    def build(keras):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((28, 28, 1))
        x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Conv2D(16, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Flatten()(x)
        outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Dropout(0.5)(x))
        return keras.Model(inputs, outputs), _normal(2, 28, 28, 1)

    return _keras_model(build)


@program("keras_attention_block", library="keras", origin="keras 3 text classification with a transformer block (MultiHeadAttention, LayerNormalization)")
def _keras_attention() -> Built:
    def build(keras):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((10, 16))
        attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(inputs, inputs)
        x = keras.layers.LayerNormalization(epsilon=1e-6)(inputs + attention)
        y = keras.layers.Dense(16)(keras.layers.Dense(32, activation="relu")(x))
        x = keras.layers.LayerNormalization(epsilon=1e-6)(x + y)
        outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling1D()(x))
        return keras.Model(inputs, outputs), _normal(2, 10, 16)

    return _keras_model(build)


@program("keras_lstm", library="keras", origin="keras 3 LSTM sequence classifier")
def _keras_lstm() -> Built:
    def build(keras):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 5))
        x = keras.layers.LSTM(16)(inputs)
        outputs = keras.layers.Dense(3)(x)
        return keras.Model(inputs, outputs), _normal(2, 8, 5)

    return _keras_model(build)


# ----------------------------------------------------------------------------- plain jax.numpy
def _mlp_loss(params, x, y):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    logits = hidden @ params["w2"] + params["b2"]
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(y, 3), axis=-1))


def _mlp_params():
    return {"w1": _normal(5, 16), "b1": _normal(16), "w2": _normal(16, 3), "b2": _normal(3)}


_PARAM_SPECS = {"w1": (5, 16), "b1": (16,), "w2": (16, 3), "b2": (3,)}


@program("jnp_grad_of_loss", library="jax", origin="JAX quickstart: jax.grad of a cross-entropy loss")
def _jnp_grad() -> Built:
    labels = jax.ShapeDtypeStruct(("B",), jnp.int32)
    return Built(jax.grad(_mlp_loss), [_PARAM_SPECS, ("B", 5), labels], [_mlp_params(), _normal(6, 5), _tokens(3, 6)])


@program("jnp_sgd_step", library="jax", origin="JAX tutorials: one SGD training step (value_and_grad + tree_map update)")
def _jnp_sgd() -> Built:
    def step(params, x, y):
        loss, grads = jax.value_and_grad(_mlp_loss)(params, x, y)
        return loss, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)

    labels = jax.ShapeDtypeStruct(("B",), jnp.int32)
    return Built(step, [_PARAM_SPECS, ("B", 5), labels], [_mlp_params(), _normal(6, 5), _tokens(3, 6)])


@program("jnp_physics_informed_residual", library="jax", origin="physics-informed network: u_xx + u residual via nested jax.grad and vmap")
def _jnp_pinn() -> Built:
    w1, w2 = _normal(1, 16), _normal(16, 1)

    def u(x):
        return (jnp.tanh(x * w1[0]) @ w2)[0]

    def residual(xs):
        u_xx = jax.vmap(jax.grad(jax.grad(u)))(xs)
        return u_xx + jax.vmap(u)(xs)

    return Built(residual, [("N",)], [np.linspace(-1, 1, 9).astype(np.float32)])


@program("jnp_per_example_gradients", library="jax", origin="JAX docs: per-example gradients with vmap(grad)")
def _jnp_per_example() -> Built:
    def loss(w, x, y):
        return (jnp.dot(x, w) - y) ** 2

    return Built(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)), [(4,), ("B", 4), ("B",)], [_normal(4), _normal(5, 4), _normal(5)])


@program("jnp_gaussian_sampling", library="jax", origin="jax.random: sampling (normal, uniform, bernoulli, randint, permutation) from a seed")
def _jnp_sampling() -> Built:
    def sample(seed, x):
        key = jax.random.key(seed)
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        noise = jax.random.normal(k1, x.shape) * 0.1 + jax.random.uniform(k2, x.shape, minval=-1, maxval=1)
        mask = jax.random.bernoulli(k3, 0.7, x.shape)
        picks = jax.random.randint(k4, (4,), 0, x.shape[0])
        order = jax.random.permutation(k5, x.shape[0])
        return jnp.where(mask, x + noise, 0.0), picks, order

    return Built(sample, [jax.ShapeDtypeStruct((), jnp.int32), (6, 3)], [np.int32(2024), _normal(6, 3)])


@program("jnp_attention_einsum", library="jax", origin="plain jax.numpy scaled dot-product attention with einsum and a padding mask")
def _jnp_attention() -> Built:
    def attention(q, k, v, lengths):
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1])
        valid = jnp.arange(k.shape[1])[None, :] < lengths[:, None]
        scores = jnp.where(valid[:, None, None, :], scores, -1e9)
        return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)

    def arguments(sizes: Mapping[str, int], rng: np.random.Generator) -> list[np.ndarray]:
        """Queries of length Q, keys and values of length K, and each row's valid key count (1 to K)."""
        batch, queries, keys = sizes["B"], sizes["Q"], sizes["K"]
        q, k, v = (rng.standard_normal((batch, n, 2, 8)).astype(np.float32) for n in (queries, keys, keys))
        return [q, k, v, rng.integers(1, keys + 1, batch).astype(np.int32)]

    lengths = jax.ShapeDtypeStruct(("B",), jnp.int32)
    return Built(attention, [("B", "Q", 2, 8), ("B", "K", 2, 8), ("B", "K", 2, 8), lengths],
                 [_normal(2, 5, 2, 8), _normal(2, 7, 2, 8), _normal(2, 7, 2, 8), np.array([7, 3], np.int32)], resize=arguments)


@program("jnp_kmeans_step", library="jax", origin="k-means (Lloyd) iteration: argmin distances + segment_sum")
def _jnp_kmeans() -> Built:
    def step(points, centroids):
        distances = jnp.sum((points[:, None, :] - centroids[None, :, :]) ** 2, axis=-1)
        assignment = jnp.argmin(distances, axis=1)
        sums = jax.ops.segment_sum(points, assignment, num_segments=centroids.shape[0])
        counts = jax.ops.segment_sum(jnp.ones(points.shape[0]), assignment, num_segments=centroids.shape[0])
        return sums / jnp.maximum(counts, 1.0)[:, None], assignment

    return Built(step, [("N", 2), (3, 2)], [_normal(20, 2), _normal(3, 2)])


@program("jnp_sort_topk_cumsum", library="jax", origin="ranking utilities: argsort, top_k, cumsum, logsumexp, searchsorted")
def _jnp_ranking() -> Built:
    def rank(x):
        order = jnp.argsort(x, axis=-1)
        top, idx = jax.lax.top_k(x, 3)
        cdf = jnp.cumsum(jax.nn.softmax(x, axis=-1), axis=-1)
        draws = jnp.linspace(0.1, 0.9, 4)
        return order, top, idx, jax.nn.logsumexp(x, axis=-1), jax.vmap(lambda c: jnp.searchsorted(c, draws))(cdf)

    return Built(rank, [("B", 8)], [_normal(3, 8)])


@program("jnp_linear_regression_solve", library="jax", origin="least squares by the normal equations: jnp.linalg.solve")
def _jnp_solve() -> Built:
    def fit(x, y):
        gram = x.T @ x + 1e-3 * jnp.eye(x.shape[1])
        return jnp.linalg.solve(gram, x.T @ y)

    return Built(fit, [(20, 4), (20,)], [_normal(20, 4), _normal(20)])


@program("jnp_fft_convolution", library="jax", origin="signal processing: circular convolution through jnp.fft.rfft/irfft", atol=1e-4)
def _jnp_fft() -> Built:
    def convolve(signal, kernel):
        n = signal.shape[-1]
        return jnp.fft.irfft(jnp.fft.rfft(signal) * jnp.fft.rfft(kernel, n=n), n=n)

    return Built(convolve, [("B", 16), (5,)], [_normal(2, 16), _normal(5)])


@program("jnp_mixed_precision", library="jax", origin="mixed dtypes: float16 activations, int mask arithmetic, float64 constants under x32",
         rtol=1e-3, atol=1e-3)
def _jnp_mixed() -> Built:
    def forward(x, mask):
        h = (x.astype(jnp.float16) * 2).astype(jnp.float32)
        return jnp.sum(h * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1) + np.float64(0.5)

    return Built(forward, [("B", 6), jax.ShapeDtypeStruct(("B", 6), jnp.int32)], [_normal(3, 6), _tokens(2, 3, 6)])
