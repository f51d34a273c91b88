"""Programs from OTT-JAX (optimal transport) and evosax (evolution strategies), written as their documentation
writes them.

OTT-JAX: entropic optimal transport between two point clouds by Sinkhorn's algorithm (a while loop to a
convergence threshold), the Sinkhorn divergence, and differentiable soft sorting and ranking. evosax: one
CMA-ES ask-evaluate-tell generation from a key, and a few generations under jax.lax.scan.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def _points(seed: int, count: int, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((count, 2)) + shift).astype(np.float32)


@program("ott_sinkhorn", library="ott-jax", rtol=1e-4, atol=1e-5,
         origin="OTT-JAX: Sinkhorn solver on a PointCloud geometry's LinearProblem (cost and coupling matrix)")
def ott_sinkhorn() -> Built:
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    solver = sinkhorn.Sinkhorn(max_iterations=50)

    def transport(x, y):
        out = solver(linear_problem.LinearProblem(pointcloud.PointCloud(x, y, epsilon=0.1)))
        return out.reg_ot_cost, out.matrix

    return Built(transport, [(8, 2), (6, 2)], [_points(0, 8), _points(1, 6, 1.0)])


@program("ott_sinkhorn_divergence", library="ott-jax", rtol=1e-4, atol=1e-5,
         origin="OTT-JAX: Sinkhorn divergence between two point clouds (tools.sinkhorn_divergence)")
def ott_sinkhorn_divergence() -> Built:
    from ott.geometry import pointcloud
    from ott.tools import sinkhorn_divergence

    def divergence(x, y):
        out = sinkhorn_divergence.sinkhorn_divergence(pointcloud.PointCloud, x, y, epsilon=0.5)
        return out[0]  # (divergence, its output record)

    return Built(divergence, [(8, 2), (6, 2)], [_points(2, 8), _points(3, 6, 0.5)])


@program("ott_soft_sort", library="ott-jax", rtol=1e-4, atol=1e-5,
         origin="OTT-JAX: differentiable soft sort and soft ranks (tools.soft_sort)")
def ott_soft_sort() -> Built:
    from ott.tools import soft_sort

    def soft(values):
        return soft_sort.sort(values, epsilon=0.05), soft_sort.ranks(values, epsilon=0.05)

    return Built(soft, [(10,)], [np.random.default_rng(4).standard_normal(10).astype(np.float32)])


def _sphere(population: jax.Array) -> jax.Array:
    return jnp.sum(population**2, axis=-1)


@program("evosax_cma_es_generation", library="evosax", rtol=1e-4, atol=1e-5,
         origin="evosax: one CMA-ES ask-evaluate-tell generation (algorithms.CMA_ES) from a key")
def evosax_cma_es_generation() -> Built:
    from evosax.algorithms import CMA_ES

    es = CMA_ES(population_size=8, solution=jnp.zeros(3))
    params = es.default_params

    def generation(key_data, mean):
        init_key, ask_key, tell_key = jax.random.split(jax.random.wrap_key_data(key_data), 3)
        state = es.init(init_key, mean, params)
        population, state = es.ask(ask_key, state, params)
        state, _ = es.tell(tell_key, population, _sphere(population), state, params)
        return population, state.mean, state.std, state.C

    mean = np.random.default_rng(5).standard_normal(3).astype(np.float32)
    return Built(generation, [_KEY, (3,)], [np.asarray(jax.random.key_data(jax.random.key(3))), mean])


@program("evosax_cma_es_scan", library="evosax", rtol=1e-4, atol=1e-5,
         origin="evosax: CMA-ES generations under jax.lax.scan minimising a sphere, best fitness per generation")
def evosax_cma_es_scan() -> Built:
    from evosax.algorithms import CMA_ES

    es = CMA_ES(population_size=8, solution=jnp.zeros(4))
    params = es.default_params

    def search(key_data, mean):
        init_key, run_key = jax.random.split(jax.random.wrap_key_data(key_data))

        def generation(state, key):
            ask_key, tell_key = jax.random.split(key)
            population, state = es.ask(ask_key, state, params)
            fitness = _sphere(population)
            state, _ = es.tell(tell_key, population, fitness, state, params)
            return state, jnp.min(fitness)

        state, best = jax.lax.scan(generation, es.init(init_key, mean, params), jax.random.split(run_key, 4))
        return state.mean, state.best_fitness, best

    mean = np.random.default_rng(6).standard_normal(4).astype(np.float32)
    return Built(search, [_KEY, (4,)], [np.asarray(jax.random.key_data(jax.random.key(4))), mean])
