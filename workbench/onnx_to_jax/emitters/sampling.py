"""Spatial sampling ops: GridSample, AffineGrid, RoiAlign.

GridSample follows the spec's reference step by step, vectorized: grid
coordinates are denormalized per spatial axis (``align_corners`` picks the
convention), out-of-range coordinates are clamped (``border``) or reflected
(``reflection``) before interpolation, then every tap of the separable
nearest / linear / cubic (Keys, a = -0.75) kernel is fetched with the same
padding rule (zeros outside for ``zeros``) and the weighted taps are summed.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _reflect(v, lo, hi):
    """Reflect ``v`` by the nearer border until it lies in [lo, hi] (as the GridSample reference does)."""
    span = hi - lo
    below = v < lo
    distance = jnp.where(below, lo - v, v - hi)
    flips = jnp.floor(distance / span)
    rest = distance - flips * span
    even = jnp.mod(flips, 2) == 0
    from_below = jnp.where(even, lo + rest, hi - rest)
    from_above = jnp.where(even, hi - rest, lo + rest)
    return jnp.where(below, from_below, jnp.where(v > hi, from_above, v))


@runtime_helper
def _cubic_weight(s):
    """Keys' cubic convolution kernel with a = -0.75 at distance ``s``."""
    a = -0.75
    s = jnp.abs(s)
    near = ((a + 2) * s - (a + 3)) * s * s + 1
    far = ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
    return jnp.where(s <= 1, near, far)


@runtime_helper
def _grid_sample(x, grid, mode, padding_mode, align_corners):
    n, c = x.shape[:2]
    dims = x.shape[2:]
    nd = len(dims)
    out_spatial = grid.shape[1:-1]
    # the grid's last axis lists (x, y[, z]): the innermost spatial axis first
    coords = jnp.reshape(jnp.flip(grid, axis=-1), (n, -1, nd))
    taps_per_axis = []
    for axis, size in enumerate(dims):
        v = coords[..., axis]
        v = (v + 1) / 2 * (size - 1) if align_corners else ((v + 1) * size - 1) / 2
        lo, hi = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
        if mode == "nearest":
            v = jnp.round(v)
        outside = (v < lo) | (v > hi)
        if padding_mode == "border":
            v = jnp.where(outside, jnp.clip(v, 0, size - 1), v)
        elif padding_mode == "reflection":
            v = jnp.where(outside, _reflect(v, lo, hi), v)
        if mode == "nearest":
            taps = [(jnp.trunc(v), jnp.ones_like(v))]
        else:
            base = jnp.floor(v)
            t = v - base
            if mode == "linear":
                taps = [(base, 1 - t), (base + 1, t)]
            else:
                taps = [(base + k - 1, _cubic_weight(t - (k - 1))) for k in range(4)]
        fetched = []
        for index, weight in taps:
            if padding_mode == "zeros":
                weight = jnp.where((index >= 0) & (index < size), weight, 0)
            elif padding_mode == "reflection":
                index = jnp.trunc(_reflect(index, lo, hi))
            fetched.append((jnp.clip(index, 0, size - 1).astype(jnp.int32), weight))
        taps_per_axis.append(fetched)
    combos = [(jnp.zeros(coords.shape[:2], jnp.int32), jnp.ones(coords.shape[:2], grid.dtype))]
    for size, fetched in zip(dims, taps_per_axis):
        combos = [(flat * size + index, w * weight) for flat, w in combos for index, weight in fetched]
    flat_x = jnp.reshape(x, (n, c, -1))
    y = jnp.zeros((n, c, coords.shape[1]), x.dtype)
    for flat, w in combos:
        values = jnp.take_along_axis(flat_x, flat[:, None, :], axis=2)
        y = y + (values * w[:, None, :]).astype(x.dtype)
    return jnp.reshape(y, (n, c) + tuple(out_spatial))


_MODES = {"bilinear": "linear", "bicubic": "cubic", "linear": "linear", "cubic": "cubic", "nearest": "nearest"}


@emitter("GridSample", since=(16, 20, 22))
def grid_sample(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "bilinear" if ctx.opset < 20 else "linear")
    padding_mode = ctx.attr("padding_mode", "zeros")
    if mode not in _MODES:
        raise ctx.error(f"unknown mode {mode!r}; expected one of {sorted(_MODES)}")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ctx.error(f"unknown padding_mode {padding_mode!r}")
    return ctx.call(_grid_sample, ctx.x(0), ctx.x(1), ctx.lit(_MODES[mode]), ctx.lit(padding_mode),
                    ctx.lit(bool(ctx.attr("align_corners", 0))))


@runtime_helper
def _affine_grid(theta, size, align_corners):
    spatial = size[2:]
    axes = []
    for length in reversed(spatial):  # x (innermost) first, as the grid lists coordinates
        if align_corners:
            axes.append(jnp.linspace(-1, 1, length, dtype=theta.dtype) if length > 1 else jnp.zeros((1,), theta.dtype))
        else:
            axes.append(((jnp.arange(length, dtype=theta.dtype) * 2 + 1) / length - 1))
    mesh = jnp.meshgrid(*reversed(axes), indexing="ij")  # each of shape spatial
    base = jnp.stack(list(reversed(mesh)) + [jnp.ones(tuple(spatial), theta.dtype)], axis=-1)
    grid = jnp.einsum("...k,njk->n...j", base, theta)
    return grid.astype(theta.dtype)


