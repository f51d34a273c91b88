"""Elementwise StableHLO ops: each has the semantics of one lax primitive, whose jaxpr handler lowers it.

StableHLO ops take operands of one shape (no implicit broadcasting, scalars only where the spec
says so, e.g. clamp's bounds), so the result dims are the first operand's. Booleans: ``add`` and
``maximum`` are OR, ``multiply`` and ``minimum`` are AND (StableHLO spec), as lax has no boolean add.
Small integer results (shape arithmetic) are also folded symbolically (see registry.py).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.jax_to_onnx.stablehlo import mlir
from workbench.jax_to_onnx.stablehlo.context import UNKNOWN, OpContext, dims_equal
from workbench.jax_to_onnx.stablehlo.registry import converter

_ACCURACY = {"accuracy": None}
# stablehlo op → (lax primitive, its parameters)
_UNARY: dict[str, tuple[str, dict[str, Any]]] = {
    "abs": ("abs", {}), "ceil": ("ceil", {}), "floor": ("floor", {}), "negate": ("neg", {}), "not": ("not", {}),
    "sign": ("sign", {}), "is_finite": ("is_finite", {}), "popcnt": ("population_count", {}),
    "count_leading_zeros": ("clz", {}),
    "cosine": ("cos", _ACCURACY), "sine": ("sin", _ACCURACY), "tan": ("tan", _ACCURACY), "tanh": ("tanh", _ACCURACY),
    "exponential": ("exp", _ACCURACY), "exponential_minus_one": ("expm1", _ACCURACY), "log": ("log", _ACCURACY),
    "log_plus_one": ("log1p", _ACCURACY), "logistic": ("logistic", _ACCURACY), "sqrt": ("sqrt", _ACCURACY),
    "rsqrt": ("rsqrt", _ACCURACY), "cbrt": ("cbrt", _ACCURACY),
    "round_nearest_even": ("round", {"rounding_method": lax.RoundingMethod.TO_NEAREST_EVEN}),
    "round_nearest_afz": ("round", {"rounding_method": lax.RoundingMethod.AWAY_FROM_ZERO}),
}
_BINARY: dict[str, tuple[str, dict[str, Any]]] = {
    "add": ("add", {}), "subtract": ("sub", {}), "multiply": ("mul", {"out_dtype": None}), "divide": ("div", {}),
    "remainder": ("rem", {}), "maximum": ("max", {}), "minimum": ("min", {}), "power": ("pow", {}),
    "atan2": ("atan2", {}), "and": ("and", {}), "or": ("or", {}), "xor": ("xor", {}),
    "shift_left": ("shift_left", {}), "shift_right_arithmetic": ("shift_right_arithmetic", {}),
    "shift_right_logical": ("shift_right_logical", {}),
}
_BOOLEAN: dict[str, str] = {"add": "or", "maximum": "or", "multiply": "and", "minimum": "and"}


def _delegate_elementwise(primitive: str, params: dict[str, Any], ctx: OpContext, *operands: ir.Value) -> ir.Value:
    if np.dtype(ctx.avals_in[0].dtype) == np.dtype(bool) and ctx.name.split(".")[1] in _BOOLEAN:
        primitive, params = _BOOLEAN[ctx.name.split(".")[1]], {}
    (result,) = ctx.delegate(primitive, operands, avals_out=ctx.result_avals_like(0), **params)
    return result


# ----------------------------------------------------------------------------- symbolic folding
def _fold_with(function: Callable[..., Any]) -> Callable[[OpContext], list[Any]]:
    """A fold rule applying ``function`` elementwise to the operands' known contents (ints or dims)."""

    def fold(ctx: OpContext) -> list[Any]:
        known = [ctx.known_elements(i) for i in range(len(ctx.operands))]
        if any(k is None for k in known) or np.dtype(ctx.result_types[0].dtype).kind not in "iub":
            return [None]
        result = np.empty(np.broadcast_shapes(*(k.shape for k in known)), dtype=object)
        arrays = [np.broadcast_to(k, result.shape) for k in known]
        for index in np.ndindex(result.shape):
            elements = [a[index] for a in arrays]
            result[index] = UNKNOWN if any(e is UNKNOWN for e in elements) else function(*elements)
        return [None if all(e is UNKNOWN for e in result.reshape(-1)) else result]

    return fold


