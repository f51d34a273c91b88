"""Indexing ops: Gather*, Scatter*, Slice, Compress, NonZero, OneHot, TopK, ArgMax/ArgMin,
CumSum, ReverseSequence. Negative indices are normalized as ONNX specifies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.control import _is_concrete
from workbench.onnx_to_jax.registry import emitter, runtime_helper
from workbench.onnx_to_jax.row_scatter import RowScatterRefused, check_row_shapes


@runtime_helper
def _gather(x, indices, axis):
    x = jnp.asarray(x)
    indices = jnp.asarray(indices)
    indices = jnp.where(indices < 0, indices + x.shape[axis], indices)
    return jnp.take(x, indices, axis=axis)


@runtime_helper
def _sized_unique(x, positions, fill, dtype):
    """``Gather(Concat(Cast(Unique(x)), fill), Where(positions < K, positions, K))`` for the K sorted unique
    values of the flattened ``x`` (sized_unique.py), at static shapes: the unique values padded to x's
    length (``jnp.unique`` with a static ``size``), then cast to ``dtype`` (None: kept)."""
    x = jnp.ravel(jnp.asarray(x))
    fill = jnp.reshape(jnp.asarray(fill), (-1,))
    positions = jnp.asarray(positions)
    if x.shape[0] == 0:
        values, count = fill[:0], 0
    else:
        values, counts = jnp.unique(x, size=x.shape[0], return_counts=True)
        count = jnp.sum(counts > 0)
    values = values if dtype is None else values.astype(dtype)
    extended = jnp.concatenate([jnp.where(jnp.arange(values.shape[0]) < count, values, fill[0]), fill])
    picked = jnp.where(positions < count, positions, count)
    return jnp.take(extended, jnp.where(picked < 0, picked + count + fill.shape[0], picked), axis=0)


@emitter("Gather", since=(1, 11, 13))
def gather(ctx: NodeContext) -> str:
    unique = ctx.sized_unique()
    if unique is not None:  # jnp.unique(x, size=n, fill_value=f) as jax2onnx writes it
        dtype = "None" if unique.to is None else ctx.onnx_dt(unique.to)
        return ctx.call(_sized_unique, ctx.value(unique.source), ctx.value(unique.positions),
                        ctx.value(unique.fill), dtype)
    axis = ctx.attr("axis", 0)
    indices = ctx.static(1)
    shape = ctx.shape(0)
    if indices is not None and shape is not None and shape[axis] is not None:
        fixed = np.where(indices < 0, indices + shape[axis], indices)
        return ctx.call("jnp.take", ctx.x(0), ctx.lit(fixed), axis=ctx.lit(axis))
    return ctx.call(_gather, ctx.x(0), ctx.x(1), ctx.lit(axis))


@runtime_helper
def _gather_elements(x, indices, axis):
    indices = jnp.where(indices < 0, indices + x.shape[axis], indices)
    return jnp.take_along_axis(x, indices, axis=axis)


@emitter("GatherElements", since=(11, 13))
def gather_elements(ctx: NodeContext) -> str:
    return ctx.call(_gather_elements, ctx.x(0), ctx.x(1), ctx.lit(ctx.attr("axis", 0)))


@runtime_helper
def _gather_nd(data, indices, batch_dims):
    data, indices = jnp.asarray(data), jnp.asarray(indices)
    k = indices.shape[-1]
    dims = jnp.asarray(data.shape[batch_dims:batch_dims + k], dtype=indices.dtype)
    indices = jnp.where(indices < 0, indices + dims, indices)
    batch_shape = data.shape[:batch_dims]
    count = int(np.prod(batch_shape, dtype=np.int64))
    flat_data = jnp.reshape(data, (count,) + data.shape[batch_dims:])
    flat_indices = jnp.reshape(indices, (count,) + indices.shape[batch_dims:])

    def one(d, i):
        return d[tuple(jnp.moveaxis(i, -1, 0))]

    out = jax.vmap(one)(flat_data, flat_indices)
    return jnp.reshape(out, batch_shape + out.shape[1:])


@emitter("GatherND", since=(11, 12, 13))
def gather_nd(ctx: NodeContext) -> str:
    return ctx.call(_gather_nd, ctx.x(0), ctx.x(1), ctx.lit(ctx.attr("batch_dims", 0)))


@runtime_helper
def _scatter_update(ref, updates, reduction, mode=None):
    if reduction == "none":
        return ref.set(updates, mode=mode)
    if reduction == "add":
        return ref.add(updates, mode=mode)
    if reduction == "mul":
        return ref.multiply(updates, mode=mode)
    if reduction == "max":
        return ref.max(updates, mode=mode)
    if reduction == "min":
        return ref.min(updates, mode=mode)
    raise ValueError(f"unknown scatter reduction {reduction!r}")


@runtime_helper
def _scatter_elements(x, indices, updates, axis, reduction):
    x, indices = jnp.asarray(x), jnp.asarray(indices)
    axis = axis % x.ndim
    indices = jnp.where(indices < 0, indices + x.shape[axis], indices)
    coords = list(jnp.indices(indices.shape, sparse=True))
    coords[axis] = indices
    return _scatter_update(x.at[tuple(coords)], updates, reduction)


# ScatterElements' and ScatterND's reductions (opset 16: none/add/mul; 18: max, min)
SCATTER_REDUCTIONS = ("none", "add", "mul", "max", "min")


@emitter("ScatterElements", since=(11, 13, 16, 18))
def scatter_elements(ctx: NodeContext) -> str:
    reduction = ctx.choice("reduction", SCATTER_REDUCTIONS, "none") if ctx.opset >= 16 else "none"
    return ctx.call(_scatter_elements, ctx.x(0), ctx.x(1), ctx.x(2), ctx.lit(ctx.attr("axis", 0)), ctx.lit(reduction))


@emitter("Scatter", since=(9, 11))
def scatter(ctx: NodeContext) -> str:
    return ctx.call(_scatter_elements, ctx.x(0), ctx.x(1), ctx.x(2), ctx.lit(ctx.attr("axis", 0)), ctx.lit("none"))


@runtime_helper
def _scatter_nd(x, indices, updates, reduction):
    x, indices = jnp.asarray(x), jnp.asarray(indices)
    k = indices.shape[-1]
    dims = jnp.asarray(x.shape[:k], dtype=indices.dtype)
    indices = jnp.where(indices < 0, indices + dims, indices)
    return _scatter_update(x.at[tuple(jnp.moveaxis(indices, -1, 0))], updates, reduction)


@runtime_helper
def _masked_scatter_nd(x, indices, updates, keep, reduction):
    """``ScatterND(x, indices[rows], updates[rows])`` for the rows where the 1-D mask ``keep`` is true, at
    static shapes (masked_scatter.py): every row is scattered in order, the rows ``keep`` leaves out (and
    any outside ``x`` once negative indices are counted from the end, as ONNX does) moved out of range
    and dropped."""
    x, indices, updates, keep = jnp.asarray(x), jnp.asarray(indices), jnp.asarray(updates), jnp.asarray(keep)
    # the Gathers read rows below the mask's length only; a row past the indices or updates is one ONNX's
    # Gather refuses when the mask keeps it, dropped here
    n = min(keep.shape[0], indices.shape[0], updates.shape[0])
    indices, updates, keep = indices[:n], updates[:n], keep[:n]
    return _scatter_nd_kept(x, indices, updates, jnp.reshape(keep, (n,) + (1,) * (indices.ndim - 2)), reduction)


@runtime_helper
def _scatter_nd_rows(x, indices, updates, keep, reduction):
    """``ScatterND(x, indices, updates)`` where ``indices`` and ``updates`` hold one block of index tuples and
    updates per row of the 1-D mask ``keep``, one after the other (row_scatter.py): the blocks of the rows
    ``keep`` leaves out (and any tuple outside ``x`` once negative indices count from the end) are dropped."""
    x, indices, keep = jnp.asarray(x), jnp.asarray(indices), jnp.asarray(keep)
    lead = indices.shape[:-1]
    per_row = int(np.prod(lead, dtype=np.int64)) // keep.shape[0]
    return _scatter_nd_kept(x, indices, updates, jnp.reshape(jnp.repeat(keep, per_row), lead), reduction)


@runtime_helper
def _scatter_nd_kept(x, indices, updates, keep, reduction):
    """``ScatterND(x, indices, updates)`` of the index tuples where ``keep`` (broadcast to
    ``indices.shape[:-1]``) is true and that fall inside ``x`` once negative indices count from the end, as
    ONNX counts them; the others are moved out of range and dropped."""
    dims = jnp.asarray(x.shape[:indices.shape[-1]], dtype=indices.dtype)
    indices = jnp.where(indices < 0, indices + dims, indices)
    kept = keep & jnp.all((indices >= 0) & (indices < dims), axis=-1)
    indices = jnp.where(kept[..., None], indices, dims)
    return _scatter_update(x.at[tuple(jnp.moveaxis(indices, -1, 0))], updates, reduction, "drop")


@emitter("ScatterND", since=(11, 13, 16, 18))
def scatter_nd(ctx: NodeContext) -> str:
    reduction = ctx.choice("reduction", SCATTER_REDUCTIONS, "none") if ctx.opset >= 16 else "none"
    masked = ctx.masked_scatter()
    if masked is not None:  # jax2onnx's bounds-checked scatter: the rows NonZero would pick, at static shapes
        return ctx.call(_masked_scatter_nd, ctx.x(0), ctx.value(masked.indices), ctx.value(masked.updates),
                        ctx.value(masked.keep), ctx.lit(reduction))
    windows = ctx.row_scatter()
    if windows is not None:  # its window form: every row computed, the left-out rows' blocks dropped here
        chain, rows = windows
        if not check_row_shapes(chain, rows, ctx.known_shape):
            raise RowScatterRefused(chain.nonzero)
        return ctx.call(_scatter_nd_rows, ctx.x(0), ctx.x(1), ctx.x(2), ctx.value(chain.keep), ctx.lit(reduction))
    return ctx.call(_scatter_nd, ctx.x(0), ctx.x(1), ctx.x(2), ctx.lit(reduction))


@runtime_helper
def _slice(x, starts, ends, axes, steps):
    x = jnp.asarray(x)
    starts = [int(v) for v in np.asarray(starts).reshape(-1)]
    ends = [int(v) for v in np.asarray(ends).reshape(-1)]
    axes = list(range(len(starts))) if axes is None else [int(a) % x.ndim for a in np.asarray(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else [int(s) for s in np.asarray(steps).reshape(-1)]
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return x[tuple(index)]


def _slice_text(start: int, end: int, step: int, dim: int | None) -> str:
    big = 2**62
    start_text = "" if (step > 0 and start == 0) else str(start)
    if step > 0 and (end >= big or (dim is not None and end >= dim)):
        end_text = ""
    elif step < 0 and end <= -big:
        end_text = ""
    else:
        end_text = str(end)
    if step < 0 and start >= big:
        start_text = ""
    text = f"{start_text}:{end_text}"
    return text + (f":{step}" if step != 1 else "")


@runtime_helper
def _slice_window(x, starts, lengths, axes):
    """``Slice(x, starts, starts + lengths, axes)`` where the lengths are known and the starts may be traced
    (tf2onnx slices a Loop's i-th box as ``x[i:i + 1]``). Concrete starts slice exactly as ONNX does. Traced
    ones (under jax.jit) take a window of the static lengths with ``lax.dynamic_slice_in_dim``: a negative
    start counts from the end as in ONNX, and a start that would run the window past the end is moved back
    inside, where ONNX would return a shorter slice (a shape that depends on the value, which a compiled
    program cannot have)."""
    x = jnp.asarray(x)
    if _is_concrete(starts):
        first = np.asarray(starts).reshape(-1).astype(np.int64)
        return _slice(x, first, first + np.asarray(lengths, np.int64), axes, None)
    starts = jnp.reshape(starts, (-1,))
    for k, (length, axis) in enumerate(zip(lengths, axes)):
        start = jnp.where(starts[k] < 0, starts[k] + x.shape[axis], starts[k])
        x = lax.dynamic_slice_in_dim(x, start, length, axis)
    return x


def _window_lengths(ctx: NodeContext, values: list[np.ndarray | None]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(lengths, axes) when this Slice's ends are ``Add(starts, constant)`` of its own starts, its steps 1
    and its axes static, and each length fits its axis of a known size: the output shape is then static
    whatever the starts are. None otherwise."""
    shape, add = ctx.shape(0), ctx.producer(2)
    if shape is None or add is None or add.op_type != "Add" or ctx.node.input[1] not in add.input:
        return None
    if (ctx.has(3) and values[2] is None) or (ctx.has(4) and values[3] is None):
        return None
    if values[3] is not None and np.any(values[3] != 1):
        return None
    other = add.input[1] if add.input[0] == ctx.node.input[1] else add.input[0]
    offset, rank = ctx.file_value(other), len(shape)
    if values[2] is not None:
        axes = tuple(int(a) % rank for a in values[2].reshape(-1))
    else:
        count = ctx.shape(1)
        if count is None or len(count) != 1 or count[0] is None:
            return None
        axes = tuple(range(count[0]))
    if offset is None or offset.size not in (1, len(axes)):
        return None
    lengths = np.broadcast_to(offset.reshape(-1), (len(axes),))
    if any(shape[a] is None or not 0 < int(n) <= shape[a] for n, a in zip(lengths, axes)):
        return None
    return tuple(int(n) for n in lengths), axes


@emitter("Slice", since=(1, 10, 11, 13))
def slice_(ctx: NodeContext) -> str:
    shape = ctx.shape(0)
    if ctx.opset < 10:
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes = ctx.attr("axes", None)
        steps = None
    else:
        values = [ctx.static(i) for i in range(1, 5)]
        if any(ctx.has(i + 1) and values[i] is None for i in range(4)):
            window = _window_lengths(ctx, values) if values[0] is None and values[1] is None else None
            if window is not None:
                return ctx.call(_slice_window, ctx.x(0), ctx.x(1), ctx.lit(window[0]), ctx.lit(window[1]))
            return ctx.call(_slice, ctx.x(0), ctx.host(1), ctx.host(2), ctx.host_opt(3), ctx.host_opt(4))
        starts, ends = [int(v) for v in values[0].reshape(-1)], [int(v) for v in values[1].reshape(-1)]
        axes = None if values[2] is None else [int(v) for v in values[2].reshape(-1)]
        steps = None if values[3] is None else [int(v) for v in values[3].reshape(-1)]
    ctx.note_phase(starts, ends, axes, steps)
    if shape is None:
        return ctx.call(_slice, ctx.x(0), ctx.lit(tuple(starts)), ctx.lit(tuple(ends)),
                        "None" if axes is None else ctx.lit(tuple(axes)),
                        "None" if steps is None else ctx.lit(tuple(steps)))
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else [a % rank for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    parts = [":"] * rank
    for start, end, axis, step in zip(starts, ends, axes, steps):
        parts[axis] = _slice_text(start, end, step, shape[axis])
    while parts and parts[-1] == ":":
        parts.pop()
    if not parts:
        return ctx.x(0)
    return f"{ctx.x(0)}[{', '.join(parts)}{',' if len(parts) == 1 else ''}]"


@runtime_helper
def _compress(x, condition, axis):
    """ONNX Compress with a condition read on the host: the positions it marks (along ``axis``, or of the
    flattened input when None) taken from ``x``."""
    positions = np.flatnonzero(np.asarray(condition, bool))
    return jnp.take(jnp.ravel(x) if axis is None else x, positions, axis=axis)


@emitter("Compress", since=(9, 11))
def compress(ctx: NodeContext) -> str:
    """The output's shape is the condition's count of true values: read on the host (``ctx.host``), so a
    condition known at generation time (jnp.compress with a constant mask, as jax2onnx writes it) or while
    tracing keeps the node jit-able, and only a computed condition runs it between jitted parts."""
    return ctx.call(_compress, ctx.x(0), ctx.host(1), ctx.lit(ctx.attr("axis", None)))


@runtime_helper
def _non_zero(x):
    """ONNX NonZero: the indices of the non-zero elements, one row per axis (int64).

    The result's shape depends on the values: on concrete values it is computed on the host with
    numpy (one call, no compilation); a traced value raises JAX's error naming the problem.
    """
    if isinstance(x, jax.core.Tracer):
        return jnp.stack(jnp.nonzero(jnp.atleast_1d(x))[: max(jnp.ndim(x), 1)], axis=0).astype(jnp.int64)
    values = np.asarray(x)
    if values.ndim == 0:
        return np.zeros((0, int(values != 0)), np.int64)
    return np.stack(np.nonzero(values), axis=0).astype(np.int64)


@emitter("NonZero", since=(9, 13), value_shaped=True)
def non_zero(ctx: NodeContext) -> str:
    return ctx.call(_non_zero, ctx.x(0))


@runtime_helper
def _one_hot(indices, depth, values, axis):
    depth = int(np.asarray(depth).reshape(()))
    indices = jnp.asarray(indices)
    indices = jnp.where(indices < 0, indices + depth, indices)
    hot = jax.nn.one_hot(indices, depth, axis=axis, dtype=jnp.bool_)
    values = jnp.asarray(values)
    return jnp.where(hot, values[1], values[0])


@emitter("OneHot", since=(9, 11))
def one_hot(ctx: NodeContext) -> str:
    return ctx.call(_one_hot, ctx.x(0), ctx.host(1), ctx.x(2), ctx.lit(ctx.attr("axis", -1)))


@runtime_helper
def _top_k(x, k, axis, largest):
    k = int(np.asarray(k).reshape(-1)[0])
    x = jnp.asarray(x)
    moved = jnp.moveaxis(x, axis, -1)
    if largest:
        values, indices = jax.lax.top_k(moved, k)
    else:
        order = jnp.argsort(moved, axis=-1, stable=True)[..., :k]
        values, indices = jnp.take_along_axis(moved, order, axis=-1), order
    return jnp.moveaxis(values, -1, axis), jnp.moveaxis(indices, -1, axis).astype(jnp.int64)


@emitter("TopK", since=(1, 10, 11))
def top_k(ctx: NodeContext) -> str:
    k = ctx.lit(ctx.attr("k")) if ctx.opset < 10 else ctx.host(1)
    largest = ctx.attr("largest", 1) if ctx.opset >= 11 else 1
    if ctx.opset >= 11 and not ctx.attr("sorted", 1):
        pass  # unsorted output is allowed to be sorted
    return ctx.call(_top_k, ctx.x(0), k, ctx.lit(ctx.attr("axis", -1)), ctx.lit(bool(largest)))


@runtime_helper
def _arg_reduce(fn, x, axis, keepdims, select_last_index):
    """ArgMax / ArgMin (``fn``: ``lax.argmax`` or ``lax.argmin``) as int64, the index computed in int32 and then
    widened: an int64 ``lax.argmax`` traced with x64 on (as ``forward`` runs) but lowered with it off (a plain
    ``jax.jit(forward)``, JAX's default) fails XLA's verifier ("type of return operand 0 ('tensor<2xi32>') doesn't
    match function result type ('tensor<2xi64>')"); an axis has fewer than 2**31 elements, so int32 is exact."""
    x = jnp.asarray(x)
    axis = axis % x.ndim
    if select_last_index:
        index = x.shape[axis] - 1 - fn(jnp.flip(x, axis=axis), axis, jnp.int32)
    else:
        index = fn(x, axis, jnp.int32)
    index = jnp.expand_dims(index, axis) if keepdims else index
    return index.astype(jnp.int64)


def _arg(fn: str):
    def emit(ctx: NodeContext) -> str:
        last = ctx.attr("select_last_index", 0) if ctx.opset >= 12 else 0
        return ctx.call(_arg_reduce, fn, ctx.x(0), ctx.lit(ctx.attr("axis", 0)),
                        ctx.lit(bool(ctx.attr("keepdims", 1))), ctx.lit(bool(last)))

    return emit


emitter("ArgMax", since=(1, 11, 12, 13))(_arg("lax.argmax"))
emitter("ArgMin", since=(1, 11, 12, 13))(_arg("lax.argmin"))


@runtime_helper
def _cumsum(x, axis, exclusive, reverse):
    x = jnp.asarray(x)
    axis = int(np.asarray(axis).reshape(())) % x.ndim
    if reverse:
        x = jnp.flip(x, axis)
    out = jnp.cumsum(x, axis=axis, dtype=x.dtype)
    if exclusive:
        out = out - x
    return jnp.flip(out, axis) if reverse else out


@emitter("CumSum", since=(11, 14))
def cumsum(ctx: NodeContext) -> str:
    return ctx.call(_cumsum, ctx.x(0), ctx.host(1), ctx.lit(bool(ctx.attr("exclusive", 0))),
                    ctx.lit(bool(ctx.attr("reverse", 0))))


@runtime_helper
def _reverse_sequence(x, lengths, batch_axis, time_axis):
    x = jnp.asarray(x)
    steps = jnp.arange(x.shape[time_axis])
    lengths = jnp.asarray(lengths)
    shape = [1] * x.ndim
    shape[time_axis] = x.shape[time_axis]
    t = jnp.reshape(steps, shape)
    shape = [1] * x.ndim
    shape[batch_axis] = x.shape[batch_axis]
    n = jnp.reshape(lengths, shape)
    source = jnp.where(t < n, n - 1 - t, t)
    source = jnp.broadcast_to(source, x.shape).astype(jnp.int32)
    return jnp.take_along_axis(x, source, axis=time_axis)


@emitter("ReverseSequence", since=10)
def reverse_sequence(ctx: NodeContext) -> str:
    return ctx.call(_reverse_sequence, ctx.x(0), ctx.x(1), ctx.lit(ctx.attr("batch_axis", 1)),
                    ctx.lit(ctx.attr("time_axis", 0)))


@runtime_helper
def _cumprod(x, axis, exclusive, reverse):
    x = jnp.asarray(x)
    axis = int(np.asarray(axis).reshape(())) % x.ndim
    if reverse:
        x = jnp.flip(x, axis)
    if exclusive:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (1, 0)
        x = jax.lax.slice_in_dim(jnp.pad(x, widths, constant_values=1), 0, x.shape[axis], axis=axis)
    out = jnp.cumprod(x, axis=axis, dtype=x.dtype)
    return jnp.flip(out, axis) if reverse else out


@emitter("CumProd", since=26)
def cumprod(ctx: NodeContext) -> str:
    return ctx.call(_cumprod, ctx.x(0), ctx.host(1), ctx.lit(bool(ctx.attr("exclusive", 0))),
                    ctx.lit(bool(ctx.attr("reverse", 0))))


@runtime_helper
def _unique(x, axis, sorted_):
    """ONNX Unique: (Y, first indices, inverse indices, counts); unsorted keeps first-occurrence order.

    The output sizes depend on the values, so this runs eagerly (not under ``jax.jit``).
    """
    x = jnp.asarray(x)
    values, first, inverse, counts = jnp.unique(
        x, return_index=True, return_inverse=True, return_counts=True, axis=axis, equal_nan=False,
    )
    inverse = jnp.reshape(inverse, (-1,))
    if not sorted_:
        order = jnp.argsort(first)
        values = jnp.take(values, order, axis=0 if axis is None else axis)
        first, counts = first[order], counts[order]
        inverse = jnp.argsort(order)[inverse]
    return values, first.astype(jnp.int64), inverse.astype(jnp.int64), counts.astype(jnp.int64)


@emitter("Unique", since=(11, 28), value_shaped=True)
def unique(ctx: NodeContext) -> str:
    axis = ctx.attr("axis", None)
    call = ctx.call(_unique, ctx.x(0), ctx.lit(axis), ctx.lit(bool(ctx.attr("sorted", 1))))
    return f"{call}[:{ctx.n_out}]" if ctx.n_out > 1 else [f"{call}[0]"]


@runtime_helper
def _tensor_scatter(cache, update, write_indices, axis, circular):
    """Write ``update`` into ``cache`` along ``axis`` from each batch entry's write index."""
    axis = axis % cache.ndim
    batch, length, steps = cache.shape[0], cache.shape[axis], update.shape[axis]
    starts = jnp.zeros((batch,), jnp.int32) if write_indices is None else jnp.asarray(write_indices, jnp.int32)
    positions = starts[:, None] + jnp.arange(steps)[None, :]
    if circular:
        positions = positions % length
    moved = jnp.moveaxis(cache, axis, 1)
    rows = jnp.arange(batch)[:, None]
    if axis == 0:  # the batch axis itself is the sequence axis: one write per position
        return cache.at[positions[0]].set(update)
    moved = moved.at[rows, positions].set(jnp.moveaxis(update, axis, 1))
    return jnp.moveaxis(moved, 1, axis)


@emitter("TensorScatter", since=24)
def tensor_scatter(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        raise ctx.error(f"unknown mode {mode!r}; expected 'linear' or 'circular'")
    return ctx.call(_tensor_scatter, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.lit(ctx.attr("axis", -2)),
                    ctx.lit(mode == "circular"))