@emitter("AffineGrid", since=20)
def affine_grid(ctx: NodeContext) -> str:
    return ctx.call(_affine_grid, ctx.x(0), ctx.ints(1), ctx.lit(bool(ctx.attr("align_corners", 0))))


@runtime_helper
def _roi_align(x, rois, batch_indices, mode, out_h, out_w, sampling_ratio, spatial_scale, half_pixel):
    """RoiAlign as the spec's reference computes it: per bin a grid of bilinear samples, averaged
    (``avg``) or the largest weighted corner value (``max``). With ``sampling_ratio`` 0 the grid size
    depends on each ROI's size; the largest is used with the extra samples masked out (so the ROI
    values must be concrete: not under ``jax.jit``)."""
    height, width = x.shape[2], x.shape[3]
    if rois.shape[0] == 0:  # routine in multi-scale detectors: an empty result, as onnxruntime gives
        return jnp.zeros((0, x.shape[1], out_h, out_w), x.dtype)
    offset = 0.5 if half_pixel else 0.0
    start_w, start_h = rois[:, 0] * spatial_scale - offset, rois[:, 1] * spatial_scale - offset
    roi_w = rois[:, 2] * spatial_scale - offset - start_w
    roi_h = rois[:, 3] * spatial_scale - offset - start_h
    if not half_pixel:
        roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    if sampling_ratio > 0:
        grid_h = jnp.full(roi_h.shape, sampling_ratio)
        grid_w = jnp.full(roi_w.shape, sampling_ratio)
        max_h = max_w = sampling_ratio
    else:
        grid_h, grid_w = jnp.ceil(roi_h / out_h), jnp.ceil(roi_w / out_w)
        max_h, max_w = max(int(jnp.max(grid_h, initial=1)), 1), max(int(jnp.max(grid_w, initial=1)), 1)
    # sample coordinates: [roi, bin, sample]
    iy, ix = jnp.arange(max_h), jnp.arange(max_w)
    ys = (start_h[:, None, None] + jnp.arange(out_h)[None, :, None] * bin_h[:, None, None]
          + (iy[None, None, :] + 0.5) * bin_h[:, None, None] / grid_h[:, None, None])
    xs = (start_w[:, None, None] + jnp.arange(out_w)[None, :, None] * bin_w[:, None, None]
          + (ix[None, None, :] + 0.5) * bin_w[:, None, None] / grid_w[:, None, None])
    y_used = iy[None, None, :] < grid_h[:, None, None]
    x_used = ix[None, None, :] < grid_w[:, None, None]

    def corners(v, size):
        outside = (v < -1.0) | (v > size)
        v = jnp.maximum(v, 0)
        low = jnp.floor(v).astype(jnp.int32)
        at_edge = low >= size - 1
        low = jnp.where(at_edge, size - 1, low)
        high = jnp.where(at_edge, size - 1, low + 1)
        v = jnp.where(at_edge, low.astype(v.dtype), v)
        frac = v - low
        return low, high, 1 - frac, frac, outside

    y_lo, y_hi, wy_lo, wy_hi, y_out = corners(ys, height)  # [roi, out_h, max_h]
    x_lo, x_hi, wx_lo, wx_hi, x_out = corners(xs, width)  # [roi, out_w, max_w]
    # The corner values are gathered from the feature map with its channels last, each sample point's C
    # values one contiguous row: [roi, out_h, max_h, out_w, max_w, C]. (Copying each ROI's image,
    # x[batch_indices], then taking rows and columns from it element by element along the spatial axes
    # was 5x slower: Faster R-CNN's part with its first RoiAlign level, 150 RoIs, 397 -> 79 ms CPU.)
    pixels = jnp.moveaxis(x, 1, -1)  # [N, H, W, C]
    batch = jnp.asarray(batch_indices, jnp.int32)[:, None, None, None, None]

    def fetch(yi, xi):
        return pixels[batch, yi[:, :, :, None, None], xi[:, None, None, :, :]]

    def weight(wy, wx):
        return (wy[:, :, :, None, None] * wx[:, None, None, :, :])[..., None]

    terms = [fetch(a, b) * weight(wa, wb) for a, wa in ((y_lo, wy_lo), (y_hi, wy_hi))
             for b, wb in ((x_lo, wx_lo), (x_hi, wx_hi))]
    inside = ~(y_out[:, :, :, None, None] | x_out[:, None, None, :, :])[..., None]
    used = (y_used[:, :, :, None, None] & x_used[:, None, None, :, :])[..., None]
    if mode == "avg":
        total = jnp.where(inside & used, terms[0] + terms[1] + terms[2] + terms[3], 0).sum(axis=(2, 4))
        count = jnp.maximum(grid_h * grid_w, 1)[:, None, None, None]
        return jnp.moveaxis(total / count, -1, 1).astype(x.dtype)  # [roi, C, out_h, out_w]
    best = jnp.where(inside, jnp.maximum(jnp.maximum(terms[0], terms[1]), jnp.maximum(terms[2], terms[3])), 0)
    best = jnp.where(used, best, -jnp.inf)
    return jnp.moveaxis(best.max(axis=(2, 4)), -1, 1).astype(x.dtype)


