"""Quantized programs written with Google's AQT (aqtp: Accurate Quantized Training), as its documentation and
Flax example write them.

An AQT dot_general quantizes both operands to int8 (per-channel absmax scales), multiplies them with int32
accumulation and rescales: in ``QuantMode.TRAIN`` on every call (fake-quant training, and the backward pass
quantized too), in ``SERVE`` against int8 weights frozen by a ``CONVERT`` pass. The programs: a Flax MLP in
training mode; the same MLP converted and served from int8 weights; AQT's example CNN (AqtConvGeneralDilated,
AqtEinsum, BatchNorm) served; a full training step whose gradients flow through int8 forward and backward
dot_generals with stochastic rounding.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(5053)


def _normal(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * _RNG.standard_normal(shape)).astype(np.float32)


def _mlp_class() -> Any:
    """A Flax Linen MLP whose Dense layers take AQT's dot_general, in the given weight and activation modes."""
    import flax.linen as nn
    from aqt.jax.v2 import config as aqt_config
    from aqt.jax.v2 import utils
    from aqt.jax.v2.flax import aqt_flax

    class QuantizedMlp(nn.Module):
        weights_mode: utils.QuantMode = utils.QuantMode.TRAIN

        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            dot_general = functools.partial(
                aqt_flax.AqtDotGeneral, aqt_config.fully_quantized(fwd_bits=8, bwd_bits=8),
                rhs_quant_mode=self.weights_mode, lhs_quant_mode=utils.QuantMode.TRAIN,
                lhs_freeze_mode=aqt_flax.FreezerMode.NONE, rhs_freeze_mode=aqt_flax.FreezerMode.CALIBRATION_AND_VALUE)
            x = nn.relu(nn.Dense(48, dot_general_cls=dot_general)(x))
            x = nn.relu(nn.Dense(48, dot_general_cls=dot_general)(x))
            return nn.Dense(5, dot_general_cls=dot_general)(x)

    return QuantizedMlp


_KEY = {"params": jax.random.key(0)}  # AQT's layers ask for a key (stochastic rounding is off in the forward pass)


def _converted(converting: Any, variables: Any, sample: np.ndarray) -> tuple[Any, Any]:
    """AQT's CONVERT pass: the outputs and the variables with the frozen int8 weights and their scales."""
    return converting.apply(variables, sample, rngs=_KEY, mutable=True)


@program("aqt_flax_mlp_fake_quant", library="aqtp",
         origin="AQT's Flax recipe: nn.Dense(dot_general_cls=AqtDotGeneral(fully_quantized(fwd_bits=8, bwd_bits=8))) "
                "in QuantMode.TRAIN: both operands quantized to int8 on every call, int8 x int8 -> int32 dot_general")
def aqt_flax_mlp_fake_quant() -> Built:
    model = _mlp_class()()
    variables = model.init(_KEY, _normal(2, 20))

    def forward(x: jax.Array) -> jax.Array:
        return model.apply(variables, x, rngs=_KEY)

    return Built(forward, [("B", 20)], [_normal(6, 20)])


@program("aqt_flax_mlp_int8_serving", library="aqtp",
         origin="AQT's serving conversion: the MLP applied in QuantMode.CONVERT (mutable=True) freezes int8 weights "
                "and their scales into the 'aqt' collection; QuantMode.SERVE then multiplies the dynamically "
                "quantized activations by the frozen int8 weights")
def aqt_flax_mlp_int8_serving() -> Built:
    from aqt.jax.v2 import utils

    mlp = _mlp_class()
    x = _normal(2, 20)
    variables = mlp().init(_KEY, x)
    _, frozen = _converted(mlp(weights_mode=utils.QuantMode.CONVERT), variables, x)
    serving = mlp(weights_mode=utils.QuantMode.SERVE)

    def forward(x: jax.Array) -> jax.Array:
        # the float kernels are still declared by nn.Dense but SERVE reads the frozen int8 ones
        return serving.apply(frozen, x, rngs=_KEY)

    return Built(forward, [("B", 20)], [_normal(6, 20)])


