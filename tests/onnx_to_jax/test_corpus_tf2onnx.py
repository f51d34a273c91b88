"""Corpus: Keras models and tf.function programs converted by tf2onnx, to JAX, against onnxruntime.

Opt-in by installation: tensorflow and tf2onnx are not in CI's lock (TensorFlow alone is ~600 MB and pins
its own numpy/protobuf ranges), so the module skips without them (``SKIP_REASONS``). Run it in a side venv::

    python3 -m venv /path/venv-tf && /path/venv-tf/bin/pip install tensorflow-cpu tf2onnx
    /path/venv-tf/bin/pip install -e ".[test]"
    /path/venv-tf/bin/python -m pytest tests/onnx_to_jax/test_corpus_tf2onnx.py

``python -m tests.onnx_to_jax.test_corpus_tf2onnx [names]`` prints the table of docs/onnx_to_jax_corpus.md.
Measured with tensorflow-cpu 2.21.0 (Keras 3.15.1) and tf2onnx 1.17.0, the newest releases pip picked: they
install beside the project's lock unchanged (numpy 2.4.6, protobuf 7.36.2, onnx 1.23.2, onnxruntime 1.31.1).

What does not run, each with its measured reason: ``LIMITS`` (tf2onnx cannot convert the program or
onnxruntime refuses the file; the test checks that it still fails), ``EAGER_ONLY`` (value-dependent nodes:
compared eagerly, not under ``wb.jit_forward``) and ``NOT_TF_NUMBERS`` (tf2onnx approximates the TF op, so
TensorFlow's own outputs do not widen the tolerance).

tf2onnx writes graphs unlike torch.onnx's: NHWC inputs with Transpose pairs around each convolution, its own
BatchNormalization rewrites, Keras 3's LSTM/GRU as Loops over TensorArray writes (tf2onnx 1.17's LSTM/GRU
rewriters do not match Keras 3's graphs), ``tf.while_loop`` as Loop, tf.image crops as Resize in a Loop. Every
model is built in code with seeded random weights (nothing downloaded); Keras applications get their
BatchNorm statistics measured on random images (with the constructor's mean 0 / variance 1 a random network's
logits collapse inside the tolerance, see tests/onnx_to_jax/test_corpus_vision.py). Each conversion is read
by ``wb.to_jax`` and compared with onnxruntime on the same file (tests/support/corpus.py's tolerance, also
allowing twice TensorFlow's own distance from onnxruntime), eagerly and under ``jax.jit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

# every reason these tests do not run, in one place
SKIP_REASONS = {
    "no-tensorflow": "tensorflow (tensorflow-cpu) is not installed: not in CI's lock, install it in a side venv",
    "no-tf2onnx": "tf2onnx is not installed: not in CI's lock, install it beside tensorflow",
}

tf = pytest.importorskip("tensorflow", reason=SKIP_REASONS["no-tensorflow"])
tf2onnx = pytest.importorskip("tf2onnx", reason=SKIP_REASONS["no-tf2onnx"])

import jax  # noqa: E402
import keras  # noqa: E402
import onnx  # noqa: E402

import workbench as wb  # noqa: E402
from tests.support.corpus import assert_outputs_match, depth, failure_row, table_row  # noqa: E402
from tests.support.harness import run_onnx  # noqa: E402

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

IMAGE = 64  # Keras applications' input side (small: the corpus checks the graph's forms, not accuracy)


@dataclass(frozen=True)
class Program:
    """One TensorFlow program to convert: a Keras model or a tf.function, its signature and inputs."""

    run: Callable  # keras.Model or tf.function
    signature: tuple  # tf.TensorSpec per input
    feeds: list[np.ndarray]
    keras: bool = True


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _image_feeds() -> list[np.ndarray]:
    return [_rng().uniform(0.0, 1.0, (1, IMAGE, IMAGE, 3)).astype(np.float32)]


def _with_measured_statistics(model: keras.Model, shape: tuple[int, ...] = (4, IMAGE, IMAGE, 3)) -> keras.Model:
    """``model`` with every BatchNormalization's moving statistics set to those of random inputs of ``shape``.

    A momentum of 0 makes one training-mode call replace the moving mean and variance with the batch's."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for norm in norms:
        norm.momentum = 0.0
    if norms:
        model(_rng().uniform(0.0, 1.0, shape).astype(np.float32), training=True)
    return model


