"""Shape primitives: broadcast_in_dim, reshape, squeeze, transpose, concatenate, split, stack, tile,
slice, rev, pad, iota and dim_as_value (``jnp.expand_dims`` traces to broadcast_in_dim).

Symbolic dimensions are read at run time through ``ctx.shape_value`` / ``ctx.dim_value`` (Shape ops),
and only where a static value cannot be used: a slice that runs to the end of a symbolic axis uses
the INT64_MAX sentinel instead of reading the axis length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import ir_shape, is_static, tensor_type
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
# dtypes ONNX Range computes in; others are produced in int64 and cast
_RANGE_DTYPES = {np.dtype(t) for t in ("float32", "float64", "int16", "int32", "int64")}


# ----------------------------------------------------------------------------- helpers (also used by index.py)
def same_dim(a: Any, b: Any) -> bool:
    """Two dims (int or symbolic expression) that are equal for every value of the symbols."""
    if is_static(a) and is_static(b):
        return int(a) == int(b)
    return str(a) == str(b)


def reshape_to(ctx: LoweringContext, x: ir.Value, shape: tuple[Any, ...]) -> ir.Value:
    """Reshape to a (possibly symbolic) shape; a single unknown dim becomes -1 to save Shape ops."""
    symbolic = [i for i, d in enumerate(shape) if not is_static(d)]
    if len(symbolic) == 1:
        target = [int(d) if is_static(d) else -1 for d in shape]
        return ctx.op("Reshape", x, ctx.i64(target))
    return ctx.op("Reshape", x, ctx.shape_value(shape))


def dim_scalar(ctx: LoweringContext, dim: Any) -> ir.Value:
    """A 0-d int64 holding ``dim`` (a constant when static, Shape ops when symbolic)."""
    if is_static(dim):
        return ctx.const(np.asarray(int(dim), dtype=np.int64))
    return ctx.op("Reshape", ctx.dim_value(dim), ctx.i64([]))


def dims_value(ctx: LoweringContext, dims: Sequence[Any], operand_shape: Sequence[Any] | None = None) -> ir.Value:
    """A 1-D int64 of slice bounds; a bound equal to the operand's (symbolic) axis becomes INT64_MAX."""
    if operand_shape is not None:
        dims = [INT64_MAX if not is_static(d) and same_dim(d, full) else d for d, full in zip(dims, operand_shape, strict=True)]
    return ctx.shape_value(list(dims))


def fresh(ctx: LoweringContext, x: ir.Value, original: ir.Value) -> ir.Value:
    """``x`` when the handler emitted nodes for it, else an Identity so the output is a new value."""
    return ctx.op("Identity", x) if x is original else x


def transpose(ctx: LoweringContext, x: ir.Value, perm: Sequence[int]) -> ir.Value:
    """Transpose, or ``x`` itself when ``perm`` is the identity."""
    if list(perm) == list(range(len(perm))):
        return x
    return ctx.op("Transpose", x, perm=list(perm))


