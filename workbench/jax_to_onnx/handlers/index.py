"""Indexing primitives: gather, scatter (set/add/sub/mul/min/max), dynamic_slice, dynamic_update_slice.

Out-of-bounds semantics follow JAX (see docs/handlers_shape_index.md):

- gather, ``CLIP`` and ``PROMISE_IN_BOUNDS``: each start index is clamped to ``[0, dim - slice_size]``
  (what XLA does for a promise it cannot check); ``FILL_OR_DROP`` (``jnp.take``'s default): a slice
  that is not wholly in bounds yields ``fill_value`` (NaN for floats, as JAX defaults it);
- scatter, ``CLIP``: start indices clamped; ``FILL_OR_DROP`` and ``PROMISE_IN_BOUNDS``: an update whose
  window is not wholly in bounds is dropped (XLA skips it);
- dynamic_slice / dynamic_update_slice: start indices clamped, as lax defines them.

Negative indices are already normalised by jnp before the primitive (``select_n(i < 0, i, i + n)``),
so at this level a negative start is out of bounds, as in XLA.

The general lowering builds, for the operand axes addressed by indices, the full coordinate tuple of
every gathered/scattered window element and uses GatherND / ScatterND on the operand transposed so that
these axes lead (axes taken whole stay trailing, so they cost no index memory). Fast paths: Gather on
one axis (``x[idx]``, ``jnp.take``, embeddings), GatherElements (``take_along_axis``) and Slice (a gather
without batch dimensions is a dynamic slice, e.g. ``x[..., 1:3]``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax
from jax.lax import GatherScatterMode  # the enum of the gather/scatter `mode` param

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import is_static
from workbench.jax_to_onnx.handlers.shape import dim_scalar, same_dim, transpose
from workbench.jax_to_onnx.handlers.where_kernels import where
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler
from workbench.onnx_io.evaluate import evaluate_node

_I64 = ir.DataType.INT64


# ----------------------------------------------------------------------------- build-time folding of index arithmetic
# Indices are often constants (x[..., :4], x[:, ::-1], x.at[0].set on symbolic shapes trace to gather/scatter
# whose indices come from literals and iota). Folding their small integer arithmetic while the graph is being
# built keeps those graphs to one Slice/Gather instead of a chain of Cast/Min/Max/Add (a later optimizer pass
# cannot undo the out-of-bounds masking nodes it saves). The values are computed by the package's one ONNX
# constant evaluator (onnx_io/evaluate.py); only these deterministic, cheap ops are folded here.
_FOLD_LIMIT = 1 << 16  # elements; larger constant indices are left to the runtime
_FOLDED_OPS = frozenset({
    "Identity", "Unsqueeze", "Squeeze", "Reshape", "Cast", "Concat", "Expand", "Gather", "Slice", "Range",
    "Add", "Sub", "Mul", "Neg", "Min", "Max", "Less", "Equal", "Not", "Where", "ReduceMax",
})
# handlers write nodes in their opset-18 form (opset_forms.py); nodes already in the graph are in the target's
_HANDLER_FORM_OPSET = 18


def _evaluated(op_type: str, inputs: Sequence[np.ndarray | None], attributes: dict[str, Any], opset: int) -> np.ndarray | None:
    if op_type not in _FOLDED_OPS:
        return None
    outputs = evaluate_node(op_type, inputs, attributes, opset)
    if outputs is None or len(outputs) != 1 or outputs[0].size > _FOLD_LIMIT:
        return None
    return outputs[0]


def constant_of(value: ir.Value | None, opset: int, depth: int = 12) -> np.ndarray | None:
    """The value as a NumPy array when it is computed from constants only (a few integer ops deep);
    ``opset`` is the graph's, whose form the nodes in it have."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    node = value.producer()
    if node is None or depth == 0 or node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
        return None
    if node.op_type == "Constant":
        attribute = node.attributes.get("value")
        return None if attribute is None else attribute.value.numpy()
    if node.op_type not in _FOLDED_OPS:
        return None
    inputs = [None if v is None else constant_of(v, opset, depth - 1) for v in node.inputs]
    if any(i is None for i, v in zip(inputs, node.inputs, strict=True) if v is not None):
        return None
    return _evaluated(node.op_type, inputs, {name: attr.value for name, attr in node.attributes.items()}, opset)


def _op(ctx: LoweringContext, op_type: str, *inputs: ir.Value, **attributes: Any) -> ir.Value:
    """``ctx.op`` for index arithmetic: a constant instead of a node when every input is constant."""
    if op_type in _FOLDED_OPS:
        values = [constant_of(v, ctx.opset, depth=1) for v in inputs]
        if all(v is not None for v in values):
            result = _evaluated(op_type, values, attributes, _HANDLER_FORM_OPSET)
            if result is not None:
                return ctx.const(result)
    return ctx.op(op_type, *inputs, **attributes)


