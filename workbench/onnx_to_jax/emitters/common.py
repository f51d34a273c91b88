"""Runtime helpers shared by several families (copied into generated code when used)."""

from __future__ import annotations

import jax
import numpy as np

from workbench.onnx_to_jax.registry import runtime_helper


@runtime_helper
def _ints(value):
    """A shape-like value as a tuple of Python ints (needs a concrete value, i.e. not under jit)."""
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


@runtime_helper
def _norm_axis(axis, rank):
    return axis + rank if axis < 0 else axis


@runtime_helper
def _segment(part, params, dynamic, static):
    """Run one part of a model whose shapes depend on values (workbench/onnx_to_jax/segments.py).

    With concrete arrays the part is compiled by ``jax.jit`` (once per input shapes and static
    values); under an outer transformation (jit, grad, vmap) it is traced inline.
    """
    leaves = jax.tree_util.tree_leaves((params, dynamic, static))
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return part(params, *dynamic, *static)
    frozen = tuple((np.asarray(v).dtype, np.shape(v), np.asarray(v).tobytes()) for v in static)
    return jax.jit(_segment_run, static_argnums=(0, 3))(part, params, dynamic, frozen)


@runtime_helper
def _segment_run(part, params, dynamic, frozen):
    """``part`` with its static values rebuilt as numpy arrays (so they stay concrete while tracing)."""
    static = [np.frombuffer(data, dtype).reshape(shape) for dtype, shape, data in frozen]
    return part(params, *dynamic, *static)
