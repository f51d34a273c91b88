"""Programs from quax (array types by multiple dispatch over an Equinox model) and jaxlie (matrix Lie groups),
written as their documentation writes them.

quax: an Equinox MLP and a transformer block low-rank adapted with ``quax.examples.lora.loraify`` and called
through ``quax.quaxify`` (every matmul against a weight becomes ``x @ w + (x @ a) @ b``); a tridiagonal
matrix type whose matmul dispatches to a stencil of scatter-adds; a sparse BCOO array multiplied into a
dense one. jaxlie: SE(3) forward kinematics of a serial chain (exp of twists composed down the chain under
lax.scan, points carried into the base frame, log back) and SO(3) quaternion work (normalise, compose,
interpolate by exp/log, Euler angles back).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(4949)


def _normal(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * _RNG.standard_normal(shape)).astype(np.float32)


def _lora_b_drawn(model: Any, seed: int) -> Any:
    """``model`` with every LoRA ``b`` factor drawn at random: loraify starts them at zero (so an untrained
    adapter changes nothing), which would leave the low-rank path out of the comparison."""
    from quax.examples.lora import LoraArray

    rng = np.random.default_rng(seed)

    def draw(leaf: Any) -> Any:
        if isinstance(leaf, LoraArray):
            return eqx.tree_at(lambda x: x.b, leaf, jnp.asarray(0.2 * rng.standard_normal(leaf.b.shape), jnp.float32))
        return leaf

    return jax.tree_util.tree_map(draw, model, is_leaf=lambda x: isinstance(x, LoraArray))


# ----------------------------------------------------------------------------- quax
@program("quax_lora_mlp", library="quax",
         origin="quax's LoRA example: an eqx.nn.MLP loraify'd at rank 2 and called through quax.quaxify, vmapped")
def quax_lora_mlp() -> Built:
    import quax
    from quax.examples.lora import loraify

    mlp = eqx.nn.MLP(6, 3, width_size=16, depth=2, activation=jax.nn.gelu, key=jax.random.key(1))
    lora_mlp = _lora_b_drawn(loraify(mlp, rank=2, scale=0.3, key=jax.random.key(2)), 21)

    def forward(x: jax.Array) -> jax.Array:
        return jax.vmap(quax.quaxify(lora_mlp))(x)

    return Built(forward, [("B", 6)], [_normal(4, 6)])


class _Block(eqx.Module):
    """A pre-norm transformer block of Equinox layers: multi-head self-attention and an MLP."""

    attention: eqx.nn.MultiheadAttention
    norm1: eqx.nn.LayerNorm
    norm2: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, dim: int, heads: int, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.attention = eqx.nn.MultiheadAttention(heads, dim, key=k1)
        self.norm1 = eqx.nn.LayerNorm(dim)
        self.norm2 = eqx.nn.LayerNorm(dim)
        self.mlp = eqx.nn.MLP(dim, dim, width_size=2 * dim, depth=1, activation=jax.nn.gelu, key=k2)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.vmap(self.norm1)(x)
        x = x + self.attention(y, y, y)
        return x + jax.vmap(self.mlp)(jax.vmap(self.norm2)(x))


@program("quax_lora_transformer_block", library="quax",
         origin="quax's LoRA over an Equinox transformer block: attention projections and MLP adapted at rank 4")
def quax_lora_transformer_block() -> Built:
    import quax
    from quax.examples.lora import loraify

    block = _lora_b_drawn(loraify(_Block(16, 4, jax.random.key(3)), rank=4, scale=0.2, key=jax.random.key(4)), 22)

    def forward(tokens: jax.Array) -> jax.Array:
        return jax.vmap(quax.quaxify(block))(tokens)

    return Built(forward, [("B", "T", 16)], [_normal(2, 7, 16)])


@program("quax_tridiagonal_matmul", library="quax",
         origin="quax's structured-matrices example: a TridiagonalMatrix times a batch of vectors and a matrix, "
                "dispatched to its stencil (scatter-adds) instead of a dense matmul")
def quax_tridiagonal_matmul() -> Built:
    import quax
    from quax.examples.structured_matrices import TridiagonalMatrix

    def apply(lower: jax.Array, main: jax.Array, upper: jax.Array, vectors: jax.Array) -> tuple[jax.Array, jax.Array]:
        def product(matrix: TridiagonalMatrix, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            return jax.vmap(lambda v: matrix @ v)(x), matrix @ jnp.tanh(x.T)

        return quax.quaxify(product)(TridiagonalMatrix(lower, main, upper), vectors)

    n = 9
    return Built(apply, [(n - 1,), (n,), (n - 1,), ("B", n)],
                 [_normal(n - 1), _normal(n), _normal(n - 1), _normal(3, n)])


@program("quax_sparse_bcoo", library="quax",
         origin="quax's sparse example: a BCOO array (data and coordinates as inputs) scaled, added to another "
                "and to a dense array, under quax.quaxify")
def quax_sparse_bcoo() -> Built:
    import quax
    from quax.examples.sparse import BCOO

    shape = (5, 6)

    def combine(data: jax.Array, indices: jax.Array, dense: jax.Array) -> jax.Array:
        def body(sparse: BCOO, other: BCOO, x: jax.Array) -> jax.Array:
            return (sparse * 2.0 + other) + x

        sparse = BCOO(data, indices, shape, allow_materialise=True)
        other = BCOO(jnp.sin(data), indices[::-1], shape, allow_materialise=True)
        return quax.quaxify(body)(sparse, other, dense)

    flat = _RNG.choice(30, size=8, replace=False)
    indices = np.stack(np.unravel_index(flat, shape), axis=-1).astype(np.int32)
    return Built(combine, [(8,), jax.ShapeDtypeStruct((8, 2), jnp.int32), shape], [_normal(8), indices, _normal(*shape)])


# ----------------------------------------------------------------------------- jaxlie
@program("jaxlie_se3_kinematic_chain", library="jaxlie",
         origin="jaxlie SE3: forward kinematics of a 5-link chain (exp of joint twists composed under lax.scan), "
                "points carried to the base, the end pose's log and inverse")
def jaxlie_se3_kinematic_chain() -> Built:
    import jaxlie

    links = jaxlie.SE3.exp(jnp.asarray(_normal(5, 6, scale=0.5)))

    def kinematics(joint_angles: jax.Array, points: jax.Array) -> tuple[jax.Array, ...]:
        def step(pose: jaxlie.SE3, inputs: tuple[jaxlie.SE3, jax.Array]) -> tuple[jaxlie.SE3, jax.Array]:
            link, angle = inputs
            joint = jaxlie.SE3.from_rotation(jaxlie.SO3.from_z_radians(angle))
            pose = pose @ link @ joint
            return pose, pose.translation()

        def chain(angles: jax.Array) -> tuple[jaxlie.SE3, jax.Array]:
            return jax.lax.scan(step, jaxlie.SE3.identity(), (links, angles))

        end, origins = jax.vmap(chain)(joint_angles)
        in_base = jax.vmap(lambda pose, p: pose @ p)(end, points)
        return end.log(), end.inverse().as_matrix(), origins, in_base

    return Built(kinematics, [("B", 5), ("B", 4, 3)], [_normal(3, 5), _normal(3, 4, 3)])


@program("jaxlie_so3_quaternions", library="jaxlie",
         origin="jaxlie SO3: quaternions normalised, composed, interpolated along the geodesic (exp(t log)), "
                "rotation matrices and roll-pitch-yaw read back")
def jaxlie_so3_quaternions() -> Built:
    import jaxlie

    def interpolate(q0: jax.Array, q1: jax.Array, t: jax.Array, vectors: jax.Array) -> tuple[jax.Array, ...]:
        a = jaxlie.SO3.from_quaternion_xyzw(q0 / jnp.linalg.norm(q0, axis=-1, keepdims=True))
        b = jaxlie.SO3.from_quaternion_xyzw(q1 / jnp.linalg.norm(q1, axis=-1, keepdims=True))
        delta = (a.inverse() @ b).log()
        between = a @ jaxlie.SO3.exp(t[:, None] * delta)
        rpy = between.as_rpy_radians()
        rotated = jax.vmap(lambda r, v: r @ v)(between, vectors)
        return between.wxyz, between.as_matrix(), jnp.stack([rpy.roll, rpy.pitch, rpy.yaw], -1), rotated

    return Built(interpolate, [("B", 4), ("B", 4), ("B",), ("B", 3)],
                 [_normal(6, 4), _normal(6, 4), _RNG.uniform(0, 1, 6).astype(np.float32), _normal(6, 3)])
