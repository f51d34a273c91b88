"""Building blocks of the matrix handlers: ONNX local functions, counted Loops, row/column access by index.

The decompositions (``factorizations.py``, ``eigen.py``, ``triangular.py``) are written against a
:class:`~workbench.jax_to_onnx.builder.GraphBuilder` ``g`` on matrices shaped ``[..., m, n]``: every
step is an elementwise op, a Gather by a loop index or a MatMul, so leading batch axes (static or
symbolic) ride along by broadcasting and nothing needs the batch size except the identity matrix a
loop starts from (:func:`batched_eye`, an Expand to the input's runtime batch shape).

Each primitive becomes one call of an ONNX local function (domain ``workbench.linalg``, e.g.
``Cholesky``, ``LU``, ``TriangularSolve``), defined once per primitive, parameters, dtype and input
shapes: the main graph shows one readable node per decomposition and Netron opens its body with the
Loop inside. Matrix sizes must be static (the loops run over them); batch axes may be symbolic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import (
    GraphBuilder,
    dim_text,
    ir_shape,
    is_static,
    tensor_type,
)
from workbench.jax_to_onnx.lowering import LoweringContext, finish_subgraph

LINALG_DOMAIN = "workbench.linalg"

BodyFn = Callable[[GraphBuilder, ir.Value, list[ir.Value]], list[ir.Value]]


@dataclass(frozen=True)
class Spec:
    """Shape (ints or symbolic dims) and dtype of a value: what a Loop body input or output is typed with."""

    shape: tuple[Any, ...]
    dtype: np.dtype

    @classmethod
    def of(cls, aval: Any) -> Spec:
        return cls(tuple(aval.shape), np.dtype(aval.dtype))

    def with_shape(self, *dims: Any) -> Spec:
        """The same batch axes (all but the last two of ``self``) followed by ``dims``."""
        return Spec((*self.shape[:-2], *dims), self.dtype)

    def batch(self, *dims: Any, dtype: Any = None) -> Spec:
        """This spec's batch axes (all but the last two) followed by ``dims``, optionally another dtype."""
        return Spec((*self.shape[:-2], *dims), np.dtype(dtype) if dtype is not None else self.dtype)


def typed(value: ir.Value, spec: Spec) -> ir.Value:
    value.type = tensor_type(spec.dtype)
    value.shape = ir_shape(spec.shape)
    return value


def static_size(dim: Any, what: str, primitive: str) -> int:
    """A matrix dimension the loops run over; symbolic ones are refused with the reason."""
    if not is_static(dim):
        raise ConversionError(
            f"{primitive}: the {what} ({dim}) must be static; the ONNX loop that computes it runs over it. "
            "Symbolic batch axes are fine; give the matrix dimensions as ints in the input spec."
        )
    return int(dim)


# ----------------------------------------------------------------------------- local functions
def local_function(
    ctx: LoweringContext,
    name: str,
    operands: Sequence[ir.Value],
    build: Callable[[GraphBuilder, list[ir.Value]], Sequence[ir.Value]],
    *,
    params: tuple[Any, ...] = (),
    input_names: Sequence[str] | None = None,
) -> tuple[ir.Value, ...]:
    """Call the ONNX local function ``name`` (domain ``workbench.linalg``) on ``operands``.

    The body is built by ``build(g, inputs)`` the first time this name, ``params`` and input
    signature (dtypes and shapes of ``ctx.avals_in``) occur; later equations with the same
    signature call the same definition. Outputs are typed from ``ctx.avals_out``.
    """
    state = ctx.builder.state
    signature = tuple((np.dtype(a.dtype).str, tuple(dim_text(d) for d in a.shape)) for a in ctx.avals_in)
    key = (LINALG_DOMAIN, name, params, signature)
    function = state.functions.get(key)
    if function is None:
        body = GraphBuilder(state, is_function=True)
        names = list(input_names) if input_names is not None else [f"x{i}" for i in range(len(operands))]
        inputs = [body.add_input(n, aval) for n, aval in zip(names, ctx.avals_in, strict=True)]
        outputs = list(build(body, inputs))
        for value, aval in zip(outputs, ctx.avals_out, strict=True):
            if value.type is None:
                typed(value, Spec.of(aval))
        graph = finish_subgraph(body, inputs, outputs, name)
        graph.opset_imports.update(body.used_opsets)
        overloads = sum(1 for k in state.functions if k[:2] == (LINALG_DOMAIN, name))
        function = ir.Function(LINALG_DOMAIN, name, f"v{overloads}" if overloads else "", graph=graph, attributes=[])
        state.functions[key] = function
    return ctx.builder.call_function(function, list(operands), len(ctx.avals_out))


