"""Programs from JAX MD (molecular dynamics), written as its documentation writes them; opt-in.

A periodic box of particles (``space.periodic``), pair potentials with their forces, a FIRE energy
minimisation, NVE and Langevin (NVT) integration from a key, and a sparse neighbour list rebuilt from new
positions. Particles start on a jittered lattice, so no two sit closer than the potentials' cores.

jax-md is not in the lock (it requires pymatgen, which brings ~25 packages for a few energy functions), so
these programs are opt-in: WORKBENCH_REAL_PROGRAMS_UNLOCKED=1 with jax-md installed (see ``load_all``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)
_BOX = 6.0


def _lattice(side: int, seed: int) -> np.ndarray:
    """``side * side`` particles on a square lattice filling the periodic box, each jittered a little."""
    spacing = _BOX / side
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), axis=-1).reshape(-1, 2)
    jitter = np.random.default_rng(seed).uniform(-0.1, 0.1, grid.shape)
    return ((grid + 0.5) * spacing + jitter).astype(np.float32)


def _key(seed: int) -> np.ndarray:
    return np.asarray(jax.random.key_data(jax.random.key(seed)))


@program("jaxmd_lennard_jones_forces", library="jax-md", rtol=1e-4, atol=1e-4,
         origin="JAX MD: Lennard-Jones pair energy in a periodic box and its forces (quantity.force)")
def jaxmd_lennard_jones_forces() -> Built:
    from jax_md import energy, quantity, space

    displacement, _ = space.periodic(_BOX)
    energy_fn = energy.lennard_jones_pair(displacement, sigma=1.0, epsilon=1.0, r_onset=2.0, r_cutoff=2.5)
    force_fn = quantity.force(energy_fn)

    def energy_and_forces(positions):
        return energy_fn(positions), force_fn(positions)

    return Built(energy_and_forces, [(36, 2)], [_lattice(6, 0)])


@program("jaxmd_fire_minimize", library="jax-md", rtol=1e-4, atol=1e-4,
         origin="JAX MD: soft-sphere packing relaxed by FIRE descent (minimize.fire_descent) in a fori_loop")
def jaxmd_fire_minimize() -> Built:
    from jax_md import energy, minimize, space

    displacement, shift = space.periodic(_BOX)
    energy_fn = energy.soft_sphere_pair(displacement, sigma=1.2)
    init, apply = minimize.fire_descent(energy_fn, shift, dt_start=0.01, dt_max=0.05)

    def relax(positions):
        state = jax.lax.fori_loop(0, 6, lambda _, s: apply(s), init(positions))
        return state.position, energy_fn(state.position)

    return Built(relax, [(36, 2)], [_lattice(6, 1)])


@program("jaxmd_nve_morse", library="jax-md", rtol=1e-4, atol=1e-4,
         origin="JAX MD: constant-energy (NVE) velocity Verlet steps of a Morse fluid, momenta drawn from a key")
def jaxmd_nve_morse() -> Built:
    from jax_md import energy, quantity, simulate, space

    displacement, shift = space.periodic(_BOX)
    energy_fn = energy.morse_pair(displacement, sigma=1.0, epsilon=1.0, alpha=4.0)
    init, apply = simulate.nve(energy_fn, shift, dt=1e-3)

    def run(positions, key_data):
        state = init(jax.random.wrap_key_data(key_data), positions, kT=0.1)
        state = jax.lax.fori_loop(0, 4, lambda _, s: apply(s), state)
        kinetic = quantity.kinetic_energy(momentum=state.momentum, mass=state.mass)
        return state.position, state.momentum, kinetic + energy_fn(state.position)

    return Built(run, [(36, 2), _KEY], [_lattice(6, 2), _key(1)])


@program("jaxmd_nvt_langevin", library="jax-md", rtol=1e-4, atol=1e-4,
         origin="JAX MD: Langevin thermostat (simulate.nvt_langevin) steps of soft spheres, noise from a key")
def jaxmd_nvt_langevin() -> Built:
    from jax_md import energy, simulate, space

    displacement, shift = space.periodic(_BOX)
    energy_fn = energy.soft_sphere_pair(displacement, sigma=1.0)
    init, apply = simulate.nvt_langevin(energy_fn, shift, dt=1e-3, kT=0.2, gamma=0.1)

    def run(positions, key_data):
        state = jax.lax.fori_loop(0, 3, lambda _, s: apply(s), init(jax.random.wrap_key_data(key_data), positions))
        return state.position, state.momentum

    return Built(run, [(36, 2), _KEY], [_lattice(6, 3), _key(2)])


@program("jaxmd_neighbor_list", library="jax-md", rtol=1e-4, atol=1e-4,
         origin="JAX MD: Lennard-Jones energy over a sparse neighbour list (partition.Sparse) updated to new positions")
def jaxmd_neighbor_list() -> Built:
    from jax_md import energy, partition, space

    displacement, _ = space.periodic(_BOX)
    neighbor_fn, energy_fn = energy.lennard_jones_neighbor_list(
        displacement, _BOX, r_cutoff=2.0, dr_threshold=0.2, format=partition.Sparse)
    neighbors = neighbor_fn.allocate(_lattice(6, 4))

    def energy_after_update(positions):
        updated = neighbors.update(positions)
        return energy_fn(positions, updated), updated.idx, updated.did_buffer_overflow

    return Built(energy_after_update, [(36, 2)], [_lattice(6, 5)])
