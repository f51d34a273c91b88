"""Programs from flashbax (experience replay for reinforcement learning in JAX), used as its documentation
uses them: a buffer made once, then ``init`` from one example transition, ``add`` of batches of experience
and ``sample`` with a key, all inside one jitted function.

The flat buffer stores transitions in a circular trajectory store (dynamic_update_slice at a moving write
index, wrap-around) and samples uniformly; the prioritised flat buffer keeps its priorities in a sum tree
(scatter updates up the tree, a stratified descent per sample under lax loops), and ``set_priorities`` writes
new priorities for the sampled indices as a learner would after computing TD errors.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(4952)
_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def _key_data(seed: int) -> np.ndarray:
    return np.asarray(jax.random.key_data(jax.random.key(seed)))


def _transitions(envs: int, steps: int) -> dict[str, np.ndarray]:
    """``steps`` batches of ``envs`` transitions: observations, actions, rewards and episode ends."""
    return {
        "obs": _RNG.standard_normal((steps, envs, 4)).astype(np.float32),
        "action": _RNG.integers(0, 3, (steps, envs)).astype(np.int32),
        "reward": _RNG.standard_normal((steps, envs)).astype(np.float32),
        "done": _RNG.uniform(0, 1, (steps, envs)) < 0.2,
    }


def _specs(transitions: dict[str, np.ndarray]) -> dict[str, jax.ShapeDtypeStruct]:
    return {name: jax.ShapeDtypeStruct(value.shape, value.dtype) for name, value in transitions.items()}


def _first(transitions: dict[str, Any]) -> dict[str, Any]:
    return jax.tree_util.tree_map(lambda x: x[0, 0], transitions)


@program("flashbax_flat_buffer", library="flashbax",
         origin="flashbax's quick start: make_flat_buffer, init from one transition, add batches of experience "
                "from 3 environments in a lax.scan (the circular store wraps), sample transition pairs with a key")
def flashbax_flat_buffer() -> Built:
    import flashbax as fbx

    envs, steps = 3, 9
    buffer = fbx.make_flat_buffer(max_length=16, min_length=4, sample_batch_size=5, add_batch_size=envs)

    def fill_and_sample(transitions: dict[str, jax.Array], key_data: jax.Array) -> tuple[Any, ...]:
        state = buffer.init(_first(transitions))

        def add(state, batch):
            return buffer.add(state, batch), None

        state, _ = jax.lax.scan(add, state, transitions)
        sample = buffer.sample(state, jax.random.wrap_key_data(key_data))
        return sample.experience.first, sample.experience.second, state.current_index, buffer.can_sample(state)

    transitions = _transitions(envs, steps)
    return Built(fill_and_sample, [_specs(transitions), _KEY], [transitions, _key_data(5)])


@program("flashbax_prioritised_buffer", library="flashbax",
         origin="flashbax's prioritised experience replay: make_prioritised_flat_buffer (sum tree), add, sample "
                "with its probabilities, then set_priorities from |TD error| of the sampled transitions, sample again")
def flashbax_prioritised_buffer() -> Built:
    import flashbax as fbx

    envs, steps = 2, 6
    buffer = fbx.make_prioritised_flat_buffer(max_length=16, min_length=2, sample_batch_size=6, add_batch_size=envs,
                                              priority_exponent=0.6)

    def replay(transitions: dict[str, jax.Array], td_scale: jax.Array, key_data: jax.Array) -> tuple[Any, ...]:
        key1, key2 = jax.random.split(jax.random.wrap_key_data(key_data))
        state = buffer.init(_first(transitions))
        for step in range(steps):
            state = buffer.add(state, jax.tree_util.tree_map(lambda x: x[step], transitions))
        first = buffer.sample(state, key1)
        td_error = td_scale * first.experience.first["reward"] - first.experience.second["reward"]
        state = buffer.set_priorities(state, first.indices, jnp.abs(td_error) + 1e-3)
        second = buffer.sample(state, key2)
        # (the first sample's probabilities are uniform: every transition is added at the same priority)
        return (first.indices, second.indices, second.probabilities,
                second.experience.first["obs"], state.sum_tree_state.nodes)

    transitions = _transitions(envs, steps)
    return Built(replay, [_specs(transitions), (), _KEY], [transitions, np.float32(0.9), _key_data(6)])
