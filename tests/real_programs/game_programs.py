"""Programs from pgx (board-game environments in JAX), played the way its documentation steps them.

A batch of boards is initialised from a key, then a few random legal moves are played under jax.lax.scan
(``vmap(env.step)``; the stochastic games, 2048's tile and backgammon's dice, step with a key per board as
pgx's documentation does): the environments' rules are integer array programs (legal-move masks, captures,
Go's liberties and Zobrist hashing with reduce_xor over uint32 keys, chess's move tables, Hex's union-find).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def _random_play(env_id: str, moves: int, *, stochastic: bool = False) -> Callable[[], Built]:
    """A builder: ``moves`` random legal moves for a batch of 2 boards of ``env_id``, from a key (``stochastic``:
    the game draws chance outcomes, so each step also takes a key per board)."""

    def build() -> Built:
        import pgx

        env = pgx.make(env_id)

        def play(key_data):
            first, second = jax.random.split(jax.random.wrap_key_data(key_data))
            state = jax.vmap(env.init)(jax.random.split(first, 2))

            def move(state, key):
                logits = jnp.where(state.legal_action_mask, 0.0, -jnp.inf)
                action = jax.random.categorical(key, logits, axis=-1)
                if stochastic:
                    state = jax.vmap(env.step)(state, action, jax.random.split(jax.random.fold_in(key, 1), 2))
                else:
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
program("pgx_tic_tac_toe", library="pgx", origin="pgx tic_tac_toe: random legal moves for a batch of boards")(
    _random_play("tic_tac_toe", 4))
program("pgx_othello", library="pgx", origin="pgx othello: random legal moves (flips along eight directions)")(
    _random_play("othello", 3))
program("pgx_2048", library="pgx", origin="pgx 2048: random legal slides, a random tile after each (stochastic step)")(
    _random_play("2048", 3, stochastic=True))
program("pgx_backgammon", library="pgx", origin="pgx backgammon: random legal moves with dice rolls (stochastic step)")(
    _random_play("backgammon", 2, stochastic=True))
program("pgx_chess", library="pgx", origin="pgx chess: random legal moves (move tables, check detection)")(
    _random_play("chess", 2))
program("pgx_animal_shogi", library="pgx", origin="pgx animal_shogi: random legal moves and drops")(
    _random_play("animal_shogi", 3))
program("pgx_hex", library="pgx", origin="pgx hex: random legal moves on the 11x11 board (connection by union-find)")(
    _random_play("hex", 3))
program("pgx_gardner_chess", library="pgx", origin="pgx gardner_chess: random legal moves on the 5x5 board")(
    _random_play("gardner_chess", 2))
program("pgx_kuhn_poker", library="pgx", origin="pgx kuhn_poker: random legal bets (cards dealt from the key)")(
    _random_play("kuhn_poker", 2))
program("pgx_leduc_holdem", library="pgx", origin="pgx leduc_holdem: random legal bets over two rounds")(
    _random_play("leduc_holdem", 3))
program("pgx_sparrow_mahjong", library="pgx", origin="pgx sparrow_mahjong: random legal discards")(
    _random_play("sparrow_mahjong", 3))
