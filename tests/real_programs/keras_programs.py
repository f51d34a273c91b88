"""Keras 3 programs on the JAX backend, through ``stateless_call``: ``keras.applications`` built with
``weights=None`` (random weights, no download) at small inputs, and the layer families people build their
own models from (separable/depthwise/1-D/3-D/transposed convolutions, GRU, Bidirectional LSTM, masked
attention, GroupNormalization, bilinear upsampling, Resizing, masked Embedding pooling, Normalization and
RandomFlip in inference, Masking into LSTM/GRU, ConvLSTM2D with TimeDistributed, Attention/AdditiveAttention/
EinsumDense, SpectralNormalization/Discretization/CategoryEncoding), and keras.io's vision transformer example
(``keras.ops.image.extract_patches``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(40)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def _keras() -> Any:
    """``keras`` on the JAX backend (the backend is chosen at import: set it first, check it took)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras is using the {keras.backend.backend()!r} backend; set KERAS_BACKEND=jax before importing it")
    keras.utils.set_random_seed(0)
    return keras


def _stateless(model: Any, samples: Sequence[np.ndarray], specs: Sequence[Any],
               values: Callable[[Any], np.ndarray] | None = None) -> Built:
    """The model's inference forward pass as a pure function of its inputs (weights closed over): the
    variables' own values, or ``values(variable)`` for variables created uninitialised."""
    read = values or (lambda variable: variable.value)
    trainable = [read(v) for v in model.trainable_variables]
    non_trainable = [read(v) for v in model.non_trainable_variables]

    def forward(*inputs):
        outputs, _ = model.stateless_call(trainable, non_trainable, list(inputs) if len(inputs) > 1 else inputs[0],
                                          training=False)
        return outputs

    return Built(forward, list(specs), list(samples))


def _batched(sample: np.ndarray) -> jax.ShapeDtypeStruct:
    """``sample``'s spec with a symbolic batch dimension."""
    return jax.ShapeDtypeStruct(("B", *sample.shape[1:]), sample.dtype)


# ----------------------------------------------------------------------------- keras.applications
def _application(constructor: Callable[..., Any], size: int, kernel_gain: float) -> Built:
    """``constructor(weights=None, ...)`` at ``size`` x ``size`` with logits out, its variables left
    uninitialised (``keras.StatelessScope(initialize_variables=False)``) and given seeded numpy values.

    Keras initialises each variable with a jax.random draw that XLA compiles once per distinct shape
    (EfficientNetB0: 151 compilations): 4-28 s of CPU per application, where building the model
    uninitialised takes 0.1-0.6 s and converting it 0.2-1.6 s. The values are seeded numpy draws of the
    same roles (:func:`_seeded_values`), not the library initialisers' draws.
    """
    keras = _keras()
    with keras.StatelessScope(initialize_variables=False):
        model = constructor(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    # its own generator: the same input whichever programs a test worker built before
    sample = np.random.default_rng(1).standard_normal((2, size, size, 3)).astype(np.float32)
    return _stateless(model, [sample], [_batched(sample)], _seeded_values(keras, model, kernel_gain))


def _seeded_values(keras: Any, model: Any, kernel_gain: float) -> Callable[[Any], np.ndarray]:
    """Seeded values by a variable's role: kernels normal with variance ``kernel_gain`` / fan-in (2: He,
    1: LeCun; a depthwise kernel's fan-in is its window), BatchNormalization's gamma near 1, its moving variance in [0.5, 1.5], other
    vectors (biases, betas, means, ConvNeXt's layer scales) small; integer state (seed generators,
    Normalization's count) zero."""
    rng = np.random.default_rng(0)
    depthwise = {id(layer.kernel) for layer in model.layers
                 if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D))}

    def value(variable: Any) -> np.ndarray:
        shape, dtype = tuple(variable.shape), np.dtype(variable.dtype)
        if dtype.kind in "iu":
            return np.zeros(shape, dtype)
        if variable.name in ("moving_variance", "variance"):
            return rng.uniform(0.5, 1.5, shape).astype(dtype)
        if len(shape) <= 1:
            return ((variable.name == "gamma") + 0.1 * rng.standard_normal(shape)).astype(dtype)
        window = shape[:-2] if id(variable) in depthwise or variable.name == "depthwise_kernel" else shape[:-1]
        return (rng.standard_normal(shape) * np.sqrt(kernel_gain / np.prod(window))).astype(dtype)

    return value