def _application(build: Callable) -> Callable[[], Program]:
    def make() -> Program:
        keras.utils.set_random_seed(0)
        # logits (no softmax): 1,000 probabilities of a random network span less than the tolerance
        model = build(weights=None, input_shape=(IMAGE, IMAGE, 3), classifier_activation=None)
        model = _with_measured_statistics(model)
        signature = (tf.TensorSpec((1, IMAGE, IMAGE, 3), tf.float32, name="image"),)
        return Program(model, signature, _image_feeds())

    return make


def _sequence(layers: Callable[[], list], steps: int = 10, features: int = 6) -> Callable[[], Program]:
    def make() -> Program:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((steps, features))
        outputs = inputs
        for layer in layers():
            outputs = layer(outputs)
        # functional, not keras.Sequential: tf2onnx 1.17's from_keras looks a Keras 3 Sequential's output
        # up by a name its graph does not have (KeyError 'keras_tensor_N')
        model = keras.Model(inputs, outputs)
        signature = (tf.TensorSpec((1, steps, features), tf.float32, name="sequence"),)
        return Program(model, signature, [_rng().normal(size=(1, steps, features)).astype(np.float32)])

    return make


def _layers(shape: tuple[int, ...], layers: Callable[[], list]) -> Callable[[], Program]:
    """A functional Keras model of ``layers`` in sequence over one float input of ``shape`` (batch 1)."""

    def make() -> Program:
        keras.utils.set_random_seed(0)
        inputs = keras.Input(shape)
        outputs = inputs
        for layer in layers():
            outputs = layer(outputs)
        model = _with_measured_statistics(keras.Model(inputs, outputs), (4, *shape))
        signature = (tf.TensorSpec((1, *shape), tf.float32, name="x"),)
        return Program(model, signature, [_rng().uniform(0.0, 1.0, (1, *shape)).astype(np.float32)])

    return make


def _conv1d() -> list:
    return [keras.layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu"),
            keras.layers.Conv1D(8, 5, strides=2, padding="same"), keras.layers.BatchNormalization(),
            keras.layers.SeparableConv1D(12, 3, padding="same", activation="elu"), keras.layers.MaxPooling1D(2),
            keras.layers.AveragePooling1D(2, padding="same"), keras.layers.Conv1DTranspose(6, 3, strides=2),
            keras.layers.GlobalMaxPooling1D(), keras.layers.Dense(4)]


def _conv3d() -> list:
    return [keras.layers.Conv3D(6, 3, padding="same", activation="relu"), keras.layers.BatchNormalization(),
            keras.layers.MaxPooling3D(2), keras.layers.Conv3D(8, (1, 3, 3), strides=(1, 2, 2), padding="same"),
            keras.layers.AveragePooling3D((1, 2, 2)), keras.layers.Conv3DTranspose(4, 2, strides=2),
            keras.layers.UpSampling3D((1, 2, 2)), keras.layers.GlobalAveragePooling3D(), keras.layers.Dense(5)]


def _conv2d_forms() -> list:
    return [keras.layers.ZeroPadding2D(((1, 2), (0, 1))), keras.layers.Conv2D(8, 3, strides=2, padding="same"),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6"),
            keras.layers.SeparableConv2D(8, 3, dilation_rate=2, padding="same"), keras.layers.BatchNormalization(),
            keras.layers.LeakyReLU(0.2), keras.layers.Conv2DTranspose(6, 3, strides=2, padding="same"),
            keras.layers.UpSampling2D(2, interpolation="bilinear"), keras.layers.Cropping2D(((1, 0), (2, 1))),
            keras.layers.MaxPooling2D(3, strides=2, padding="same"), keras.layers.Flatten(), keras.layers.Dense(6)]


