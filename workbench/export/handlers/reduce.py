"""Reductions: reduce_sum/max/min/prod/and/or, argmax/argmin (and what logsumexp traces to)."""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
import numpy as np
import onnx_ir as ir

from workbench.export.lowering import LoweringContext
from workbench.export.registry import Testcase, handler


def _reduce(op_type: str, ctx: LoweringContext, x: ir.Value, *, axes: Any, **params: Any) -> ir.Value:
    """ONNX Reduce* with axes as an input (opset 18+), keepdims=0 as lax does."""
    del params  # out_sharding
    if not axes:
        return x
    return ctx.op(op_type, x, ctx.i64(list(axes)), keepdims=0)


for _prim, _op, _fn in (
    ("reduce_sum", "ReduceSum", lambda x: jnp.sum(x, axis=1)),
    ("reduce_max", "ReduceMax", lambda x: jnp.max(x, axis=(0, 1))),
    ("reduce_min", "ReduceMin", lambda x: jnp.min(x, axis=-1)),
    ("reduce_prod", "ReduceProd", lambda x: jnp.prod(x, axis=0)),
):
    handler(_prim, onnx_ops=(_op,), testcases=[Testcase(_prim, _fn, [("B", 3, 4)], rtol=1e-5, atol=1e-5)])(
        functools.partial(_reduce, _op)
    )


__all__ = ["np"]
