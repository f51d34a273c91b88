"""Contractions: dot_general and convolution (also dynamic_conv, whose padding is an operand).

The StableHLO attributes carry exactly lax's parameters: dot dimension numbers, convolution layouts
(batch/feature/spatial dims of input, kernel and output), strides, padding, dilations and groups.
A result type other than the operands' is lax's ``preferred_element_type``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from jax import lax
from jaxlib.mlir.dialects import stablehlo

from workbench.jax_to_onnx.stablehlo import mlir
from workbench.jax_to_onnx.stablehlo.context import OpContext
from workbench.jax_to_onnx.stablehlo.ops.elementwise import ir_int
from workbench.jax_to_onnx.stablehlo.registry import converter


def _preferred(ctx: OpContext) -> Any:
    result = ctx.result_types[0].dtype
    return None if result == np.dtype(ctx.avals_in[0].dtype) else result


@converter("stablehlo.dot_general", via="dot_general", family="linalg")
def _dot_general(ctx: OpContext, lhs: ir.Value, rhs: ir.Value) -> ir.Value:
    numbers = stablehlo.DotDimensionNumbers(ctx.attr("dot_dimension_numbers"))
    dimension_numbers = (
        (tuple(numbers.lhs_contracting_dimensions), tuple(numbers.rhs_contracting_dimensions)),
        (tuple(numbers.lhs_batching_dimensions), tuple(numbers.rhs_batching_dimensions)),
    )
    (result,) = ctx.delegate(
        "dot_general", [lhs, rhs], dimension_numbers=dimension_numbers, precision=None,
        preferred_element_type=_preferred(ctx), out_sharding=None,
    )
    return result


def _check_convolution(op: Any) -> str | None:
    if "window_reversal" in op.attributes and any(mlir.ints(op.attributes["window_reversal"])):
        return "convolution with window reversal"
    return None


def _convolution(ctx: OpContext, lhs: ir.Value, rhs: ir.Value, padding: list[tuple[Any, Any]]) -> ir.Value:
    numbers = stablehlo.ConvDimensionNumbers(ctx.attr("dimension_numbers"))
    spatial = len(numbers.input_spatial_dimensions)

    def ints_or(name: str, default: int) -> tuple[int, ...]:
        return tuple(mlir.ints(ctx.attr(name))) if ctx.has_attr(name) else (default,) * spatial

    dimension_numbers = lax.ConvDimensionNumbers(
        lhs_spec=(numbers.input_batch_dimension, numbers.input_feature_dimension, *numbers.input_spatial_dimensions),
        rhs_spec=(numbers.kernel_output_feature_dimension, numbers.kernel_input_feature_dimension,
                  *numbers.kernel_spatial_dimensions),
        out_spec=(numbers.output_batch_dimension, numbers.output_feature_dimension, *numbers.output_spatial_dimensions),
    )
    (result,) = ctx.delegate(
        "conv_general_dilated", [lhs, rhs], avals_in=ctx.avals_in[:2],
        window_strides=ints_or("window_strides", 1), padding=tuple(padding),
        lhs_dilation=ints_or("lhs_dilation", 1), rhs_dilation=ints_or("rhs_dilation", 1),
        dimension_numbers=dimension_numbers,
        feature_group_count=ir_int(ctx.attr("feature_group_count")),
        batch_group_count=ir_int(ctx.attr("batch_group_count")),
        precision=None, preferred_element_type=_preferred(ctx), out_sharding=None,
    )
    return result


@converter("stablehlo.convolution", via="conv_general_dilated", family="linalg", check=_check_convolution)
def _convolution_op(ctx: OpContext, lhs: ir.Value, rhs: ir.Value) -> ir.Value:
    spatial = len(stablehlo.ConvDimensionNumbers(ctx.attr("dimension_numbers")).input_spatial_dimensions)
    padding = [tuple(p) for p in mlir.int_matrix(ctx.attr("padding"))] if ctx.has_attr("padding") else [(0, 0)] * spatial
    return _convolution(ctx, lhs, rhs, padding)


@converter("stablehlo.dynamic_conv", via="conv_general_dilated", family="linalg", check=_check_convolution)
def _dynamic_conv(ctx: OpContext, lhs: ir.Value, rhs: ir.Value, padding: ir.Value) -> ir.Value:
    del padding
    pairs = np.asarray(ctx.known_dims(2), dtype=object).reshape(-1, 2)
    return _convolution(ctx, lhs, rhs, [(a, b) for a, b in pairs])