def _tanh_gelu(x):
    return keras.activations.gelu(x, approximate=True)


def _dense_gelu_exact() -> Program:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="gelu")(inputs))
    signature = (tf.TensorSpec((1, 6), tf.float32, name="features"),)
    return Program(model, signature, [_rng().normal(size=(1, 6)).astype(np.float32)])


def _encoder() -> Program:
    """A transformer encoder block over token ids: Embedding, MultiHeadAttention, LayerNormalization."""
    keras.utils.set_random_seed(0)
    tokens = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 16)(tokens)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    x = keras.layers.LayerNormalization()(x + attended)
    # tanh GELU: exact GELU is the LIMITS entry "dense_gelu_exact"
    hidden = keras.layers.Dense(32, activation=_tanh_gelu)(x)
    x = keras.layers.LayerNormalization()(x + keras.layers.Dense(16)(hidden))
    logits = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling1D()(x))
    signature = (tf.TensorSpec((1, 12), tf.int32, name="tokens"),)
    return Program(keras.Model(tokens, logits), signature, [_rng().integers(0, 50, (1, 12)).astype(np.int32)])


def _function(body: Callable, *specs: tuple[tuple[int, ...], tf.DType]) -> Callable[[], Program]:
    def make() -> Program:
        signature = tuple(tf.TensorSpec(shape, dtype, name=f"x{i}") for i, (shape, dtype) in enumerate(specs))
        feeds = [_rng().normal(size=shape).astype(dtype.as_numpy_dtype) for shape, dtype in specs]
        return Program(tf.function(body), signature, feeds, keras=False)

    return make


def _resize(x):
    return (tf.image.resize(x, (23, 29), method="bilinear"), tf.image.resize(x, (32, 32), method="nearest"),
            tf.image.resize(x, (9, 21), method="bilinear"), tf.image.resize(x, (20, 12), method="nearest"))


def _resize_bicubic(x):
    return tf.image.resize(x, (9, 21), method="bicubic")


def _resize_v1(x):
    """TF1's resize ops with their corner flags (tf.compat.v1: align_corners / half_pixel_centers)."""
    v1 = tf.compat.v1.image
    return (v1.resize_bilinear(x, (23, 29), align_corners=True), v1.resize_bilinear(x, (7, 9)),
            v1.resize_nearest_neighbor(x, (31, 33), align_corners=True), v1.resize_nearest_neighbor(x, (24, 10)))


def _resize_area(x):
    return tf.image.resize(x, (8, 8), method="area")


def _crop_and_resize(x):
    boxes = tf.constant([[0.1, 0.2, 0.7, 0.9], [0.0, 0.0, 1.0, 1.0], [0.5, 0.4, 0.6, 0.8]])
    return (tf.image.crop_and_resize(x, boxes, [0, 0, 0], (5, 7)),
            tf.image.crop_and_resize(x, boxes, [0, 0, 0], (6, 4), method="nearest"))


def _nn_activations(x):
    return (tf.nn.relu6(x), tf.nn.elu(x), tf.nn.selu(x), tf.nn.leaky_relu(x, 0.3), tf.nn.softplus(x),
            tf.nn.softsign(x), tf.nn.swish(x), tf.nn.gelu(x, approximate=True), tf.nn.log_softmax(x),
            tf.nn.softmax(x, axis=1), tf.nn.l2_normalize(x, axis=-1), tf.math.cumsum(x, axis=1, exclusive=True),
            tf.math.cumsum(x, axis=2, reverse=True), tf.nn.crelu(x), tf.math.reduce_logsumexp(x, axis=1))


