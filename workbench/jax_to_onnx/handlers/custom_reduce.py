"""Reductions with a body of the user's own: ``reduce`` (``lax.reduce`` with a lambda, pair reductions
such as argmax-with-value) and ``reduce_window`` with a custom body (or several operands).

JAX recognises the common monoids itself (add, max, min, and, or become reduce_sum, reduce_max...;
see reduce.py and conv.py); what reaches these handlers is a body JAX could not classify. XLA on
CPU applies such a body sequentially: ``acc = init; for each element in order: acc = body(acc, x)``
(row-major over the window for reduce_window), and that order matters when the body is not
associative (``lambda acc, x: acc + x * x`` is a sum of squares only in that order). So do these
handlers, with one ONNX Loop over the reduced elements (or the window offsets) whose body is the
user's reducer applied to all output positions at once (the scalar reducer vmapped by JAX over the
flattened output, then lowered like any jaxpr). Results are therefore the same as JAX's on CPU up
to the rounding of the body's own ops.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax
from jax.extend import core as jex_core

from workbench.jax_to_onnx.builder import GraphBuilder, is_static
from workbench.jax_to_onnx.handlers.conv import _apply_padding, _dilate
from workbench.jax_to_onnx.handlers.linalg_kit import Spec, counted_loop
from workbench.jax_to_onnx.lowering import LoweringContext, lower_jaxpr
from workbench.jax_to_onnx.registry import Testcase, handler


def _product(dims: Sequence[Any]) -> Any:
    total: Any = 1
    for dim in dims:
        total = total * dim
    return total


def batched_body(body: Any, size: Any, dtypes: Sequence[Any]) -> Any:
    """The scalar reducer ``body`` (ClosedJaxpr: accumulators..., elements... → accumulators...)
    vmapped over a flat axis of ``size`` (int or symbolic) and traced to a ClosedJaxpr."""
    closed = body if isinstance(body, jex_core.ClosedJaxpr) else jex_core.ClosedJaxpr(body, [])
    specs = [jax.ShapeDtypeStruct((size,), dtype) for dtype in dtypes]
    wide = any(np.dtype(dtype).itemsize == 8 for dtype in dtypes)
    with jax.enable_x64(wide):
        return jax.make_jaxpr(jax.vmap(jex_core.jaxpr_as_fun(closed)))(*specs, *specs)


def _apply_body(g: GraphBuilder, closed: Any, accumulators: list[ir.Value], elements: list[ir.Value]) -> list[ir.Value]:
    consts = [g.const(np.asarray(c)) for c in closed.consts]
    return lower_jaxpr(g, closed.jaxpr, consts, [*accumulators, *elements])


def _flat_shape(ctx: LoweringContext, size: Any) -> ir.Value:
    return ctx.shape_value([size])


def _fold(
    ctx: LoweringContext,
    *,
    steps: Any,
    element: Any,
    inits: Sequence[ir.Value],
    flat_size: Any,
    dtypes: Sequence[np.dtype],
    body: Any,
    name: str,
) -> list[ir.Value]:
    """Loop ``steps`` times: acc = body(acc, x) over flat [flat_size] accumulators, where
    ``element(g, k)`` gives (x, mask): positions where the bool mask is false keep their acc."""
    closed = batched_body(body, flat_size, dtypes)
    flat_shape = _flat_shape(ctx, flat_size)
    starts = [ctx.op("Expand", init, flat_shape) for init in inits]
    specs = [Spec((flat_size,), dtype) for dtype in dtypes]

    def step(g: GraphBuilder, k: ir.Value, state: list[ir.Value]) -> list[ir.Value]:
        elements, valid = element(g, k)
        updated = _apply_body(g, closed, state, elements)
        if valid is None:
            return updated
        return [g.op("Where", valid, new, old) for new, old in zip(updated, state, strict=True)]

    if is_static(steps):
        count: Any = int(steps)
    else:
        count = ctx.op("Reshape", ctx.dim_value(steps), ctx.i64([]))
    return counted_loop(ctx.builder, count, starts, specs, step, name=name)


# ----------------------------------------------------------------------------- reduce
def _argmax_pair(x: jax.Array, i: jax.Array, axis: int) -> Any:
    def pick(p: Any, q: Any) -> Any:
        take_first = (p[0] > q[0]) | ((p[0] == q[0]) & (p[1] < q[1]))
        return jnp.where(take_first, p[0], q[0]), jnp.where(take_first, p[1], q[1])
    return lax.reduce((x, i), (np.float32(-np.inf), np.int32(0)), pick, (axis,))


def _argmax_with_value(x: jax.Array) -> Any:
    return _argmax_pair(x, lax.broadcasted_iota(jnp.int32, x.shape, 1), 1)


@handler("reduce", onnx_ops=("Loop", "Transpose", "Reshape", "Gather"), testcases=[
    Testcase("reduce_sum_of_squares_lambda", lambda x: lax.reduce(x, np.float32(0), lambda acc, v: acc + v * v, (0,)), [(5, "B")]),
    Testcase("reduce_argmax_pair", _argmax_with_value, [("B", 7)]),
    Testcase("reduce_two_axes_symbolic", lambda x: lax.reduce(x, np.float32(1), lambda acc, v: acc * 0.5 + v, (0, 2)),
             [("T", 3, 4)], symbolic_sizes={"T": 5}),
    Testcase("reduce_int_custom", lambda x: lax.reduce(x, np.int32(0), lambda acc, v: acc * 2 + v, (1,)),
             [np.array([[1, 0, 1], [1, 1, 0]], np.int32)]),
])
def _reduce(ctx: LoweringContext, *operands: ir.Value, computation: Any, jaxpr: Any, dimensions: Sequence[int]) -> Any:
    """``reduce(*operands, *inits)`` with the reducer ``jaxpr`` over ``dimensions``, in order.

    Params: computation (the Python callable, not needed: ``jaxpr`` is its trace), jaxpr, dimensions.
    """
    del computation
    count = len(operands) // 2
    values, inits = list(operands[:count]), list(operands[count:])
    shape = list(ctx.avals_in[0].shape)
    reduced = [int(d) for d in dimensions]
    kept = [axis for axis in range(len(shape)) if axis not in reduced]
    reduced_size = _product([shape[a] for a in reduced])
    kept_size = _product([shape[a] for a in kept])
    dtypes = [np.dtype(a.dtype) for a in ctx.avals_in[:count]]
    perm = reduced + kept
    flat = []
    for value in values:
        if perm != list(range(len(shape))):
            value = ctx.op("Transpose", value, perm=perm)
        flat.append(ctx.op("Reshape", value, ctx.shape_value([reduced_size, kept_size])))

    def element(g: GraphBuilder, k: ir.Value) -> tuple[list[ir.Value], None]:
        return [g.op("Gather", value, k, axis=0) for value in flat], None

    results = _fold(ctx, steps=reduced_size, element=element, inits=inits, flat_size=kept_size, dtypes=dtypes,
                    body=jaxpr, name="reduce_elements")
    out_shape = ctx.shape_value([shape[a] for a in kept])
    return tuple(ctx.op("Reshape", result, out_shape) for result in results)


# ----------------------------------------------------------------------------- reduce_window
def _window_argmax(x: jax.Array) -> Any:
    index = lax.broadcasted_iota(jnp.int32, x.shape, 2)

    def pick(p: Any, q: Any) -> Any:
        take_first = (p[0] > q[0]) | ((p[0] == q[0]) & (p[1] < q[1]))
        return jnp.where(take_first, p[0], q[0]), jnp.where(take_first, p[1], q[1])

    return lax.reduce_window((x, index), (np.float32(-np.inf), np.int32(0)), pick, (1, 2, 2), (1, 2, 2), "SAME")


@handler("reduce_window", onnx_ops=("Loop", "Pad", "Slice", "Gather", "Reshape"), testcases=[
    Testcase("reduce_window_sum_of_squares", lambda x: lax.reduce_window(x, np.float32(0), lambda a, v: a + v * v, (2, 2), (1, 1), "VALID"),
             [(4, 5)]),
    Testcase("reduce_window_argmax_pool_pair", _window_argmax, [("B", 5, 6)]),
    Testcase("reduce_window_padded_dilated", lambda x: lax.reduce_window(
        x, np.float32(1), lambda a, v: a * 0.9 + v, (2, 3), (2, 1), ((1, 0), (2, 1)), base_dilation=(1, 2), window_dilation=(2, 1)),
        [(5, 4)], rtol=1e-5, atol=1e-5),
])
def _reduce_window(
    ctx: LoweringContext,
    *operands: ir.Value,
    jaxpr: Any,
    consts: Sequence[Any],
    window_dimensions: Sequence[int],
    window_strides: Sequence[int],
    padding: Sequence[tuple[Any, Any]],
    base_dilation: Sequence[int],
    window_dilation: Sequence[int],
) -> Any:
    """Pad (and base-dilate) each operand, then fold the reducer over the window offsets in row-major
    order: one strided Slice per offset, chosen by the Loop index; padded positions are skipped.

    Params: jaxpr (the reducer) and its consts, window_dimensions, window_strides, padding,
    base_dilation, window_dilation.
    """
    count = len(operands) // 2
    values, inits = list(operands[:count]), list(operands[count:])
    shape = list(ctx.avals_in[0].shape)
    rank = len(shape)
    out_shape = list(ctx.avals_out[0].shape)
    dtypes = [np.dtype(a.dtype) for a in ctx.avals_in[:count]]
    body = jex_core.ClosedJaxpr(jaxpr.jaxpr if isinstance(jaxpr, jex_core.ClosedJaxpr) else jaxpr,
                                list(consts) or (list(jaxpr.consts) if isinstance(jaxpr, jex_core.ClosedJaxpr) else []))
    def place(value: ir.Value, fill: ir.Value) -> ir.Value:
        """The operand as the windows see it: base-dilated and padded (with ``fill``)."""
        current = list(shape)
        for axis in range(rank):
            if base_dilation[axis] != 1:
                value, current = _dilate(ctx, value, current, axis, int(base_dilation[axis]), fill)
        value, _ = _apply_padding(ctx, value, current, [tuple(p) for p in padding], 0, fill, keep_static_positive=False)
        return value

    prepared = [place(value, init) for value, init in zip(values, inits, strict=True)]
    # XLA skips the positions padding and base dilation add (the reducer never sees them), which
    # matters when the init value is not the reducer's identity: a mask of the real elements
    moved = any(d != 1 for d in base_dilation) or any(tuple(p) != (0, 0) for p in padding)
    real = None
    if moved:
        ones = ctx.op("Expand", ctx.scalar(1.0, np.float32), ctx.shape_value(shape))
        real = place(ones, ctx.scalar(0.0, np.float32))
    offsets = np.array(list(itertools.product(*[range(int(w)) for w in window_dimensions])), np.int64).reshape(-1, rank)
    starts_table = ctx.const(offsets * np.asarray(window_dilation, np.int64))
    span = ctx.op("Sub", ctx.op("Mul", ctx.shape_value(out_shape), ctx.i64([int(s) for s in window_strides])),
                  ctx.i64([int(s) - 1 for s in window_strides]))  # (out - 1) * stride + 1 per axis
    flat_size = _product(out_shape)
    flat_shape = _flat_shape(ctx, flat_size)
    axes, steps = ctx.i64(list(range(rank))), ctx.i64([int(s) for s in window_strides])

    def element(g: GraphBuilder, k: ir.Value) -> tuple[list[ir.Value], ir.Value | None]:
        starts = g.op("Gather", starts_table, k, axis=0)
        ends = g.op("Add", starts, span)

        def window(value: ir.Value) -> ir.Value:
            return g.op("Reshape", g.op("Slice", value, starts, ends, axes, steps), flat_shape)

        valid = None if real is None else g.op("Cast", window(real), to=ir.DataType.BOOL)
        return [window(value) for value in prepared], valid

    results = _fold(ctx, steps=len(offsets), element=element, inits=inits, flat_size=flat_size, dtypes=dtypes,
                    body=body, name="window_offsets")
    return tuple(ctx.op("Reshape", result, ctx.shape_value(out_shape)) for result in results)
