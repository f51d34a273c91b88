"""Reductions with a body: reduce, reduce_window (and its dynamic custom call), sort.

The bodies are recognised (regions.py) as the forms lax emits, and the op is handed to the lax
primitive's handler: ``reduce`` with ``add`` → reduce_sum, the argmax reducer → argmax, a pooling
window → reduce_window_max, lax.sort's comparator → sort. An init value other than the combiner's
identity is combined with the result (reduce) or refused (reduce_window, where it would also pad).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir
from jaxlib.mlir import ir as mlir_ir

from workbench.errors import ConversionError
from workbench.jax_to_onnx.stablehlo import mlir, regions
from workbench.jax_to_onnx.builder import GraphBuilder
from workbench.jax_to_onnx.lowering import finish_subgraph
from workbench.jax_to_onnx.stablehlo.context import OpContext, Sym, dims_equal, shaped
from workbench.jax_to_onnx.stablehlo.ops.elementwise import ir_int
from workbench.jax_to_onnx.stablehlo.ops.index import mlir_bool
from workbench.jax_to_onnx.stablehlo.registry import converter
from workbench.jax_to_onnx.stablehlo.walker import UNDECIDABLE as _UNDECIDABLE

# combiner → (lax reduction, lax elementwise primitive), for numbers and for booleans
_REDUCTIONS = {
    "stablehlo.add": ("reduce_sum", "add"), "stablehlo.multiply": ("reduce_prod", "mul"),
    "stablehlo.maximum": ("reduce_max", "max"), "stablehlo.minimum": ("reduce_min", "min"),
    "stablehlo.and": ("reduce_and", "and"), "stablehlo.or": ("reduce_or", "or"), "stablehlo.xor": ("reduce_xor", "xor"),
}
_BOOLEAN_REDUCTIONS = {
    "stablehlo.add": ("reduce_or", "or"), "stablehlo.maximum": ("reduce_or", "or"),
    "stablehlo.multiply": ("reduce_and", "and"), "stablehlo.minimum": ("reduce_and", "and"),
}


def _identity(combiner: str, dtype: np.dtype) -> Any:
    if combiner in ("stablehlo.add", "stablehlo.or", "stablehlo.xor"):
        return 0
    if combiner in ("stablehlo.multiply", "stablehlo.and"):
        return 1
    if dtype == np.dtype(bool):
        return combiner == "stablehlo.minimum"
    if dtype.kind == "f" or dtype.name == "bfloat16":
        return -np.inf if combiner == "stablehlo.maximum" else np.inf
    info = np.iinfo(dtype)
    return info.min if combiner == "stablehlo.maximum" else info.max


def _is_identity(known: np.ndarray | None, combiner: str, dtype: np.dtype) -> bool:
    if known is None:
        return False
    value = np.asarray(known)
    if value.size != 1:
        return False
    element = value.reshape(-1)[0]
    return isinstance(element, (bool, int, float, np.generic)) and bool(element == _identity(combiner, dtype))


# ----------------------------------------------------------------------------- reduce
def _iota_along(value: Any, axis: int) -> bool:
    owner = value.owner
    if isinstance(owner, mlir_ir.Block) or owner.name not in ("stablehlo.iota", "stablehlo.dynamic_iota"):
        return False
    return ir_int(owner.attributes["iota_dimension"]) == axis


def _check_reduce(op: Any) -> str | None:
    inputs = len(op.operands) // 2
    if inputs == 1:
        return None if regions.binary_body(op) in _REDUCTIONS else "reduce with a body other than add/mul/max/min/and/or/xor"
    dims = mlir.ints(op.attributes["dimensions"])
    if inputs == 2 and regions.arg_reducer(op) is not None and len(dims) == 1 and _iota_along(op.operands[1], dims[0]):
        return None
    return "variadic reduce other than argmax/argmin"


@converter("stablehlo.reduce", via="reduce_sum/max/min/prod/and/or/xor, argmax/argmin", family="reduce", check=_check_reduce,
           primitives=("reduce_sum", "argmax"))
def _reduce(ctx: OpContext, *operands: ir.Value) -> Any:
    axes = tuple(mlir.ints(ctx.attr("dimensions")))
    aval = ctx.avals_in[0]
    kept = [d for i, d in enumerate(aval.shape) if i not in axes]
    if len(operands) == 4:
        return _arg_reduce(ctx, operands[0], axes[0], kept)
    x, init = operands
    dtype = np.dtype(aval.dtype)
    combiner = regions.binary_body(ctx.op)
    primitive, elementwise = (_BOOLEAN_REDUCTIONS if dtype == np.dtype(bool) else _REDUCTIONS).get(
        combiner, _REDUCTIONS[combiner]
    )
    result_aval = shaped(kept, ctx.result_types[0].dtype)
    params = {"axes": axes, "out_sharding": None} if primitive == "reduce_sum" else {"axes": axes}
    (reduced,) = ctx.delegate(primitive, [x], avals_in=[aval], avals_out=[result_aval], **params)
    if _is_identity(ctx.known_in[1], combiner, dtype):
        return reduced
    (combined,) = ctx.lower(elementwise, [reduced, init], avals_in=[result_aval, ctx.avals_in[1]], avals_out=[result_aval])
    return combined


def _arg_reduce(ctx: OpContext, x: ir.Value, axis: int, kept: list[Any]) -> tuple[ir.Value, ir.Value]:
    kind = regions.arg_reducer(ctx.op).kind
    value_type, index_type = ctx.result_types
    value_aval, index_aval = shaped(kept, value_type.dtype), shaped(kept, index_type.dtype)
    (indices,) = ctx.lower(kind, [x], avals_in=[ctx.avals_in[0]], avals_out=[index_aval],
                           axes=(axis,), index_dtype=index_type.dtype)
    # the value the reducer chose: the element at that index
    positions = ctx.op_("Unsqueeze", ctx.op_("Cast", indices, to=ir.DataType.INT64), ctx.i64([axis]))
    picked = ctx.op_("GatherElements", x, positions, axis=axis)
    values = ctx.typed(ctx.op_("Squeeze", picked, ctx.i64([axis])), value_aval)
    ctx.set_avals_out([value_aval, index_aval])
    return values, indices


# ----------------------------------------------------------------------------- reduce_window
_WINDOWS = {"stablehlo.add": "reduce_window_sum", "stablehlo.maximum": "reduce_window_max", "stablehlo.minimum": "reduce_window_min"}
_CUMULATIVE = {"stablehlo.add": "cumsum", "stablehlo.multiply": "cumprod", "stablehlo.maximum": "cummax", "stablehlo.minimum": "cummin"}


@dataclass(frozen=True)
class _Window:
    dims: list[Any]
    strides: list[Any]
    base: list[Any]
    dilations: list[Any]
    padding: list[tuple[Any, Any]]

    def cumulative(self, shape: Sequence[Any]) -> tuple[int, bool] | None:
        """(axis, reverse) when the window is a running reduction along one axis (lax.cumsum and kin):
        a window as long as that axis, padded by its length - 1 before (forward) or after (reverse)."""
        if any(_not_one(v) for v in (*self.strides, *self.base, *self.dilations)):
            return None
        axes = [a for a, d in enumerate(self.dims) if _not_one(d)]
        if len(axes) != 1 or any(_not_zero(lo) or _not_zero(hi) for a, (lo, hi) in enumerate(self.padding) if a != axes[0]):
            return None
        axis = axes[0]
        length, (low, high) = self.dims[axis], self.padding[axis]
        if not _same(length, shape[axis]):
            return None
        if _same(low, length - 1) and not _not_zero(high):
            return axis, False
        if _same(high, length - 1) and not _not_zero(low):
            return axis, True
        return None


def _same(a: Any, b: Any) -> bool:
    try:
        return dims_equal(a, b)
    except _UNDECIDABLE:
        return False


def _not_one(value: Any) -> bool:
    return not _same(value, 1)


def _not_zero(value: Any) -> bool:
    return not _same(value, 0)


def _static_window(op: Any) -> _Window:
    rank = len(mlir.ints(op.attributes["window_dimensions"]))

    def ints_or(name: str) -> list[int]:
        return mlir.ints(op.attributes[name]) if name in op.attributes else [1] * rank

    padding = [tuple(p) for p in mlir.int_matrix(op.attributes["padding"])] if "padding" in op.attributes else [(0, 0)] * rank
    return _Window(mlir.ints(op.attributes["window_dimensions"]), ints_or("window_strides"), ints_or("base_dilations"),
                   ints_or("window_dilations"), padding)


def _check_reduce_window(op: Any) -> str | None:
    if len(op.operands) != 2:
        return "variadic reduce_window"
    if regions.binary_body(op) in _WINDOWS:
        return None
    operand = mlir.tensor_type(op.operands[0].type, "reduce_window")
    shape = [d if d is not None else -1 for d in operand.dims]
    if _static_window(op).cumulative(shape) is None and None not in operand.dims:
        return "reduce_window with a body other than add/max/min that is not a running reduction"
    return None


def _reduce_window_with(ctx: OpContext, x: ir.Value, window: _Window, body: Any, body_scope: Any) -> ir.Value:
    """The window reduction of ``x`` whose reducer is ``body`` (a region)."""
    dtype = np.dtype(ctx.avals_in[0].dtype)
    combiner = regions.binary_body_of_region(body)
    shape = ctx.avals_in[0].shape
    running = window.cumulative(shape)
    identity = combiner is not None and _is_identity(ctx.known_in[1], combiner, dtype)
    if running is not None and identity and combiner in _CUMULATIVE:
        axis, reverse = running
        (result,) = ctx.delegate(_CUMULATIVE[combiner], [x], avals_in=ctx.avals_in[:1], axis=axis, reverse=reverse)
        return result
    if combiner in _WINDOWS and identity:
        (result,) = ctx.delegate(
            _WINDOWS[combiner], [x], avals_in=ctx.avals_in[:1],
            window_dimensions=tuple(window.dims), window_strides=tuple(window.strides), padding=tuple(window.padding),
            base_dilation=tuple(window.base), window_dilation=tuple(window.dilations),
        )
        return result
    if running is None:
        raise ConversionError(f"{ctx.where}: a reduce_window that is neither a pooling window of add/max/min with its "
                              "identity as init value nor a running reduction")
    axis, reverse = running
    return _running_scan(ctx, x, axis, reverse, body, body_scope)


def _running_scan(ctx: OpContext, x: ir.Value, axis: int, reverse: bool, body: Any, body_scope: Any) -> ir.Value:
    """Any reducer as a running reduction: ONNX Scan along ``axis`` with the reducer as its body
    (applied to whole slices: the reducer's ops are elementwise), starting from the init value."""
    aval = ctx.avals_in[0]
    slice_aval = shaped([d for a, d in enumerate(aval.shape) if a != axis], aval.dtype)
    start = ctx.typed(ctx.op_("Expand", ctx.operands[1].value, ctx.shape_value(slice_aval.shape)), slice_aval)
    child = GraphBuilder(ctx.builder.state, parent=ctx.builder)
    carried = child.add_input("running_in", slice_aval)
    element = child.add_input("element", slice_aval)
    ctx.walker.batched += 1
    try:
        (combined,) = ctx.walker.convert_region(child, body, [Sym(carried, slice_aval), Sym(element, slice_aval)], body_scope)
    finally:
        ctx.walker.batched -= 1
    graph = finish_subgraph(child, [carried, element], [combined.value, combined.value], "running")
    for value in graph.outputs:
        child.set_type(value, slice_aval)
    direction = [1 if reverse else 0]
    _, ys = ctx.op_("Scan", start, x, body=graph, num_scan_inputs=1, scan_input_axes=[axis], scan_output_axes=[axis],
                    scan_input_directions=direction, scan_output_directions=direction, num_outputs=2)
    ctx.set_avals_out([shaped(aval.shape, ctx.result_types[0].dtype)])
    return ys


@converter("stablehlo.reduce_window", via="reduce_window_sum/max/min, cumsum/cumprod/cummax/cummin", onnx_ops=("Scan",),
           family="reduce", check=_check_reduce_window, primitives=("reduce_window_sum", "cumsum"))
def _reduce_window(ctx: OpContext, x: ir.Value, init: ir.Value) -> ir.Value:
    del init
    return _reduce_window_with(ctx, x, _static_window(ctx.op), ctx.op.regions[0], ctx.scope)


def _called_body(op: Any) -> Any:
    """The function a custom call names in ``called_computations`` (looked up in its module)."""
    name = mlir.symbol_ref(mlir_ir.ArrayAttr(op.attributes["called_computations"])[0])
    module = op
    while module.name != "builtin.module":
        module = module.parent
    return mlir_ir.SymbolTable(module)[name]


def _check_dynamic_reduce_window(op: Any) -> str | None:
    return None if len(op.operands) == 7 else "variadic dynamic_reduce_window"


@converter("stablehlo.custom_call@stablehlo.dynamic_reduce_window", via="reduce_window_sum/max/min, cumsum/...",
           onnx_ops=("Scan",), family="reduce", primitives=("cumsum", "cummax"),
           spec="https://github.com/openxla/stablehlo/blob/main/rfcs/20230704-dynamism-101.md", check=_check_dynamic_reduce_window)
def _dynamic_reduce_window(ctx: OpContext, x: ir.Value, init: ir.Value, *window: ir.Value) -> ir.Value:
    """The custom call JAX emits for a reduce_window on dynamic shapes: the window is in operands 2-6."""
    del init, window
    dims, strides, base, dilations = (ctx.known_dims(i) for i in (2, 3, 4, 5))
    padding = [tuple(p) for p in np.asarray(ctx.known_dims(6), dtype=object).reshape(-1, 2).tolist()]
    body = _called_body(ctx.op).operation.regions[0]
    return _reduce_window_with(ctx, x, _Window(dims, strides, base, dilations, padding), body, None)


# ----------------------------------------------------------------------------- sort
def _check_sort(op: Any) -> str | None:
    return None if regions.sort_comparator(op) is not None else "sort with a comparator other than lax.sort's"


@converter("stablehlo.sort", via="sort", family="reduce", check=_check_sort, walks_regions=False)
def _sort(ctx: OpContext, *operands: ir.Value) -> tuple[ir.Value, ...]:
    comparator = regions.sort_comparator(ctx.op)
    dimension = ir_int(ctx.attr("dimension"))
    stable = ctx.has_attr("is_stable") and mlir_bool(ctx.attr("is_stable"))
    avals = ctx.avals_in
    if not comparator.descending:
        return tuple(ctx.delegate("sort", list(operands), avals_out=avals, dimension=dimension, is_stable=stable,
                                  num_keys=comparator.num_keys))
    # descending and stable = reverse, ascending stable sort, reverse (ties keep their order)
    flipped = [ctx.lower("rev", [x], avals_in=[a], avals_out=[a], dimensions=(dimension,))[0]
               for x, a in zip(operands, avals, strict=True)]
    ascending = ctx.lower("sort", flipped, avals_in=avals, avals_out=avals, dimension=dimension, is_stable=stable, num_keys=1)
    ctx.set_avals_out(avals)
    return tuple(ctx.lower("rev", [x], avals_in=[a], avals_out=[a], dimensions=(dimension,))[0]
                 for x, a in zip(ascending, avals, strict=True))
