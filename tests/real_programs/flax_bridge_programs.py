"""Flax's bridge between its two APIs (``flax.nnx.bridge``), as the NNX migration guide writes it.

- ``ToNNX``: a Linen encoder (Conv, BatchNorm, Dropout) wrapped as an NNX submodule of an NNX classifier,
  its variables created by ``nnx.bridge.lazy_init`` from a sample input, served after ``model.eval()``
  (BatchNorm on its running statistics, Dropout off); the wrapper still splits its Rngs on every call.
- ``to_linen``: an NNX MLP used as a layer of a Linen model, its parameters living in the Linen variables
  (``ToLinen_0``), initialised and applied the Linen way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program


def _normal(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@program("nnx_bridge_linen_encoder", library="flax.nnx",
         origin="flax's NNX migration guide: nnx.bridge.ToNNX(a Linen Conv/BatchNorm/Dropout encoder, rngs) inside "
                "an NNX classifier, initialised by nnx.bridge.lazy_init, served in eval mode")
def nnx_bridge_linen_encoder() -> Built:
    import flax.linen as nn
    from flax import nnx

    class LinenEncoder(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
            x = nn.Conv(8, (3, 3))(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(0.3, deterministic=not train)(nn.relu(x))
            return jnp.mean(x, axis=(1, 2))

    class Classifier(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.encoder = nnx.bridge.ToNNX(LinenEncoder(), rngs=rngs)
            self.head = nnx.Linear(8, 5, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.head(self.encoder(x))

    model = Classifier(nnx.Rngs(0, dropout=1))
    nnx.bridge.lazy_init(model.encoder, jnp.ones((1, 8, 8, 3)))
    # running statistics as a trained encoder has them (fresh ones are 0 and 1: BatchNorm an identity)
    statistics = model.encoder.BatchNorm_0  # the Linen collections' variables, as a dict per Linen submodule
    statistics["mean"].value = jnp.asarray(_normal(1, 8) * 0.2)
    statistics["var"].value = jnp.asarray(np.random.default_rng(2).uniform(0.5, 2.0, 8).astype(np.float32))
    model.eval()
    return Built(model, [("B", 8, 8, 3)], [_normal(3, 2, 8, 8, 3)])


@program("linen_bridge_nnx_mlp", library="flax.linen",
         origin="flax's NNX migration guide: nnx.bridge.to_linen(an NNX Linear/LayerNorm MLP class, args) as a layer "
                "of a Linen model, its parameters in the Linen variables, init and apply the Linen way")
def linen_bridge_nnx_mlp() -> Built:
    import flax.linen as nn
    from flax import nnx

    class NnxMlp(nnx.Module):
        def __init__(self, features_in: int, features_out: int, *, rngs: nnx.Rngs) -> None:
            self.hidden = nnx.Linear(features_in, 32, rngs=rngs)
            self.norm = nnx.LayerNorm(32, rngs=rngs)
            self.out = nnx.Linear(32, features_out, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.out(nnx.gelu(self.norm(self.hidden(x))))

    class LinenModel(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = nn.Dense(16)(x)
            return nn.softmax(nnx.bridge.to_linen(NnxMlp, 16, 4)(x))

    model = LinenModel()
    variables = model.init(jax.random.key(0), jnp.ones((1, 10)))

    def forward(x: jax.Array) -> jax.Array:
        return model.apply(variables, x)

    return Built(forward, [("B", 10)], [_normal(4, 3, 10)])