def _nn_image(x):
    kernel = tf.constant(_rng().normal(size=(3, 3, 4, 6)).astype(np.float32))
    depthwise = tf.constant(_rng().normal(size=(3, 3, 4, 2)).astype(np.float32))
    pointwise = tf.constant(_rng().normal(size=(1, 1, 8, 5)).astype(np.float32))
    up = tf.constant(_rng().normal(size=(3, 3, 3, 4)).astype(np.float32))
    mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
    return (tf.nn.conv2d(x, kernel, strides=2, padding="SAME"),
            tf.nn.conv2d(x, kernel, strides=1, padding="VALID", dilations=2),
            tf.nn.atrous_conv2d(x, kernel, rate=2, padding="SAME"),
            tf.nn.depthwise_conv2d(x, depthwise, [1, 1, 1, 1], "SAME"),
            tf.nn.separable_conv2d(x, depthwise, pointwise, [1, 2, 2, 1], "SAME"),
            tf.nn.conv2d_transpose(x, up, (1, 33, 33, 3), strides=2, padding="VALID"),
            tf.nn.conv2d_transpose(x, up, (1, 32, 32, 3), strides=2, padding="SAME"),
            tf.nn.max_pool2d(x, 3, 2, "SAME"), tf.nn.avg_pool2d(x, 3, 2, "SAME"),
            tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=0.5, beta=0.75),
            tf.nn.batch_normalization(x, mean, variance, 0.1, 2.0, 1e-3),
            tf.nn.space_to_depth(x, 2), tf.nn.depth_to_space(x, 2), tf.nn.bias_add(x, [0.1, -0.2, 0.3, 0.5]),
            tf.image.flip_left_right(x), tf.image.rot90(x), tf.image.rgb_to_grayscale(x[..., :3]),
            tf.image.adjust_contrast(x, 1.7))


def _nn_sequence(x):
    """Index and segment ops over a (6, 5) matrix."""
    ids = tf.constant([0, 0, 2, 1, 2, 0])
    return (tf.math.unsorted_segment_sum(x, ids, 3), tf.math.segment_max(x, [0, 0, 1, 1, 1, 2]),
            tf.nn.embedding_lookup(x, [[4, 1], [0, 5]]), tf.reverse(x, [0]),
            tf.reverse_sequence(x, [1, 5, 3, 2, 4, 5], seq_axis=1, batch_axis=0), tf.linalg.band_part(x, 1, 2),
            tf.einsum("ij,kj->ik", x, x), tf.math.argmax(x, axis=1), tf.math.reduce_prod(x, axis=0),
            tf.clip_by_norm(x, 1.5, axes=[1]), tf.roll(x, shift=[2, -1], axis=[0, 1]), tf.tile(x, [2, 1]),
            tf.sort(x, axis=1, direction="DESCENDING"))


def _in_top_k(x):
    return tf.math.in_top_k([3, 0, 1, 4, 2, 1], x, 2)


def _gather_scatter(x):
    picked = tf.gather(x, [3, 0, 2], axis=1)
    rows = tf.gather_nd(x, [[0, 1], [0, 4]])
    updated = tf.tensor_scatter_nd_update(x, [[0, 2], [0, 5]], tf.ones((2, 7)))
    return picked, rows, updated


def _scatter_add(x):
    return tf.tensor_scatter_nd_add(x, [[0, 1], [0, 4], [0, 1]], tf.reshape(tf.range(21, dtype=tf.float32), (3, 7)))


def _rfft(x):
    return tf.abs(tf.signal.rfft(x))


def _top_k(x):
    values, indices = tf.math.top_k(x, k=4)
    return values, indices


def _where(x):
    return tf.where(x > 0.0, x, 0.1 * x), tf.where(x > 0.5)


def _while_loop(x):
    def body(i, v):
        return i + 1, 0.9 * v + tf.sin(v)

    _, out = tf.while_loop(lambda i, v: i < 5, body, (tf.constant(0), x))
    return out


def _while_until(x):
    """A loop ended by the values: halve until the norm is below 1 (value-dependent trip count)."""
    steps, out = tf.while_loop(lambda n, v: tf.norm(v) > 1.0, lambda n, v: (n + 1, v / 2.0), (tf.constant(0), x))
    return steps, out


