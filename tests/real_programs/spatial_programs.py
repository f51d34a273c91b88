"""Spatial search with jaxkd (k-d trees in pure JAX, as its README uses them): a tree built from a point cloud
(Wald's construction: a sort per level under a fori_loop), the k nearest neighbours of a batch of queries found
by a stack-free traversal under while loops, and the neighbour counts within a radius; a k-NN regression and a
local-density estimate on top, as point-cloud code uses them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(5054)


@program("jaxkd_knn_regression", library="jaxkd",
         origin="jaxkd's README: jaxkd.build_tree on a point cloud, jaxkd.query_neighbors(tree, queries, k=5) and "
                "jaxkd.count_neighbors(tree, queries, r=...); an inverse-distance-weighted k-NN regression on top")
def jaxkd_knn_regression() -> Built:
    import jaxkd

    def knn(points: jax.Array, values: jax.Array, queries: jax.Array) -> tuple[jax.Array, ...]:
        tree = jaxkd.build_tree(points)
        neighbours, distances = jaxkd.query_neighbors(tree, queries, k=5)
        weights = 1.0 / (distances + 1e-3)
        estimate = jnp.sum(weights * values[neighbours], axis=-1) / jnp.sum(weights, axis=-1)
        counts = jaxkd.count_neighbors(tree, queries, r=0.3)
        return neighbours, distances, estimate, counts

    points = _RNG.uniform(0, 1, (64, 3)).astype(np.float32)
    values = np.sin(4 * points[:, 0]) + points[:, 1] ** 2
    return Built(knn, [(64, 3), (64,), ("B", 3)],
                 [points, values.astype(np.float32), _RNG.uniform(0, 1, (7, 3)).astype(np.float32)])


@program("esquilax_boids_flock", library="esquilax",
         origin="esquilax's spatial transform as its boids example uses it: each agent sums its neighbours' "
                "headings, positions and crowding within an interaction range on a wrapped unit square "
                "(esquilax.transforms.spatial with tuple reductions), then steers and moves; 4 steps under "
                "lax.scan", rtol=1e-4, atol=1e-4)
def esquilax_boids_flock() -> Built:
    import esquilax

    def observe(_: None, own: tuple[jax.Array, jax.Array], other: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, ...]:
        own_position, _ = own
        other_position, other_velocity = other
        offset = other_position - own_position
        offset = offset - jnp.round(offset)  # the shortest offset on the torus
        return jnp.int32(1), other_velocity, offset, -offset / (jnp.sum(offset**2) + 1e-2)

    sums = esquilax.reductions.Reduction(fn=(jnp.add, jnp.add, jnp.add, jnp.add),
                                         id=(0, jnp.zeros(2), jnp.zeros(2), jnp.zeros(2)))
    neighbours = esquilax.transforms.spatial(observe, reduction=sums, include_self=False, i_range=0.25, n_bins=4)

    def flock(positions: jax.Array, velocities: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        def step(state: tuple[jax.Array, jax.Array], _: None) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
            x, v = state
            count, heading, centre, push = neighbours(None, (x, v), (x, v), pos=x)
            seen = jnp.maximum(count, 1)[:, None].astype(x.dtype)
            steer = 0.05 * (heading / seen - v) + 0.02 * centre / seen + 0.01 * push
            v = v + jnp.where(count[:, None] > 0, steer, 0.0)
            v = v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True) / 0.05, 1.0)
            return (jnp.mod(x + v, 1.0), v), count

        (x, v), counts = jax.lax.scan(step, (positions, velocities), None, length=4)
        return x, v, counts

    return Built(flock, [(40, 2), (40, 2)], [_RNG.uniform(0, 1, (40, 2)).astype(np.float32),
                                            (0.03 * _RNG.standard_normal((40, 2))).astype(np.float32)])
