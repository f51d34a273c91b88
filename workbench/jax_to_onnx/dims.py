"""Shapes with symbolic dimensions, reasoned about structurally: a dim is an int or a name (``"B"``, ``"2*T"``).

Handlers and passes compare shapes whose batch or sequence dims are symbolic. Two dims with the same
name are equal for every value of the symbols; dims with different names are never assumed equal, and
a named dim is never assumed to be 1 (a size-1 axis is always a static 1). With these rules a
``Reshape`` target can often be written as constant ints, using ONNX's ``0`` (copy the input's dim at
that position) and one ``-1`` (inferred) for the symbolic dims, so no ``Shape`` op is needed at run time.

Why hand-written: onnx-ir keeps symbolic dims as names without arithmetic, and sympy (which JAX's
dimension expressions could use) is too heavy to import on the conversion path.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

Dim = int | str


def same_shape(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Two shapes of JAX dims (ints or symbolic dimension expressions) equal for every value of the symbols; dims
    JAX cannot compare (it raises for some symbolic pairs) count as different."""
    try:
        return len(a) == len(b) and all(bool(x == y) for x, y in zip(a, b, strict=True))
    except Exception:  # noqa: BLE001 - symbolic dims JAX cannot compare: not the same
        return False


def as_dim(dim: Any) -> Dim:
    """A JAX dim, an onnx-ir dim or an int as an int or a name."""
    if isinstance(dim, (int, np.integer)):
        return int(dim)
    if isinstance(dim, ir.SymbolicDim):
        if dim.value is None:
            raise ValueError("an anonymous symbolic dim has no name to compare")
        return dim.value
    return str(dim).replace(" ", "")


def dims_of(value: ir.Value | None) -> list[Dim] | None:
    """The value's shape as ints and names, or None when unknown or when a dim is anonymous."""
    if value is None or value.shape is None:
        return None
    dims: list[Dim] = []
    for dim in value.shape:
        # ints first: ir.SymbolicDim derives from a runtime-checkable Protocol, and isinstance against such
        # a class costs ~2.5 us for an int (asked ~850 times a GPT-12 conversion), against ~0.05 us here
        if type(dim) is int:
            dims.append(dim)
        elif isinstance(dim, ir.SymbolicDim):
            if dim.value is None:
                return None
            dims.append(dim.value)
        else:
            dims.append(int(dim))
    return dims


def _size(dims: Sequence[Dim]) -> tuple[int, Counter[str]]:
    """The number of elements as (product of the static dims, multiset of the named ones)."""
    return math.prod(d for d in dims if isinstance(d, int)), Counter(d for d in dims if isinstance(d, str))


def same_size(a: Sequence[Dim], b: Sequence[Dim]) -> bool:
    """Whether two shapes hold the same number of elements for every value of the symbols."""
    return _size(a) == _size(b)


def without_units(dims: Sequence[Dim]) -> list[Dim]:
    """The dims other than static 1s (a named dim is never taken for 1)."""
    return [d for d in dims if d != 1]


def reshape_target(source: Sequence[Dim], target: Sequence[Dim]) -> list[int] | None:
    """A constant ``Reshape`` shape that turns ``source`` into ``target``, or None when there is none.

    Static dims are written out; a named dim becomes ``0`` when the source has the same name at the
    same position, and at most one other named dim becomes ``-1``. None when the sizes differ or more
    than one named dim would need ``-1`` (the caller then reads the shape at run time).
    """
    if not same_size(source, target):
        return None
    result: list[int] = []
    inferred = False
    for axis, dim in enumerate(target):
        if isinstance(dim, int):
            if dim == 0:
                return None  # ONNX's 0 means "copy": an empty axis needs allowzero, never written here
            result.append(dim)
        elif axis < len(source) and source[axis] == dim:
            result.append(0)
        elif not inferred:
            result.append(-1)
            inferred = True
        else:
            return None
    return result


def reshaped_dims(source: Sequence[Dim], shape: Sequence[int]) -> list[Dim] | None:
    """The dims a ``Reshape(source, shape)`` (constant ``shape``, allowzero 0) yields, or None when unknown."""
    dims: list[Dim | None] = []
    for axis, size in enumerate(int(s) for s in shape):
        if size == 0:
            if axis >= len(source):
                return None
            dims.append(source[axis])
        elif size == -1:
            dims.append(None)
        elif size > 0:
            dims.append(size)
        else:
            return None
    if dims.count(None) > 1:
        return None
    if None in dims:
        known = [d for d in dims if d is not None]
        count, names = _size(source)
        known_count, known_names = _size(known)
        left = names - known_names
        if known_count == 0 or count % known_count or known_names - names:
            return None
        factor = count // known_count
        if not left and factor >= 1:
            dims[dims.index(None)] = factor
        elif len(left) == 1 and sum(left.values()) == 1 and factor == 1:
            dims[dims.index(None)] = next(iter(left))
        else:
            return None
    resolved = [d for d in dims if d is not None]
    return resolved if len(resolved) == len(dims) and same_size(source, resolved) else None


def broadcast_dims(*shapes: Sequence[Dim]) -> list[Dim] | None:
    """The numpy-style broadcast of shapes with named dims, or None when it cannot be told structurally."""
    rank = max((len(shape) for shape in shapes), default=0)
    result: list[Dim] = []
    for axis in range(rank):
        sizes = {shape[axis - rank + len(shape)] for shape in shapes if axis - rank + len(shape) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            return None
        result.append(sizes.pop() if sizes else 1)
    return result