def _folded(ctx: LoweringContext, value: ir.Value) -> ir.Value:
    """``value`` as a constant when it is computed from constants (e.g. normalised literal indices)."""
    known = constant_of(value, ctx.opset)
    return value if known is None or value.const_value is not None else ctx.const(known)


def _statically(ctx: LoweringContext, mask: ir.Value, expected: bool) -> bool:
    """True when the boolean ``mask`` is a known constant with every element equal to ``expected``."""
    known = constant_of(mask, ctx.opset, depth=1)
    return known is not None and bool(np.all(known == expected))


# ----------------------------------------------------------------------------- small helpers
def _as_i64(ctx: LoweringContext, x: ir.Value, dtype: Any) -> ir.Value:
    return x if np.dtype(dtype) == np.dtype("int64") else _op(ctx, "Cast", x, to=_I64)


def _clamp(ctx: LoweringContext, index: ir.Value, upper: ir.Value) -> ir.Value:
    """max(min(index, upper), 0) in int64."""
    return _op(ctx, "Max", _op(ctx, "Min", index, upper), ctx.i64(0))


def _out_of_bounds(ctx: LoweringContext, index: ir.Value, clamped: ir.Value, index_length: int) -> ir.Value:
    """Boolean over the batch shape: some component of the index vector (last axis) was out of range."""
    differs = _op(ctx, "Not", _op(ctx, "Equal", index, clamped))
    if index_length == 1:
        return _op(ctx, "Squeeze", differs, ctx.i64([-1]))
    count = _op(ctx, "ReduceMax", _op(ctx, "Cast", differs, to=ir.DataType.INT32), ctx.i64([-1]), keepdims=0)
    return _op(ctx, "Cast", count, to=ir.DataType.BOOL)


def _check_mode(mode: Any, what: str) -> GatherScatterMode:
    parsed = GatherScatterMode.from_any(mode)
    if parsed not in (GatherScatterMode.CLIP, GatherScatterMode.FILL_OR_DROP, GatherScatterMode.PROMISE_IN_BOUNDS):
        raise ConversionError(f"{what} mode {parsed.name} is not supported; CLIP, FILL_OR_DROP and PROMISE_IN_BOUNDS are")
    return parsed


def _default_fill(dtype: Any) -> Any:
    """JAX's default gather fill value for FILL_OR_DROP (lax.gather)."""
    dtype = np.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.inexact):
        return np.nan
    if dtype == np.dtype(bool):
        return True
    if jnp.issubdtype(dtype, jnp.signedinteger):
        return np.iinfo(dtype).min
    return np.iinfo(dtype).max


