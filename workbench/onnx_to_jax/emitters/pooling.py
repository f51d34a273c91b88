"""Pooling: MaxPool (with indices), AveragePool, LpPool, their global forms, MaxUnpool and Col2Im."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.conv import _conv_attrs, _conv_pads, _tap_window, _window_positions
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _pool_padding(x_shape, kernel, strides, dilations, pads, auto_pad, ceil_mode):
    """(explicit pads, extra end pads from ceil_mode) per spatial dim."""
    nd = len(kernel)
    explicit = _conv_pads(x_shape, kernel, strides, dilations, pads, auto_pad)
    extra = []
    for i in range(nd):
        size = x_shape[2 + i] + explicit[i][0] + explicit[i][1]
        k_eff = (kernel[i] - 1) * dilations[i] + 1
        if ceil_mode:
            out = -(-(size - k_eff) // strides[i]) + 1
            if (out - 1) * strides[i] >= x_shape[2 + i] + explicit[i][0]:
                out -= 1
        else:
            out = (size - k_eff) // strides[i] + 1
        extra.append(max((out - 1) * strides[i] + k_eff - size, 0))
    return explicit, extra


@runtime_helper
def _pool_as_taps(kind, kernel):
    """Whether a channels-last pool runs as its taps written out (``_pool_taps``): max and average
    pools of at most 9 taps (measured from 2x2 to 3x3; larger windows stay ``lax.reduce_window``)."""
    return kind in ("max", "avg") and int(np.prod(kernel)) <= 9


@runtime_helper
def _pool_taps(x, kind, kernel, strides, dilations, padding):
    """A max or sum pool of a channels-last (N, spatial..., C) input as the max or sum of its windows'
    taps: one shifted, strided slice of the padded input per tap, combined elementwise. ``padding``:
    (begin, end) per spatial axis, ceil_mode's extra end included; padding never wins a max (it is the
    type's lowest value) and adds nothing to a sum.

    XLA CPU runs ``lax.reduce_window`` as a generic loop over each window; the taps written out are
    one fused elementwise kernel, which XLA vectorizes over the contiguous channels. One-node pools of
    SqueezeNet's, Inception v3's, ResNet's and DenseNet's shapes ran 1.5-3.5x faster so
    (docs/onnx_to_jax_corpus.md, "Pools as taps"). The max keeps the first of equal values
    (``where(tap > y)``, NaN taken as it comes), so its gradient goes to one input as reduce_window's
    does, not split among ties (zeros after a Relu are common).

    A sum is taken over one more output position than asked along the first spatial axis (padded on
    with zeros), which is sliced off at the end: ending in a slice, the sum is one XLA kernel (pad,
    slices and adds fused). Ending in its adds, it was taken into a following dot's YNNPACK fusion,
    which left every tap's pad + strided slice to be materialised as a kernel of its own: 8 distinct
    kernel modules per pool shape, 48 of Inception v3's 105, about half its first compile; the pool +
    1x1 conv of its branches also ran 1.6-2.2x slower so (docs/onnx_to_jax_corpus.md, "Average pools as
    one kernel"; tests/benchmarks/bench_pool_forms.py).
    """
    nd = x.ndim - 2
    if kind == "max":
        floating = jnp.issubdtype(x.dtype, jnp.floating)
        fill = np.array(-np.inf if floating else jnp.iinfo(x.dtype).min, x.dtype)
    else:
        fill = np.array(0, x.dtype)
        padding = [(padding[0][0], padding[0][1] + strides[0])] + list(padding[1:])
    x = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),), constant_values=fill)
    out = [_window_positions(x.shape[1 + i], kernel[i], strides[i], dilations[i]) for i in range(nd)]
    y = None
    for tap in np.ndindex(*kernel):
        window = _tap_window(x, tap, out, strides, dilations)
        if y is None:
            y = window
        elif kind == "max":
            y = jnp.where((window > y) | (window != window), window, y)
        else:
            y = y + window
    return y if kind == "max" else y[:, :-1]


@runtime_helper
def _pool(x, kind, kernel, strides, pads, dilations, auto_pad, ceil_mode, count_include_pad, p, channels_last=False):
    """MaxPool / AveragePool / LpPool; ``channels_last``: ``x`` is (N, spatial..., C), and so is the result."""
    nd = len(kernel)
    strides = strides or (1,) * nd
    dilations = dilations or (1,) * nd
    shape = (x.shape[0], x.shape[-1]) + x.shape[1:-1] if channels_last else x.shape  # on ONNX's axes

    def spread(spatial, fill):  # per-axis values of x's axes from the spatial ones
        return (fill,) + tuple(spatial) + (fill,) if channels_last else (fill, fill) + tuple(spatial)

    explicit, extra = _pool_padding(shape, kernel, strides, dilations, pads, auto_pad, ceil_mode)
    if channels_last and _pool_as_taps(kind, kernel):
        padding = [(b, e + x_) for (b, e), x_ in zip(explicit, extra)]
        y = _pool_taps(x, kind, kernel, strides, dilations, padding)
        if kind == "max":
            return y
        counts = _pool_counts(x.shape[1:-1], y.shape[1:-1], kernel, strides, dilations, explicit, count_include_pad)
        return y / jnp.asarray(np.reshape(counts, counts.shape[2:] + (1,)), x.dtype)
    window = spread(kernel, 1)
    window_strides = spread(strides, 1)
    window_dilation = spread(dilations, 1)
    padding = spread([(b, e + x_) for (b, e), x_ in zip(explicit, extra)], (0, 0))
    # The init values are numpy scalars on purpose: lax.reduce_window recognizes max/sum (and
    # gives them a gradient) only when the init is concrete, which a jnp array is not under jit.
    if kind == "max":
        if jnp.issubdtype(x.dtype, jnp.floating):
            init = np.array(-np.inf, x.dtype)
        else:
            init = np.array(jnp.iinfo(x.dtype).min, x.dtype)
        return lax.reduce_window(x, init, lax.max, window, window_strides, padding, window_dilation=window_dilation)
    if kind == "lp":
        powered = jnp.abs(x) ** p
        total = lax.reduce_window(powered, np.array(0, x.dtype), lax.add, window, window_strides, padding,
                                  window_dilation=window_dilation)
        return (total ** (1.0 / p)).astype(x.dtype)
    total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, window, window_strides, padding,
                              window_dilation=window_dilation)
    spatial = slice(1, -1) if channels_last else slice(2, None)
    counts = _pool_counts(x.shape[spatial], total.shape[spatial], kernel, strides, dilations, explicit,
                          count_include_pad)
    if channels_last:
        counts = np.reshape(counts, counts.shape[2:] + (1,))
    return total / jnp.asarray(counts, x.dtype)


@runtime_helper
def _pool_counts(sizes, out_sizes, kernel, strides, dilations, explicit, count_include_pad):
    """How many input positions each average-pooling window covers (numpy, from shapes alone).

    The window is a box, so the count is the product of one count per axis. Explicit pads count when
    ``count_include_pad``; the extra end padding of ``ceil_mode`` never does. Computed on the host: as
    a reduce_window over a constant, XLA spends seconds constant-folding it.
    """
    per_axis = []
    for size, n_out, k, s, d, (begin, end) in zip(sizes, out_sizes, kernel, strides, dilations, explicit):
        lo, hi = (-begin, size + end) if count_include_pad else (0, size)
        starts = np.arange(n_out) * s - begin
        taps = starts[:, None] + np.arange(k)[None, :] * d
        per_axis.append(((taps >= lo) & (taps < hi)).sum(axis=1))
    counts = np.ones((1, 1), np.int64)
    for axis_counts in per_axis:
        counts = counts[..., None] * axis_counts
    return counts


def _pool_call(ctx: NodeContext, kind: str) -> str:
    attrs = _conv_attrs(ctx)
    kernel = ctx.lit(tuple(ctx.attr("kernel_shape")))
    ceil_mode = ctx.lit(bool(ctx.attr("ceil_mode", 0)))
    count_include_pad = ctx.lit(bool(ctx.attr("count_include_pad", 0)))
    p = ctx.lit(ctx.attr("p", 2))
    if ctx.opset < 10 or kind == "lp" and ctx.opset < 18:
        ceil_mode = "False"
    if kind != "max" and ctx.opset < 19 and kind == "avg":
        attrs["dilations"] = attrs["dilations"] if ctx.opset >= 19 else "None"
    layout = {"channels_last": "True"} if ctx.channels_last else {}
    return ctx.call(_pool, ctx.x(0), ctx.lit(kind), kernel, attrs["strides"], attrs["pads"], attrs["dilations"],
                    attrs["auto_pad"], ceil_mode, count_include_pad, p, **layout)


@runtime_helper
def _max_pool_with_indices(x, kernel, strides, pads, dilations, auto_pad, ceil_mode, storage_order):
    """MaxPool's (values, indices): indices flatten (n, c, spatial...) row-major, or column-major over
    the spatial axes when ``storage_order`` is 1; ties keep the first position."""
    nd = len(kernel)
    strides = strides or (1,) * nd
    dilations = dilations or (1,) * nd
    explicit, extra = _pool_padding(x.shape, kernel, strides, dilations, pads, auto_pad, ceil_mode)
    padding = ((0, 0), (0, 0)) + tuple((b, e + x_) for (b, e), x_ in zip(explicit, extra))
    position = jnp.reshape(jnp.arange(x.size, dtype=jnp.int64), x.shape)
    if storage_order:
        spatial = x.shape[2:]
        grids = jnp.meshgrid(*[jnp.arange(d, dtype=jnp.int64) for d in spatial], indexing="ij")
        column_major = jnp.zeros(spatial, jnp.int64)
        for axis in reversed(range(nd)):
            column_major = column_major * spatial[axis] + grids[axis]
        plane = int(np.prod(spatial, dtype=np.int64))
        index = (jnp.arange(x.shape[0] * x.shape[1], dtype=jnp.int64) * plane).reshape(x.shape[:2] + (1,) * nd)
        index = index + column_major
    else:
        index = position
    if jnp.issubdtype(x.dtype, jnp.floating):
        lowest = jnp.array(-jnp.inf, x.dtype)
    else:
        lowest = jnp.array(jnp.iinfo(x.dtype).min, x.dtype)

    def pick(a, b):
        a_value, a_position, a_index = a
        b_value, b_position, b_index = b
        take_b = (b_value > a_value) | ((b_value == a_value) & (b_position < a_position))
        return (jnp.where(take_b, b_value, a_value), jnp.where(take_b, b_position, a_position),
                jnp.where(take_b, b_index, a_index))

    init = (lowest, jnp.array(x.size, jnp.int64), jnp.array(-1, jnp.int64))
    values, _, indices = lax.reduce_window(
        (x, position, index), init, pick, (1, 1) + tuple(kernel), (1, 1) + tuple(strides), padding,
        window_dilation=(1, 1) + tuple(dilations),
    )
    return values, indices


@emitter("MaxPool", since=(1, 8, 10, 11, 12))
def max_pool(ctx: NodeContext) -> str:
    storage_order = ctx.attr("storage_order", 0)
    if not ctx.has_output(1):
        return _pool_call(ctx, "max")
    attrs = _conv_attrs(ctx)
    ceil_mode = ctx.lit(bool(ctx.attr("ceil_mode", 0)) and ctx.opset >= 10)
    return ctx.call(_max_pool_with_indices, ctx.x(0), ctx.lit(tuple(ctx.attr("kernel_shape"))), attrs["strides"],
                    attrs["pads"], attrs["dilations"], attrs["auto_pad"], ceil_mode, ctx.lit(bool(storage_order)))


@runtime_helper
def _max_unpool(x, indices, output_shape, kernel, strides, pads):
    nd = len(kernel)
    strides = strides or (1,) * nd
    pads = pads or (0,) * (2 * nd)
    # indices address the shape the pooling arithmetic gives; a larger output_shape pads it at the end
    spatial = tuple((x.shape[2 + i] - 1) * strides[i] - pads[i] - pads[i + nd] + kernel[i] for i in range(nd))
    inferred = x.shape[:2] + spatial
    flat = jnp.zeros((int(np.prod(inferred, dtype=np.int64)),), x.dtype)
    flat = flat.at[jnp.reshape(indices, (-1,))].set(jnp.reshape(x, (-1,)))
    y = jnp.reshape(flat, inferred)
    if output_shape is None:
        return y
    return jnp.pad(y, [(0, max(want - have, 0)) for want, have in zip(output_shape, inferred)])


@emitter("MaxUnpool", since=(9, 11, 22))
def max_unpool(ctx: NodeContext) -> str:
    strides, pads = ctx.attr("strides", None), ctx.attr("pads", None)
    return ctx.call(
        _max_unpool, ctx.x(0), ctx.x(1), ctx.ints(2) if ctx.has(2) else "None",
        ctx.lit(tuple(ctx.attr("kernel_shape"))), "None" if strides is None else ctx.lit(tuple(strides)),
        "None" if pads is None else ctx.lit(tuple(pads)),
    )


@runtime_helper
def _col2im(x, image_shape, block_shape, dilations, pads, strides):
    """Col2Im: sum each column of ``x`` back into its block of the (padded) image, then crop the padding."""
    nd = len(image_shape)
    dilations = dilations or (1,) * nd
    pads = pads or (0,) * (2 * nd)
    strides = strides or (1,) * nd
    padded = [image_shape[i] + pads[i] + pads[i + nd] for i in range(nd)]
    counts = [_window_positions(padded[i], block_shape[i], strides[i], dilations[i]) for i in range(nd)]
    n = x.shape[0]
    blocks = int(np.prod(block_shape, dtype=np.int64))
    columns = jnp.reshape(x, (n, x.shape[1] // blocks) + tuple(block_shape) + tuple(counts))
    coordinates = []
    for i in range(nd):
        shape = [1] * (2 * nd)
        offset = np.arange(block_shape[i]) * dilations[i]
        start = np.arange(counts[i]) * strides[i]
        coordinates.append(offset.reshape(shape[:i] + [-1] + shape[i + 1:]) + start.reshape(
            shape[:nd + i] + [-1] + shape[nd + i + 1:]))
    target = np.ravel_multi_index(np.broadcast_arrays(*coordinates), padded)
    image = jnp.zeros((n, columns.shape[1], int(np.prod(padded, dtype=np.int64))), x.dtype)
    image = image.at[:, :, np.reshape(target, (-1,))].add(jnp.reshape(columns, columns.shape[:2] + (-1,)))
    image = jnp.reshape(image, (n, columns.shape[1]) + tuple(padded))
    crop = tuple(slice(pads[i], pads[i] + image_shape[i]) for i in range(nd))
    return image[(slice(None), slice(None)) + crop]


@emitter("Col2Im", since=18)
def col2im(ctx: NodeContext) -> str:
    def opt(name: str) -> str:
        value = ctx.attr(name, None)
        return "None" if value is None else ctx.lit(tuple(value))

    return ctx.call(_col2im, ctx.x(0), ctx.ints(1), ctx.ints(2), opt("dilations"), opt("pads"), opt("strides"))


@emitter("AveragePool", since=(7, 10, 11, 19))
def average_pool(ctx: NodeContext) -> str:
    return _pool_call(ctx, "avg")


@emitter("LpPool", since=(2, 11, 18))
def lp_pool(ctx: NodeContext) -> str:
    return _pool_call(ctx, "lp")


def _global_pool(ctx: NodeContext, fn: str) -> str:
    x = ctx.x(0)
    if ctx.channels_last:  # (N, H, W, C)
        return f"{fn}({x}, axis=(1, 2), keepdims=True)"
    return f"{fn}({x}, axis=tuple(range(2, jnp.ndim({x}))), keepdims=True)"


@emitter("GlobalAveragePool", since=1)
def global_average_pool(ctx: NodeContext) -> str:
    return _global_pool(ctx, "jnp.mean")


@emitter("GlobalMaxPool", since=1)
def global_max_pool(ctx: NodeContext) -> str:
    return _global_pool(ctx, "jnp.max")


@emitter("GlobalLpPool", since=2)
def global_lp_pool(ctx: NodeContext) -> str:
    x, p = ctx.x(0), ctx.lit(ctx.attr("p", 2))
    return (f"(jnp.sum(jnp.abs({x}) ** {p}, axis=tuple(range(2, jnp.ndim({x}))), keepdims=True) ** (1.0 / {p}))"
            f".astype({x}.dtype)")