# ----------------------------------------------------------------------------- broadcast / reshape
@handler("broadcast_in_dim", onnx_ops=("Transpose", "Unsqueeze", "Expand"), testcases=[
    Testcase("broadcast_bias", lambda x, b: x + b, [("B", 4), (4,)]),
    Testcase("broadcast_scalar", lambda x: jnp.broadcast_to(x, (3, 4)), [()]),
    Testcase("broadcast_middle", lambda x: jnp.broadcast_to(x[:, None, :], (x.shape[0], 5, 4)), [("B", 4)]),
    Testcase("expand_dims_symbolic", lambda x: jnp.expand_dims(x, (0, 2)), [("B", 4)], expect_ops=("Unsqueeze",)),
    Testcase("broadcast_size1_to_symbolic", lambda x, y: jnp.broadcast_to(x, y.shape), [(1, 4), ("B", 4)]),
    Testcase("broadcast_permuted_dims", lambda x: lax.broadcast_in_dim(x, (4, 2, 3), (2, 0)), [(3, 4)]),
    Testcase("broadcast_to_product_dim", lambda x, y: jnp.broadcast_to(x, (y.shape[0] * y.shape[1], 4)), [(4,), ("H", "W")]),
])
def _broadcast_in_dim(
    ctx: LoweringContext, x: ir.Value, *dyn_shape: ir.Value, shape: Any, broadcast_dimensions: Any, sharding: Any
) -> ir.Value:
    """Transpose when the kept axes are permuted, Unsqueeze the new axes, then Expand."""
    del sharding  # placement only
    original = x
    if dyn_shape:
        raise ConversionError("broadcast_in_dim with dynamic (non-symbolic) output shapes is not supported")
    order = np.argsort(broadcast_dimensions).tolist()
    x = transpose(ctx, x, order)  # lax allows permuted broadcast_dimensions
    kept_axes = sorted(broadcast_dimensions)
    in_shape = [ctx.avals_in[0].shape[i] for i in order]
    current: list[Any] = [1] * len(shape)
    for in_axis, out_axis in enumerate(kept_axes):
        current[out_axis] = in_shape[in_axis]
    new_axes = [a for a in range(len(shape)) if a not in kept_axes]
    if new_axes:
        x = ctx.op("Unsqueeze", x, ctx.i64(new_axes))
    if all(same_dim(a, b) for a, b in zip(current, shape, strict=True)):
        return fresh(ctx, x, original)
    return ctx.op("Expand", x, ctx.shape_value(shape))


@handler("reshape", onnx_ops=("Reshape", "Transpose"), testcases=[
    Testcase("reshape_flatten", lambda x: x.reshape(x.shape[0], -1), [("B", 3, 4)]),
    Testcase("reshape_hw", lambda x: x.reshape(x.shape[0], x.shape[1] * x.shape[2], 2), [("B", "H", "W", 2)]),
    Testcase("reshape_unflatten_hw", lambda x, y: x.reshape(x.shape[0], y.shape[0], y.shape[1]), [("B", "H*W"), ("H", "W")]),
    Testcase("reshape_static", lambda x: x.reshape(6, 2), [(3, 4)]),
    Testcase("reshape_dimensions", lambda x: lax.reshape(x, (4, 3), dimensions=(1, 0)), [(3, 4)]),
])
def _reshape(ctx: LoweringContext, x: ir.Value, *dyn_shape: ir.Value, new_sizes: Any, dimensions: Any, sharding: Any) -> ir.Value:
    """Reshape (``dimensions`` transposes first, as lax.reshape defines)."""
    del sharding  # placement only
    if dyn_shape:
        raise ConversionError("reshape with dynamic (non-symbolic) output shapes is not supported")
    _refuse_fixing_symbols(ctx.avals_in[0].shape, tuple(new_sizes))
    if dimensions is not None:
        x = transpose(ctx, x, dimensions)
    return reshape_to(ctx, x, tuple(new_sizes))


def _refuse_fixing_symbols(source: Sequence[Any], target: Sequence[Any]) -> None:
    """A reshape of a symbolic shape to constant sizes holds for one value of the symbols only: say which.

    JAX traces ``x.reshape(1, 12)`` of ``x[B, 3, 4]`` (the batch fixed in the function while the spec
    leaves it symbolic) and the exported model then fails at run time for every other batch.
    """
    symbolic = [str(d) for d in source if not is_static(d)]
    if not symbolic or not all(is_static(d) for d in target) or 0 in source or 0 in target:
        return
    names = ", ".join(dict.fromkeys(symbolic))
    raise ConversionError(
        f"reshape of a [{', '.join(str(d) for d in source)}] value to the fixed shape {tuple(int(d) for d in target)} holds "
        f"for one value of {names} only: the function fixes a dimension the input specs leave symbolic. Give the "
        f"input a static size for {names}, or reshape with x.shape[...] rather than constants in the function.")


@handler("squeeze", onnx_ops=("Squeeze",), testcases=[
    Testcase("squeeze_symbolic", lambda x: jnp.squeeze(x, 1), [("B", 1, 4)]),
    Testcase("squeeze_all", lambda x: jnp.squeeze(x), [(1, 3, 1)]),
])
def _squeeze(ctx: LoweringContext, x: ir.Value, *, dimensions: Sequence[int]) -> ir.Value:
    """Squeeze the given unit axes."""
    if not dimensions:
        return ctx.op("Identity", x)
    return ctx.op("Squeeze", x, ctx.i64(list(dimensions)))