def _iota_along(ctx: LoweringContext, length: Any, axis: int, rank: int) -> ir.Value:
    """int64 ``arange(length)`` shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    shape = [1] * rank
    if is_static(length):
        shape[axis] = int(length)
        return ctx.const(np.arange(int(length), dtype=np.int64).reshape(shape))
    line = _op(ctx, "Range", ctx.i64(0), dim_scalar(ctx, length), ctx.i64(1))
    others = [a for a in range(rank) if a != axis]
    return _op(ctx, "Unsqueeze", line, ctx.i64(others)) if others else line


def _permutation(current: Sequence[Any], target: Sequence[Any]) -> list[int]:
    return [list(current).index(label) for label in target]


# ----------------------------------------------------------------------------- coordinates of windows
@dataclass(frozen=True)
class _Window:
    """How one leading operand axis is addressed: a start (shape G, or None for 0) or a batch axis of G,
    plus a window of ``size`` elements when the axis keeps a window axis (not collapsed/inserted)."""

    start: ir.Value | None = None
    batch_axis: int | None = None
    size: Any = None


def _coordinates(
    ctx: LoweringContext, windows: Sequence[_Window], batch_shape: Sequence[Any]
) -> ir.Value:
    """int64 ``[*G, *W, L]``: for every batch position and window offset, the coordinates of the
    ``L`` leading operand axes (W = sizes of the windows that keep an axis, in order)."""
    window_sizes = [w.size for w in windows if w.size is not None]
    n_batch, rank = len(batch_shape), len(batch_shape) + len(window_sizes)
    window_axes = list(range(n_batch, rank))
    full_shape = ctx.shape_value(list(batch_shape) + window_sizes)
    columns = []
    window_position = n_batch
    for window in windows:
        if window.batch_axis is not None:
            coord = _iota_along(ctx, batch_shape[window.batch_axis], window.batch_axis, rank)
        elif window.start is not None:
            coord = _op(ctx, "Unsqueeze", window.start, ctx.i64(window_axes)) if window_axes else window.start
        else:
            coord = ctx.const(np.zeros([1] * rank, dtype=np.int64))
        if window.size is not None:
            coord = _op(ctx, "Add", coord, _iota_along(ctx, window.size, window_position, rank))
            window_position += 1
        columns.append(_op(ctx, "Unsqueeze", _op(ctx, "Expand", coord, full_shape), ctx.i64([-1])))
    return columns[0] if len(columns) == 1 else _op(ctx, "Concat", *columns, axis=-1)


def _start_column(ctx: LoweringContext, indices: ir.Value, k: int) -> ir.Value:
    return _op(ctx, "Gather", indices, ctx.i64(k), axis=-1)


# ----------------------------------------------------------------------------- gather
@dataclass(frozen=True)
class _GatherSpec:
    operand_shape: tuple[Any, ...]
    batch_shape: tuple[Any, ...]
    offset_dims: tuple[int, ...]
    collapsed: tuple[int, ...]
    start_index_map: tuple[int, ...]
    operand_batching_dims: tuple[int, ...]
    start_indices_batching_dims: tuple[int, ...]
    slice_sizes: tuple[Any, ...]

    @property
    def window_dims(self) -> list[int]:
        """Operand axes that appear in the output (offset dims), in operand order."""
        return [d for d in range(len(self.operand_shape)) if d not in self.collapsed and d not in self.operand_batching_dims]

    def output_layout(self) -> list[tuple[str, int]]:
        """JAX's output axes as labels: ('g', batch axis) or ('o', operand axis)."""
        n_out = len(self.batch_shape) + len(self.offset_dims)
        windows, batches = iter(self.window_dims), iter(range(len(self.batch_shape)))
        return [("o", next(windows)) if i in self.offset_dims else ("g", next(batches)) for i in range(n_out)]

    def is_full(self, d: int) -> bool:
        return same_dim(self.slice_sizes[d], self.operand_shape[d])


def _gather_single_axis(ctx: LoweringContext, operand: ir.Value, starts: ir.Value, spec: _GatherSpec) -> tuple[ir.Value, list[Any]]:
    """ONNX Gather on the one indexed axis (x[idx], take, embedding lookups)."""
    axis = spec.start_index_map[0]
    flat = _op(ctx, "Squeeze", starts, ctx.i64([-1]))
    result = ctx.op("Gather", operand, flat, axis=axis)
    n_batch = len(spec.batch_shape)
    layout: list[Any] = [("o", d) for d in range(axis)] + [("g", j) for j in range(n_batch)]
    if axis not in spec.collapsed:
        result = ctx.op("Unsqueeze", result, ctx.i64([axis + n_batch]))
        layout.append(("o", axis))
    layout += [("o", d) for d in range(axis + 1, len(spec.operand_shape))]
    return result, layout


def _gather_as_slice(ctx: LoweringContext, operand: ir.Value, starts: ir.Value, spec: _GatherSpec) -> tuple[ir.Value, list[Any]]:
    """A gather without batch dimensions is one dynamic slice: ONNX Slice, then Squeeze."""
    axes = list(spec.start_index_map)
    sizes = ctx.shape_value([spec.slice_sizes[d] for d in axes])
    static_axes = [d for d in range(len(spec.operand_shape)) if d not in axes and not spec.is_full(d)]
    starts_all, ends_all = starts, _op(ctx, "Add", starts, sizes)
    if static_axes:
        starts_all = _op(ctx, "Concat", starts, ctx.i64([0] * len(static_axes)), axis=0)
        ends_all = _op(ctx, "Concat", ends_all, ctx.shape_value([spec.slice_sizes[d] for d in static_axes]), axis=0)
    result = ctx.op("Slice", operand, starts_all, ends_all, ctx.i64(axes + static_axes))
    if spec.collapsed:
        result = ctx.op("Squeeze", result, ctx.i64(list(spec.collapsed)))
    return result, [("o", d) for d in spec.window_dims]


def _gather_elements(ctx: LoweringContext, operand: ir.Value, starts: ir.Value, spec: _GatherSpec) -> tuple[ir.Value, list[Any]]:
    """take_along_axis: every other axis is a batching axis in order, so GatherElements fits."""
    axis = spec.start_index_map[0]
    flat = _op(ctx, "Squeeze", starts, ctx.i64([-1]))
    return ctx.op("GatherElements", operand, flat, axis=axis), [("g", j) for j in range(len(spec.batch_shape))]


