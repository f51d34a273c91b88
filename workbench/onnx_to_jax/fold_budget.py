"""How large a folded value would be, known before the generator evaluates the node.

The generator folds nodes whose inputs it knows (shape arithmetic) with the ONNX reference
evaluator. Inputs are small, but some ops make large outputs from small inputs: a 141-byte
``Expand`` to 20000x20000 or ``Range(0, 4e8)`` took gigabytes at generation time when the output
size was only checked after evaluating. :func:`output_elements` bounds every output of a foldable
op from the input values alone; the generator folds only when the bound fits its budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# output size = the first input's size, or less
_AT_MOST_FIRST_INPUT = frozenset(
    "Neg Abs Cast CastLike Identity Floor Ceil Sqrt Not Sign Reciprocal Round Exp Log Relu IsNaN IsInf "
    "CumSum Trilu Transpose Flatten Reshape Squeeze Unsqueeze ArgMax ArgMin ReduceProd ReduceSum ReduceMax "
    "ReduceMin Slice Split TopK Unique".split()
)
# output shape = the inputs' shapes broadcast together
_BROADCASTING = frozenset(
    "Add Sub Mul Div Equal Less Greater Where Min Max And Or Mod Pow LessOrEqual GreaterOrEqual Xor Clip".split()
)
_SIZED_BY_VALUES = frozenset({"Concat", "Gather", "NonZero", "Range", "ConstantOfShape", "Expand", "Tile", "OneHot"})
BOUNDED_OPS = _AT_MOST_FIRST_INPUT | _BROADCASTING | _SIZED_BY_VALUES


def _broadcast_elements(shapes: Sequence[tuple[int, ...]]) -> int | None:
    try:
        return math.prod(np.broadcast_shapes(*shapes))
    except ValueError:  # incompatible shapes: the evaluator would fail, nothing to fold
        return None


def _ints(value: np.ndarray) -> list[int] | None:
    if value.dtype.kind not in "iu":
        return None
    return [int(v) for v in value.reshape(-1)]


def output_elements(op_type: str, inputs: Sequence[np.ndarray]) -> int | None:
    """An upper bound of the elements of any output of ``op_type`` on ``inputs``; ``None``: unknown, do not fold.

    ``inputs`` are the node's present inputs in order (the generator folds only nodes whose inputs
    are all known).
    """
    if not inputs:
        return None
    first = inputs[0]
    if op_type in _AT_MOST_FIRST_INPUT:
        return int(first.size)
    if op_type in _BROADCASTING:
        return _broadcast_elements([np.shape(v) for v in inputs])
    if op_type == "Concat":
        return sum(int(v.size) for v in inputs)
    if op_type == "NonZero":
        return int(first.size) * max(first.ndim, 1)
    if op_type == "Gather":
        if len(inputs) < 2 or first.ndim == 0:
            return None
        return int(inputs[1].size) * int(first.size)  # indices x (data size / axis length) <= indices x data size
    if op_type == "Range":
        return _range_elements(inputs)
    if op_type == "ConstantOfShape":
        dims = _ints(first)
        return None if dims is None or any(d < 0 for d in dims) else math.prod(dims)
    if op_type == "Expand":
        dims = _ints(inputs[1]) if len(inputs) > 1 else None
        if dims is None or any(d < 0 for d in dims):
            return None
        return _broadcast_elements([first.shape, tuple(dims)])
    if op_type == "Tile":
        repeats = _ints(inputs[1]) if len(inputs) > 1 else None
        return None if repeats is None or any(r < 0 for r in repeats) else int(first.size) * math.prod(repeats)
    if op_type == "OneHot":
        if len(inputs) < 2 or inputs[1].size != 1:
            return None
        depth = float(inputs[1].reshape(-1)[0])
        return None if not math.isfinite(depth) or depth < 0 else int(first.size) * math.ceil(depth)
    return None


def _range_elements(inputs: Sequence[np.ndarray]) -> int | None:
    if len(inputs) != 3 or any(v.size != 1 for v in inputs):
        return None
    start, limit, delta = (float(v.reshape(-1)[0]) for v in inputs)
    if delta == 0 or not all(math.isfinite(x) for x in (start, limit, delta)):
        return None
    return max(math.ceil((limit - start) / delta), 0)


__all__ = ["BOUNDED_OPS", "output_elements"]
