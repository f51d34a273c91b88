"""Resize (opsets 10, 11, 13, 18, 19) and Upsample.

Each resized axis is an interpolation matrix (out x in) applied with ``tensordot``; nearest mode gathers
instead, so integer tensors stay exact. This covers every coordinate transformation mode, nearest rounding
mode, cubic coefficient, ``exclude_outside``, ``antialias``, ``axes`` and ``keep_aspect_ratio_policy``.

Two paths build the source coordinates and the matrix. When the roi is concrete (the usual
case: initializers, or shape arithmetic folded while tracing) they are built with numpy while tracing, so
the matrix is a constant of the compiled program and an eager call does no extra work. When it is
traced under ``jax.jit`` (tf2onnx's crop_and_resize: one Resize per box in a Loop, the roi sliced by the
iteration number) the same arithmetic runs in ``jnp`` on the traced values. Scales (and sizes) fix the output
shape, so they are read on the host: traced, the node is value-dependent and runs eagerly. A file's declared
output shape is not trusted in their place: a model whose declared shape contradicts its scales would give
another shape under jit than onnxruntime does, and a declared dimension of 2**31 aborted XLA (fuzz44's sweep).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.control import _is_concrete
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _resize_source_coords(out_size, in_size, scale, mode, roi_start, roi_end, xp):
    """Source coordinate of each output index along one axis, in float32 and in onnxruntime's order of
    operations: nearest mode rounds these, and a coordinate that is a tie in float32 but not in float64
    (tf_crop_and_resize's ``0.1 * 15``) picked the other pixel. ``xp`` is numpy (concrete scale and roi)
    or jax.numpy (either traced). In jnp every scalar is a vector of the output's length behind an
    optimization barrier: XLA rewrites a division by a broadcast scalar as a multiplication by its
    reciprocal and folds constants (``i * 10 / 24`` -> ``i * 0.41666669``), which moves float32 ties such as
    ``6 * 10 / 24 == 2.5`` and makes nearest mode pick the other pixel; with vectors it computes exactly
    numpy's (and onnxruntime's) float32 values."""
    f = xp.float32 if xp is np else (lambda v: lax.optimization_barrier(jnp.full(out_size, v, jnp.float32)))
    i = xp.arange(out_size, dtype=xp.float32)
    scale, roi_start, roi_end = f(scale), f(roi_start), f(roi_end)
    n_in, n_out = f(in_size), f(out_size)
    if mode == "half_pixel":
        return (i + f(0.5)) / scale - f(0.5)
    if mode == "pytorch_half_pixel":
        return (i + f(0.5)) / scale - f(0.5) if out_size > 1 else xp.zeros(out_size, xp.float32)
    if mode == "align_corners":
        return i * (n_in - 1) / (n_out - 1) if out_size > 1 else xp.zeros(out_size, xp.float32)
    if mode == "asymmetric":
        return i / scale
    if mode == "tf_half_pixel_for_nn":  # Resize-11's; tf2onnx still writes it at later opsets (onnxruntime reads it)
        return (i + f(0.5)) / scale
    if mode == "tf_crop_and_resize":
        if out_size > 1:
            return roi_start * (n_in - 1) + i * (roi_end - roi_start) * (n_in - 1) / (n_out - 1)
        return xp.full(out_size, f(0.5) * (roi_start + roi_end) * (n_in - 1), xp.float32)
    if mode == "half_pixel_symmetric":
        adjustment = n_out / (scale * n_in)
        offset = n_in / 2 * (1 - adjustment)
        return offset + (i + f(0.5)) / scale - f(0.5)
    raise ValueError(f"unknown coordinate_transformation_mode {mode!r}")


@runtime_helper
def _resize_nearest_index(coords, in_size, nearest_mode, xp):
    if nearest_mode == "round_prefer_floor":
        index = xp.where(coords - xp.floor(coords) == 0.5, xp.floor(coords), xp.round(coords))
    elif nearest_mode == "round_prefer_ceil":
        index = xp.where(coords - xp.floor(coords) == 0.5, xp.ceil(coords), xp.round(coords))
    elif nearest_mode == "floor":
        index = xp.floor(coords)
    elif nearest_mode == "ceil":
        index = xp.ceil(coords)
    else:
        raise ValueError(f"unknown nearest_mode {nearest_mode!r}")
    return xp.clip(index, 0, in_size - 1).astype(xp.int32)


@runtime_helper
def _resize_kernel(distance, mode, cubic_a, xp):
    d = xp.abs(distance)
    if mode == "linear":
        return xp.maximum(0.0, 1.0 - d)
    a = cubic_a
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return xp.where(d <= 1, near, xp.where(d < 2, far, 0.0))


@runtime_helper
def _resize_matrix(coords, in_size, mode, cubic_a, exclude_outside, antialias, scale):
    """Weights (out, in) of linear/cubic interpolation at concrete source coordinates (numpy, built once
    while tracing): taps beyond the edge weigh on the edge pixel unless they are excluded (then the rest
    are renormalized). Antialias widens the filter by 1 / scale when downsampling and normalizes it over
    its whole window, edge taps included, as onnxruntime and the ONNX reference do."""
    support = 1.0 if mode == "linear" else 2.0
    stretch = scale if (antialias and scale < 1) else 1.0
    radius = support / stretch
    out = np.zeros((len(coords), in_size))
    for row, x in enumerate(coords):
        lo = int(np.floor(x - radius)) + 1 if stretch != 1.0 else int(np.floor(x)) - int(support) + 1
        hi = int(np.floor(x + radius)) if stretch != 1.0 else int(np.floor(x)) + int(support)
        taps = np.arange(lo, hi + 1)
        weights = _resize_kernel((x - taps) * stretch, mode, cubic_a, np)
        if stretch != 1.0 and weights.sum() != 0:  # the widened filter, normalized over its whole window
            weights = weights / weights.sum()
        if exclude_outside:
            weights = np.where((taps >= 0) & (taps < in_size), weights, 0.0)
            if weights.sum() != 0:
                weights = weights / weights.sum()
        np.add.at(out[row], np.clip(taps, 0, in_size - 1), weights)
    return out


@runtime_helper
def _resize_matrix_traced(coords, in_size, mode, cubic_a, exclude_outside, antialias, scale):
    """``_resize_matrix`` for traced coordinates (a traced roi; the scale is concrete), in jnp: a fixed number
    of taps per output row, from one below the first tap the kernel reaches to past its last (the kernel is 0
    from its support on, so the spare taps add nothing), one-hot onto the input axis."""
    support = 1.0 if mode == "linear" else 2.0
    stretch = scale if (antialias and scale < 1) else 1.0
    taps_per_row = 2 * int(np.ceil(support / stretch)) + 3
    radius = support / stretch
    taps = jnp.floor(coords - radius)[:, None] + jnp.arange(taps_per_row, dtype=jnp.float32)[None, :]
    weights = _resize_kernel((coords[:, None] - taps) * jnp.float32(stretch), mode, cubic_a, jnp)
    if stretch != 1.0:  # the widened filter, normalized over its whole window
        total = weights.sum(axis=1, keepdims=True)
        weights = jnp.where(total != 0, weights / jnp.where(total == 0, 1.0, total), weights)
    if exclude_outside:
        weights = jnp.where((taps >= 0) & (taps < in_size), weights, 0.0)
        total = weights.sum(axis=1, keepdims=True)
        weights = jnp.where(total != 0, weights / jnp.where(total == 0, 1.0, total), weights)
    index = jnp.clip(taps, 0, in_size - 1).astype(jnp.int32)
    one_hot = index[:, :, None] == jnp.arange(in_size, dtype=jnp.int32)[None, None, :]
    return jnp.sum(jnp.where(one_hot, weights[:, :, None], 0.0), axis=1)


@runtime_helper
def _resize(x, roi, scales, sizes, axes, mode, coord_mode, nearest_mode, cubic_a, exclude_outside,
            extrapolation_value, antialias, keep_aspect_ratio_policy):
    """Resize ``x``: ``scales`` and ``sizes`` concrete (they fix the output shape), ``roi`` concrete or traced."""
    x = jnp.asarray(x)
    rank = x.ndim
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    in_sizes = [x.shape[a] for a in axes]
    scales = None if scales is None or jnp.size(scales) == 0 else scales
    sizes = None if sizes is None or np.asarray(sizes).size == 0 else [int(s) for s in np.asarray(sizes).reshape(-1)]
    if scales is not None:
        scales = [float(s) for s in np.asarray(scales).reshape(-1)]
        if len(scales) == rank and len(axes) != rank:
            scales = [scales[a] for a in axes]
    if sizes is not None:
        if len(sizes) == rank and len(axes) != rank:
            sizes = [sizes[a] for a in axes]
        if keep_aspect_ratio_policy in ("not_larger", "not_smaller"):
            ratios = [s / n for s, n in zip(sizes, in_sizes)]
            ratio = min(ratios) if keep_aspect_ratio_policy == "not_larger" else max(ratios)
            scales = [ratio] * len(axes)
            sizes = [int(np.floor(ratio * n + 0.5)) for n in in_sizes]
        else:
            scales = [s / n for s, n in zip(sizes, in_sizes)]
    else:
        sizes = [int(np.floor(n * s)) for n, s in zip(in_sizes, scales)]
    empty = roi is None or jnp.size(roi) == 0
    roi = None if empty else (np.asarray(roi, np.float64).reshape(-1) if _is_concrete(roi) else jnp.reshape(roi, (-1,)))
    for k, axis in enumerate(axes):
        n_in, n_out, scale = in_sizes[k], sizes[k], scales[k]
        if roi is not None:
            half = len(roi) // 2
            pos = axis if half == rank else k
            start, end = roi[pos], roi[pos + half]
        else:
            start, end = 0.0, 1.0
        # the coordinates read the roi in tf_crop_and_resize only
        if coord_mode != "tf_crop_and_resize":
            start, end = 0.0, 1.0
        xp = np if _is_concrete(start) and _is_concrete(end) else jnp
        coords = _resize_source_coords(n_out, n_in, scale, coord_mode, start, end, xp)
        if mode == "nearest":
            index = _resize_nearest_index(coords, n_in, nearest_mode, xp)
            y = jnp.take(x, jnp.asarray(index), axis=axis)
        else:
            if xp is jnp:
                matrix = _resize_matrix_traced(coords, n_in, mode, cubic_a, exclude_outside, antialias, scale)
            else:
                matrix = _resize_matrix(coords, n_in, mode, cubic_a, exclude_outside, antialias, scale)
            compute = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
            y = jnp.tensordot(x.astype(compute), jnp.asarray(matrix, compute), axes=([axis], [1]))
            y = jnp.moveaxis(y, -1, axis).astype(x.dtype)
        if coord_mode == "tf_crop_and_resize":
            outside = (coords < 0) | (coords > n_in - 1)
            shape = [1] * rank
            shape[axis] = n_out
            y = jnp.where(jnp.reshape(jnp.asarray(outside), shape), jnp.asarray(extrapolation_value, y.dtype), y)
        x = y
    return x


def _roi_input(ctx: NodeContext, i: int) -> str:
    """The roi as code: a literal when known now, else the traced value (``_resize`` builds the
    interpolation in jnp then), never a host read that would end jax.jit's trace."""
    if not ctx.has(i):
        return "None"
    return ctx.host(i) if ctx.static(i) is not None else ctx.x(i)


