"""Shape primitives: broadcast_in_dim, reshape, squeeze, expand_dims, transpose, concatenate..."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import onnx_ir as ir

from workbench.export.builder import is_static
from workbench.export.lowering import LoweringContext
from workbench.export.registry import Testcase, handler


def reshape_to(ctx: LoweringContext, x: ir.Value, shape: tuple[Any, ...]) -> ir.Value:
    """Reshape to a (possibly symbolic) shape; a single unknown dim becomes -1 to save Shape ops."""
    symbolic = [i for i, d in enumerate(shape) if not is_static(d)]
    if len(symbolic) == 1:
        target = [int(d) if is_static(d) else -1 for d in shape]
        return ctx.op("Reshape", x, ctx.i64(target))
    return ctx.op("Reshape", x, ctx.shape_value(shape))


@handler("broadcast_in_dim", onnx_ops=("Reshape", "Expand"), testcases=[
    Testcase("broadcast_bias", lambda x, b: x + b, [("B", 4), (4,)]),
    Testcase("broadcast_scalar", lambda x: jnp.broadcast_to(x, (3, 4)), [()]),
    Testcase("broadcast_middle", lambda x: jnp.broadcast_to(x[:, None, :], (x.shape[0], 5, 4)), [("B", 4)]),
])
def _broadcast_in_dim(
    ctx: LoweringContext, x: ir.Value, *dyn_shape: ir.Value, shape: Any, broadcast_dimensions: Any, sharding: Any
) -> ir.Value:
    """Insert the new axes with a Reshape (Unsqueeze when only 1s), then Expand to the full shape."""
    del sharding, dyn_shape
    in_shape = ctx.avals_in[0].shape
    out_rank = len(shape)
    if len(in_shape) != out_rank:
        expanded_shape: list[Any] = [1] * out_rank
        for in_axis, out_axis in enumerate(broadcast_dimensions):
            expanded_shape[out_axis] = in_shape[in_axis]
        new_axes = [a for a in range(out_rank) if a not in broadcast_dimensions]
        if list(broadcast_dimensions) == sorted(broadcast_dimensions):
            x = ctx.op("Unsqueeze", x, ctx.i64(new_axes))
        else:
            x = reshape_to(ctx, x, tuple(expanded_shape))
        current = tuple(expanded_shape)
    else:
        current = tuple(in_shape)
    if tuple(str(d) for d in current) == tuple(str(d) for d in shape):
        return x if len(in_shape) != out_rank else ctx.op("Identity", x)
    return ctx.op("Expand", x, ctx.shape_value(shape))


@handler("reshape", onnx_ops=("Reshape",), testcases=[
    Testcase("reshape_flatten", lambda x: x.reshape(x.shape[0], -1), [("B", 3, 4)]),
    Testcase("reshape_hw", lambda x: x.reshape(x.shape[0], x.shape[1] * x.shape[2], 2), [("B", "H", "W", 2)]),
    Testcase("reshape_static", lambda x: x.reshape(6, 2), [(3, 4)]),
])
def _reshape(ctx: LoweringContext, x: ir.Value, *dyn_shape: ir.Value, new_sizes: Any, dimensions: Any, sharding: Any) -> ir.Value:
    del sharding, dyn_shape
    if dimensions is not None:
        x = ctx.op("Transpose", x, perm=list(dimensions))
    return reshape_to(ctx, x, tuple(new_sizes))


__all__ = ["reshape_to", "np"]