def _truncating_div(a: Any, b: Any) -> Any:
    """StableHLO's integer division truncates toward zero. Symbolic signs are decided by JAX (``-H < 0``
    for a dimension H >= 1); an undecidable one raises InconclusiveDimensionOperation: then the value is
    just not known."""
    if isinstance(b, (int, np.integer)) and int(b) < 0:
        return -_truncating_div(a, -int(b))
    if not b > 0:
        raise ZeroDivisionError("division by a value that may be zero")
    return a // b if a >= 0 else -((-a) // b)


def _truncating_rem(a: Any, b: Any) -> Any:
    return a - b * _truncating_div(a, b)


def _sign(a: Any) -> int:
    return 1 if a > 0 else (-1 if a < 0 else 0)


def _select(pred: Any, on_true: Any, on_false: Any) -> Any:
    return on_true if bool(pred) else on_false


def _max(a: Any, b: Any) -> Any:
    return a if a >= b else b


def _min(a: Any, b: Any) -> Any:
    return a if a <= b else b


def _not(a: Any) -> Any:
    return (not a) if isinstance(a, (bool, np.bool_)) else ~int(a)


_FOLDS: dict[str, Callable[..., Any]] = {
    "add": operator.add, "subtract": operator.sub, "multiply": operator.mul, "divide": _truncating_div,
    "remainder": _truncating_rem, "maximum": _max, "minimum": _min, "negate": operator.neg, "sign": _sign,
    "abs": abs, "and": operator.and_, "or": operator.or_, "xor": operator.xor, "not": _not,
}

for _name, (_primitive, _params) in _UNARY.items():
    converter(
        f"stablehlo.{_name}", via=_primitive, family="elementwise",
        fold=_fold_with(_FOLDS[_name]) if _name in _FOLDS else None,
    )(functools.partial(_delegate_elementwise, _primitive, _params))
for _name, (_primitive, _params) in _BINARY.items():
    converter(
        f"stablehlo.{_name}", via=_primitive, family="elementwise",
        fold=_fold_with(_FOLDS[_name]) if _name in _FOLDS else None,
    )(functools.partial(_delegate_elementwise, _primitive, _params))


# ----------------------------------------------------------------------------- compare, select, clamp, convert
_DIRECTIONS = {"EQ": "eq", "NE": "ne", "LT": "lt", "LE": "le", "GT": "gt", "GE": "ge"}
_COMPARE_FOLDS: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": dims_equal, "NE": lambda a, b: not dims_equal(a, b), "LT": operator.lt, "LE": operator.le, "GT": operator.gt, "GE": operator.ge,
}


def _fold_compare(ctx: OpContext) -> list[Any]:
    direction, _ = mlir.comparison(ctx.op)
    return _fold_with(_COMPARE_FOLDS[direction])(ctx)


# TOTALORDER comparisons: lax's total-order primitives (lt_to, le_to, eq_to), operands swapped for GT/GE
_TOTAL_ORDER = {"LT": ("lt_to", False), "LE": ("le_to", False), "EQ": ("eq_to", False),
                "GT": ("lt_to", True), "GE": ("le_to", True), "NE": ("eq_to", False)}


@converter("stablehlo.compare", via="eq/ne/lt/le/gt/ge, lt_to/le_to/eq_to (TOTALORDER)", family="elementwise",
           primitives=("lt", "lt_to"),
           fold=_fold_compare)