# what _resize_coordinates and _resize_nearest_index compute (tf_half_pixel_for_nn: Resize-11's, still written by tf2onnx)
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn", "tf_crop_and_resize")  # fmt: skip
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@emitter("Resize", since=(10, 11, 13, 18, 19))
def resize(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.error(f"unknown Resize mode {mode!r}")
    if ctx.opset < 11:
        return ctx.call(_resize, ctx.x(0), "None", ctx.host(1), "None", "None", ctx.lit(mode), ctx.lit("asymmetric"),
                        ctx.lit("floor"), "-0.75", "False", "0.0", "False", ctx.lit("stretch"))
    axes = ctx.attr("axes", None) if ctx.opset >= 18 else None
    # scales and sizes fix the output shape: read on the host (value-dependent when traced)
    return ctx.call(
        _resize, ctx.x(0), _roi_input(ctx, 1), ctx.host_opt(2), ctx.host_opt(3), "None" if axes is None else ctx.lit(tuple(axes)),
        ctx.lit(mode), ctx.lit(ctx.choice("coordinate_transformation_mode", COORDINATE_MODES, "half_pixel")),
        ctx.lit(ctx.choice("nearest_mode", NEAREST_MODES, "round_prefer_floor")),
        ctx.lit(ctx.fattr("cubic_coeff_a", -0.75)),
        ctx.lit(bool(ctx.attr("exclude_outside", 0))), ctx.lit(ctx.fattr("extrapolation_value", 0.0)),
        ctx.lit(bool(ctx.attr("antialias", 0))),
        ctx.lit(ctx.choice("keep_aspect_ratio_policy", ("stretch", "not_larger", "not_smaller"), "stretch")),
    )


@emitter("Upsample", since=(9, 10))
def upsample(ctx: NodeContext) -> str:
    mode = ctx.choice("mode", ("nearest", "linear", "cubic"), "nearest")  # cubic: onnxruntime reads it too
    return ctx.call(_resize, ctx.x(0), "None", ctx.host(1), "None", "None", ctx.lit(mode), ctx.lit("asymmetric"),
                    ctx.lit("floor"), "-0.75", "False", "0.0", "False", ctx.lit("stretch"))
