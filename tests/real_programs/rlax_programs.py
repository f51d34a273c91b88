"""Programs from rlax (DeepMind's reinforcement-learning building blocks), written as its documentation writes
them: per-trajectory functions vmapped over a batch, losses of Haiku networks and their gradients.

TD(lambda) and V-trace targets with generalised advantage estimates (reverse scans over time); a double
Q-learning loss with the Huber loss and its gradient; PPO's clipped surrogate with an entropy bonus and a value
loss and their gradient; a categorical (C51) double Q-learning loss, which projects the target distribution
onto the support, and its gradient.

Not in the default catalogue: rlax imports distrax, which needs tfp-nightly (a nightly build the lock cannot
pin, see tfp_distrax_programs.py); ``load_all(include_tfp=True)`` (WORKBENCH_REAL_PROGRAMS_TFP=1) adds them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(4849)
_ACTIONS = jax.ShapeDtypeStruct(("B",), jnp.int32)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def _uniform(low: float, high: float, *shape: int) -> np.ndarray:
    return _RNG.uniform(low, high, shape).astype(np.float32)


def _haiku_mlp(outputs: int, observation_size: int, seed: int) -> tuple[Callable[..., jax.Array], Any]:
    """A seeded Haiku MLP (two tanh layers of 32) and its parameters: ``apply(params, observations)``."""
    import haiku as hk

    net = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([32, 32, outputs], activation=jnp.tanh)(x)))
    return net.apply, net.init(jax.random.key(seed), jnp.zeros((1, observation_size)))


@program("rlax_td_lambda_vtrace_gae", library="rlax",
         origin="rlax td_lambda, vtrace, lambda_returns and truncated_generalized_advantage_estimation, vmapped")
def rlax_td_lambda_vtrace_gae() -> Built:
    import rlax

    def targets(values, rewards, discounts, rhos):
        v_tm1, v_t = values[:, :-1], values[:, 1:]
        td = jax.vmap(rlax.td_lambda, in_axes=(0, 0, 0, 0, None))(v_tm1, rewards, discounts, v_t, 0.9)
        vtrace = jax.vmap(rlax.vtrace, in_axes=(0, 0, 0, 0, 0, None))(v_tm1, v_t, rewards, discounts, rhos, 0.95)
        returns = jax.vmap(rlax.lambda_returns, in_axes=(0, 0, 0, None))(rewards, discounts, v_t, 0.8)
        gae = jax.vmap(rlax.truncated_generalized_advantage_estimation, in_axes=(0, 0, None, 0))(
            rewards, discounts, 0.95, values)
        return td, vtrace, returns, gae

    steps, batch = 8, 3
    discounts = np.where(_RNG.random((batch, steps)) < 0.15, 0.0, 0.99).astype(np.float32)
    args = [_normal(batch, steps + 1), _normal(batch, steps), discounts, _uniform(0.2, 2.0, batch, steps)]
    return Built(targets, [("B", steps + 1), ("B", steps), ("B", steps), ("B", steps)], args)


@program("rlax_double_q_learning_grad", library="rlax",
         origin="rlax double_q_learning with huber_loss on a Haiku Q-network: the loss and its gradient (DQN step)")
def rlax_double_q_learning_grad() -> Built:
    import optax
    import rlax

    apply, params = _haiku_mlp(4, 6, seed=1)
    target_params = jax.tree_util.tree_map(lambda p: p * 0.9, params)

    def loss(online, obs_tm1, actions, rewards, discounts, obs_t):
        q_tm1, q_t_selector, q_t_value = apply(online, obs_tm1), apply(online, obs_t), apply(target_params, obs_t)
        errors = jax.vmap(rlax.double_q_learning)(q_tm1, actions, rewards, discounts, q_t_value, q_t_selector)
        return jnp.mean(rlax.huber_loss(errors, 1.0))

    optimiser = optax.adam(1e-3)

    def dqn_step(obs_tm1, actions, rewards, discounts, obs_t):
        value, grads = jax.value_and_grad(loss)(params, obs_tm1, actions, rewards, discounts, obs_t)
        updates, _ = optimiser.update(grads, optimiser.init(params), params)
        return value, grads, optax.apply_updates(params, updates)

    rows = 5
    args = [_normal(rows, 6), _RNG.integers(0, 4, rows).astype(np.int32), _normal(rows),
            np.full(rows, 0.99, np.float32), _normal(rows, 6)]
    return Built(dqn_step, [("B", 6), _ACTIONS, ("B",), ("B",), ("B", 6)], args)


@program("rlax_ppo_clipped_surrogate_grad", library="rlax",
         origin="rlax PPO: clipped_surrogate_pg_loss + entropy_loss + value loss on Haiku nets, GAE advantages, "
                "the gradient")
def rlax_ppo_clipped_surrogate_grad() -> Built:
    import rlax

    policy_apply, policy_params = _haiku_mlp(3, 4, seed=2)
    value_apply, value_params = _haiku_mlp(1, 4, seed=3)

    def loss(params, observations, actions, old_log_probs, rewards, discounts):
        logits = policy_apply(params["policy"], observations[:-1])
        values = value_apply(params["value"], observations)[:, 0]
        advantages = rlax.truncated_generalized_advantage_estimation(rewards, discounts, 0.95, values)
        advantages = jax.lax.stop_gradient(advantages)
        log_probs = jnp.take_along_axis(jax.nn.log_softmax(logits), actions[:, None], axis=-1)[:, 0]
        ratios = jnp.exp(log_probs - old_log_probs)
        policy_loss = rlax.clipped_surrogate_pg_loss(ratios, (advantages - advantages.mean()) / (advantages.std() + 1e-6), 0.2)
        entropy = rlax.entropy_loss(logits, jnp.ones_like(rewards))
        value_loss = jnp.mean(rlax.l2_loss(values[:-1] - jax.lax.stop_gradient(advantages + values[:-1])))
        return policy_loss + 0.01 * entropy + 0.5 * value_loss

    def ppo_gradient(observations, actions, old_log_probs, rewards, discounts):
        params = {"policy": policy_params, "value": value_params}
        return jax.value_and_grad(loss)(params, observations, actions, old_log_probs, rewards, discounts)

    steps = 10
    discounts = np.where(np.arange(steps) == 6, 0.0, 0.99).astype(np.float32)
    args = [_normal(steps + 1, 4), _RNG.integers(0, 3, steps).astype(np.int32), np.log(_uniform(0.2, 0.5, steps)),
            _normal(steps), discounts]
    return Built(ppo_gradient, [(steps + 1, 4), jax.ShapeDtypeStruct((steps,), jnp.int32), (steps,), (steps,), (steps,)], args)


@program("rlax_categorical_double_q_grad", library="rlax",
         origin="rlax categorical_double_q_learning (C51: the target distribution projected onto the atoms) on a "
                "Haiku distributional Q-network, the loss and its gradient")
def rlax_categorical_double_q_grad() -> Built:
    import rlax

    actions_count, atoms_count = 3, 11
    atoms = jnp.linspace(-5.0, 5.0, atoms_count)
    apply, params = _haiku_mlp(actions_count * atoms_count, 4, seed=4)

    def distribution(p, obs):
        return apply(p, obs).reshape(obs.shape[0], actions_count, atoms_count)

    def loss(p, obs_tm1, actions, rewards, discounts, obs_t):
        logits_tm1, logits_t = distribution(p, obs_tm1), jax.lax.stop_gradient(distribution(p, obs_t))
        q_t_selector = jnp.sum(jax.nn.softmax(logits_t) * atoms, axis=-1)
        errors = jax.vmap(rlax.categorical_double_q_learning, in_axes=(None, 0, 0, 0, 0, None, 0, 0))(
            atoms, logits_tm1, actions, rewards, discounts, atoms, logits_t, q_t_selector)
        return jnp.mean(errors)

    def c51_gradient(obs_tm1, actions, rewards, discounts, obs_t):
        return jax.value_and_grad(loss)(params, obs_tm1, actions, rewards, discounts, obs_t)

    rows = 6
    args = [_normal(rows, 4), _RNG.integers(0, actions_count, rows).astype(np.int32), 2 * _normal(rows),
            np.array([0.99, 0.99, 0.0, 0.99, 0.9, 0.99], np.float32), _normal(rows, 4)]
    return Built(c51_gradient, [("B", 4), _ACTIONS, ("B",), ("B",), ("B", 4)], args)