@handler("transpose", onnx_ops=("Transpose",), testcases=[
    Testcase("transpose_2d", lambda x: x.T, [("B", 4)]),
    Testcase("transpose_heads", lambda x: jnp.transpose(x, (0, 2, 1, 3)), [("B", "T", 2, 4)]),
])
def _transpose(ctx: LoweringContext, x: ir.Value, *, permutation: Sequence[int]) -> ir.Value:
    return ctx.op("Transpose", x, perm=list(permutation))


@handler("concatenate", onnx_ops=("Concat",), testcases=[
    Testcase("concatenate_symbolic", lambda x, y: jnp.concatenate([x, y, x], axis=1), [("B", 4), ("B", 2)]),
    Testcase("concatenate_batch", lambda x, y: jnp.concatenate([x, y], axis=0), [("B", 4), ("C", 4)]),
])
def _concatenate(ctx: LoweringContext, *operands: ir.Value, dimension: int) -> ir.Value:
    return ctx.op("Concat", *operands, axis=dimension)


@handler("split", onnx_ops=("Split",), testcases=[
    Testcase("split_sizes", lambda x: jnp.split(x, [1, 3], axis=1), [("B", 4)]),
    Testcase("split_symbolic_axis", lambda x: jnp.split(x, 2, axis=0), [(4, "B")]),
])
def _split(ctx: LoweringContext, x: ir.Value, *, sizes: Sequence[Any], axis: int) -> tuple[ir.Value, ...]:
    outputs = ctx.op("Split", x, ctx.shape_value(list(sizes)), axis=axis, num_outputs=len(sizes))
    return outputs if len(sizes) > 1 else (outputs,)


@handler("stack", onnx_ops=("Unsqueeze", "Concat"), testcases=[
    Testcase("stack_axis1", lambda x, y: jnp.stack([x, y], axis=1), [("B", 4), ("B", 4)]),
])
def _stack(ctx: LoweringContext, *operands: ir.Value, axis: int) -> ir.Value:
    """Unsqueeze each operand at ``axis`` and concatenate."""
    axes = ctx.i64([axis])
    expanded = [ctx.op("Unsqueeze", x, axes) for x in operands]
    return expanded[0] if len(expanded) == 1 else ctx.op("Concat", *expanded, axis=axis)


@handler("tile", onnx_ops=("Tile",), testcases=[
    Testcase("tile_symbolic", lambda x: jnp.tile(x, (2, 3)), [("B", 4)]),
    Testcase("tile_symbolic_repeats", lambda x, y: jnp.tile(x, (y.shape[0], 1)), [(1, 4), ("B", 2)]),
])
def _tile(ctx: LoweringContext, x: ir.Value, *, reps: Sequence[Any]) -> ir.Value:
    """Repeat counts may be symbolic dimensions (``jnp.tile(x, (B, 1))``): read at run time then."""
    return ctx.op("Tile", x, ctx.shape_value(list(reps)))


# ----------------------------------------------------------------------------- slicing
@handler("slice", onnx_ops=("Slice",), testcases=[
    Testcase("slice_static_strides", lambda x: lax.slice(x, (1, 0), (5, 4), (2, 3)), [(6, 4)]),
    Testcase("slice_symbolic_tail", lambda x: x[:, 1:3], [("B", 4)]),
    Testcase("slice_symbolic_last", lambda x: lax.slice_in_dim(x, x.shape[0] - 1, x.shape[0], axis=0), [("B", 4)]),
    Testcase("slice_unstack", lambda x: list(x), [(3, 4)]),
])
def _slice(
    ctx: LoweringContext, x: ir.Value, *, start_indices: Sequence[Any], limit_indices: Sequence[Any], strides: Sequence[int] | None
) -> ir.Value:
    """ONNX Slice over the axes that are really cut; limits equal to a symbolic axis become INT64_MAX."""
    shape = ctx.avals_in[0].shape
    steps = list(strides) if strides is not None else [1] * len(shape)
    axes = [
        a for a in range(len(shape))
        if not (same_dim(start_indices[a], 0) and same_dim(limit_indices[a], shape[a]) and steps[a] == 1)
    ]
    if not axes:
        return ctx.op("Identity", x)
    starts = ctx.shape_value([start_indices[a] for a in axes])
    ends = dims_value(ctx, [limit_indices[a] for a in axes], [shape[a] for a in axes])
    step_value = None if all(steps[a] == 1 for a in axes) else ctx.i64([steps[a] for a in axes])
    return ctx.op("Slice", x, starts, ends, ctx.i64(axes), step_value)