def _gather_general(ctx: LoweringContext, operand: ir.Value, starts: ir.Value, spec: _GatherSpec) -> tuple[ir.Value, list[Any]]:
    """GatherND over the leading axes (indexed, batching, collapsed or partially windowed)."""
    rank = len(spec.operand_shape)
    trailing = [d for d in spec.window_dims if d not in spec.start_index_map and spec.is_full(d)]
    leading = [d for d in range(rank) if d not in trailing]
    windows = []
    for d in leading:
        keeps_axis = d in spec.window_dims
        if d in spec.operand_batching_dims:
            batch_axis = spec.start_indices_batching_dims[spec.operand_batching_dims.index(d)]
            windows.append(_Window(batch_axis=batch_axis))
        elif d in spec.start_index_map:
            start = _start_column(ctx, starts, spec.start_index_map.index(d))
            windows.append(_Window(start=start, size=spec.slice_sizes[d] if keeps_axis else None))
        else:
            windows.append(_Window(size=spec.slice_sizes[d] if keeps_axis else None))
    if all(w.size is None and w.batch_axis is None for w in windows) and leading == list(spec.start_index_map):
        index = starts  # the clamped indices are the coordinates already
    else:
        index = _coordinates(ctx, windows, spec.batch_shape)
    result = ctx.op("GatherND", transpose(ctx, operand, leading + trailing), index, batch_dims=0)
    layout = [("g", j) for j in range(len(spec.batch_shape))]
    layout += [("o", d) for d in leading if d in spec.window_dims] + [("o", d) for d in trailing]
    return result, layout


def _choose_gather(spec: _GatherSpec) -> Any:
    rank = len(spec.operand_shape)
    one_axis = len(spec.start_index_map) == 1 and not spec.operand_batching_dims
    if one_axis:
        axis = spec.start_index_map[0]
        others_full = all(spec.is_full(d) for d in range(rank) if d != axis)
        if others_full and same_dim(spec.slice_sizes[axis], 1) and spec.batch_shape:
            return _gather_single_axis
    if not spec.batch_shape and not spec.operand_batching_dims:
        return _gather_as_slice
    if (
        len(spec.start_index_map) == 1
        and spec.collapsed == spec.start_index_map
        and not spec.offset_dims
        and len(spec.batch_shape) == rank
        and all(same_dim(s, 1) for s in spec.slice_sizes)
        and list(spec.operand_batching_dims) == [d for d in range(rank) if d != spec.start_index_map[0]]
        and list(spec.start_indices_batching_dims) == list(spec.operand_batching_dims)
    ):
        return _gather_elements
    return _gather_general


@functools.cache
def _nnx_embed() -> Any:
    """An nnx.Embed (vocabulary 10, features 4), built on first use so importing handlers stays cheap."""
    from flax import nnx

    with jax.ensure_compile_time_eval():  # concrete weights even when first called while tracing
        return nnx.Embed(10, 4, rngs=nnx.Rngs(0))


_x = ("B", 4)
_idx = np.array([0, 2, 3, 1], np.int32)


