"""Resize (opsets 10, 11, 13, 18, 19) and Upsample.

Each resized axis is an interpolation matrix (out x in) built with numpy from
the static shapes and the scales/sizes, then applied with ``tensordot``;
nearest mode gathers instead, so integer tensors stay exact. This covers every
coordinate transformation mode, nearest rounding mode, cubic coefficient,
``exclude_outside``, ``antialias``, ``axes`` and ``keep_aspect_ratio_policy``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _resize_source_coords(out_size, in_size, scale, mode, roi_start, roi_end):
    """Source coordinate of each output index along one axis, in float32 and in onnxruntime's order of
    operations: nearest mode rounds these, and a coordinate that is a tie in float32 but not in float64
    (tf_crop_and_resize's ``0.1 * 15``) picked the other pixel."""
    f = np.float32
    i = np.arange(out_size, dtype=f)
    scale, roi_start, roi_end = f(scale), f(roi_start), f(roi_end)
    n_in, n_out = f(in_size), f(out_size)
    if mode == "half_pixel":
        return (i + f(0.5)) / scale - f(0.5)
    if mode == "pytorch_half_pixel":
        return (i + f(0.5)) / scale - f(0.5) if out_size > 1 else np.zeros(out_size, f)
    if mode == "align_corners":
        return i * (n_in - 1) / (n_out - 1) if out_size > 1 else np.zeros(out_size, f)
    if mode == "asymmetric":
        return i / scale
    if mode == "tf_half_pixel_for_nn":  # Resize-11's; tf2onnx still writes it at later opsets (onnxruntime reads it)
        return (i + f(0.5)) / scale
    if mode == "tf_crop_and_resize":
        if out_size > 1:
            return roi_start * (n_in - 1) + i * (roi_end - roi_start) * (n_in - 1) / (n_out - 1)
        return np.full(out_size, f(0.5) * (roi_start + roi_end) * (n_in - 1), f)
    if mode == "half_pixel_symmetric":
        adjustment = n_out / (scale * n_in)
        offset = n_in / 2 * (1 - adjustment)
        return offset + (i + f(0.5)) / scale - f(0.5)
    raise ValueError(f"unknown coordinate_transformation_mode {mode!r}")


@runtime_helper
def _resize_nearest_index(coords, in_size, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        index = np.where(coords - np.floor(coords) == 0.5, np.floor(coords), np.round(coords))
    elif nearest_mode == "round_prefer_ceil":
        index = np.where(coords - np.floor(coords) == 0.5, np.ceil(coords), np.round(coords))
    elif nearest_mode == "floor":
        index = np.floor(coords)
    elif nearest_mode == "ceil":
        index = np.ceil(coords)
    else:
        raise ValueError(f"unknown nearest_mode {nearest_mode!r}")
    return np.clip(index, 0, in_size - 1).astype(np.int64)


@runtime_helper
def _resize_kernel(distance, mode, cubic_a):
    d = np.abs(distance)
    if mode == "linear":
        return np.maximum(0.0, 1.0 - d)
    a = cubic_a
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


@runtime_helper
def _resize_matrix(coords, in_size, mode, cubic_a, exclude_outside, antialias, scale):
    """Weights (out, in) of linear/cubic interpolation at the source coordinates."""
    support = 1.0 if mode == "linear" else 2.0
    stretch = scale if (antialias and scale < 1) else 1.0
    radius = support / stretch
    out = np.zeros((len(coords), in_size))
    for row, x in enumerate(coords):
        lo = int(np.floor(x - radius)) + 1 if stretch != 1.0 else int(np.floor(x)) - int(support) + 1
        hi = int(np.floor(x + radius)) if stretch != 1.0 else int(np.floor(x)) + int(support)
        taps = np.arange(lo, hi + 1)
        weights = _resize_kernel((x - taps) * stretch, mode, cubic_a)
        inside = (taps >= 0) & (taps < in_size)
        if exclude_outside or stretch != 1.0:
            weights = np.where(inside, weights, 0.0)
        total = weights.sum()
        if total != 0 and (exclude_outside or stretch != 1.0):
            weights = weights / total
        np.add.at(out[row], np.clip(taps, 0, in_size - 1), weights)
    return out


@runtime_helper
def _resize(x, roi, scales, sizes, axes, mode, coord_mode, nearest_mode, cubic_a, exclude_outside,
            extrapolation_value, antialias, keep_aspect_ratio_policy):
    x = jnp.asarray(x)
    rank = x.ndim
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    in_sizes = [x.shape[a] for a in axes]
    scales = None if scales is None or np.asarray(scales).size == 0 else [float(s) for s in np.asarray(scales).reshape(-1)]
    sizes = None if sizes is None or np.asarray(sizes).size == 0 else [int(s) for s in np.asarray(sizes).reshape(-1)]
    if scales is not None and len(scales) == rank and len(axes) != rank:
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
    roi = None if roi is None or np.asarray(roi).size == 0 else np.asarray(roi, dtype=np.float64).reshape(-1)
    for k, axis in enumerate(axes):
        n_in, n_out, scale = in_sizes[k], sizes[k], scales[k]
        if roi is not None:
            half = len(roi) // 2
            pos = axis if half == rank else k
            start, end = roi[pos], roi[pos + half]
        else:
            start, end = 0.0, 1.0
        coords = _resize_source_coords(n_out, n_in, scale, coord_mode, start, end)
        if mode == "nearest":
            index = _resize_nearest_index(coords, n_in, nearest_mode)
            y = jnp.take(x, jnp.asarray(index), axis=axis)
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


@emitter("Resize", since=(10, 11, 13, 18, 19))
def resize(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.error(f"unknown Resize mode {mode!r}")
    if ctx.opset < 11:
        return ctx.call(_resize, ctx.x(0), "None", ctx.host(1), "None", "None", ctx.lit(mode), ctx.lit("asymmetric"),
                        ctx.lit("floor"), "-0.75", "False", "0.0", "False", ctx.lit("stretch"))
    axes = ctx.attr("axes", None) if ctx.opset >= 18 else None
    return ctx.call(
        _resize, ctx.x(0), ctx.host_opt(1), ctx.host_opt(2), ctx.host_opt(3), "None" if axes is None else ctx.lit(tuple(axes)),
        ctx.lit(mode), ctx.lit(ctx.attr("coordinate_transformation_mode", "half_pixel")),
        ctx.lit(ctx.attr("nearest_mode", "round_prefer_floor")), ctx.lit(ctx.fattr("cubic_coeff_a", -0.75)),
        ctx.lit(bool(ctx.attr("exclude_outside", 0))), ctx.lit(ctx.fattr("extrapolation_value", 0.0)),
        ctx.lit(bool(ctx.attr("antialias", 0))), ctx.lit(ctx.attr("keep_aspect_ratio_policy", "stretch")),
    )


@emitter("Upsample", since=(9, 10))
def upsample(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "nearest")
    return ctx.call(_resize, ctx.x(0), "None", ctx.host(1), "None", "None", ctx.lit(mode), ctx.lit("asymmetric"),
                    ctx.lit("floor"), "-0.75", "False", "0.0", "False", ctx.lit("stretch"))
