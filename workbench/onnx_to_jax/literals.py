"""Values -> escaped Python literals for generated code.

Everything from the model that ends up in code as a value (attribute numbers
and strings, small constant tensors) goes through :func:`literal`, which only
ever emits ``repr`` of str/int/float/bool, tuples/lists of them, and
``np.array(..., dtype=...)`` (``np.zeros(shape, dtype=...)`` for an empty array whose nested list
cannot carry its shape) with a dtype name from a fixed table.
"""

from __future__ import annotations

import math

import numpy as np

INLINE_MAX_ELEMENTS = 64  # folded values up to this size are written as literals, larger go to params

# numpy dtype name -> expression in generated code (jnp exposes the ml_dtypes types)
DTYPE_EXPR: dict[str, str] = {
    name: f"jnp.{name}"
    for name in (
        "float32 float64 float16 bfloat16 int8 int16 int32 int64 uint8 uint16 uint32 uint64 bool "
        "complex64 complex128 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz "
        "float8_e8m0fnu float4_e2m1fn int4 uint4 int2 uint2"
    ).split()
}


def dtype_expr(dtype: np.dtype) -> str:
    name = np.dtype(dtype).name
    try:
        return DTYPE_EXPR[name]
    except KeyError as e:
        from workbench.errors import UnsupportedOnnxOpError

        raise UnsupportedOnnxOpError(f"the element type {name!r} has no JAX equivalent") from e


def _scalar(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isnan(f):
            return "np.nan"
        if math.isinf(f):
            return "np.inf" if f > 0 else "-np.inf"
        return repr(f)
    if isinstance(value, (complex, np.complexfloating)):
        return f"complex({_scalar(value.real)}, {_scalar(value.imag)})"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bytes):
        return repr(value)
    if value is None:
        return "None"
    raise TypeError(f"cannot write {type(value).__name__} as a literal")


def literal(value: object) -> str:
    """An escaped literal for ``value`` (scalars, tuples/lists, numpy arrays)."""
    if isinstance(value, np.ndarray):
        return array_literal(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return _scalar(value)


def _nested(values: object) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    return _scalar(values)


def array_literal(array: np.ndarray) -> str:
    dtype = dtype_expr(array.dtype)
    if array.size == 0 and 0 in array.shape[:-1]:
        # ``tolist()`` of a (0, 14, 14) array is ``[]``: the nested list loses every dimension after the
        # first empty one (Swin3D's window masks scatter such empty updates, export at 4x64x64)
        return f"np.zeros({literal(tuple(int(d) for d in array.shape))}, dtype={dtype})"
    kind = array.dtype.kind
    if array.dtype.name in ("bool",) or kind in "iuc":
        values = array.tolist()
    elif kind == "f" and array.dtype.itemsize >= 4 and array.dtype.name in ("float32", "float64"):
        values = array.tolist()
    else:  # ml_dtypes and float16: go through float64 (exact for every representable value)
        if "int" in array.dtype.name:
            values = array.astype(np.int64).tolist()
        else:
            values = array.astype(np.float64).tolist()
    return f"np.array({_nested(values)}, dtype={dtype})"
