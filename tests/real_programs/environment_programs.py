"""Programs from gymnax and Jumanji (reinforcement-learning environments in JAX), stepped the way their
documentation steps them: reset and step from keys, a rollout under jax.lax.scan, with a random policy or a
small Flax MLP policy.

gymnax: classic control (CartPole's Euler steps, Pendulum's torque, Acrobot's RK4 integration), MinAtar
(Breakout, Asterix: boolean grids, object lists, random spawns) and bsuite (Catch); ``env.step`` resets
finished episodes itself, so a rollout runs through episode ends. Jumanji: Snake, Game2048, Maze and TSP,
each random legal action drawn from the observation's action mask.

Each program takes a PRNG key's data (uint32[2]) and returns the rollout's observations (gymnax) or last observation (Jumanji),
rewards, episode ends and actions.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def _key_data(seed: int) -> np.ndarray:
    return np.asarray(jax.random.key_data(jax.random.key(seed)))


def _scanned(key_data: jax.Array, envs: int, steps: int, reset: Callable[[jax.Array], Any],
             step: Callable[[Any, jax.Array], tuple[Any, Any]]) -> tuple[Any, Any]:
    """The rollout both libraries' documentation writes: ``envs`` copies reset from split keys, then ``steps``
    steps under lax.scan, each from its own key; the last carry and the stacked per-step outputs."""
    reset_key, run_key = jax.random.split(jax.random.wrap_key_data(key_data))
    carry = reset(jax.random.split(reset_key, envs))
    return jax.lax.scan(step, carry, jax.random.split(run_key, steps))


# ----------------------------------------------------------------------------- gymnax
def _gymnax_rollout(env_id: str, steps: int, envs: int,
                    policy: Callable[[Any, jax.Array], jax.Array] | None = None) -> Callable[[], Built]:
    """A builder: ``envs`` copies of gymnax's ``env_id`` reset from a key and stepped ``steps`` times under
    lax.scan (vmapped over the copies); actions from ``policy(observation, key)`` or, without one, sampled
    from the action space."""

    def build() -> Built:
        import gymnax

        env, params = gymnax.make(env_id)

        def act(obs: jax.Array, key: jax.Array) -> jax.Array:
            if policy is None:
                return env.action_space(params).sample(key)
            return policy(obs, key)

        def reset(keys: jax.Array) -> tuple[Any, Any]:
            return jax.vmap(env.reset, in_axes=(0, None))(keys, params)

        def step(carry: tuple[Any, Any], key: jax.Array) -> tuple[tuple[Any, Any], tuple[jax.Array, ...]]:
            obs, state = carry
            act_key, step_key = jax.random.split(key)
            action = jax.vmap(act)(obs, jax.random.split(act_key, envs))
            obs, state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, envs), state, action, params)
            return (obs, state), (obs, reward, terminated, truncated, action)

        def rollout(key_data: jax.Array) -> tuple[jax.Array, ...]:
            return _scanned(key_data, envs, steps, reset, step)[1]

        return Built(rollout, [_KEY], [_key_data(len(env_id))])

    return build


class _Policy(nn.Module):
    """A two-layer MLP policy head over the flattened observation: logits, or the mean of a box action."""

    outputs: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        hidden = nn.tanh(nn.Dense(32)(nn.tanh(nn.Dense(32)(obs.reshape(-1).astype(jnp.float32)))))
        return nn.Dense(self.outputs)(hidden)


def _mlp_policy(observation_size: int, outputs: int, *, continuous: bool, scale: float = 1.0) -> Callable[[Any, jax.Array], jax.Array]:
    """A seeded MLP policy: categorical sampling over its logits, or a Gaussian around ``scale * tanh(mean)``."""
    module = _Policy(outputs)
    variables = module.init(jax.random.key(7), jnp.zeros(observation_size))

    def policy(obs: jax.Array, key: jax.Array) -> jax.Array:
        out = module.apply(variables, obs)
        if continuous:
            return scale * jnp.tanh(out) + 0.1 * jax.random.normal(key, out.shape)
        return jax.random.categorical(key, out)

    return policy


program("gymnax_cartpole_random", library="gymnax",
        origin="gymnax CartPole-v1: vmapped reset/step under lax.scan, random actions, auto-reset at episode ends")(
    _gymnax_rollout("CartPole-v1", 30, 4))
program("gymnax_pendulum_mlp_policy", library="gymnax",
        origin="gymnax Pendulum-v1 driven by a Flax MLP Gaussian policy (torque = 2 tanh(mean) + noise)")(
    _gymnax_rollout("Pendulum-v1", 20, 3, _mlp_policy(3, 1, continuous=True, scale=2.0)))
program("gymnax_acrobot_random", library="gymnax",
        origin="gymnax Acrobot-v1: random torques, RK4 integration of the double pendulum")(
    _gymnax_rollout("Acrobot-v1", 12, 3))
program("gymnax_minatar_breakout_mlp_policy", library="gymnax",
        origin="gymnax Breakout-MinAtar with a Flax MLP categorical policy over the 10x10x4 boolean grid")(
    _gymnax_rollout("Breakout-MinAtar", 12, 2, _mlp_policy(400, 3, continuous=False)))
program("gymnax_minatar_asterix_random", library="gymnax",
        origin="gymnax Asterix-MinAtar: random actions, enemies and treasure spawned from keys")(
    _gymnax_rollout("Asterix-MinAtar", 10, 2))
program("gymnax_bsuite_catch_random", library="gymnax", origin="gymnax Catch-bsuite: random paddle moves")(
    _gymnax_rollout("Catch-bsuite", 12, 3))


# ----------------------------------------------------------------------------- Jumanji
def _import_jumanji() -> Any:
    """``jumanji``, imported as in a plain Python process. Its import runs ``%matplotlib ipympl`` when it finds an
    IPython shell and ipykernel in the process (for rendering in notebooks), which raises without ipympl; in
    the test suite the shell is one an earlier test on the same worker left (tests/jupyter), so the import
    must not see it: whether a program converts cannot depend on which tests ran before it."""
    with mock.patch.object(builtins, "__IPYTHON__", False, create=True):
        import jumanji
    return jumanji


def _jumanji_rollout(env_id: str, steps: int, envs: int) -> Callable[[], Built]:
    """A builder: ``envs`` copies of Jumanji's ``env_id`` reset from keys and stepped ``steps`` times under
    lax.scan, each action drawn uniformly among the legal ones (the observation's ``action_mask``)."""

    def build() -> Built:
        env = _import_jumanji().make(env_id)

        def step(carry: tuple[Any, Any], key: jax.Array) -> tuple[tuple[Any, Any], tuple[jax.Array, ...]]:
            state, timestep = carry
            logits = jnp.where(timestep.observation.action_mask, 0.0, -jnp.inf)
            action = jax.random.categorical(key, logits, axis=-1)
            state, timestep = jax.vmap(env.step)(state, action)
            return (state, timestep), (timestep.reward, timestep.step_type, action)

        def rollout(key_data: jax.Array) -> tuple[Any, ...]:
            (_, last), trajectory = _scanned(key_data, envs, steps, jax.vmap(env.reset), step)
            return trajectory, jax.tree_util.tree_leaves(last.observation)

        return Built(rollout, [_KEY], [_key_data(len(env_id))])

    return build


program("jumanji_snake_random", library="jumanji",
        origin="Jumanji Snake-v1: reset/step under lax.scan, random legal moves from the action mask")(
    _jumanji_rollout("Snake-v1", 12, 2))
program("jumanji_game2048_random", library="jumanji",
        origin="Jumanji Game2048-v1: random legal slides, a random tile after each")(
    _jumanji_rollout("Game2048-v1", 10, 2))
program("jumanji_maze_random", library="jumanji",
        origin="Jumanji Maze-v0: a maze generated from the key (recursive division), random legal moves")(
    _jumanji_rollout("Maze-v0", 10, 2))
program("jumanji_tsp_random", library="jumanji",
        origin="Jumanji TSP-v1: random cities, random unvisited city each step until the tour closes")(
    _jumanji_rollout("TSP-v1", 8, 2))
