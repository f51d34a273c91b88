"""The dead-code pass is skipped only when JAX's DCE would change nothing (workbench/jax_to_onnx/dead_code.py).

For each program, ``_nothing_dead`` on its traced jaxpr is compared with what JAX's DCE does to it (the pruned
jaxpr printed differently, or a constant dropped), and the conversion is checked against JAX in onnxruntime.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workbench as wb
from tests.support.harness import assert_matches_jax
from workbench.compat import dce_jaxpr_consts
from workbench.jax_to_onnx import dead_code, tracing

_TABLE = np.arange(12, dtype=np.float32).reshape(3, 4)
_UNUSED = np.linspace(0, 1, 4, dtype=np.float32)


@jax.jit
def _two_outputs(x):
    return x * 2.0, jnp.sin(x)


@jax.jit
def _ignores_second(x, y):
    del y
    return x + 1.0


@jax.jit
def _dead_inside(x):
    jnp.exp(x)  # computed, never returned
    return x * 3.0


@jax.custom_jvp
def _custom(x):
    jnp.cos(x)  # dead inside the custom_jvp body
    return jnp.tanh(x)


_custom.defjvp(lambda primals, tangents: (_custom(primals[0]), tangents[0]))


PROGRAMS = [
    # (id, fn, whether JAX's DCE changes the jaxpr)
    ("all_live", lambda x: jax.nn.relu(x @ _TABLE.T) + 1.0, False),
    ("live_jit_and_custom_jvp", lambda x: sum(_two_outputs(x)) + jax.nn.relu(x), False),
    ("dead_top_level", lambda x: (jnp.exp(x), x + 1.0)[1], True),
    ("dead_constant_use", lambda x: (x * _UNUSED, x - 1.0)[1], True),
    ("jit_output_unused", lambda x: _two_outputs(x)[0], True),
    ("jit_input_unused", lambda x: _ignores_second(x, x * 2.0), True),
    ("dead_inside_jit", lambda x: _dead_inside(x), True),
    ("dead_inside_custom_jvp", lambda x: _custom(x), True),
    ("cond_left_to_jax", lambda x: jax.lax.cond(x.sum() > 0, lambda v: v + 1.0, lambda v: v - 1.0, x), None),
]


def _traced_without_pruning(monkeypatch, fn):
    with monkeypatch.context() as patch:
        patch.setattr(tracing, "prune_dead_code", lambda closed: closed)
        return wb.convert(fn, [(2, 4)]).traced.closed_jaxpr


@pytest.mark.parametrize(("fn", "changes"), [p[1:] for p in PROGRAMS], ids=[p[0] for p in PROGRAMS])
def test_skipped_only_when_jax_dce_changes_nothing(monkeypatch, fn, changes):
    closed = _traced_without_pruning(monkeypatch, fn)
    jaxpr = closed.jaxpr
    pruned, used_consts, _ = dce_jaxpr_consts(
        jaxpr, [True] * len(jaxpr.outvars), [False] * len(jaxpr.constvars) + [True] * len(jaxpr.invars)
    )
    jax_changes = str(pruned) != str(jaxpr) or not all(used_consts)
    if changes is not None:
        assert jax_changes == changes
    nothing_dead = dead_code._nothing_dead(jaxpr, top_level=True)
    # never skipped where the pass changes something; a primitive with a DCE rule of its own (cond) is left to it
    assert not (nothing_dead and jax_changes)
    assert nothing_dead == (changes is False)
    kept = dead_code.prune_dead_code(closed)
    assert (kept is closed) == nothing_dead
    assert str(kept.jaxpr) == str(pruned)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    assert_matches_jax(fn, wb.to_onnx(fn, [(2, 4)]), [x], rtol=1e-5, atol=1e-5)
