"""Shape ops: Reshape, Flatten, (Un)Squeeze, Transpose, Concat, Split, Expand, Tile, Pad, Shape, Size...

Version changes honoured: Reshape/Squeeze/Unsqueeze/Split take their shape or
axes as inputs from opset 13 (attributes before), Split gains ``num_outputs``
at 18, Pad takes pads as an input from 11 and ``axes`` from 18, Shape gains
``start``/``end`` at 15.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.helpers import _ints, _slice_axis
from workbench.onnx_to_jax.layout import TO_NCHW
from workbench.onnx_to_jax.phases import _phase_concat, phase_concat_plan
from workbench.onnx_to_jax.registry import emitter, runtime_helper
from workbench.onnx_to_jax.reshaped_add import reshaped_add_plan


@runtime_helper
def _reshape(x, shape, allowzero):
    x = jnp.asarray(x)
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not allowzero:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return jnp.reshape(x, shape)


@emitter("Reshape", since=(5, 14))
def reshape(ctx: NodeContext) -> str:
    allowzero = ctx.attr("allowzero", 0) if ctx.opset >= 14 else 0
    shape = ctx.static(1)
    in_shape = ctx.shape(0)
    if shape is not None:
        dims = [int(s) for s in shape.reshape(-1)]
        if not allowzero and 0 in dims and in_shape is not None:
            dims = [in_shape[i] if s == 0 else s for i, s in enumerate(dims)]
        if allowzero or 0 not in dims and all(isinstance(d, int) for d in dims):
            undone = _reshaped_add(ctx)
            if undone is not None:
                return undone
            return ctx.call("jnp.reshape", ctx.x(0), ctx.lit(tuple(dims)))
    return ctx.call(_reshape, ctx.x(0), ctx.host(1), ctx.lit(bool(allowzero)))


def _reshaped_add(ctx: NodeContext) -> str | None:
    """``a + reshape(broadcast_to(m, s), shape(a))`` for ``Reshape(Add(Reshape(a, s), m))`` back to ``a``'s
    shape (reshaped_add.py: the same sums, at the shape the code around it reads; Swin's window masks)."""
    chain = ctx.reshaped_add()
    target = ctx.out_shape(0)
    if chain is None or target is None or any(d is None for d in target):
        return None
    broadcast = reshaped_add_plan(tuple(target), ctx.value_shape(chain.source), ctx.value_shape(chain.reshaped),
                                  ctx.shape(0), ctx.value_shape(chain.other))
    if broadcast is None:
        return None
    other = f"jnp.reshape(jnp.broadcast_to({ctx.value(chain.other)}, {ctx.lit(broadcast)}), {ctx.lit(tuple(target))})"
    source = ctx.value(chain.source)
    ctx.take_reshaped_add()
    return ctx.call("jnp.add", other, source) if chain.other_first else ctx.call("jnp.add", source, other)


@runtime_helper
def _flatten(x, axis):
    x = jnp.asarray(x)
    axis = axis + x.ndim if axis < 0 else axis
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return jnp.reshape(x, (outer, -1) if x.size else (outer, int(np.prod(x.shape[axis:], dtype=np.int64))))


@emitter("Flatten", since=(1, 9))
def flatten(ctx: NodeContext) -> str:
    return ctx.call(_flatten, ctx.x(0), ctx.lit(ctx.attr("axis", 1)))


def _axes(ctx: NodeContext, attr_until: int, input_index: int = 1) -> str | None:
    """Axes from the attribute (opset < attr_until) or the optional input; None if absent."""
    if ctx.opset < attr_until:
        axes = ctx.attr("axes", None)
        return None if axes is None else ctx.lit(tuple(axes))
    if not ctx.has(input_index):
        return None
    return ctx.ints(input_index)


@runtime_helper
def _squeeze(x, axes):
    x = jnp.asarray(x)
    if axes is None:
        return jnp.squeeze(x)
    return jnp.squeeze(x, axis=tuple(a % x.ndim for a in axes))


@emitter("Squeeze", since=(1, 11, 13))
def squeeze(ctx: NodeContext) -> str:
    axes = _axes(ctx, 13)
    if axes is None:
        return f"jnp.squeeze({ctx.x(0)})"
    return ctx.call(_squeeze, ctx.x(0), axes)


@runtime_helper
def _unsqueeze(x, axes):
    x = jnp.asarray(x)
    rank = x.ndim + len(axes)
    return jnp.expand_dims(x, tuple(sorted(a % rank for a in axes)))


@emitter("Unsqueeze", since=(1, 11, 13))
def unsqueeze(ctx: NodeContext) -> str:
    axes = _axes(ctx, 13)
    if axes is None:
        raise ctx.error("Unsqueeze needs axes")
    return ctx.call(_unsqueeze, ctx.x(0), axes)


@emitter("Transpose", since=1)
def transpose(ctx: NodeContext) -> str:
    perm = ctx.attr("perm", None)
    if ctx.channels_last:  # NHWC to NCHW, held channels-last: the output's NHWC form is the input (layout.py)
        return ctx.x(0)
    if ctx.reads_channels_last(0):  # the input arrives NHWC: one transpose from there (or none)
        perm = [TO_NCHW[p] for p in (perm or (3, 2, 1, 0))]
        return ctx.x(0) if perm == [0, 1, 2, 3] else f"jnp.transpose({ctx.x(0)}, {ctx.lit(tuple(perm))})"
    if perm is None:
        return f"jnp.transpose({ctx.x(0)})"
    return f"jnp.transpose({ctx.x(0)}, {ctx.lit(tuple(perm))})"


@emitter("Concat", since=(4, 11))
def concat(ctx: NodeContext) -> str:
    rank = ctx.rank(0)
    if not ctx.channels_last and rank is not None:
        # the strided phases of one value, concatenated: one transpose (phases.py)
        plan = phase_concat_plan([ctx.phase(i) for i in range(ctx.n_in)], ctx.attr("axis"), rank)
        if plan is not None:
            source, axes, steps, order = plan
            return ctx.call(_phase_concat, ctx.value(source), ctx.lit(axes), ctx.lit(steps), ctx.lit(order),
                            ctx.lit(ctx.attr("axis") % rank))
    args = ", ".join(ctx.xs())
    axis = 3 if ctx.channels_last else ctx.attr("axis")  # channels-last: ONNX's axis 1 (layout.py)
    return ctx.call("jnp.concatenate", f"[{args}]", axis=ctx.lit(axis))


@runtime_helper
def _split(x, axis, sizes, num_outputs):
    x = jnp.asarray(x)
    axis = axis % x.ndim
    if sizes is None:
        length = x.shape[axis]
        chunk = -(-length // num_outputs)
        sizes = [chunk] * (length // chunk) + ([length % chunk] if length % chunk else [])
        sizes = sizes + [0] * (num_outputs - len(sizes))
    offsets = np.cumsum([0] + list(sizes))
    return tuple(
        jnp.take(x, jnp.arange(int(offsets[i]), int(offsets[i + 1])), axis=axis) for i in range(len(sizes))
    )


@emitter("Split", since=(2, 11, 13, 18))
def split(ctx: NodeContext) -> str:
    axis = ctx.lit(ctx.attr("axis", 0))
    if ctx.opset < 13:
        sizes = ctx.attr("split", None)
        sizes_expr = "None" if sizes is None else ctx.lit(tuple(sizes))
    else:
        sizes_expr = ctx.ints(1) if ctx.has(1) else "None"
    num = ctx.attr("num_outputs", ctx.n_out) if ctx.opset >= 18 else ctx.n_out
    call = ctx.call(_split, ctx.x(0), axis, sizes_expr, ctx.lit(num))
    # _split returns a tuple: one output takes its only element, not the 1-tuple
    return call if ctx.n_out > 1 else [f"{call}[0]"]


@runtime_helper
def _expand(x, shape):
    x = jnp.asarray(x)
    shape = tuple(int(s) for s in np.asarray(shape).reshape(-1))
    target = jnp.broadcast_shapes(x.shape, shape)
    return jnp.broadcast_to(x, target)


@emitter("Expand", since=8)
def expand(ctx: NodeContext) -> str:
    return ctx.call(_expand, ctx.x(0), ctx.ints(1))


@emitter("Tile", since=6)
def tile(ctx: NodeContext) -> str:
    return ctx.call("jnp.tile", ctx.x(0), ctx.ints(1))


@emitter("Shape", since=(1, 15))
def shape(ctx: NodeContext) -> str:
    start = ctx.attr("start", 0) if ctx.opset >= 15 else 0
    end = ctx.attr("end", None) if ctx.opset >= 15 else None
    part = f"[{start}:{'' if end is None else end}]" if (start or end is not None) else ""
    return f"np.array(jnp.shape({ctx.x(0)}){part}, dtype=np.int64)"


@emitter("Size", since=1)
def size(ctx: NodeContext) -> str:
    return f"np.array(jnp.size({ctx.x(0)}), dtype=np.int64)"


@runtime_helper
def _pad(x, pads, mode, value, axes):
    x = jnp.asarray(x)
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    axes = list(range(x.ndim)) if axes is None else [a % x.ndim for a in axes]
    half = len(pads) // 2
    widths = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes):
        widths[axis] = (pads[i], pads[i + half])
    # negative pads crop
    crop = tuple(slice(max(-b, 0), x.shape[a] - max(-e, 0)) for a, (b, e) in enumerate(widths))
    x = x[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        fill = 0 if value is None else jnp.asarray(value).reshape(()).astype(x.dtype)
        return jnp.pad(x, widths, mode="constant", constant_values=fill)
    if mode == "reflect":
        return jnp.pad(x, widths, mode="reflect")
    if mode == "edge":
        return jnp.pad(x, widths, mode="edge")
    if mode == "wrap":
        return jnp.pad(x, widths, mode="wrap")
    raise ValueError(f"unknown Pad mode {mode!r}")


@emitter("Pad", since=(2, 11, 18))
def pad(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.error(f"unknown Pad mode {mode!r}")
    if ctx.opset < 11:
        pads = ctx.lit(tuple(ctx.attr("pads")))
        value = ctx.lit(ctx.fattr("value", 0.0))
        axes = "None"
    else:
        pads = ctx.ints(1)
        value = ctx.opt(2)
        axes = ctx.ints(3) if ctx.has(3) and ctx.opset >= 18 else "None"
    return ctx.call(_pad, ctx.x(0), pads, ctx.lit(mode), value, axes)


@runtime_helper
def _constant_of_shape(shape, value):
    shape = tuple(int(s) for s in np.asarray(shape).reshape(-1))
    # the value may be traced: a detector part shared between classes passes its label as an argument
    value = value.reshape(-1) if isinstance(value, np.ndarray) else jnp.reshape(value, (-1,))
    return jnp.full(shape, value[0], dtype=value.dtype)


@emitter("ConstantOfShape", since=9)
def constant_of_shape(ctx: NodeContext) -> str:
    value = ctx.attr("value", None)
    if value is None:
        value = np.zeros((1,), dtype=np.float32)
    return ctx.call(_constant_of_shape, ctx.ints(0), ctx.lit(np.asarray(value).reshape(-1)))


@runtime_helper
def _depth_to_space(x, blocksize, mode):
    n, c, h, w = x.shape
    b = blocksize
    if mode == "DCR":
        y = jnp.reshape(x, (n, b, b, c // (b * b), h, w))
        y = jnp.transpose(y, (0, 3, 4, 1, 5, 2))
    else:
        y = jnp.reshape(x, (n, c // (b * b), b, b, h, w))
        y = jnp.transpose(y, (0, 1, 4, 2, 5, 3))
    return jnp.reshape(y, (n, c // (b * b), h * b, w * b))


@emitter("DepthToSpace", since=(1, 11, 13))
def depth_to_space(ctx: NodeContext) -> str:
    mode = ctx.choice("mode", ("DCR", "CRD"), "DCR") if ctx.opset >= 11 else "DCR"
    return ctx.call(_depth_to_space, ctx.x(0), ctx.lit(ctx.attr("blocksize")), ctx.lit(mode))


@runtime_helper
def _space_to_depth(x, blocksize, mode):
    """DCR: output channel = (row offset, column offset, channel); CRD (opset 28): (channel, row, column)."""
    n, c, h, w = x.shape
    b = blocksize
    y = jnp.reshape(x, (n, c, h // b, b, w // b, b))
    y = jnp.transpose(y, (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4))
    return jnp.reshape(y, (n, c * b * b, h // b, w // b))


@emitter("SpaceToDepth", since=(1, 13, 28))
def space_to_depth(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "DCR") if ctx.opset >= 28 else "DCR"
    if mode not in ("DCR", "CRD"):
        raise ctx.error(f"unknown mode {mode!r}; expected 'DCR' or 'CRD'")
    return ctx.call(_space_to_depth, ctx.x(0), ctx.lit(ctx.attr("blocksize")), ctx.lit(mode))


@emitter("EyeLike", since=9)
def eye_like(ctx: NodeContext) -> str:
    x = ctx.x(0)
    dtype = ctx.onnx_dt(ctx.attr("dtype")) if ctx.has_attr("dtype") else f"{x}.dtype"
    k = ctx.lit(ctx.attr("k", 0))
    return f"jnp.eye(jnp.shape({x})[0], jnp.shape({x})[1], k={k}, dtype={dtype})"


@runtime_helper
def _trilu(x, k, upper):
    k = 0 if k is None else int(np.asarray(k).reshape(()))
    return jnp.triu(x, k) if upper else jnp.tril(x, k)


@emitter("Trilu", since=14)
def trilu(ctx: NodeContext) -> str:
    return ctx.call(_trilu, ctx.x(0), ctx.host_opt(1), ctx.lit(bool(ctx.attr("upper", 1))))


@runtime_helper
def _range(start, limit, delta):
    start, limit, delta = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    count = max(int(np.ceil((limit - start) / delta)), 0)
    return jnp.asarray(start + np.arange(count, dtype=start.dtype) * delta, dtype=start.dtype)


@emitter("Range", since=11)
def range_(ctx: NodeContext) -> str:
    return ctx.call(_range, ctx.host(0), ctx.host(1), ctx.host(2))


@emitter("CenterCropPad", since=18)
def center_crop_pad(ctx: NodeContext) -> str:
    axes = ctx.attr("axes", None)
    return ctx.call(_center_crop_pad, ctx.x(0), ctx.ints(1), "None" if axes is None else ctx.lit(tuple(axes)))


@runtime_helper
def _center_crop_pad(x, shape, axes):
    x = jnp.asarray(x)
    axes = list(range(x.ndim)) if axes is None else [a % x.ndim for a in axes]
    for axis, size in zip(axes, shape):
        current = x.shape[axis]
        if current > size:
            start = (current - size) // 2
            x = _slice_axis(x, start, start + size, axis)
        elif current < size:
            before = (size - current) // 2
            widths = [(0, 0)] * x.ndim
            widths[axis] = (before, size - current - before)
            x = jnp.pad(x, widths)
    return x


__all__ = ["_ints"]