@handler("gather", onnx_ops=("Gather", "GatherElements", "GatherND", "Slice", "Min", "Max", "Where"), testcases=[
    Testcase("gather_columns", lambda x, i: jnp.asarray(x)[:, i], [_x, np.array([0, -1, 2], np.int32)], expect_ops=("Gather",)),
    Testcase("gather_rows_2d_index", lambda x, i: jnp.asarray(x)[i], [(5, 4), np.array([[0, 4], [-2, 1]], np.int32)]),
    Testcase("gather_rows_clamped", lambda x, i: jnp.asarray(x)[i], [(5, 4), np.array([0, 7, -9], np.int32)]),
    Testcase("gather_ellipsis_slice", lambda x: x[..., 1:3], [("B", 4, 5)], expect_ops=("Slice",)),
    Testcase("gather_array_and_slice", lambda x, i: jnp.asarray(x)[i, 1:3], [("B", 4, 5), np.array([0, 2], np.int32)], symbolic_sizes={"B": 3}),
    Testcase("gather_two_arrays", lambda x, i, j: jnp.asarray(x)[i, j], [(5, 4), np.array([0, 2, 4], np.int32), np.array([1, 3, -1], np.int32)]),
    Testcase("gather_split_arrays", lambda x, i, j: jnp.asarray(x)[:, i, :, j], [("B", 4, 3, 5), np.array([0, 2], np.int32), np.array([1, 3], np.int32)]),
    Testcase("gather_take_fill_nan", lambda x, i: jnp.take(x, i, axis=1), [_x, np.array([0, 5, -1, -6, 3], np.int32)]),
    Testcase("gather_take_clip", lambda x, i: jnp.take(x, i, axis=0, mode="clip"), [(5, 4), np.array([0, 9, -3], np.int32)]),
    Testcase("gather_take_int_fill", lambda x, i: jnp.take(x, i), [np.arange(6, dtype=np.int32), np.array([1, 8], np.int32)]),
    Testcase("gather_embedding", lambda w, i: jnp.take(w, i, axis=0), [(10, 4), np.array([[1, 9, 0], [3, 3, 2]], np.int32)]),
    Testcase("gather_embedding_symbolic", lambda w, i: jnp.take(w, i, axis=0), [(10, 4), jax.ShapeDtypeStruct(("B", "T"), jnp.int32)], int_high=10),
    Testcase("gather_nnx_embed_symbolic", lambda i: _nnx_embed()(i), [jax.ShapeDtypeStruct(("B", "T"), jnp.int32)], int_high=12),
    Testcase("gather_take_bool_fill", lambda m, i: jnp.take(m, i, axis=1), [np.array([[True, False, True], [False, False, True]]), np.array([2, 0, 5, -4], np.int32)]),
    Testcase("gather_take_int16_fill", lambda x, i: jnp.take(x, i), [np.arange(-3, 3, dtype=np.int16), np.array([1, 8, -1, -9], np.int32)]),
    Testcase("gather_fill_window", lambda x, i: jnp.asarray(x).at[i, 1:3].get(mode="fill", fill_value=-1.0), [(5, 4), np.array([4, -1, 5, -6], np.int32)]),
    Testcase("gather_take_along_axis", lambda x, i: jnp.take_along_axis(x, i, axis=1), [(3, 4), np.array([[0, 3], [1, 1], [2, 0]], np.int32)], expect_ops=("GatherElements",)),
    Testcase("gather_take_along_axis_0", lambda x, i: jnp.take_along_axis(x, i, axis=0), [(3, 4), np.array([[0, 2, 1, 1]], np.int32)]),
    Testcase("gather_strided_slice", lambda x: x[1:, ::2], [("B", 5)]),
    Testcase("gather_reverse_slice", lambda x: x[:, ::-1], [("B", 4)]),
    Testcase("gather_batched_windows", lambda x, i: jax.vmap(lambda r, s: lax.dynamic_slice(r, (s,), (2,)))(x, i), [(3, 5), np.array([0, 4, 2], np.int32)]),
])
def _gather(
    ctx: LoweringContext,
    operand: ir.Value,
    indices: ir.Value,
    *,
    dimension_numbers: Any,
    slice_sizes: Sequence[Any],
    indices_are_sorted: bool,
    unique_indices: bool,
    mode: Any,
    fill_value: Any,
) -> ir.Value:
    """lax.gather (index vector on the last axis): clamp or mask the starts, then the best fitting lowering."""
    del indices_are_sorted, unique_indices  # promises for XLA's code generation only
    dnums = dimension_numbers
    operand_aval, indices_aval = ctx.avals_in
    spec = _GatherSpec(
        operand_shape=tuple(operand_aval.shape),
        batch_shape=tuple(indices_aval.shape[:-1]),
        offset_dims=tuple(dnums.offset_dims),
        collapsed=tuple(dnums.collapsed_slice_dims),
        start_index_map=tuple(dnums.start_index_map),
        operand_batching_dims=tuple(dnums.operand_batching_dims),
        start_indices_batching_dims=tuple(dnums.start_indices_batching_dims),
        slice_sizes=tuple(slice_sizes),
    )
    mode = _check_mode(mode, "gather")
    raw = _as_i64(ctx, _folded(ctx, indices), indices_aval.dtype)
    upper = ctx.shape_value([spec.operand_shape[d] - spec.slice_sizes[d] for d in spec.start_index_map])
    starts = _clamp(ctx, raw, upper)
    result, layout = _choose_gather(spec)(ctx, operand, starts, spec)
    result = transpose(ctx, result, _permutation(layout, spec.output_layout()))
    if mode == GatherScatterMode.FILL_OR_DROP:
        dtype = ctx.aval_out.dtype
        fill = ctx.scalar(_default_fill(dtype) if fill_value is None else fill_value, dtype)
        if len(spec.start_index_map) == 1 and spec.offset_dims == (len(spec.batch_shape),):
            # embedding lookups (take along axis 0 of a table): the (*batch, 1) in-range mask already
            # broadcasts over the one trailing offset axis, so no Not/Squeeze/Unsqueeze is needed
            inside = _op(ctx, "Equal", raw, starts)
            return result if _statically(ctx, inside, True) else where(ctx, inside, result, fill, dtype)
        outside = _out_of_bounds(ctx, raw, starts, len(spec.start_index_map))
        if _statically(ctx, outside, False):
            return result
        if spec.offset_dims:
            outside = _op(ctx, "Unsqueeze", outside, ctx.i64(list(spec.offset_dims)))
        result = where(ctx, outside, fill, result, dtype)
    return result


