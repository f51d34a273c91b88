"""Programs from pgx (board-game environments in JAX), played the way its documentation steps them.

A batch of boards is initialised from a key, then a few random legal moves are played under jax.lax.scan
(``vmap(env.step)``): the environments' rules are integer array programs (legal-move masks, captures,
Go's liberties and Zobrist hashing with reduce_xor over uint32 keys).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def _random_play(env_id: str, moves: int) -> Callable[[], Built]:
    """A builder: ``moves`` random legal moves for a batch of 2 boards of ``env_id``, from a key."""

    def build() -> Built:
        import pgx

        env = pgx.make(env_id)

        def play(key_data):
            first, second = jax.random.split(jax.random.wrap_key_data(key_data))
            state = jax.vmap(env.init)(jax.random.split(first, 2))

            def move(state, key):
                logits = jnp.where(state.legal_action_mask, 0.0, -jnp.inf)
                action = jax.random.categorical(key, logits, axis=-1)
                state = jax.vmap(env.step)(state, action)
                return state, (state.rewards, action)

            state, (rewards, actions) = jax.lax.scan(move, state, jax.random.split(second, moves))
            return state.observation, rewards, actions, state.terminated, state.legal_action_mask

        return Built(play, [_KEY], [np.asarray(jax.random.key_data(jax.random.key(3)))])

    return build


program("pgx_connect_four", library="pgx", origin="pgx connect_four: random legal moves for a batch of boards")(
    _random_play("connect_four", 4))
program("pgx_go_9x9", library="pgx",
        origin="pgx go_9x9: random legal moves (liberties, captures, Zobrist hash by reduce_xor over uint32)")(
    _random_play("go_9x9", 2))