@handler("rev", onnx_ops=("Slice",), testcases=[
    Testcase("rev_symbolic", lambda x: jnp.flip(x, (0, 1)), [("B", 4)]),
])
def _rev(ctx: LoweringContext, x: ir.Value, *, dimensions: Sequence[int]) -> ir.Value:
    """Reverse axes with a step -1 Slice (from the last element to before the first)."""
    if not dimensions:
        return ctx.op("Identity", x)
    n = len(dimensions)
    return ctx.op("Slice", x, ctx.i64([-1] * n), ctx.i64([INT64_MIN] * n), ctx.i64(list(dimensions)), ctx.i64([-1] * n))


@handler("pad", onnx_ops=("Pad", "Reshape", "Slice"), testcases=[
    Testcase("pad_constant", lambda x: jnp.pad(x, ((1, 2), (0, 1)), constant_values=3.0), [("B", 4)]),
    Testcase("pad_negative", lambda x: lax.pad(x, 0.5, ((1, -1, 0), (-1, 2, 0))), [("B", 4)]),
    Testcase("pad_interior", lambda x: lax.pad(x, -1.0, ((0, 0, 0), (1, -2, 2))), [("B", 4)]),
    Testcase("pad_int", lambda x: jnp.pad(x, ((2, 0),)), [np.array([1, 2, 3], np.int32)]),
    Testcase("pad_reflect", lambda x: jnp.pad(x, ((0, 0), (1, 2)), mode="reflect"), [("B", 4)]),
    Testcase("pad_symmetric", lambda x: jnp.pad(x, ((0, 0), (2, 1)), mode="symmetric"), [("B", 4)]),
    Testcase("pad_edge", lambda x: jnp.pad(x, ((1, 2), (2, 1)), mode="edge"), [("B", 4)]),
])
def _pad(ctx: LoweringContext, x: ir.Value, padding_value: ir.Value, *, padding_config: Sequence[tuple[Any, Any, Any]]) -> ir.Value:
    """lax.pad: interior padding by interleaving (Unsqueeze, Pad, Reshape, Slice), then one ONNX Pad
    for the edges (negative low/high crop, as ONNX Pad allows)."""
    original = x
    shape = list(ctx.avals_in[0].shape)
    for axis, (_, _, interior) in enumerate(padding_config):
        if int(interior) > 0:
            x = _interior_pad(ctx, x, padding_value, shape, axis, int(interior))
            shape[axis] = int(shape[axis]) + (int(shape[axis]) - 1) * int(interior)
    lows = [int(lo) for lo, _, _ in padding_config]
    highs = [int(hi) for _, hi, _ in padding_config]
    if not any(lows) and not any(highs):
        return fresh(ctx, x, original)
    return ctx.op("Pad", x, ctx.i64(lows + highs), padding_value, mode="constant")


def _interior_pad(ctx: LoweringContext, x: ir.Value, value: ir.Value, shape: list[Any], axis: int, interior: int) -> ir.Value:
    """Insert ``interior`` padding elements between neighbours along ``axis`` (static length)."""
    if not is_static(shape[axis]):
        raise ConversionError(f"lax.pad with interior padding needs a static length on axis {axis}, got {shape[axis]}")
    length = int(shape[axis])
    rank = len(shape)
    spread = ctx.op("Unsqueeze", x, ctx.i64([axis + 1]))
    pads = [0] * (2 * (rank + 1))
    pads[rank + 1 + axis + 1] = interior
    spread = ctx.op("Pad", spread, ctx.i64(pads), value, mode="constant")
    merged_shape = list(shape)
    merged_shape[axis] = length * (interior + 1)
    merged = reshape_to(ctx, spread, tuple(merged_shape))
    return ctx.op("Slice", merged, ctx.i64([0]), ctx.i64([length + (length - 1) * interior]), ctx.i64([axis]))