# ----------------------------------------------------------------------------- dynamic_slice
def _stack_starts(ctx: LoweringContext, starts: Sequence[ir.Value], avals: Sequence[Any]) -> ir.Value:
    """Scalar start indices → one 1-D int64 vector."""
    pieces = [_op(ctx, "Unsqueeze", _as_i64(ctx, _folded(ctx, s), a.dtype), ctx.i64([0])) for s, a in zip(starts, avals, strict=True)]
    return pieces[0] if len(pieces) == 1 else _op(ctx, "Concat", *pieces, axis=0)


@handler("dynamic_slice", onnx_ops=("Slice", "Min", "Max"), testcases=[
    Testcase("dynamic_slice_clamped", lambda x, i, j: lax.dynamic_slice(x, (i, j), (2, 3)), [(5, 4), np.int32(4), np.int32(-1)]),
    Testcase("dynamic_slice_symbolic", lambda x, i: lax.dynamic_slice_in_dim(x, i, 2, axis=1), [("B", 4), np.int32(1)]),
    Testcase("dynamic_slice_last_row", lambda x: x[-1], [("B", 4)]),
])
def _dynamic_slice(ctx: LoweringContext, operand: ir.Value, *starts: ir.Value, slice_sizes: Sequence[Any]) -> ir.Value:
    """Slice with runtime starts, clamped to ``[0, dim - size]`` as lax.dynamic_slice defines."""
    shape = ctx.avals_in[0].shape
    if len(starts) != len(shape):
        raise ConversionError("dynamic_slice with dynamic slice sizes is not supported")
    axes = [d for d in range(len(shape)) if not same_dim(slice_sizes[d], shape[d])]
    if not axes:
        return ctx.op("Identity", operand)
    start = _stack_starts(ctx, [starts[d] for d in axes], [ctx.avals_in[1 + d] for d in axes])
    start = _clamp(ctx, start, ctx.shape_value([shape[d] - slice_sizes[d] for d in axes]))
    end = _op(ctx, "Add", start, ctx.shape_value([slice_sizes[d] for d in axes]))
    return ctx.op("Slice", operand, start, end, ctx.i64(axes))



@handler("dynamic_update_slice", onnx_ops=("ScatterND", "Min", "Max"), testcases=[
    Testcase("dynamic_update_slice_clamped", lambda x, u, i: lax.dynamic_update_slice(x, u, (i, 0)), [(5, 4), (2, 4), np.int32(4)]),
    Testcase("dynamic_update_slice_2d", lambda x, u, i, j: lax.dynamic_update_slice(x, u, (i, j)), [(5, 4), (2, 3), np.int32(-2), np.int32(1)]),
    Testcase("dynamic_update_slice_kv_cache", lambda c, u, t: lax.dynamic_update_slice(c, u, (0, t, 0)), [("B", 6, 4), ("B", 1, 4), np.int32(3)]),
])
def _dynamic_update_slice(ctx: LoweringContext, operand: ir.Value, update: ir.Value, *starts: ir.Value) -> ir.Value:
    """ScatterND of the update window at starts clamped to ``[0, dim - update_dim]``; axes the update
    covers whole are trailing (no index memory for them)."""
    shape, update_shape = ctx.avals_in[0].shape, ctx.avals_in[1].shape
    leading = [d for d in range(len(shape)) if not same_dim(update_shape[d], shape[d])]
    if not leading:
        return ctx.op("Identity", update)
    start = _stack_starts(ctx, [starts[d] for d in leading], [ctx.avals_in[2 + d] for d in leading])
    start = _clamp(ctx, start, ctx.shape_value([shape[d] - update_shape[d] for d in leading]))
    windows = [_Window(start=_start_column(ctx, start, k), size=update_shape[d]) for k, d in enumerate(leading)]
    coords = _coordinates(ctx, windows, ())
    trailing = [d for d in range(len(shape)) if d not in leading]
    perm = leading + trailing
    result = ctx.op("ScatterND", transpose(ctx, operand, perm), coords, transpose(ctx, update, perm))
    return transpose(ctx, result, np.argsort(perm).tolist())


