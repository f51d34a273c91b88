"""Indexing ops: gather, dynamic_gather, scatter, dynamic_slice, dynamic_update_slice.

StableHLO's gather clamps every start index into bounds (lax's ``CLIP`` mode) and its scatter skips
updates whose window leaves the operand (lax's ``FILL_OR_DROP`` for scatters): JAX emits the
masking of ``FILL_OR_DROP`` gathers as ops of their own. lax wants the index vector as the last
dimension of the indices; StableHLO allows any, so the indices are transposed (or given a trailing
unit dimension) first.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
from jax import lax
from jaxlib.mlir.dialects import stablehlo

from workbench.jax_to_onnx.stablehlo import mlir, regions
from workbench.jax_to_onnx.stablehlo.context import OpContext, shaped
from workbench.jax_to_onnx.stablehlo.ops.elementwise import ir_int
from workbench.jax_to_onnx.stablehlo.registry import converter


def _index_vector_last(ctx: OpContext, indices: ir.Value, aval: Any, index_vector_dim: int) -> tuple[ir.Value, Any, list[int]]:
    """(indices with the index vector last, their aval, new position of each original dim)."""
    rank = len(aval.shape)
    if index_vector_dim == rank:
        value = ctx.op_("Unsqueeze", indices, ctx.i64([rank]))
        new_aval = shaped((*aval.shape, 1), aval.dtype)
        return ctx.typed(value, new_aval), new_aval, list(range(rank))
    if index_vector_dim == rank - 1:
        return indices, aval, list(range(rank))
    order = [d for d in range(rank) if d != index_vector_dim] + [index_vector_dim]
    value = ctx.op_("Transpose", indices, perm=order)
    new_aval = shaped(tuple(aval.shape[d] for d in order), aval.dtype)
    return ctx.typed(value, new_aval), new_aval, [order.index(d) for d in range(rank)]


def _gather(ctx: OpContext, operand: ir.Value, indices: ir.Value, slice_sizes: tuple[Any, ...]) -> ir.Value:
    numbers = stablehlo.GatherDimensionNumbers(ctx.attr("dimension_numbers"))
    indices, indices_aval, position = _index_vector_last(ctx, indices, ctx.avals_in[1], numbers.index_vector_dim)
    dimension_numbers = lax.GatherDimensionNumbers(
        offset_dims=tuple(numbers.offset_dims),
        collapsed_slice_dims=tuple(numbers.collapsed_slice_dims),
        start_index_map=tuple(numbers.start_index_map),
        operand_batching_dims=tuple(numbers.operand_batching_dims),
        start_indices_batching_dims=tuple(position[d] for d in numbers.start_indices_batching_dims),
    )
    sorted_indices = ctx.has_attr("indices_are_sorted") and mlir_bool(ctx.attr("indices_are_sorted"))
    (result,) = ctx.delegate(
        "gather", [operand, indices], avals_in=[ctx.avals_in[0], indices_aval],
        dimension_numbers=dimension_numbers, slice_sizes=slice_sizes, mode=lax.GatherScatterMode.CLIP,
        fill_value=None, indices_are_sorted=bool(sorted_indices), unique_indices=False,
    )
    return result


def mlir_bool(attr: Any) -> bool:
    from jaxlib.mlir import ir as mlir_ir

    return bool(mlir_ir.BoolAttr(attr).value)


@converter("stablehlo.gather", via="gather", family="index")
def _gather_op(ctx: OpContext, operand: ir.Value, indices: ir.Value) -> ir.Value:
    return _gather(ctx, operand, indices, tuple(mlir.ints(ctx.attr("slice_sizes"))))


@converter("stablehlo.dynamic_gather", via="gather", family="index")
def _dynamic_gather(ctx: OpContext, operand: ir.Value, indices: ir.Value, slice_sizes: ir.Value) -> ir.Value:
    del slice_sizes
    sizes = tuple(ctx.known_dims(2))
    return _gather(ctx, operand, indices, sizes)


_SCATTERS = {
    regions.REPLACE: "scatter",
    "stablehlo.add": "scatter-add",
    "stablehlo.subtract": "scatter-sub",
    "stablehlo.multiply": "scatter-mul",
    "stablehlo.minimum": "scatter-min",
    "stablehlo.maximum": "scatter-max",
}


def _check_scatter(op: Any) -> str | None:
    if len(op.operands) != 3:
        return "variadic scatter"
    body = regions.binary_body(op)
    if body not in _SCATTERS:
        return "scatter with an update computation other than replace/add/subtract/multiply/min/max"
    return None


@converter("stablehlo.scatter", via="scatter/scatter-add/-sub/-mul/-min/-max", family="index", check=_check_scatter,
           primitives=("scatter", "scatter-add"))
def _scatter(ctx: OpContext, operand: ir.Value, indices: ir.Value, updates: ir.Value) -> ir.Value:
    numbers = stablehlo.ScatterDimensionNumbers(ctx.attr("scatter_dimension_numbers"))
    indices, indices_aval, position = _index_vector_last(ctx, indices, ctx.avals_in[1], numbers.index_vector_dim)
    dimension_numbers = lax.ScatterDimensionNumbers(
        update_window_dims=tuple(numbers.update_window_dims),
        inserted_window_dims=tuple(numbers.inserted_window_dims),
        scatter_dims_to_operand_dims=tuple(numbers.scattered_dims_to_operand_dims),
        operand_batching_dims=tuple(numbers.input_batching_dims),
        scatter_indices_batching_dims=tuple(position[d] for d in numbers.scatter_indices_batching_dims),
    )
    primitive = _SCATTERS[regions.binary_body(ctx.op)]
    (result,) = ctx.delegate(
        primitive, [operand, indices, updates], avals_in=[ctx.avals_in[0], indices_aval, ctx.avals_in[2]],
        avals_out=ctx.result_avals_like(0),
        dimension_numbers=dimension_numbers,
        indices_are_sorted=ctx.has_attr("indices_are_sorted") and mlir_bool(ctx.attr("indices_are_sorted")),
        unique_indices=ctx.has_attr("unique_indices") and mlir_bool(ctx.attr("unique_indices")),
        mode=lax.GatherScatterMode.FILL_OR_DROP, update_jaxpr=None, update_consts=(),
    )
    return result


@converter("stablehlo.dynamic_slice", via="dynamic_slice", family="index")
def _dynamic_slice(ctx: OpContext, operand: ir.Value, *starts: ir.Value) -> ir.Value:
    (result,) = ctx.delegate("dynamic_slice", [operand, *starts], slice_sizes=tuple(mlir.ints(ctx.attr("slice_sizes"))))
    return result


@converter("stablehlo.dynamic_update_slice", via="dynamic_update_slice", family="index")
def _dynamic_update_slice(ctx: OpContext, operand: ir.Value, update: ir.Value, *starts: ir.Value) -> ir.Value:
    (result,) = ctx.delegate("dynamic_update_slice", [operand, update, *starts], avals_out=ctx.result_avals_like(0))
    return result


__all__ = ["ir_int", "mlir_bool"]
