"""Shape ops: constant, reshape, broadcast, transpose, concatenate, slice, pad, reverse, iota, and the
dynamic forms a shape-polymorphic export uses (get_dimension_size, dynamic_reshape, dynamic_broadcast_in_dim,
dynamic_iota, real_dynamic_slice), whose shape operands are followed symbolically (``B``, ``2*B``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from workbench.errors import ConversionError
from workbench.jax_to_onnx.stablehlo import mlir
from workbench.jax_to_onnx.stablehlo.context import KNOWN_CONSTANT_LIMIT, UNKNOWN, OpContext, shaped
from workbench.jax_to_onnx.stablehlo.ops.elementwise import ir_int
from workbench.jax_to_onnx.stablehlo.registry import converter


def _known_or_none(ctx: OpContext, index: int = 0) -> np.ndarray | None:
    return ctx.known_elements(index)


# ----------------------------------------------------------------------------- constants and dims
@converter("stablehlo.constant", onnx_ops=("initializer",), family="shape", primitives=("add",))
def _constant(ctx: OpContext) -> ir.Value:
    array = mlir.dense_array(ctx.attr("value"), ctx.where)
    ctx.known_out = [array if array.size <= KNOWN_CONSTANT_LIMIT else None]
    return ctx.const(array, array.dtype)


def _fold_dimension_size(ctx: OpContext) -> list[Any]:
    dim = ctx.avals_in[0].shape[ir_int(ctx.attr("dimension"))]
    return [np.asarray(int(dim) if isinstance(dim, (int, np.integer)) else dim, dtype=object)]


@converter("stablehlo.get_dimension_size", onnx_ops=("Shape", "Reshape", "Cast"), family="shape", fold=_fold_dimension_size,
           primitives=("reshape",))
def _get_dimension_size(ctx: OpContext, x: ir.Value) -> ir.Value:
    dim = ctx.avals_in[0].shape[ir_int(ctx.attr("dimension"))]
    value = ctx.builder.dim_value(dim)
    scalar = ctx.op_("Reshape", value, ctx.i64([]))
    return ctx.op_("Cast", scalar, to=ir.DataType.from_numpy(ctx.result_types[0].dtype))


# ----------------------------------------------------------------------------- reshape and broadcast
def _fold_reshape(ctx: OpContext) -> list[Any]:
    known = _known_or_none(ctx)
    dims = ctx.result_types[0].dims
    return [None if known is None or None in dims else known.reshape(dims)]


@converter("stablehlo.reshape", via="reshape", family="shape", fold=_fold_reshape)
def _reshape(ctx: OpContext, x: ir.Value) -> ir.Value:
    dims = ctx.result_types[0].dims
    if None in dims:
        raise ConversionError(f"{ctx.where}: a reshape to dynamic dims {list(dims)} (dynamic_reshape expected)")
    (result,) = ctx.delegate("reshape", [x], new_sizes=tuple(dims), dimensions=None, sharding=None)
    return result


@converter("stablehlo.dynamic_reshape", via="reshape", family="shape")
def _dynamic_reshape(ctx: OpContext, x: ir.Value, shape: ir.Value) -> ir.Value:
    del shape
    dims = tuple(ctx.known_dims(1))
    (result,) = ctx.delegate(
        "reshape", [x], avals_in=ctx.avals_in[:1], avals_out=[shaped(dims, ctx.result_types[0].dtype)],
        new_sizes=dims, dimensions=None, sharding=None,
    )
    return result


def _fold_broadcast(ctx: OpContext) -> list[Any]:
    known = _known_or_none(ctx)
    dims = ctx.result_types[0].dims
    if known is None or None in dims or int(np.prod(dims)) > KNOWN_CONSTANT_LIMIT:
        return [None]
    positions = mlir.ints(ctx.attr("broadcast_dimensions"))
    shape = [1] * len(dims)
    for axis, position in enumerate(positions):
        shape[position] = known.shape[axis]
    return [np.broadcast_to(known.reshape(shape), dims).copy()]


@converter("stablehlo.broadcast_in_dim", via="broadcast_in_dim", family="shape", fold=_fold_broadcast)
def _broadcast_in_dim(ctx: OpContext, x: ir.Value) -> ir.Value:
    dims = ctx.result_types[0].dims
    if None in dims:
        raise ConversionError(f"{ctx.where}: a broadcast to dynamic dims {list(dims)} (dynamic_broadcast_in_dim expected)")
    (result,) = ctx.delegate(
        "broadcast_in_dim", [x], shape=tuple(dims),
        broadcast_dimensions=tuple(mlir.ints(ctx.attr("broadcast_dimensions"))), sharding=None,
    )
    return result


@converter("stablehlo.dynamic_broadcast_in_dim", via="broadcast_in_dim", family="shape")
def _dynamic_broadcast_in_dim(ctx: OpContext, x: ir.Value, shape: ir.Value) -> ir.Value:
    del shape
    dims = tuple(ctx.known_dims(1))
    (result,) = ctx.delegate(
        "broadcast_in_dim", [x], avals_in=ctx.avals_in[:1], avals_out=[shaped(dims, ctx.result_types[0].dtype)],
        shape=dims, broadcast_dimensions=tuple(mlir.ints(ctx.attr("broadcast_dimensions"))), sharding=None,
    )
    return result


# ----------------------------------------------------------------------------- layout
@converter("stablehlo.transpose", via="transpose", family="shape")
def _transpose(ctx: OpContext, x: ir.Value) -> ir.Value:
    permutation = tuple(mlir.ints(ctx.attr("permutation")))
    (result,) = ctx.delegate("transpose", [x], permutation=permutation)
    return result


def _fold_concatenate(ctx: OpContext) -> list[Any]:
    known = [ctx.known_elements(i) for i in range(len(ctx.operands))]
    if any(k is None for k in known):
        return [None]
    return [np.concatenate(known, axis=ir_int(ctx.attr("dimension")))]


@converter("stablehlo.concatenate", via="concatenate", family="shape", fold=_fold_concatenate)
def _concatenate(ctx: OpContext, *xs: ir.Value) -> ir.Value:
    (result,) = ctx.delegate("concatenate", list(xs), dimension=ir_int(ctx.attr("dimension")))
    return result


def _fold_slice(ctx: OpContext) -> list[Any]:
    known = _known_or_none(ctx)
    if known is None:
        return [None]
    starts, limits, strides = (mlir.ints(ctx.attr(n)) for n in ("start_indices", "limit_indices", "strides"))
    return [known[tuple(slice(a, b, c) for a, b, c in zip(starts, limits, strides, strict=True))]]


@converter("stablehlo.slice", via="slice", family="shape", fold=_fold_slice)
def _slice(ctx: OpContext, x: ir.Value) -> ir.Value:
    strides = tuple(mlir.ints(ctx.attr("strides")))
    (result,) = ctx.delegate(
        "slice", [x], start_indices=tuple(mlir.ints(ctx.attr("start_indices"))),
        limit_indices=tuple(mlir.ints(ctx.attr("limit_indices"))),
        strides=None if all(s == 1 for s in strides) else strides,
    )
    return result


@converter("stablehlo.real_dynamic_slice", via="slice", onnx_ops=("Slice",), family="shape")
def _real_dynamic_slice(ctx: OpContext, x: ir.Value, start: ir.Value, limit: ir.Value, stride: ir.Value) -> ir.Value:
    """A slice with bounds from the shapes (lax.slice), or bounds only known at run time (a loop index): Slice."""
    starts, limits, strides = (ctx.known_dims(i, partial=True) for i in (1, 2, 3))
    if not any(e is UNKNOWN for e in (*starts, *limits, *strides)):
        (result,) = ctx.delegate(
            "slice", [x], avals_in=ctx.avals_in[:1], start_indices=tuple(starts), limit_indices=tuple(limits),
            strides=None if all(isinstance(s, int) and s == 1 for s in strides) else tuple(strides),
        )
        return result
    dims = []
    for axis, declared in enumerate(ctx.result_types[0].dims):
        if declared is not None:
            dims.append(declared)
        elif UNKNOWN in (starts[axis], limits[axis], strides[axis]):
            raise ConversionError(f"{ctx.where}: dim {axis} of the slice depends on run-time values")
        else:
            dims.append(-((starts[axis] - limits[axis]) // strides[axis]))
    ctx.set_avals_out([shaped(dims, ctx.result_types[0].dtype)])
    bounds = [ctx.op_("Cast", v, to=ir.DataType.INT64) for v in (start, limit, stride)]
    axes = ctx.i64(list(range(len(dims))))
    return ctx.op_("Slice", x, bounds[0], bounds[1], axes, bounds[2])


@converter("stablehlo.pad", via="pad", family="shape")
def _pad(ctx: OpContext, x: ir.Value, padding_value: ir.Value) -> ir.Value:
    config = tuple(
        zip(
            mlir.ints(ctx.attr("edge_padding_low")),
            mlir.ints(ctx.attr("edge_padding_high")),
            mlir.ints(ctx.attr("interior_padding")),
            strict=True,
        )
    )
    (result,) = ctx.delegate("pad", [x, padding_value], padding_config=config)
    return result


@converter("stablehlo.reverse", via="rev", family="shape")
def _reverse(ctx: OpContext, x: ir.Value) -> ir.Value:
    (result,) = ctx.delegate("rev", [x], avals_out=ctx.result_avals_like(0), dimensions=tuple(mlir.ints(ctx.attr("dimensions"))))
    return result


# ----------------------------------------------------------------------------- iota
def _fold_iota(ctx: OpContext) -> list[Any]:
    result = ctx.result_types[0]
    if None in result.dims or result.dtype.kind not in "iu" or int(np.prod(result.dims)) > KNOWN_CONSTANT_LIMIT:
        return [None]
    axis = ir_int(ctx.attr("iota_dimension"))
    shape = [1] * len(result.dims)
    shape[axis] = result.dims[axis]
    return [np.broadcast_to(np.arange(result.dims[axis]).reshape(shape), result.dims).astype(object)]


@converter("stablehlo.iota", via="iota", family="shape", fold=_fold_iota)
def _iota(ctx: OpContext) -> ir.Value:
    result = ctx.result_types[0]
    (value,) = ctx.delegate(
        "iota", [], dtype=result.dtype, shape=tuple(result.dims), dimension=ir_int(ctx.attr("iota_dimension")), sharding=None
    )
    return value


@converter("stablehlo.dynamic_iota", via="iota", family="shape")
def _dynamic_iota(ctx: OpContext, shape: ir.Value) -> ir.Value:
    del shape
    dims = tuple(ctx.known_dims(0))
    dtype = ctx.result_types[0].dtype
    (value,) = ctx.delegate(
        "iota", [], avals_in=[], avals_out=[shaped(dims, dtype)],
        dtype=dtype, shape=dims, dimension=ir_int(ctx.attr("iota_dimension")), sharding=None,
    )
    return value


@converter("stablehlo.optimization_barrier", via="optimization_barrier", family="shape")
def _optimization_barrier(ctx: OpContext, *xs: ir.Value) -> tuple[ir.Value, ...]:
    """Only stops XLA from reordering; the values pass through."""
    ctx.set_avals_out(ctx.avals_in)
    return xs