# ----------------------------------------------------------------------------- scatter
_REDUCTIONS = {"scatter": "none", "scatter-add": "add", "scatter-sub": "add", "scatter-mul": "mul",
               "scatter-min": "min", "scatter-max": "max"}


def _scatter(
    ctx: LoweringContext,
    operand: ir.Value,
    indices: ir.Value,
    updates: ir.Value,
    *,
    dimension_numbers: Any,
    indices_are_sorted: bool,
    unique_indices: bool,
    mode: Any,
    update_jaxpr: Any,
    update_consts: Any,
) -> ir.Value:
    """lax.scatter*: ScatterND (with its reduction) on the operand transposed so the indexed axes lead.

    Out-of-bounds windows are dropped (FILL_OR_DROP, PROMISE_IN_BOUNDS) by sending them to one extra
    slot appended to the first leading axis and cut off afterwards; CLIP clamps the start indices.
    """
    del indices_are_sorted, unique_indices  # promises for XLA's code generation only
    del update_jaxpr, update_consts  # the combiner is implied by the primitive (add, mul, min, max)
    primitive = ctx.eqn.primitive.name
    reduction = _REDUCTIONS[primitive]
    if primitive == "scatter-sub":
        updates = ctx.op("Neg", updates)
    dnums = dimension_numbers
    operand_aval, indices_aval, updates_aval = ctx.avals_in
    operand_shape, batch_shape = tuple(operand_aval.shape), tuple(indices_aval.shape[:-1])
    index_map = tuple(dnums.scatter_dims_to_operand_dims)
    batching = tuple(dnums.operand_batching_dims)
    window_dims = [d for d in range(len(operand_shape)) if d not in dnums.inserted_window_dims and d not in batching]
    window_size = {d: updates_aval.shape[u] for d, u in zip(window_dims, dnums.update_window_dims, strict=True)}
    if not index_map and not batching:
        raise ConversionError("scatter without indexed operand axes is not supported")

    raw = _as_i64(ctx, _folded(ctx, indices), indices_aval.dtype)
    starts = _clamp(ctx, raw, ctx.shape_value([operand_shape[d] - window_size.get(d, 1) for d in index_map]))
    trailing = [d for d in window_dims if d not in index_map and same_dim(window_size[d], operand_shape[d])]
    leading = [d for d in range(len(operand_shape)) if d not in trailing]
    windows = []
    for d in leading:
        size = window_size.get(d)
        if d in batching:
            windows.append(_Window(batch_axis=dnums.scatter_indices_batching_dims[batching.index(d)]))
        elif d in index_map:
            windows.append(_Window(start=_start_column(ctx, starts, index_map.index(d)), size=size))
        else:
            windows.append(_Window(size=size))
    if all(w.size is None and w.batch_axis is None for w in windows) and leading == list(index_map):
        coords = starts
    else:
        coords = _coordinates(ctx, windows, batch_shape)

    # updates → [*G, *W, *trailing]
    scatter_axes = [a for a in range(len(updates_aval.shape)) if a not in dnums.update_window_dims]
    label_of = {a: ("g", j) for j, a in enumerate(scatter_axes)}
    label_of.update({u: ("o", d) for d, u in zip(window_dims, dnums.update_window_dims, strict=True)})
    current = [label_of[a] for a in range(len(updates_aval.shape))]
    target = [("g", j) for j in range(len(batch_shape))] + [("o", d) for d in leading if d in window_size] + [("o", d) for d in trailing]
    updates = transpose(ctx, updates, _permutation(current, target))

    perm = leading + trailing
    data = transpose(ctx, operand, perm)
    valid = _op(ctx, "Not", _out_of_bounds(ctx, raw, starts, len(index_map)))
    drop = _check_mode(mode, primitive) != GatherScatterMode.CLIP and not _statically(ctx, valid, True)
    if drop:
        n_window = sum(1 for w in windows if w.size is not None) if coords is not starts else 0
        valid = _op(ctx, "Unsqueeze", valid, ctx.i64(list(range(len(batch_shape), len(batch_shape) + n_window + 1))))
        slot = ctx.shape_value([operand_shape[leading[0]]] + [0] * (len(leading) - 1))
        coords = _op(ctx, "Where", valid, coords, slot)
        pads = [0] * (2 * len(perm))
        pads[len(perm)] = 1
        data = ctx.op("Pad", data, ctx.i64(pads), mode="constant")
    # onnxruntime's ScatterND reduces no bool tensors: bools (False < True) are reduced as uint8
    as_uint8 = reduction != "none" and np.dtype(operand_aval.dtype) == np.dtype(bool)
    if as_uint8:
        data, updates = (ctx.op("Cast", value, to=ir.DataType.UINT8) for value in (data, updates))
    result = ctx.op("ScatterND", data, coords, updates, reduction=reduction)
    if as_uint8:
        result = ctx.op("Cast", result, to=ir.DataType.BOOL)
    if drop:
        result = ctx.op("Slice", result, ctx.i64([0]), ctx.i64([-1]), ctx.i64([0]))
    return transpose(ctx, result, np.argsort(perm).tolist())