def _compare(ctx: OpContext, lhs: ir.Value, rhs: ir.Value) -> ir.Value:
    """compare: FLOAT/SIGNED/UNSIGNED directions are the lax comparisons; TOTALORDER the total-order ones."""
    direction, kind = mlir.comparison(ctx.op)
    avals_out = ctx.result_avals_like(0)
    if kind != "TOTALORDER":
        (result,) = ctx.delegate(_DIRECTIONS[direction], [lhs, rhs], avals_out=avals_out)
        return result
    primitive, swapped = _TOTAL_ORDER[direction]
    operands, avals = ([rhs, lhs], ctx.avals_in[::-1]) if swapped else ([lhs, rhs], ctx.avals_in)
    (result,) = ctx.lower(primitive, operands, avals_in=avals, avals_out=avals_out)
    ctx.set_avals_out(avals_out)
    return ctx.op_("Not", result) if direction == "NE" else result


@converter("stablehlo.bitcast_convert", via="bitcast_convert_type", family="elementwise")
def _bitcast_convert(ctx: OpContext, x: ir.Value) -> ir.Value:
    (result,) = ctx.delegate("bitcast_convert_type", [x], new_dtype=ctx.result_types[0].dtype)
    return result


@converter("stablehlo.select", via="select_n", family="elementwise", fold=_fold_with(_select))
def _select_op(ctx: OpContext, pred: ir.Value, on_true: ir.Value, on_false: ir.Value) -> ir.Value:
    """select(pred, on_true, on_false) is select_n(pred, on_false, on_true); a scalar pred selects whole tensors."""
    avals = ctx.avals_in
    if len(avals[0].shape) == 0 and len(avals[1].shape) > 0:
        result = ctx.op_("Where", pred, on_true, on_false)
        ctx.set_avals_out(ctx.result_avals_like(1))
        return result
    (result,) = ctx.delegate("select_n", [pred, on_false, on_true], avals_in=[avals[0], avals[2], avals[1]],
                             avals_out=ctx.result_avals_like(1))
    return result


@converter("stablehlo.clamp", via="clamp", family="elementwise", fold=_fold_with(lambda lo, x, hi: _min(_max(x, lo), hi)))
def _clamp(ctx: OpContext, low: ir.Value, x: ir.Value, high: ir.Value) -> ir.Value:
    (result,) = ctx.delegate("clamp", [low, x, high], avals_out=ctx.result_avals_like(1))
    return result


def _fold_convert(ctx: OpContext) -> list[Any]:
    known = ctx.known_in[0]
    dtype = ctx.result_types[0].dtype
    if known is None or dtype.kind not in "iub":
        return [None]
    if np.asarray(known).dtype != object:
        return [np.asarray(known).astype(dtype)]
    if dtype.kind == "b":
        return [np.vectorize(lambda e: e if e is UNKNOWN else bool(e), otypes=[object])(known)]
    return [known]


@converter("stablehlo.convert", via="convert_element_type", family="elementwise", fold=_fold_convert)
def _convert(ctx: OpContext, x: ir.Value) -> ir.Value:
    """convert: float → integer truncates toward zero, → bool is ``!= 0`` (as lax's convert_element_type)."""
    target = ctx.result_types[0].dtype
    (result,) = ctx.delegate(
        "convert_element_type", [x], avals_out=ctx.result_avals_like(0), new_dtype=target, weak_type=False, sharding=None
    )
    return result


@converter("stablehlo.reduce_precision", via="reduce_precision", family="elementwise")
def _reduce_precision(ctx: OpContext, x: ir.Value) -> ir.Value:
    exponent = int(ir_int(ctx.attr("exponent_bits")))
    mantissa = int(ir_int(ctx.attr("mantissa_bits")))
    (result,) = ctx.delegate("reduce_precision", [x], avals_out=ctx.result_avals_like(0),
                             exponent_bits=exponent, mantissa_bits=mantissa)
    return result


def ir_int(attr: Any) -> int:
    from jaxlib.mlir import ir as mlir_ir

    return int(mlir_ir.IntegerAttr(attr).value)