def _while_accumulate(x):
    """tf.while_loop with a TensorArray accumulation and maximum_iterations."""
    def body(i, v, acc):
        v = tf.tanh(v @ tf.transpose(v)) @ v
        return i + 1, v, acc.write(i, tf.reduce_sum(v, axis=0))

    acc = tf.TensorArray(tf.float32, size=6)
    _, v, acc = tf.while_loop(lambda i, v, acc: i < 6, body, (tf.constant(0), x, acc), maximum_iterations=8)
    return v, acc.stack()


def _nested_while(x):
    def inner(j, v):
        return j + 1, tf.where(v > 0.0, v * 0.5, v + 0.25)

    def outer(i, v):
        _, v = tf.while_loop(lambda j, v: j < i + 1, inner, (tf.constant(0), v))
        return i + 1, v + tf.cos(v)

    return tf.while_loop(lambda i, v: i < 3, outer, (tf.constant(0), x))[1]


def _map_fold(x):
    """tf.map_fn and tf.foldl (while loops over a TensorArray of the input's rows)."""
    mapped = tf.map_fn(lambda row: tf.reduce_max(row) - row, x)
    folded = tf.foldl(lambda a, row: a * 0.9 + tf.sin(row), x, initializer=tf.zeros((5,)))
    return mapped, folded


def _tf_scan(x):
    return tf.scan(lambda a, row: 0.5 * a + row, x)


def _cond(x):
    """tf.cond on a value, in a loop and outside."""
    picked = tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.exp(x), lambda: -x)

    def body(i, v):
        return i + 1, tf.cond(i % 2 == 0, lambda: v * 2.0, lambda: v - 1.0)

    return picked, tf.while_loop(lambda i, v: i < 4, body, (tf.constant(0), x))[1]


