"""``Where`` for every element type: onnxruntime's CPU provider has a Where kernel for int8, uint8, int32,
uint32, int64, float16, float32 and float64 only (measured with onnxruntime 1.31: bool, int16, uint16, uint64
and bfloat16 models are refused at session creation, NOT_IMPLEMENTED). Those types are selected in a type that
holds every value of theirs and cast back, so the exported file runs there and stays exact."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from ml_dtypes import bfloat16

from workbench.jax_to_onnx.builder import onnx_dtype
from workbench.jax_to_onnx.lowering import LoweringContext

# the type each unsupported element type is selected in (uint64 through int64: Cast wraps both ways, exactly)
_SELECTED_AS: dict[np.dtype, np.dtype] = {
    np.dtype(np.bool_): np.dtype(np.uint8),
    np.dtype(np.int16): np.dtype(np.int32),
    np.dtype(np.uint16): np.dtype(np.int32),
    np.dtype(np.uint64): np.dtype(np.int64),
    np.dtype(bfloat16): np.dtype(np.float32),
}


def selected_as(dtype: Any) -> np.dtype | None:
    """The type values of ``dtype`` are selected in (None: onnxruntime's Where takes ``dtype`` itself)."""
    return _SELECTED_AS.get(np.dtype(dtype))


def where(ctx: LoweringContext, condition: ir.Value, a: ir.Value, b: ir.Value, dtype: Any) -> ir.Value:
    """``Where(condition, a, b)`` for values ``a`` and ``b`` of element type ``dtype``, whatever that type."""
    wide = selected_as(dtype)
    if wide is None:
        return ctx.op("Where", condition, a, b)
    as_wide = onnx_dtype(wide)
    selected = ctx.op("Where", condition, ctx.op("Cast", a, to=as_wide), ctx.op("Cast", b, to=as_wide))
    return ctx.op("Cast", selected, to=onnx_dtype(dtype))
