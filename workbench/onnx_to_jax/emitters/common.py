"""Runtime helpers shared by several families (copied into generated code when used)."""

from __future__ import annotations

import numpy as np

from workbench.onnx_to_jax.registry import runtime_helper


@runtime_helper
def _ints(value):
    """A shape-like value as a tuple of Python ints (needs a concrete value, i.e. not under jit)."""
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


@runtime_helper
def _norm_axis(axis, rank):
    return axis + rank if axis < 0 else axis
