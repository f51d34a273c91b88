"""Programs from BlackJAX (MCMC kernels) and mctx (Monte Carlo tree search), as their documentation writes them.

A BlackJAX kernel step is a whole program around a user's log density: leapfrog integration, the
Metropolis correction and, for NUTS, the dynamic tree building (nested while loops) driven by a PRNG key.
An mctx search runs simulations (while loops under vmap over the batch) through a learned model, here a
random linear one, with Dirichlet or Gumbel noise from a key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(460)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


_FEATURES = _normal(30, 3)
_LABELS = (_FEATURES @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3 * _normal(30) > 0).astype(np.float32)


def _logistic_regression_log_density(position: dict[str, jax.Array]) -> jax.Array:
    """The log posterior of a Bayesian logistic regression (Gaussian prior on weights and bias)."""
    logits = _FEATURES @ position["w"] + position["b"]
    log_likelihood = jnp.sum(_LABELS * jax.nn.log_sigmoid(logits) + (1 - _LABELS) * jax.nn.log_sigmoid(-logits))
    prior = -0.5 * (jnp.sum(position["w"] ** 2) + position["b"] ** 2)
    return log_likelihood + prior


_POSITION_SPECS = {"w": (3,), "b": ()}


def _position() -> dict[str, np.ndarray]:
    return {"w": 0.3 * _normal(3), "b": np.float32(0.1)}


def _key() -> np.ndarray:
    return np.asarray(jax.random.key_data(jax.random.key(2026)))


@program("blackjax_nuts_step", library="blackjax",
         origin="blackjax.nuts: one No-U-Turn step (dynamic trajectory doubling) on a Bayesian logistic regression",
         rtol=1e-4, atol=1e-4)
def _blackjax_nuts() -> Built:
    import blackjax

    nuts = blackjax.nuts(_logistic_regression_log_density, step_size=0.1, inverse_mass_matrix=jnp.ones(4))

    def step(position, key_data):
        state = nuts.init(position)
        new_state, info = nuts.step(jax.random.wrap_key_data(key_data), state)
        return new_state.position, new_state.logdensity, info.num_integration_steps, info.acceptance_rate

    return Built(step, [_POSITION_SPECS, jax.ShapeDtypeStruct((2,), jnp.uint32)], [_position(), _key()])


@program("blackjax_hmc_chain", library="blackjax",
         origin="blackjax.hmc: a short chain of Hamiltonian Monte Carlo steps under jax.lax.scan (the inference loop of "
                "its quickstart)",
         rtol=1e-4, atol=1e-4)
def _blackjax_hmc() -> Built:
    import blackjax

    hmc = blackjax.hmc(_logistic_regression_log_density, step_size=0.05, inverse_mass_matrix=jnp.ones(4),
                       num_integration_steps=8)

    def chain(position, key_data):
        keys = jax.random.split(jax.random.wrap_key_data(key_data), 5)

        def one_step(state, key):
            state, info = hmc.step(key, state)
            return state, (state.position, info.is_accepted)

        _, samples = jax.lax.scan(one_step, hmc.init(position), keys)
        return samples

    return Built(chain, [_POSITION_SPECS, jax.ShapeDtypeStruct((2,), jnp.uint32)], [_position(), _key()])


@program("blackjax_mala_and_rmh", library="blackjax",
         origin="blackjax.mala and blackjax.additive_step_random_walk (random-walk Metropolis) steps",
         rtol=1e-4, atol=1e-4)
def _blackjax_mala() -> Built:
    import blackjax

    mala = blackjax.mala(_logistic_regression_log_density, step_size=0.01)
    rmh = blackjax.additive_step_random_walk.normal_random_walk(_logistic_regression_log_density, 0.1 * jnp.ones(4))

    def steps(position, key_data):
        k1, k2 = jax.random.split(jax.random.wrap_key_data(key_data))
        mala_state, mala_info = mala.step(k1, mala.init(position))
        rmh_state, rmh_info = rmh.step(k2, rmh.init(position))
        return mala_state.position, mala_info.acceptance_rate, rmh_state.position, rmh_info.is_accepted

    return Built(steps, [_POSITION_SPECS, jax.ShapeDtypeStruct((2,), jnp.uint32)], [_position(), _key()])


# ----------------------------------------------------------------------------- mctx
def _linear_dynamics(actions: int, hidden: int, discount: float):
    """A random linear dynamics model for mctx's search: ``(predict, recurrent_fn)``; ``predict`` gives an
    embedding's prior logits, value and reward."""
    import mctx

    dynamics = _normal(hidden + actions, hidden) * 0.4
    heads = _normal(hidden, actions + 2) * 0.4

    def predict(embedding):
        out = embedding @ heads
        return out[:, :actions], out[:, actions], out[:, actions + 1]

    def recurrent_fn(params, rng_key, action, embedding):
        del params, rng_key
        next_embedding = jnp.tanh(jnp.concatenate([embedding, jax.nn.one_hot(action, actions)], axis=-1) @ dynamics)
        logits, value, reward = predict(next_embedding)
        output = mctx.RecurrentFnOutput(reward=reward, discount=jnp.full_like(reward, discount), prior_logits=logits,
                                        value=value)
        return output, next_embedding

    return predict, recurrent_fn


@program("mctx_muzero_policy", library="mctx",
         origin="mctx.muzero_policy: Monte Carlo tree search over a learned (here random linear) dynamics model "
                "(the library's README example shape)",
         rtol=1e-4, atol=1e-4)
def _mctx_muzero() -> Built:
    import mctx

    actions, hidden = 4, 6
    predict, recurrent_fn = _linear_dynamics(actions, hidden, discount=0.97)

    def search(observation, key_data):
        logits, value, _ = predict(observation)
        root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=observation)
        output = mctx.muzero_policy(params=(), rng_key=jax.random.wrap_key_data(key_data), root=root,
                                    recurrent_fn=recurrent_fn, num_simulations=8)
        return output.action, output.action_weights, output.search_tree.node_values

    key = np.asarray(jax.random.key_data(jax.random.key(7)))
    return Built(search, [(2, hidden), jax.ShapeDtypeStruct((2,), jnp.uint32)], [_normal(2, hidden), key])


@program("mctx_gumbel_muzero_policy", library="mctx",
         origin="mctx.gumbel_muzero_policy: Gumbel MuZero's sequential halving at the root, invalid-action mask",
         rtol=1e-4, atol=1e-4)
def _mctx_gumbel() -> Built:
    import mctx

    actions, hidden = 5, 4
    predict, recurrent_fn = _linear_dynamics(actions, hidden, discount=1.0)

    def search(observation, invalid, key_data):
        logits, value, _ = predict(observation)
        root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=observation)
        output = mctx.gumbel_muzero_policy(params=(), rng_key=jax.random.wrap_key_data(key_data), root=root,
                                           recurrent_fn=recurrent_fn, num_simulations=6, max_num_considered_actions=4,
                                           invalid_actions=invalid)
        return output.action, output.action_weights

    invalid = np.zeros((3, actions), np.float32)
    invalid[:, -1] = 1.0
    key = np.asarray(jax.random.key_data(jax.random.key(8)))
    return Built(search, [(3, hidden), (3, actions), jax.ShapeDtypeStruct((2,), jnp.uint32)], [_normal(3, hidden), invalid, key])
