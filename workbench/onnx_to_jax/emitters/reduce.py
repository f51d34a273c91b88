"""Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare.

Axes are an attribute before opset 18 (ReduceSum: 13) and an optional input
after; ``noop_with_empty_axes`` arrives with the input form.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _reduce(kind, x, axes, keepdims, noop_with_empty_axes):
    x = jnp.asarray(x)
    if axes is not None:
        axes = tuple(int(a) for a in np.asarray(axes).reshape(-1))
    if not axes:
        if noop_with_empty_axes:
            return x
        axes = tuple(range(x.ndim))
    axes = tuple(a % x.ndim for a in axes) if x.ndim else ()
    is_float = jnp.issubdtype(x.dtype, jnp.floating)
    if kind in ("max", "min"):
        if is_float:
            initial = -jnp.inf if kind == "max" else jnp.inf
        else:
            if x.dtype == jnp.bool_:  # the identities: max over nothing is False, min is True
                initial = kind == "min"
            else:
                info = jnp.iinfo(x.dtype)
                initial = info.min if kind == "max" else info.max
        fn = jnp.max if kind == "max" else jnp.min
        return fn(x, axis=axes, keepdims=keepdims, initial=initial)
    if kind == "sum":
        return jnp.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    if kind == "mean":
        return jnp.mean(x, axis=axes, keepdims=keepdims).astype(x.dtype)
    if kind == "prod":
        return jnp.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    if kind == "l1":
        return jnp.sum(jnp.abs(x), axis=axes, keepdims=keepdims, dtype=x.dtype)
    if kind == "l2":
        return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=keepdims)).astype(x.dtype)
    if kind == "sum_square":
        return jnp.sum(jnp.square(x), axis=axes, keepdims=keepdims, dtype=x.dtype)
    if kind == "log_sum":
        return jnp.log(jnp.sum(x, axis=axes, keepdims=keepdims)).astype(x.dtype)
    if kind == "log_sum_exp":
        if x.size == 0:
            return jnp.log(jnp.sum(jnp.exp(x), axis=axes, keepdims=keepdims)).astype(x.dtype)
        peak = jnp.max(x, axis=axes, keepdims=True)
        peak = jnp.where(jnp.isfinite(peak), peak, 0)
        total = jnp.sum(jnp.exp(x - peak), axis=axes, keepdims=True)
        out = jnp.log(total) + peak
        return (out if keepdims else jnp.squeeze(out, axis=axes)).astype(x.dtype)
    raise ValueError(f"unknown reduction {kind!r}")


def _reducer(kind: str, input_axes_from: int):
    def emit(ctx: NodeContext) -> str:
        keepdims = ctx.lit(bool(ctx.attr("keepdims", 1)))
        if ctx.nhwc_axes is not None:  # a channels-last input: the plan mapped the (static) axes (layout.py)
            return ctx.call(_reduce, ctx.lit(kind), ctx.x(0), ctx.lit(ctx.nhwc_axes), keepdims, "False")
        if ctx.opset < input_axes_from:
            axes = ctx.attr("axes", None)
            axes_expr = "None" if axes is None else ctx.lit(tuple(axes))
            noop = "False"
        else:
            axes_expr = ctx.ints(1) if ctx.has(1) else "None"
            noop = ctx.lit(bool(ctx.attr("noop_with_empty_axes", 0)))
        return ctx.call(_reduce, ctx.lit(kind), ctx.x(0), axes_expr, keepdims, noop)

    return emit


_REDUCERS = [
    ("ReduceSum", "sum", 13, (1, 11, 13)),
    ("ReduceMean", "mean", 18, (1, 11, 13, 18)),
    ("ReduceMax", "max", 18, (1, 11, 12, 13, 18, 20)),
    ("ReduceMin", "min", 18, (1, 11, 12, 13, 18, 20)),
    ("ReduceProd", "prod", 18, (1, 11, 13, 18)),
    ("ReduceL1", "l1", 18, (1, 11, 13, 18)),
    ("ReduceL2", "l2", 18, (1, 11, 13, 18)),
    ("ReduceSumSquare", "sum_square", 18, (1, 11, 13, 18)),
    ("ReduceLogSum", "log_sum", 18, (1, 11, 13, 18)),
    ("ReduceLogSumExp", "log_sum_exp", 18, (1, 11, 13, 18)),
]
for _op, _kind, _from, _versions in _REDUCERS:
    emitter(_op, since=_versions)(_reducer(_kind, _from))