# ----------------------------------------------------------------------------- iota and dims as values
@handler("iota", onnx_ops=("Range", "Unsqueeze", "Expand"), testcases=[
    Testcase("iota_symbolic", lambda x: x + jnp.arange(x.shape[0], dtype=jnp.float32)[:, None], [("B", 4)], expect_ops=("Range",)),
    Testcase("iota_2d_static", lambda x: x + lax.broadcasted_iota(jnp.int32, (3, 4), 1), [np.zeros((3, 4), np.int32)]),
    Testcase("iota_2d_symbolic", lambda x: lax.broadcasted_iota(jnp.int32, (x.shape[0], 4), 0) * 2, [("B", 4)]),
    Testcase("iota_causal_mask", lambda x: jnp.where(jnp.arange(x.shape[1])[:, None] >= jnp.arange(x.shape[1]), x, -1e9), [("B", "T", "T")]),
])
def _iota(ctx: LoweringContext, *dyn_shape: ir.Value, dtype: Any, shape: Sequence[Any], dimension: int, sharding: Any) -> ir.Value:
    """A constant when static; Range over the (runtime) axis length, then Unsqueeze + Expand."""
    del sharding  # placement only
    if dyn_shape:
        raise ConversionError("iota with dynamic (non-symbolic) shapes is not supported")
    np_dtype = np.dtype(dtype)
    rank = len(shape)
    other_axes = [a for a in range(rank) if a != dimension]
    length = shape[dimension]
    if is_static(length):
        line = ctx.const(np.arange(int(length)).astype(np_dtype).reshape([-1 if a == dimension else 1 for a in range(rank)]))
    else:
        range_dtype = np_dtype if np_dtype in _RANGE_DTYPES else np.dtype("int64")
        line = ctx.op("Range", ctx.scalar(0, range_dtype), dim_scalar(ctx, length) if range_dtype == np.int64
                      else ctx.op("Cast", dim_scalar(ctx, length), to=ir.DataType.from_numpy(range_dtype)), ctx.scalar(1, range_dtype))
        # typed with the symbolic length (ONNX's inference cannot name it), for the passes that compare shapes
        line.type, line.shape = tensor_type(range_dtype), ir_shape([length])
        if range_dtype != np_dtype:
            line = ctx.op("Cast", line, to=ir.DataType.from_numpy(np_dtype))
            line.type, line.shape = tensor_type(np_dtype), ir_shape([length])
        if other_axes:
            line = ctx.op("Unsqueeze", line, ctx.i64(other_axes))
            line.type, line.shape = tensor_type(np_dtype), ir_shape([length if a == dimension else 1 for a in range(rank)])
    if all(is_static(shape[a]) and int(shape[a]) == 1 for a in other_axes):
        return line
    return ctx.op("Expand", line, ctx.shape_value(list(shape)))


@handler("dim_as_value", onnx_ops=("Shape", "Cast"), doc="https://docs.jax.dev/en/latest/export/shape_poly.html", area="jax", testcases=[
    Testcase("dim_as_value_last_row", lambda x: x[-1], [("B", 4)]),
])
def _dim_as_value(ctx: LoweringContext, *, dim: Any) -> ir.Value:
    """A symbolic dimension as a 0-d integer (``x[-1]`` needs the runtime length of the axis)."""
    value = dim_scalar(ctx, dim)
    out_dtype = np.dtype(ctx.aval_out.dtype)
    if out_dtype == np.dtype("int64"):
        return value
    return ctx.op("Cast", value, to=ir.DataType.from_numpy(out_dtype))


__all__ = ["INT64_MAX", "dim_scalar", "dims_value", "fresh", "reshape_to", "same_dim", "transpose"]
