"""Broadcasts to symbolic shapes and index wraps (workbench/jax_to_onnx/passes/broadcasts.py): what a
symbolic batch or sequence adds to a mask or a position lookup is dropped, and the numbers match JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax

TABLE = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)


def _ops(model) -> list[str]:
    return [node.op_type for node in model.graph.node]


def test_positions_from_arange_need_no_negative_index_wrap():
    # jnp.arange(T) is never negative: no Less/Where wrap before the Gather (token ids keep theirs, below)
    def embed(x):
        return x + jnp.take(TABLE, jnp.arange(x.shape[1]), axis=0)

    model = wb.to_onnx(embed, [("B", "T", 4)])
    assert "Less" not in _ops(model), _ops(model)
    assert_graph_quality(model)
    x = np.random.default_rng(1).standard_normal((2, 5, 4)).astype(np.float32)
    assert_matches_jax(embed, model, [x], rtol=1e-6, atol=1e-6)


def test_token_ids_keep_the_negative_index_wrap():
    def lookup(ids):
        return jnp.take(TABLE, ids, axis=0)

    model = wb.to_onnx(lookup, [np.zeros((2, 3), np.int32)])
    assert "Less" in _ops(model), _ops(model)
    ids = np.array([[0, -1, 3], [-16, 15, 2]], np.int32)  # negative ids count from the end, as in JAX
    assert_matches_jax(lookup, model, [ids], rtol=0, atol=0)


def test_ones_like_and_a_broadcast_fill_of_a_symbolic_shape_are_dropped():
    # flax's combine_masks: ones_like(scores) & mask, then where(mask, scores, finfo.min broadcast to the scores)
    def masked(scores, mask):
        combined = jnp.ones_like(scores, dtype=bool) & mask
        return jnp.where(combined, scores, jnp.broadcast_to(jnp.finfo(scores.dtype).min, scores.shape))

    model = wb.to_onnx(masked, [("B", 4, "T", "T"), jax.ShapeDtypeStruct((1, 1, "T", "T"), jnp.bool_)])
    assert not {"Expand", "And"} & set(_ops(model)), _ops(model)
    scores = np.random.default_rng(2).standard_normal((2, 4, 5, 5)).astype(np.float32)
    mask = np.tril(np.ones((5, 5), bool))[None, None]
    assert_matches_jax(masked, model, [scores, mask], rtol=0, atol=0)

