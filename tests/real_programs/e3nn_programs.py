"""Programs from e3nn-jax (E(3)-equivariant networks), written as its documentation writes them: spherical
harmonics of edge vectors and their tensor product, and a small Flax network of equivariant linear layers
with a gated nonlinearity. The number of vectors ``N`` is symbolic.
"""

from __future__ import annotations

import jax
import numpy as np

from tests.real_programs.catalogue import Built, program


@program("e3nn_spherical_harmonics", library="e3nn-jax", rtol=1e-4, atol=1e-5,
         origin="e3nn-jax: spherical harmonics (l = 0, 1, 2) of edge vectors and their full tensor product")
def e3nn_spherical_harmonics() -> Built:
    import e3nn_jax as e3nn

    def harmonics(vectors):
        sh = e3nn.spherical_harmonics("0e + 1o + 2e", vectors, normalize=True)
        return sh.array, e3nn.tensor_product(sh, sh).array

    vectors = np.random.default_rng(6).standard_normal((5, 3)).astype(np.float32)
    return Built(harmonics, [("N", 3)], [vectors])


@program("e3nn_gated_network", library="e3nn-jax", rtol=1e-4, atol=1e-5,
         origin="e3nn-jax: Flax network of equivariant linear layers (e3nn.flax.Linear) and a gated nonlinearity")
def e3nn_gated_network() -> Built:
    import e3nn_jax as e3nn
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, vectors: jax.Array) -> jax.Array:
            features = e3nn.spherical_harmonics("0e + 1o + 2e", vectors, normalize=True)
            features = e3nn.gate(e3nn.flax.Linear("8x0e + 4x0e + 4x1o")(features))
            return e3nn.flax.Linear("2x0e + 1o")(features).array

    vectors = np.random.default_rng(7).standard_normal((5, 3)).astype(np.float32)
    net = Net()
    params = net.init(jax.random.key(0), vectors)
    return Built(lambda v: net.apply(params, v), [("N", 3)], [vectors])