# ----------------------------------------------------------------------------- loops
def counted_loop(
    g: GraphBuilder,
    trip_count: int | ir.Value,
    carried: Sequence[ir.Value],
    specs: Sequence[Spec],
    body: BodyFn,
    *,
    name: str,
    keep_going: Callable[[GraphBuilder, list[ir.Value]], ir.Value] | None = None,
) -> list[ir.Value]:
    """An ONNX Loop running ``body(g, k, values)`` for k = 0, 1, ... (int64 scalar), carrying ``carried``.

    ``specs`` type the carried values (they keep their shape from one iteration to the next). With
    ``keep_going(g, new_values)`` (a bool scalar) the loop also stops as soon as it returns false.
    """
    child = GraphBuilder(g.state, parent=g)
    iteration = child.add_input(f"{name}_k", Spec((), np.dtype(np.int64)))
    condition = child.add_input(f"{name}_cond", Spec((), np.dtype(np.bool_)))
    inputs = [child.add_input(f"{name}_state{i}", spec) for i, spec in enumerate(specs)]
    outputs = list(body(child, iteration, inputs))
    if len(outputs) != len(specs):
        raise ConversionError(f"loop {name}: the body returned {len(outputs)} values for {len(specs)} carried")
    produced = {id(o) for node in child.nodes for o in node.outputs}
    for value, spec in zip(outputs, specs, strict=True):
        if id(value) in produced:
            typed(value, spec)
    next_condition = condition if keep_going is None else keep_going(child, outputs)
    if id(next_condition) in produced:
        typed(next_condition, Spec((), np.dtype(np.bool_)))
    graph = finish_subgraph(child, [iteration, condition, *inputs], [next_condition, *outputs], f"{name}_body")
    count = g.const(np.asarray(trip_count, np.int64)) if isinstance(trip_count, int) else trip_count
    start = g.const(np.asarray(True))
    results = g.op("Loop", count, start, *carried, body=graph, num_outputs=len(carried), name_hint=name)
    results = list(results) if isinstance(results, tuple) else [results]
    return [typed(value, spec) for value, spec in zip(results, specs, strict=True)]


# ----------------------------------------------------------------------------- opset-dependent forms
def reduce_over(g: GraphBuilder, op_type: str, x: ir.Value, axes: Sequence[int], *, keepdims: bool) -> ir.Value:
    """ReduceMax/ReduceMin/ReduceProd over ``axes`` in the target opset's form: the axes are an input
    from opset 18 on (ReduceSum: from 13), an attribute before."""
    axes_as_input = g.state.opset >= 18 or op_type == "ReduceSum"
    if axes_as_input:
        return g.op(op_type, x, g.i64(list(axes)), keepdims=int(keepdims))
    return g.op(op_type, x, axes=list(axes), keepdims=int(keepdims))


# ----------------------------------------------------------------------------- element access
def scalar(g: GraphBuilder, value: Any, dtype: Any) -> ir.Value:
    return g.const(np.asarray(value, dtype=dtype))


def arange(g: GraphBuilder, n: int) -> ir.Value:
    """The constant int64 vector [0, 1, ..., n-1]."""
    return g.const(np.arange(n, dtype=np.int64))


def take(g: GraphBuilder, x: ir.Value, index: ir.Value, axis: int) -> ir.Value:
    """``x`` at ``index`` (int64 scalar) along ``axis``; the axis disappears (a row, a column, an entry)."""
    return g.op("Gather", x, index, axis=axis)


def take_keep(g: GraphBuilder, x: ir.Value, index: ir.Value, axis: int) -> ir.Value:
    """``x`` at ``index`` (int64 scalar) along ``axis``, which stays as an axis of size 1."""
    return g.op("Gather", x, g.op("Unsqueeze", index, g.i64([0])), axis=axis)


def take_per_batch(g: GraphBuilder, x: ir.Value, index: ir.Value, axis: int) -> ir.Value:
    """``x`` along ``axis`` at a per-batch index (``index`` shaped like ``x`` with size 1 on ``axis``).

    GatherElements picks exactly (no arithmetic), so swapped rows and pivots are bit-identical copies.
    """
    return g.op("GatherElements", x, index, axis=axis)


def mask_eq(g: GraphBuilder, n: int, index: ir.Value) -> ir.Value:
    """Bool [n]: position == index."""
    return g.op("Equal", arange(g, n), index)


def mask_cmp(g: GraphBuilder, n: int, op: str, index: ir.Value) -> ir.Value:
    """Bool [n]: position <op> index, for op in Less, LessOrEqual, Greater, GreaterOrEqual."""
    return g.op(op, arange(g, n), index)