def _cnn_class() -> Any:
    """A small CNN in the form of AQT's Flax example: AQT convolutions with BatchNorm, average pools, AQT Dense
    layers and an AQT einsum against a table of class embeddings."""
    import flax.linen as nn
    from aqt.jax.v2 import config as aqt_config
    from aqt.jax.v2 import utils
    from aqt.jax.v2.flax import aqt_flax

    class QuantizedCnn(nn.Module):
        weights_mode: utils.QuantMode = utils.QuantMode.TRAIN

        @nn.compact
        def __call__(self, images: jax.Array) -> jax.Array:
            conv_config = aqt_config.default_unquantized_config()
            conv_config.fwd = aqt_config.conv_general_dilated_make(2, lhs_bits=8, rhs_bits=8)
            modes = {"lhs_quant_mode": utils.QuantMode.TRAIN, "rhs_quant_mode": self.weights_mode,
                     "lhs_freeze_mode": aqt_flax.FreezerMode.NONE,
                     "rhs_freeze_mode": aqt_flax.FreezerMode.CALIBRATION_AND_VALUE}
            conv = functools.partial(aqt_flax.AqtConvGeneralDilated, conv_config, **modes)
            dense = functools.partial(aqt_flax.AqtDotGeneral, aqt_config.fully_quantized(fwd_bits=8, bwd_bits=8),
                                      **modes)
            x = images
            for features in (8, 16):
                x = nn.Conv(features, (3, 3), conv_general_dilated_cls=conv)(x)
                x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
            x = nn.relu(nn.Dense(32, dot_general_cls=dense)(x.reshape((x.shape[0], -1))))
            classes = self.param("classes", nn.initializers.normal(0.5), (10, 32))
            einsum = aqt_flax.AqtEinsum(aqt_config.fully_quantized(fwd_bits=8, bwd_bits=8),
                                        lhs_quant_mode=utils.QuantMode.TRAIN, rhs_quant_mode=utils.QuantMode.TRAIN,
                                        lhs_freeze_mode=aqt_flax.FreezerMode.NONE,
                                        rhs_freeze_mode=aqt_flax.FreezerMode.NONE)
            return einsum("bd,cd->bc", x, classes)

    return QuantizedCnn


def _with_batch_statistics(variables: Any, seed: int) -> Any:
    """``variables`` with BatchNorm's running means and variances drawn away from 0 and 1 (as after training)."""
    rng = np.random.default_rng(seed)

    def drawn(path: Any, value: jax.Array) -> jax.Array:
        noise = 0.2 * rng.standard_normal(value.shape)
        return jnp.asarray(np.abs(noise) + 0.6 if "var" in jax.tree_util.keystr(path) else noise, jnp.float32)

    return {**variables, "batch_stats": jax.tree_util.tree_map_with_path(drawn, variables["batch_stats"])}


@program("aqt_cnn_int8_serving", library="aqtp",
         origin="AQT's Flax CNN example served: AqtConvGeneralDilated and AqtDotGeneral weights frozen to int8 "
                "(QuantMode.CONVERT, then SERVE), BatchNorm in inference, an AqtEinsum against class embeddings")
def aqt_cnn_int8_serving() -> Built:
    from aqt.jax.v2 import utils

    cnn = _cnn_class()
    images = _normal(2, 16, 16, 1)
    variables = _with_batch_statistics(cnn().init(_KEY, images), 31)
    _, frozen = _converted(cnn(weights_mode=utils.QuantMode.CONVERT), variables, images)
    serving = cnn(weights_mode=utils.QuantMode.SERVE)

    def forward(images: jax.Array) -> jax.Array:
        return serving.apply(frozen, images, rngs=_KEY)

    return Built(forward, [("B", 16, 16, 1)], [_normal(3, 16, 16, 1)])


@program("aqt_quantized_training_step", library="aqtp",
         origin="AQT's fully quantized training: the MLP's gradients through int8 forward and backward "
                "dot_generals (fully_quantized(fwd_bits=8, bwd_bits=8), stochastic rounding of the gradients from "
                "the step's key), softmax cross-entropy and an SGD update: one exported step")
def aqt_quantized_training_step() -> Built:
    import flax.linen as nn
    import optax
    from aqt.jax.v2 import config as aqt_config
    from aqt.jax.v2.flax import aqt_flax

    class Mlp(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            config = aqt_config.fully_quantized(fwd_bits=8, bwd_bits=8, use_stochastic_rounding=True)
            dense = functools.partial(aqt_flax.AqtDotGeneral, config)
            x = nn.tanh(nn.Dense(24, dot_general_cls=dense)(x))
            return nn.Dense(4, dot_general_cls=dense)(x)

    model = Mlp()
    params = model.init(_KEY, _normal(2, 12))["params"]

    def train_step(params: Any, x: jax.Array, labels: jax.Array, key_data: jax.Array) -> tuple[Any, jax.Array]:
        rngs = {"params": jax.random.wrap_key_data(key_data)}

        def loss(p: Any) -> jax.Array:
            logits = model.apply({"params": p}, x, rngs=rngs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda w, g: w - 0.5 * g, params, grads), value

    key_data = np.asarray(jax.random.key_data(jax.random.key(7)))
    return Built(train_step, [params, ("B", 12), jax.ShapeDtypeStruct(("B",), jnp.int32),
                              jax.ShapeDtypeStruct(key_data.shape, key_data.dtype)],
                 [params, _normal(6, 12), _RNG.integers(0, 4, 6).astype(np.int32), key_data])
