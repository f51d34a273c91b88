"""Programs from FlowJAX (normalising flows on Equinox) and Penzai (legible neural networks), written as their
documentation writes them.

FlowJAX: a masked autoregressive flow's log density of a batch ``B`` of points and samples drawn from a key,
and a coupling flow's log density. Penzai: a small Llama-like transformer built from
``LlamalikeTransformerConfig`` with seeded parameters, called on named-axis token arrays.

flowjax (19.1.2, + paramax) and penzai (0.2.5, + ordered-set) are in the test extra and the lock; CI runs
flowjax_coupling, the other two are in the full catalogue only (catalogue.FULL_ONLY).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program


def _points(seed: int, rows: int, features: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, features)).astype(np.float32)


@program("flowjax_masked_autoregressive", library="flowjax",
         origin="FlowJAX: masked_autoregressive_flow over a Normal base: log_prob of a batch and samples from a key")
def flowjax_masked_autoregressive() -> Built:
    from flowjax.distributions import Normal
    from flowjax.flows import masked_autoregressive_flow

    flow = masked_autoregressive_flow(jax.random.key(0), base_dist=Normal(jnp.zeros(3)))

    def density_and_samples(points, key_data):
        return flow.log_prob(points), flow.sample(jax.random.wrap_key_data(key_data), (4,))

    key = np.asarray(jax.random.key_data(jax.random.key(1)))
    return Built(density_and_samples, [("B", 3), jax.ShapeDtypeStruct((2,), jnp.uint32)], [_points(0, 5, 3), key])


@program("flowjax_coupling", library="flowjax",
         origin="FlowJAX: coupling_flow (affine couplings with permutations) log_prob of a batch")
def flowjax_coupling() -> Built:
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow

    flow = coupling_flow(jax.random.key(2), base_dist=Normal(jnp.zeros(4)))
    return Built(flow.log_prob, [("B", 4)], [_points(1, 5, 4)])


@program("penzai_llamalike_transformer", library="penzai",
         origin="Penzai: build_llamalike_transformer (GQA, SwiGLU, RoPE) on named-axis tokens, parameters unbound")
def penzai_llamalike_transformer() -> Built:
    from penzai import pz
    from penzai.models.transformer.variants import llamalike_common

    config = llamalike_common.LlamalikeTransformerConfig(
        num_kv_heads=2, query_head_multiplier=2, embedding_dim=32, projection_dim=8, mlp_hidden_dim=64,
        num_decoder_blocks=2, vocab_size=50, mlp_variant="swiglu", tie_embedder_and_logits=False,
        rope_wavelength=10000.0, rms_norm_eps=1e-6, activation_dtype=jnp.float32)
    model = llamalike_common.build_llamalike_transformer(config, init_base_rng=jax.random.key(0))
    unbound, params = pz.unbind_params(model, freeze=True)

    def logits(tokens):
        out = pz.bind_variables(unbound, params)(pz.nx.wrap(tokens).tag("batch", "seq"))
        return out.untag("batch", "seq", "vocabulary").unwrap()

    tokens = np.random.default_rng(2).integers(0, 50, (2, 6)).astype(np.int32)
    return Built(logits, [jax.ShapeDtypeStruct((2, 6), jnp.int32)], [tokens])