def as_column(g: GraphBuilder, x: ir.Value) -> ir.Value:
    """[..., n] → [..., n, 1]."""
    return g.op("Unsqueeze", x, g.i64([-1]))


def as_row(g: GraphBuilder, x: ir.Value) -> ir.Value:
    """[..., n] → [..., 1, n]."""
    return g.op("Unsqueeze", x, g.i64([-2]))


def swap_last(g: GraphBuilder, x: ir.Value, rank: int) -> ir.Value:
    """The matrix transpose of the last two axes of a rank-``rank`` tensor."""
    perm = [*range(rank - 2), rank - 1, rank - 2]
    return g.op("Transpose", x, perm=perm)


def leading_shape(g: GraphBuilder, x: ir.Value, drop: int) -> ir.Value:
    """The runtime shape of ``x`` without its last ``drop`` axes, as a 1-D int64 (Shape's ``end``
    attribute from opset 15 on, a Slice of the whole shape before)."""
    if g.state.opset >= 15:
        return g.op("Shape", x, end=-drop)
    return g.op("Slice", g.op("Shape", x), g.i64([0]), g.i64([-drop]), g.i64([0]))


def batch_shape(g: GraphBuilder, x: ir.Value) -> ir.Value:
    """The runtime shape of ``x``'s batch axes (all but the last two), as a 1-D int64."""
    return leading_shape(g, x, 2)


def batched_eye(g: GraphBuilder, like: ir.Value, rows: int, columns: int, dtype: Any) -> ir.Value:
    """The ``rows x columns`` identity repeated over ``like``'s batch axes: [..., rows, columns]."""
    eye = g.const(np.eye(rows, columns, dtype=dtype))
    shape = g.op("Concat", batch_shape(g, like), g.i64([rows, columns]), axis=0)
    return g.op("Expand", eye, shape)


def diagonal(g: GraphBuilder, x: ir.Value, n: int, dtype: Any) -> ir.Value:
    """The diagonal of square [..., n, n] matrices: [..., n] (a masked row sum, exact: other terms are 0)."""
    return g.op("ReduceSum", g.op("Mul", x, g.const(np.eye(n, dtype=dtype))), g.i64([-1]), keepdims=0)


def lower_mask(n_rows: int, n_columns: int, *, k: int = 0) -> np.ndarray:
    """Bool [rows, columns]: entries on and below the k-th diagonal."""
    return np.tril(np.ones((n_rows, n_columns), dtype=bool), k)


def triangle(g: GraphBuilder, x: ir.Value, rows: int, columns: int, dtype: Any, *, lower: bool, k: int = 0) -> ir.Value:
    """``tril(x, k)`` (lower) or ``triu(x, k)``: the other entries become exact zeros."""
    keep = lower_mask(rows, columns, k=k) if lower else ~lower_mask(rows, columns, k=k - 1)
    return g.op("Where", g.const(keep), x, scalar(g, 0, dtype))


def symmetric_from(g: GraphBuilder, x: ir.Value, n: int, dtype: Any, rank: int, *, lower: bool) -> ir.Value:
    """The symmetric matrix whose ``lower`` (or upper) triangle is that of ``x``; the other is not read."""
    kept = triangle(g, x, n, n, dtype, lower=lower)
    strict = triangle(g, x, n, n, dtype, lower=lower, k=-1 if lower else 1)
    return g.op("Add", kept, swap_last(g, strict, rank))


def nan_unless(g: GraphBuilder, ok: ir.Value, x: ir.Value, dtype: Any, extra_axes: int) -> ir.Value:
    """``x`` where the per-matrix flag ``ok`` ([...]) holds, NaN elsewhere (as JAX reports LAPACK failures)."""
    flag = g.op("Unsqueeze", ok, g.i64(list(range(-extra_axes, 0)))) if extra_axes else ok
    return g.op("Where", flag, x, scalar(g, np.nan, dtype))


def any_true(g: GraphBuilder, flags: ir.Value) -> ir.Value:
    """Whether any entry of a bool tensor (of any rank, scalars included) is true, as a bool scalar."""
    count = g.op("ReduceMax", g.op("Cast", flags, to=ir.DataType.INT32), keepdims=0)
    return g.op("Cast", count, to=ir.DataType.BOOL)


def sign_nonnegative(g: GraphBuilder, x: ir.Value, dtype: Any) -> ir.Value:
    """+1 where x >= 0 (zero included), -1 elsewhere (Fortran's SIGN(1, x) that LAPACK's reflectors use)."""
    return g.op("Where", g.op("Less", x, scalar(g, 0, dtype)), scalar(g, -1, dtype), scalar(g, 1, dtype))
