"""Forms of wide 3x3 convolutions (256 input channels or more on a 12x12 map or larger, dilated or not)
for models compiled with YNNPACK fusing only dots: FCN-ResNet50's dilated backbone and its head.

``_conv`` (emitters/conv.py) asks ``_conv_wide_form`` which form a dense 3x3 stride-1 convolution takes:
Winograd's F(2x2, 3x3) (``_conv_winograd``; a dilated one on its input rearranged by
``_space_to_batch_conv``) or one dot per tap over the output rectangle the tap reads input for
(``_conv_live_taps``), whichever multiplies fewer rows. Measured on FCN-ResNet50 (docs/onnx_to_jax_corpus.md,
"FCN-ResNet50's dilated convolutions").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.helpers import _accumulation_dtype
from workbench.onnx_to_jax.registry import runtime_helper

@runtime_helper
def _tap_rows(size, dilation, padding):
    """Per tap of a 3-tap, stride-1 axis: how many output positions read an input element through it
    (the others read zero padding)."""
    begin, end = padding
    out = size + begin + end - 2 * dilation
    counts = []
    for k in range(3):
        offset = k * dilation - begin  # output position o reads input o + offset
        counts.append(max(0, min(out, size - offset) - max(0, -offset)))
    return counts


@runtime_helper
def _conv_wide_form(in_spatial, kernel, strides, dilations, padding, group, in_channels):
    """``"winograd"``, ``"live_taps"`` or ``None`` (another form) for a channels-last 2-D convolution
    in a model compiled with YNNPACK dots only: a dense 3x3 stride-1 one with at least 144 output
    positions and 256 input channels, dilated or not (FCN-ResNet50's layer3, layer4 and head at the
    corpus's 96x96 input; ResNet-18/50's 3x3 layers at 12x12 have 128 channels and keep their one dot).

    Of the two, the one with fewer rows of (rows, I) x (I, O) products: Winograd's 16 per 2x2 tile of
    output (on the input rearranged into dilation^2 undilated grids when dilated; a grid of odd size
    rounds up to whole tiles) against the live taps' output rectangles. XLA runs the direct form
    (``lax.conv`` or one gathered dot) with 9 rows per output position, whatever reads padding.
    FCN-ResNet50 at 96x96 (12x12 maps): its head (2048 -> 512, undilated) and dilation-2 layers take
    Winograd (576 rows against 1296 direct), its dilation-4 layers the live taps (784 against 1024
    Winograd: 40% of their tap positions read padding). Measured on the whole model
    (docs/onnx_to_jax_corpus.md, "FCN-ResNet50's dilated convolutions"): 1.33x -> 1.06x onnxruntime.
    """
    if group != 1 or tuple(kernel) != (3, 3) or any(s != 1 for s in strides) or in_channels < 256:
        return None
    out = [in_spatial[i] + sum(padding[i]) - 2 * dilations[i] for i in range(2)]
    if out[0] * out[1] < 144:
        return None
    live = 1
    tiles = 1
    for i in range(2):
        live *= sum(_tap_rows(in_spatial[i], dilations[i], padding[i]))
        grid = -(-(in_spatial[i] + sum(padding[i])) // dilations[i]) - 2  # outputs per rearranged grid
        tiles *= dilations[i] * -(-grid // 2)
    return "live_taps" if live < 16 * tiles else "winograd"


@runtime_helper
def _space_to_batch_conv(conv, x, padding, dilations):
    """A 3x3 stride-1 convolution with ``dilations`` of a channels-last (N, H, W, I) input as the
    undilated convolution ``conv(grids)`` (VALID: no padding) of its dilation_h * dilation_w
    interleaved grids: output (n, h, w) reads padded input rows h, h + d, h + 2d, all in grid h mod d.

    The padded input is cut into (d_h * d_w * N, H'/d_h, W'/d_w, I) (padded further to whole grids;
    the extra outputs are cropped), convolved, and the outputs interleaved back.
    """
    (top, bottom), (left, right) = padding
    d_h, d_w = dilations
    batch, height, width, channels = x.shape
    sizes = (height + top + bottom, width + left + right)
    out = (sizes[0] - 2 * d_h, sizes[1] - 2 * d_w)
    grids = (-(-sizes[0] // d_h), -(-sizes[1] // d_w))
    pads = ((0, 0), (top, bottom + grids[0] * d_h - sizes[0]), (left, right + grids[1] * d_w - sizes[1]), (0, 0))
    x = jnp.reshape(jnp.pad(x, pads), (batch, grids[0], d_h, grids[1], d_w, channels))
    x = jnp.reshape(jnp.transpose(x, (2, 4, 0, 1, 3, 5)), (d_h * d_w * batch, grids[0], grids[1], channels))
    y = conv(x)  # (d_h * d_w * N, grids - 2, O)
    rows, cols, o = grids[0] - 2, grids[1] - 2, y.shape[-1]
    y = jnp.transpose(jnp.reshape(y, (d_h, d_w, batch, rows, cols, o)), (2, 3, 0, 4, 1, 5))
    return jnp.reshape(y, (batch, rows * d_h, cols * d_w, o))[:, :out[0], :out[1], :]


@runtime_helper
def _conv_live_taps(x, w, padding, dilations):
    """A 3x3 stride-1 convolution of a channels-last (N, H, W, I) input with an HWIO weight as one dot
    per tap, each over the rectangle of output positions whose window reads input through that tap
    (the input slice it reads, unpadded), padded to the output map with zeros and summed. The
    products over zero padding that the direct form computes are left out (FCN-ResNet50's dilation-4
    layers on a 12x12 map: 40% of them; ``_conv_wide_form`` says when this is the cheaper form)."""
    dtype = jnp.result_type(x, w)
    carry = _accumulation_dtype(dtype)
    if not isinstance(w, jax.core.Tracer):
        w = np.asarray(w)  # folded: each tap's (I, O) matrix cut out by numpy, not by XLA's constant folding
    batch, height, width, _ = x.shape
    (top, bottom), (left, right) = padding
    out = (height + top + bottom - 2 * dilations[0], width + left + right - 2 * dilations[1])
    y = None
    for i, j in np.ndindex(3, 3):
        di, dj = i * dilations[0] - top, j * dilations[1] - left  # output (r, c) reads input (r + di, c + dj)
        r0, r1 = max(0, -di), min(out[0], height - di)
        c0, c1 = max(0, -dj), min(out[1], width - dj)
        if r0 >= r1 or c0 >= c1:
            continue
        window = x[:, r0 + di:r1 + di, c0 + dj:c1 + dj, :]
        term = jnp.einsum("nhwc,co->nhwo", window, w[i, j], preferred_element_type=carry)
        term = jnp.pad(term, ((0, 0), (r0, out[0] - r1), (c0, out[1] - c1), (0, 0)))
        y = term if y is None else y + term
    if y is None:  # every tap reads padding only: zeros
        return jnp.zeros((batch,) + out + (w.shape[-1],), dtype)
    return y.astype(dtype)