MODELS: dict[str, Callable[[], Program]] = {
    # Keras applications (weights=None, measured BatchNorm statistics)
    "mobilenet_v2": _application(keras.applications.MobileNetV2),
    "resnet50": _application(keras.applications.ResNet50),
    "efficientnet_b0": _application(keras.applications.EfficientNetB0),
    "densenet121": _application(keras.applications.DenseNet121),
    "convnext_tiny": _application(keras.applications.ConvNeXtTiny),
    # Keras sequence models
    "lstm": _sequence(lambda: [keras.layers.LSTM(16, return_sequences=True), keras.layers.LSTM(8),
                               keras.layers.Dense(4)]),
    "gru": _sequence(lambda: [keras.layers.GRU(16), keras.layers.Dense(4)]),
    "bidirectional_lstm": _sequence(lambda: [keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True)),
                                             keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(4)]),
    "transformer_encoder": _encoder,
    "dense_gelu_exact": _dense_gelu_exact,  # a LIMITS entry at both opsets
    # tf.function programs
    "conv1d": _layers((24, 5), _conv1d),
    "conv3d": _layers((6, 12, 12, 3), _conv3d),
    "conv2d_forms": _layers((20, 20, 3), _conv2d_forms),
    "image_resize": _function(_resize, ((1, 16, 16, 3), tf.float32)),
    "image_resize_bicubic": _function(_resize_bicubic, ((1, 16, 16, 3), tf.float32)),
    "image_resize_v1": _function(_resize_v1, ((1, 16, 16, 3), tf.float32)),
    "image_resize_area": _function(_resize_area, ((1, 16, 16, 3), tf.float32)),
    "crop_and_resize": _function(_crop_and_resize, ((1, 16, 16, 3), tf.float32)),
    "nn_activations": _function(_nn_activations, ((2, 6, 7), tf.float32)),
    "nn_image": _function(_nn_image, ((1, 16, 16, 4), tf.float32)),
    "nn_sequence": _function(_nn_sequence, ((6, 5), tf.float32)),
    "in_top_k": _function(_in_top_k, ((6, 5), tf.float32)),
    "gather_scatter": _function(_gather_scatter, ((1, 8, 7), tf.float32)),
    "scatter_add": _function(_scatter_add, ((1, 8, 7), tf.float32)),
    "rfft": _function(_rfft, ((2, 16), tf.float32)),
    "top_k": _function(_top_k, ((3, 10), tf.float32)),
    "where": _function(_where, ((4, 5), tf.float32)),
    "while_loop": _function(_while_loop, ((3, 4), tf.float32)),
    "while_until": _function(_while_until, ((3, 4), tf.float32)),
    "while_accumulate": _function(_while_accumulate, ((4, 4), tf.float32)),
    "nested_while": _function(_nested_while, ((3, 4), tf.float32)),
    "map_fold": _function(_map_fold, ((6, 5), tf.float32)),
    "tf_scan": _function(_tf_scan, ((6, 5), tf.float32)),
    "cond": _function(_cond, ((3, 4), tf.float32)),
}
OPSETS = (13, 17)
# converted at opset 13 only (the large applications: each conversion takes tens of seconds)
ONE_OPSET = {"resnet50", "efficientnet_b0", "densenet121", "convnext_tiny"}
# tf2onnx's failures (not the reader's), with the measured reason: onnxruntime refuses the file it writes
LIMITS: dict[tuple[str, int], str] = {
    ("scatter_add", 13): "tf2onnx 1.17 writes TensorScatterAdd as a TF op in the ONNX domain below opset 16 "
                         "(ScatterND's reduction); onnxruntime: 'No Op registered for TensorScatterAdd'",
    ("dense_gelu_exact", 13): "tf2onnx 1.17 writes Keras 3's exact GELU with an Erfc node, no ONNX op; "
                              "onnxruntime: 'No Op registered for Erfc'",
    ("dense_gelu_exact", 17): "as at opset 13: an Erfc node, which onnxruntime refuses",
    ("convnext_tiny", 13): "tf2onnx 1.17 leaves Keras 3's depthwise convolution in ConvNeXt as a TF "
                           "StatefulPartitionedCall node; onnxruntime: 'No Op registered for StatefulPartitionedCall'",
    ("image_resize_bicubic", 13): "tf2onnx 1.17 writes bicubic resize on the NHWC tensor (scales 1, h, w, 1); "
                                  "onnxruntime: \"'Cubic' mode only supports 2-D inputs or 4-D inputs with the "
                                  "outermost 2 scale values being 1\"",
    ("image_resize_bicubic", 17): "as at opset 13: a cubic Resize over NHWC, which onnxruntime refuses",
    ("in_top_k", 13): "tf2onnx 1.17 has no conversion for InTopKV2 and leaves it in the graph; onnxruntime: "
                      "'No Op registered for InTopKV2'",
    ("in_top_k", 17): "as at opset 13: InTopKV2 left unconverted",
    ("tf_scan", 13): "tf2onnx 1.17 fails on tf.scan's while loop ('While loop couldn't find scan output index "
                     "for nodes') and leaves it unconverted; onnxruntime: 'Invalid tensor data type 0'",
    ("tf_scan", 17): "as at opset 13: tf.scan's while loop left unconverted",
}
# compared with onnxruntime without TensorFlow's own outputs widening the tolerance (see
# tests/support/corpus.py's ``framework``), with the reason: tf2onnx writes an approximation of the TF op, so
# TensorFlow's distance from onnxruntime measures tf2onnx, not float32 rounding
NOT_TF_NUMBERS = {
    "image_resize_area": "tf2onnx writes ResizeArea as a nearest Resize (asymmetric); TensorFlow's area "
                         "averages differ from it by 1.85 on values spanning 4.8",
    "crop_and_resize": "tf2onnx writes nearest CropAndResize with Resize's round_prefer_floor, TensorFlow "
                       "rounds halves away from zero: 3.66 apart on values spanning 6.7",
}
# compared eagerly only, with the reason: the generated module names these nodes in VALUE_DEPENDENT_NODES and
# wb.jit_forward refuses it (forward(params, x) runs their jit-able parts jitted)
EAGER_ONLY = {
    "where": "tf.where(condition)'s indices: NonZero, an output shape that depends on values",
}