_rows = np.array([0, 2], np.int32)
_oob_rows = np.array([1, 7, -1, -9], np.int32)


def _vmapped_row_set(x: Any, i: Any, u: Any) -> Any:
    return jax.vmap(lambda r, k, v: r.at[k].set(v))(x, i, u)


handler("scatter", onnx_ops=("ScatterND", "Pad", "Slice", "Where"), testcases=[
    Testcase("scatter_set_rows", lambda x, i, u: jnp.asarray(x).at[i].set(u), [(5, 4), _rows, (2, 4)]),
    Testcase("scatter_set_drops_out_of_bounds", lambda x, i, u: jnp.asarray(x).at[i].set(u), [(5, 4), _oob_rows, (4, 4)]),
    Testcase("scatter_set_symbolic", lambda x, i, u: jnp.asarray(x).at[i].set(u), [("B", 4), _rows, (2, 4)]),
    Testcase("scatter_set_constant_index", lambda x: jnp.asarray(x).at[0].set(1.0), [("B", 4)]),
    Testcase("scatter_set_window", lambda x, i: jnp.asarray(x).at[i, 1:3].set(0.0), [(5, 4), np.array([4, 1, 6], np.int32)]),
    Testcase("scatter_set_clip", lambda x, i, u: jnp.asarray(x).at[i].set(u, mode="clip"), [(5, 4), np.array([9, -7], np.int32), (2, 4)]),
    Testcase("scatter_set_batched", _vmapped_row_set, [(3, 5), np.array([0, 4, 2], np.int32), (3,)]),
])(_scatter)
handler("scatter-add", onnx_ops=("ScatterND",), min_opset=16, testcases=[
    Testcase("scatter_add_columns", lambda x, i: jnp.asarray(x).at[:, i].add(1.0), [("B", 4), np.array([0, 3, 3, 5], np.int32)]),
    Testcase("scatter_add_promise_drops", lambda x, i: jnp.asarray(x).at[i].add(1.0, mode="promise_in_bounds"), [(5, 2), np.array([1, 7, 4], np.int32)]),
    Testcase("scatter_add_duplicates", lambda x, i, u: jnp.asarray(x).at[i].add(u), [(5, 4), np.array([0, 0, 2], np.int32), (3, 4)]),
])(_scatter)
handler("scatter-sub", onnx_ops=("Neg", "ScatterND"), min_opset=16, testcases=[
    Testcase("scatter_sub_rows", lambda x, i, u: jnp.asarray(x).at[i].subtract(u), [(5, 4), _rows, (2, 4)]),
])(_scatter)
handler("scatter-mul", onnx_ops=("ScatterND",), min_opset=16, testcases=[
    Testcase("scatter_mul_rows", lambda x, i, u: jnp.asarray(x).at[i].mul(u), [(5, 4), np.array([0, 2, 2, 8], np.int32), (4, 4)]),
])(_scatter)
_masks = (np.array([[True, False, False], [False, False, True], [False, True, False], [True, True, False]]),
          np.array([[False, True, False], [True, False, False], [True, True, True]]))
handler("scatter-min", onnx_ops=("ScatterND", "Cast"), min_opset=18, testcases=[
    Testcase("scatter_min_points", lambda x, i, j: jnp.asarray(x).at[i, j].min(0.0), [(5, 4), np.array([0, 2, 4], np.int32), np.array([1, 3, -1], np.int32)]),
    Testcase("scatter_min_bools", lambda m, u: jnp.asarray(m).at[np.array([0, 0, 3])].min(u), list(_masks)),
])(_scatter)
handler("scatter-max", onnx_ops=("ScatterND", "Cast"), min_opset=18, testcases=[
    Testcase("scatter_max_rows", lambda x, i, u: jnp.asarray(x).at[i].max(u), [("B", 4), np.array([1, 1], np.int32), (2, 4)]),
    Testcase("scatter_max_bools", lambda m, u: jnp.asarray(m).at[np.array([0, 0, 3])].max(u), list(_masks)),
])(_scatter)