def _register_application(name: str, constructor: Callable[[Any], Callable[..., Any]], size: int, kernel_gain: float) -> None:
    """Register ``keras_app_<name>``: ``constructor(keras)`` (the application's function) at ``size`` px."""
    origin = f"keras.applications ({name}, weights=None) at {size}x{size}"

    @program(f"keras_app_{name}", library="keras", origin=origin, rtol=1e-3, atol=1e-4)
    def build() -> Built:
        return _application(constructor(_keras()), size, kernel_gain)


# LeCun-normal kernels for EfficientNetV2: with He-normal ones (and BatchNorm statistics that do not match the
# activations) each residual block about doubles its activations' variance, and the logits reach ~200 (V2B0)
# and ~1e4 (V2S), where float32 rounding alone moves them by hundredths (V2B0: onnxruntime's default and
# unoptimized sessions differ from each other by 0.045) or makes them chaotic (V2S: op-by-op JAX differs from
# jax.jit by 3900). With LeCun kernels: logits ~0.6, jax.jit vs op-by-op 2-4e-7, onnxruntime vs jax.jit 5e-7-1e-6.
_LECUN_KERNELS = {"efficientnetv2b0", "efficientnetv2s"}

for _name, _constructor, _size in [
    ("resnet50", lambda keras: keras.applications.ResNet50, 32),
    ("resnet50v2", lambda keras: keras.applications.ResNet50V2, 32),
    ("efficientnetb0", lambda keras: keras.applications.EfficientNetB0, 32),
    ("efficientnetv2b0", lambda keras: keras.applications.EfficientNetV2B0, 32),
    ("convnext_tiny", lambda keras: keras.applications.ConvNeXtTiny, 32),
    ("mobilenetv3small", lambda keras: keras.applications.MobileNetV3Small, 32),
    ("densenet121", lambda keras: keras.applications.DenseNet121, 32),
    ("inceptionv3", lambda keras: keras.applications.InceptionV3, 75),  # its smallest input
    ("xception", lambda keras: keras.applications.Xception, 71),  # its smallest input
    ("nasnetmobile", lambda keras: keras.applications.NASNetMobile, 32),
    ("vgg16", lambda keras: keras.applications.VGG16, 32),
    ("mobilenetv2", lambda keras: keras.applications.MobileNetV2, 32),
    ("efficientnetv2s", lambda keras: keras.applications.EfficientNetV2S, 32),
]:
    _register_application(_name, _constructor, _size, 1.0 if _name in _LECUN_KERNELS else 2.0)


# ----------------------------------------------------------------------------- Keras layers
@program("keras_separable_convnet", library="keras",
         origin="keras 3 Xception-style block: SeparableConv2D, DepthwiseConv2D, BatchNormalization, residual Conv2D")
def _keras_separable() -> Built:
    keras = _keras()
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same")(inputs)
    residual = keras.layers.Conv2D(32, 1, strides=2, padding="same")(x)
    x = keras.layers.SeparableConv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=1)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = keras.layers.add([x, residual])
    x = keras.layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu6")(x)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))
    sample = _normal(2, 24, 24, 3)
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


@program("keras_conv1d_text", library="keras",
         origin="keras 3 examples: text classification from scratch (Embedding, Conv1D, GlobalMaxPooling1D)")