CASES = [(name, opset) for name in MODELS for opset in OPSETS if opset == 13 or name not in ONE_OPSET]


def convert(name: str, opset: int) -> tuple[onnx.ModelProto, list[np.ndarray], list[np.ndarray] | None]:
    """The program converted by tf2onnx at ``opset``, its inputs, and TensorFlow's own outputs (None when
    tf2onnx's conversion is an approximation: ``NOT_TF_NUMBERS``)."""
    program = MODELS[name]()
    if program.keras:
        proto, _ = tf2onnx.convert.from_keras(program.run, input_signature=program.signature, opset=opset)
        outputs = program.run(*program.feeds, training=False)
    else:
        proto, _ = tf2onnx.convert.from_function(program.run, input_signature=program.signature, opset=opset)
        outputs = program.run(*program.feeds)
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    framework = None if name in NOT_TF_NUMBERS else [np.asarray(output) for output in outputs]
    return proto, program.feeds, framework


def limit_error(name: str, opset: int) -> str:
    """The error of a ``LIMITS`` entry, which must still fail: tf2onnx's conversion or onnxruntime's run."""
    try:
        model, feeds, _ = convert(name, opset)
        run_onnx(model, feeds)
    except Exception as error:  # noqa: BLE001 - tf2onnx and onnxruntime raise their own exception types
        return f"{type(error).__name__}: {error}"
    raise AssertionError(f"{name} at opset {opset} converts and runs in onnxruntime now: remove it from LIMITS")


def check(model: onnx.ModelProto, feeds: list[np.ndarray], *, jit: bool,
          framework: list[np.ndarray] | None) -> dict[str, float]:
    """Generated JAX vs onnxruntime on ``model``, eagerly and (``jit``) under jax.jit; the table's figures."""
    expected = run_onnx(model, feeds)
    forward, params = wb.to_jax(model)
    eager = forward(params, *feeds)
    ratios = assert_outputs_match(model, expected, eager if isinstance(eager, tuple) else (eager,),
                                  framework=framework)
    first = 0.0
    if jit:
        run = wb.jit_forward(forward, params)
        start = time.perf_counter()
        got = jax.block_until_ready(run(*feeds))
        first = time.perf_counter() - start
        ratios += assert_outputs_match(model, expected, got if isinstance(got, tuple) else (got,),
                                       framework=framework)
    return {"nodes": len(model.graph.node), "depth": depth(model), "first_jit_s": first,
            "error_over_tolerance": max(ratios, default=0.0)}


@pytest.mark.parametrize(("name", "opset"), CASES, ids=[f"{n}-opset{o}" for n, o in CASES])
def test_tf2onnx_model_matches_onnxruntime(name, opset):
    if (name, opset) in LIMITS:
        limit_error(name, opset)
        pytest.skip(LIMITS[name, opset])
    model, feeds, framework = convert(name, opset)
    check(model, feeds, jit=name not in EAGER_ONLY, framework=framework)


def main(names: list[str]) -> None:
    """Print the docs' table: one row per model and opset (of the named models, or all)."""
    print("| model | opset | nodes | depth | first jit (s) | max error / tolerance |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, opset in CASES:
        if names and name not in names:
            continue
        if (name, opset) in LIMITS:
            try:
                limit_error(name, opset)
            except AssertionError as error:
                print(f"| {name} | {opset} | FAILED: {error} ||||")
                continue
            print(f"| {name} | {opset} | limit: {LIMITS[name, opset]} ||||")
            continue
        try:
            model, feeds, framework = convert(name, opset)
            row = check(model, feeds, jit=name not in EAGER_ONLY, framework=framework)
        except Exception as error:  # noqa: BLE001 - the table reports a failing model and goes on
            print(failure_row((name, opset), error))
            continue
        print(table_row((name, opset), row), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