@emitter("RoiAlign", since=(10, 16, 22))
def roi_align(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "avg")
    if mode not in ("avg", "max"):
        raise ctx.error(f"unknown mode {mode!r}; expected 'avg' or 'max'")
    transform = ctx.attr("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 16 else "output_half_pixel")
    if transform not in ("half_pixel", "output_half_pixel"):
        raise ctx.error(f"unknown coordinate_transformation_mode {transform!r}")
    sampling_ratio = ctx.attr("sampling_ratio", 0)
    # with sampling_ratio 0 the number of samples per bin follows each ROI's size (read on the host)
    rois = ctx.host(1) if sampling_ratio <= 0 else ctx.x(1)
    return ctx.call(
        _roi_align, ctx.x(0), rois, ctx.x(2), ctx.lit(mode), ctx.lit(ctx.attr("output_height", 1)),
        ctx.lit(ctx.attr("output_width", 1)), ctx.lit(sampling_ratio),
        ctx.lit(ctx.fattr("spatial_scale", 1.0)), ctx.lit(transform == "half_pixel"),
    )


@runtime_helper
def _deform_conv(x, w, offset, bias, mask, strides, pads, dilations, group, offset_group):
    """2-D deformable convolution: every kernel tap reads the input bilinearly (zeros outside) at its
    regular position plus the learned offset, scaled by the mask, then the grouped convolution sums."""
    n, channels, height, width = x.shape
    out_channels, per_group, kh, kw = w.shape
    oh, ow = offset.shape[2:]
    strides = strides or (1, 1)
    pads = pads or (0, 0, 0, 0)
    dilations = dilations or (1, 1)
    offset = jnp.reshape(offset, (n, offset_group, kh, kw, 2, oh, ow))
    mask = jnp.ones((n, offset_group, kh, kw, oh, ow), x.dtype) if mask is None else jnp.reshape(
        mask, (n, offset_group, kh, kw, oh, ow))
    base_h = (jnp.arange(kh) * dilations[0])[:, None, None, None] + (jnp.arange(oh) * strides[0] - pads[0])[None, None, :, None]
    base_w = (jnp.arange(kw) * dilations[1])[None, :, None, None] + (jnp.arange(ow) * strides[1] - pads[1])[None, None, None, :]
    rows = base_h[None, None] + offset[:, :, :, :, 0]  # [n, offset_group, kh, kw, oh, ow]
    cols = base_w[None, None] + offset[:, :, :, :, 1]
    sampled = []
    per_offset_group = channels // offset_group
    for g in range(offset_group):
        # GridSample with align_corners=1 reads pixel p at the normalized coordinate p / (size - 1) * 2 - 1
        grid = jnp.stack([cols[:, g] / (width - 1) * 2 - 1, rows[:, g] / (height - 1) * 2 - 1], axis=-1)
        grid = jnp.reshape(grid, (n, kh * kw * oh, ow, 2)).astype(x.dtype)
        part = _grid_sample(x[:, g * per_offset_group:(g + 1) * per_offset_group], grid, "linear", "zeros", True)
        part = jnp.reshape(part, (n, per_offset_group, kh, kw, oh, ow)) * mask[:, g:g + 1]
        sampled.append(part)
    sampled = jnp.concatenate(sampled, axis=1)
    sampled = jnp.reshape(sampled, (n, group, per_group, kh, kw, oh, ow))
    kernels = jnp.reshape(w, (group, out_channels // group, per_group, kh, kw))
    y = jnp.einsum("ngcklij,gockl->ngoij", sampled, kernels)
    y = jnp.reshape(y, (n, out_channels, oh, ow))
    if bias is not None:
        y = y + jnp.reshape(bias, (1, -1, 1, 1))
    return y.astype(x.dtype)


@emitter("DeformConv", since=(19, 22))
def deform_conv(ctx: NodeContext) -> str:
    if ctx.rank(0) is not None and ctx.rank(0) != 4:
        raise ctx.unsupported("DeformConv is supported for 2-D images (rank-4 input) only")

    def opt(name: str) -> str:
        value = ctx.attr(name, None)
        return "None" if value is None else ctx.lit(tuple(value))

    return ctx.call(_deform_conv, ctx.x(0), ctx.x(1), ctx.x(2), ctx.opt(3), ctx.opt(4), opt("strides"), opt("pads"),
                    opt("dilations"), ctx.lit(ctx.attr("group", 1)), ctx.lit(ctx.attr("offset_group", 1)))


__all__ = ["np"]