def _keras_conv1d() -> Built:
    keras = _keras()
    inputs = keras.Input((20,), dtype="int32")
    x = keras.layers.Embedding(50, 16)(inputs)
    x = keras.layers.Conv1D(24, 5, strides=2, padding="valid", activation="relu")(x)
    x = keras.layers.Conv1D(24, 3, padding="causal", dilation_rate=2, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    sample = _RNG.integers(0, 50, (3, 20)).astype(np.int32)
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


@program("keras_conv3d_volume", library="keras",
         origin="keras 3 examples: 3D image classification from CT scans (Conv3D, MaxPool3D, BatchNormalization, GlobalAveragePooling3D)")
def _keras_conv3d() -> Built:
    keras = _keras()
    inputs = keras.Input((12, 12, 8, 1))
    x = keras.layers.Conv3D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPool3D(2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv3D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    sample = _normal(2, 12, 12, 8, 1)
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


@program("keras_conv_decoder", library="keras",
         origin="keras 3 examples: convolutional autoencoder/VAE decoder (Conv2DTranspose, GroupNormalization, "
                "UpSampling2D bilinear, Resizing)")
def _keras_decoder() -> Built:
    keras = _keras()
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4 * 4 * 16, activation="relu")(inputs)
    x = keras.layers.Reshape((4, 4, 16))(x)
    x = keras.layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GroupNormalization(groups=4)(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="valid")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
    x = keras.layers.Resizing(20, 24, interpolation="bilinear")(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    sample = _normal(3, 6)
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


@program("keras_bidirectional_gru", library="keras",
         origin="keras 3 examples: bidirectional LSTM IMDB classifier, with a stacked GRU")
def _keras_recurrent() -> Built:
    keras = _keras()
    inputs = keras.Input((9, 5))
    x = keras.layers.Bidirectional(keras.layers.LSTM(12, return_sequences=True))(inputs)
    x = keras.layers.GRU(10, return_sequences=True)(x)
    x = keras.layers.GRU(8, reset_after=False)(x)
    outputs = keras.layers.Dense(3)(x)
    sample = _normal(2, 9, 5)
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


@program("keras_masked_attention", library="keras",
         origin="keras 3 MultiHeadAttention with a padding attention_mask and use_causal_mask (decoder block)")
def _keras_masked_attention() -> Built:
    keras = _keras()
    tokens = keras.Input((8, 16))
    padding = keras.Input((8, 8), dtype="bool")
    self_attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)
    cross_attention = keras.layers.MultiHeadAttention(num_heads=4, key_dim=4)
    x = keras.layers.LayerNormalization()(tokens + self_attention(tokens, tokens, use_causal_mask=True))
    x = keras.layers.LayerNormalization()(x + cross_attention(x, tokens, attention_mask=padding))
    outputs = keras.layers.Dense(4)(x)
    lengths = np.array([8, 5])
    mask = np.broadcast_to(np.arange(8)[None, None, :] < lengths[:, None, None], (2, 8, 8))
    samples = [_normal(2, 8, 16), np.ascontiguousarray(mask)]
    return _stateless(keras.Model([tokens, padding], outputs), samples,
                      [_batched(sample) for sample in samples])


@program("keras_embedding_pooling", library="keras",
         origin="keras 3 Embedding(mask_zero=True) + GlobalAveragePooling1D (mask-aware mean) text classifier")
def _keras_embedding_pooling() -> Built:
    keras = _keras()
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(40, 16, mask_zero=True)(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(16, activation="relu")(x))
    sample = _RNG.integers(1, 40, (3, 12)).astype(np.int32)
    sample[0, 7:] = 0
    sample[2, 3:] = 0
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


@program("keras_preprocessing_head", library="keras",
         origin="keras 3 image classification from scratch (Normalization adapted, RandomFlip/RandomRotation inference, Rescaling)")
def _keras_preprocessing() -> Built:
    keras = _keras()
    normalization = keras.layers.Normalization()
    normalization.adapt(_normal(16, 16, 16, 3) * 3 + 1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.RandomRotation(0.1)(x)
    x = normalization(keras.layers.Rescaling(1.0 / 255)(x) * 255)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    sample = _normal(2, 16, 16, 3)
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


@program("keras_vision_transformer", library="keras",
         origin="keras.io examples/vision/image_classification_with_vision_transformer (keras.ops.image.extract_patches, "
                "PatchEncoder with a position Embedding, MultiHeadAttention blocks, GELU MLPs)")
def _keras_vit() -> Built:
    keras = _keras()
    size, patch, dim = 16, 4, 16
    count = (size // patch) ** 2

    class Patches(keras.layers.Layer):
        def call(self, images):
            patches = keras.ops.image.extract_patches(images, size=patch)
            batch = keras.ops.shape(patches)[0]
            return keras.ops.reshape(patches, (batch, count, patch * patch * 3))

    class PatchEncoder(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.projection = keras.layers.Dense(dim)
            self.position_embedding = keras.layers.Embedding(count, dim)

        def call(self, patches):
            positions = keras.ops.expand_dims(keras.ops.arange(count), axis=0)
            return self.projection(patches) + self.position_embedding(positions)

    def mlp(x, units: list[int]):
        for width in units:
            x = keras.layers.Dropout(0.1)(keras.layers.Dense(width, activation=keras.activations.gelu)(x))
        return x

    inputs = keras.Input((size, size, 3))
    encoded = PatchEncoder()(Patches()(inputs))
    for _ in range(2):
        x1 = keras.layers.LayerNormalization(epsilon=1e-6)(encoded)
        attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=dim, dropout=0.1)(x1, x1)
        x2 = keras.layers.Add()([attention, encoded])
        x3 = mlp(keras.layers.LayerNormalization(epsilon=1e-6)(x2), [2 * dim, dim])
        encoded = keras.layers.Add()([x3, x2])
    representation = keras.layers.Flatten()(keras.layers.LayerNormalization(epsilon=1e-6)(encoded))
    outputs = keras.layers.Dense(10)(mlp(keras.layers.Dropout(0.5)(representation), [32, 16]))
    sample = _normal(2, size, size, 3)
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


def _seeded(seed: int, *shape: int) -> np.ndarray:
    """An input of its own generator: the same values whichever programs a test worker built before."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@program("keras_masking_rnns", library="keras",
         origin="keras 3 Masking(0.0) in front of LSTM(go_backwards=True, return_sequences) and GRU (the mask carried "
                "through both recurrences)")
def _keras_masking_rnns() -> Built:
    keras = _keras()
    inputs = keras.Input((8, 4))
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.LSTM(6, return_sequences=True, go_backwards=True)(x)
    outputs = keras.layers.Dense(2)(keras.layers.GRU(5)(x))
    sample = _seeded(50, 3, 8, 4)
    sample[0, 5:] = 0
    sample[2, 2:] = 0
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


@program("keras_convlstm_timedistributed", library="keras",
         origin="keras.io examples/vision/conv_lstm (ConvLSTM2D over frames) with TimeDistributed Conv2D and pooling")
def _keras_convlstm() -> Built:
    keras = _keras()
    inputs = keras.Input((4, 8, 8, 2))
    x = keras.layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True)(inputs)
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(3, 3))(x)
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(x)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    sample = _seeded(51, 2, 4, 8, 8, 2)
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])


@program("keras_attention_layers", library="keras",
         origin="keras 3 Attention (scaled dot, causal), AdditiveAttention, EinsumDense, UnitNormalization")
def _keras_attention_layers() -> Built:
    keras = _keras()
    query, value = keras.Input((6, 8)), keras.Input((5, 8))
    dot = keras.layers.Attention(use_scale=True)([query, value])
    additive = keras.layers.AdditiveAttention()([query, value])
    projected = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 4), bias_axes="d")(query)
    causal = keras.layers.Attention()([query, query], use_causal_mask=True)
    outputs = keras.layers.Concatenate()([dot, additive, keras.layers.UnitNormalization()(projected), causal])
    samples = [_seeded(52, 2, 6, 8), _seeded(53, 2, 5, 8)]
    return _stateless(keras.Model([query, value], outputs), samples, [_batched(sample) for sample in samples])


@program("keras_spectral_discretization", library="keras",
         origin="keras 3 SpectralNormalization(Dense) in inference, Discretization into bins, CategoryEncoding counts")
def _keras_spectral_discretization() -> Built:
    keras = _keras()
    inputs = keras.Input((6,))
    x = keras.layers.SpectralNormalization(keras.layers.Dense(8))(inputs)
    x = keras.layers.Discretization(bin_boundaries=[-1.0, 0.0, 1.0])(x)
    x = keras.layers.CategoryEncoding(num_tokens=4, output_mode="count")(x)
    outputs = keras.layers.Dense(2)(x)
    sample = _seeded(54, 3, 6)
    return _stateless(keras.Model(inputs, outputs), [sample], [_batched(sample)])
