"""Mixed-precision programs as their libraries' documentation writes them: jmp's policies over a Haiku MLP
(hk.mixed_precision.set_policy) and its dynamic loss scaling in a float16 training step; Flax Linen and NNX
models whose compute (``dtype``) or parameters (``param_dtype``) are bfloat16 or float16.

The comparison is with JAX running the same half-precision program; the tolerances are those of half
precision (bfloat16 keeps 8 bits of mantissa, float16 11).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(5051)


def _normal(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * _RNG.standard_normal(shape)).astype(np.float32)


@program("jmp_haiku_mlp_half_compute", library="jmp",
         origin="jmp's Haiku recipe: hk.mixed_precision.set_policy(hk.nets.MLP, "
                "jmp.get_policy('params=float32,compute=float16,output=float32')), a LayerNorm kept in float32",
         rtol=2e-2, atol=2e-2)
def jmp_haiku_mlp_half_compute() -> Built:
    import haiku as hk
    import jmp

    hk.mixed_precision.set_policy(hk.nets.MLP, jmp.get_policy("params=float32,compute=float16,output=float32"))
    hk.mixed_precision.set_policy(hk.LayerNorm, jmp.get_policy("float32"))

    def net(x: jax.Array) -> jax.Array:
        hidden = hk.nets.MLP([32, 32], activation=jax.nn.gelu, activate_final=True)(x)
        return hk.Linear(4)(hk.LayerNorm(-1, create_scale=True, create_offset=True)(hidden))

    model = hk.without_apply_rng(hk.transform(net))
    params = model.init(jax.random.key(0), _normal(2, 10))
    hk.mixed_precision.clear_policy(hk.nets.MLP)
    hk.mixed_precision.clear_policy(hk.LayerNorm)

    def forward(x: jax.Array) -> jax.Array:
        # the policies are read while tracing: set them for this call only, as a served model is traced once
        hk.mixed_precision.set_policy(hk.nets.MLP, jmp.get_policy("params=float32,compute=float16,output=float32"))
        hk.mixed_precision.set_policy(hk.LayerNorm, jmp.get_policy("float32"))
        try:
            return model.apply(params, x)
        finally:
            hk.mixed_precision.clear_policy(hk.nets.MLP)
            hk.mixed_precision.clear_policy(hk.LayerNorm)

    return Built(forward, [("B", 10)], [_normal(3, 10)])


@program("jmp_dynamic_loss_scale_step", library="jmp",
         origin="jmp's loss-scaling recipe: a float16-compute loss scaled by jmp.DynamicLossScale, gradients "
                "unscaled, jmp.all_finite, the scale adjusted and the update skipped by jmp.select_tree",
         rtol=2e-2, atol=2e-3)
def jmp_dynamic_loss_scale_step() -> Built:
    import jmp

    policy = jmp.get_policy("params=float32,compute=float16,output=float32")
    params = {"w1": jnp.asarray(_normal(6, 16, scale=0.4)), "w2": jnp.asarray(_normal(16, 1, scale=0.4))}

    def loss(p: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
        p, x = policy.cast_to_compute((p, x))
        prediction = jnp.tanh(x @ p["w1"]) @ p["w2"]
        return policy.cast_to_output(jnp.mean((prediction[:, 0] - y.astype(prediction.dtype)) ** 2))

    def train_step(p: dict[str, jax.Array], scale: jax.Array, counter: jax.Array, x: jax.Array, y: jax.Array) -> Any:
        loss_scale = jmp.DynamicLossScale(scale, counter, period=4)
        value, grads = jax.value_and_grad(lambda q: loss_scale.scale(loss(q, x, y)))(p)
        grads = loss_scale.unscale(grads)
        finite = jmp.all_finite(grads)
        loss_scale = loss_scale.adjust(finite)
        updated = jax.tree.map(lambda w, g: w - 0.1 * g, p, grads)
        p = jmp.select_tree(finite, updated, p)
        return p, loss_scale.loss_scale, loss_scale.counter, loss_scale.unscale(value), finite

    # onnxruntime's CPU provider refuses a float16 ScatterND adding (the gradient of prediction[:, 0] over a
    # symbolic batch) when it runs: exported for it, that node computes in float32 between casts
    return Built(train_step, [params, (), jax.ShapeDtypeStruct((), jnp.int32), ("B", 6), ("B",)],
                 [params, np.float32(2.0**10), np.int32(3), _normal(8, 6), _normal(8)], runtime="onnxruntime-cpu")


@program("linen_bfloat16_transformer_block", library="flax",
         origin="a Flax Linen pre-norm transformer block with dtype=jnp.bfloat16 (the compute) and float32 "
                "parameters, as Flax's examples configure mixed precision (nn.MultiHeadDotProductAttention, "
                "nn.Dense, nn.LayerNorm), exported for onnxruntime's CPU provider (runtime='onnxruntime-cpu')",
         rtol=5e-2, atol=5e-2)
def linen_bfloat16_transformer_block() -> Built:
    import flax.linen as nn

    class Block(nn.Module):
        dtype: Any = jnp.bfloat16

        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            y = nn.LayerNorm(dtype=self.dtype)(x)
            mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
            x = x + nn.MultiHeadDotProductAttention(num_heads=4, dtype=self.dtype)(y, y, mask=mask)
            y = nn.LayerNorm(dtype=self.dtype)(x)
            y = nn.Dense(64, dtype=self.dtype)(y)
            return x + nn.Dense(x.shape[-1], dtype=self.dtype)(nn.gelu(y))

    block = Block()
    variables = block.init(jax.random.key(1), _normal(1, 5, 16))

    def forward(x: jax.Array) -> jax.Array:
        return block.apply(variables, x).astype(jnp.float32)

    # onnxruntime's CPU provider has no bfloat16 MatMul: the export computes those nodes in float32 between casts
    return Built(forward, [("B", "T", 16)], [_normal(2, 7, 16)], runtime="onnxruntime-cpu")


@program("nnx_float16_params_mlp", library="flax",
         origin="a Flax NNX MLP whose parameters are float16 (param_dtype=jnp.float16) and computed in float16, "
                "with a float32 LayerNorm on its output: a model cast down for serving", rtol=2e-2, atol=2e-2)
def nnx_float16_params_mlp() -> Built:
    from flax import nnx

    class Mlp(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            half = {"dtype": jnp.float16, "param_dtype": jnp.float16, "rngs": rngs}
            self.hidden = nnx.Linear(12, 32, **half)
            self.out = nnx.Linear(32, 8, **half)
            self.norm = nnx.LayerNorm(8, dtype=jnp.float32, param_dtype=jnp.float32, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            y = self.out(nnx.relu(self.hidden(x.astype(jnp.float16))))
            return self.norm(y.astype(jnp.float32))

    return Built(Mlp(nnx.Rngs(3)), [("B", 12)], [_normal(4, 12)])
