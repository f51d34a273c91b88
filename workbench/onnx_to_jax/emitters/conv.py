"""Convolutions: Conv and ConvTranspose, and the forms XLA CPU runs fast (depthwise taps, 1x1 and stem
convolutions as dots, Winograd 3x3, im2col), chosen per node from its shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.conv_wide import _conv_live_taps, _conv_wide_form, _space_to_batch_conv
from workbench.onnx_to_jax.emitters.depthwise import _depthwise_rows_form, _depthwise_taps_written_out
from workbench.onnx_to_jax.emitters.grouped import _group_merge, _merged_group_weight
from workbench.onnx_to_jax.helpers import _accumulation_dtype
from workbench.onnx_to_jax.registry import emitter, runtime_helper

# the axes that take ONNX's (O, I, kh, kw) convolution weight to the (kh, kw, I, O) XLA's CPU kernels read
HWIO = (2, 3, 1, 0)


@runtime_helper
def _same_pads(in_sizes, kernel, strides, dilations, auto_pad):
    """Begin/end padding for auto_pad SAME_UPPER / SAME_LOWER / VALID."""
    pads = []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
        if auto_pad == "VALID":
            pads.append((0, 0))
            continue
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        pads.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
    return pads


@runtime_helper
def _conv_pads(x_shape, kernel, strides, dilations, pads, auto_pad):
    nd = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        return _same_pads(x_shape[2:], kernel, strides, dilations, auto_pad)
    pads = pads or (0,) * (2 * nd)
    return [(pads[i], pads[i + nd]) for i in range(nd)]


@runtime_helper
def _window_positions(size, kernel, stride, dilation=1):
    """How many positions a window of ``kernel`` taps (``dilation`` apart) takes along an axis of
    ``size`` (padding included) in steps of ``stride``: a convolution's output length."""
    return (size - (kernel - 1) * dilation - 1) // stride + 1


@runtime_helper
def _depthwise_conv(x, w, strides, padding, dilations):
    """A depthwise convolution (one filter per channel) as a loop over the k^2 taps, each adding one
    shifted, strided product to the result.

    XLA CPU runs grouped convolutions (feature_group_count = channels) through a slow generic
    kernel. Summing the k^2 shifted products instead runs 15-28x faster on MobileNet-style layers;
    written as a ``fori_loop`` over the taps (one small loop body) rather than k^2 unrolled
    products, it also compiles 2-5x faster and runs faster still on 7x7 kernels (ConvNeXt), where
    the unrolled form's 49-input fusion is slow (tests/benchmarks/bench_to_jax.py, docs/codegen.md).
    """
    nd = x.ndim - 2
    x = jnp.pad(x, ((0, 0), (0, 0)) + tuple(padding))
    kernel = w.shape[2:]
    out = tuple(_window_positions(x.shape[2 + i], kernel[i], strides[i], dilations[i]) for i in range(nd))
    span = tuple((out[i] - 1) * strides[i] + 1 for i in range(nd))
    taps = int(np.prod(kernel))
    weights = jnp.reshape(w, (w.shape[0], taps))
    offsets = jnp.asarray(np.array(list(np.ndindex(*kernel)), np.int32).reshape(taps, nd) * np.array(dilations, np.int32))
    strided = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)

    def add_tap(tap, y):
        start = offsets[tap]  # (batch, channel) offsets 0 in the same integer type, as dynamic_slice wants
        window = lax.dynamic_slice(x, (start[0] * 0, start[0] * 0) + tuple(start[i] for i in range(nd)), x.shape[:2] + span)
        weight = jnp.reshape(lax.dynamic_index_in_dim(weights, tap, axis=1, keepdims=False), (1, -1) + (1,) * nd)
        return y + window[strided].astype(y.dtype) * weight.astype(y.dtype)

    dtype = jnp.result_type(x, w)
    carry = _accumulation_dtype(dtype)
    return lax.fori_loop(0, taps, add_tap, jnp.zeros(x.shape[:2] + out, carry)).astype(dtype)


@runtime_helper
def _tap_window(x, tap, out, strides, dilations):
    """What one kernel tap reads of a padded channels-last (N, spatial..., C) input, for every output
    position of a convolution or pool: along each spatial axis, ``out`` positions ``strides`` apart from
    the tap's offset (its index ``tap`` times the dilation). A convolution or pool is the sum (or max)
    over its taps of these windows, each weighted for a convolution (``_depthwise_conv_nhwc``,
    ``_conv_stem_dot``, ``_pool_taps``)."""
    spatial = tuple(slice(t * d, t * d + (n - 1) * s + 1, s) for t, n, s, d in zip(tap, out, strides, dilations))
    return x[(slice(None),) + spatial + (slice(None),)]


def _conv_attrs(ctx: NodeContext) -> dict[str, str]:
    def opt_tuple(name: str) -> str:
        value = ctx.attr(name, None)
        return "None" if value is None else ctx.lit(tuple(value))

    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ctx.error(f"unknown auto_pad {auto_pad!r}")
    return {
        "strides": opt_tuple("strides"),
        "pads": opt_tuple("pads"),
        "dilations": opt_tuple("dilations"),
        "auto_pad": ctx.lit(auto_pad),
    }


@runtime_helper
def _depthwise_conv_nhwc(x, w, strides, padding, dilations, hwio=False, written_out=False):
    """A depthwise 2-D convolution of a channels-last input (weight (C, 1, kh, kw) as ONNX has it, or
    (kh, kw, 1, C) with ``hwio``) as the sum over the taps of one shifted, strided window times that
    tap's weights.

    The same sum as ``_depthwise_conv`` (which says why not XLA's grouped convolution), with the
    channels as the contiguous axis each tap's multiply-add vectorizes over: written out for 3x3
    kernels, a loop over the taps for larger ones (tests/benchmarks/bench_depthwise.py), unless
    ``written_out`` (``_depthwise_taps_written_out`` chose it for a 5x5 kernel whose taps XLA computes
    once: MNASNet-0.5 ran 10% faster, EfficientNet-B0 4%, than with the loop's 25 dynamic slices;
    docs/onnx_to_jax_corpus.md, "5x5 depthwise taps written out where XLA fuses them once"). Only 2-D:
    channels-last values are 4-D (layout.py).
    """
    x = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),))
    kernel = w.shape[:2] if hwio else w.shape[2:]
    out = tuple(_window_positions(x.shape[1 + i], kernel[i], strides[i], dilations[i]) for i in range(2))
    dtype = jnp.result_type(x, w)
    carry = _accumulation_dtype(dtype)
    if written_out or kernel[0] * kernel[1] <= 9:
        # up to 3x3 (MobileNet) the taps written out are one fused kernel: MobileNet-v2 ran 1.2x
        # faster with the weights folded (CPU time per call, in-process A/B; as arguments within
        # noise) and compiled faster than with the loop (docs/onnx_to_jax_corpus.md)
        # The barrier keeps a folded weight one constant: XLA would fold each tap's slice of it into a
        # constant of its own, and XLA CPU wraps every constant in a buffer object on every call (~0.15 us
        # each): MNASNet-0.5 had 401 constants, 343 of them taps, and ran 2-6% faster with one per layer
        # (docs/onnx_to_jax_corpus.md, "The call outside the kernels"). XLA removes the barrier after
        # folding; the fused taps kernel reads the one weight as it read the slices.
        w = lax.optimization_barrier(w)
        y = None
        for i, j in np.ndindex(*kernel):
            window = _tap_window(x, (i, j), out, strides, dilations)
            tap = w[i, j, 0] if hwio else w[:, 0, i, j]
            term = window.astype(carry) * tap.astype(carry)
            y = term if y is None else y + term
        return y.astype(dtype)
    taps = kernel[0] * kernel[1]
    span = tuple((out[i] - 1) * strides[i] + 1 for i in range(2))  # each tap's window before its stride
    # (taps, C): one row per tap
    weights = jnp.reshape(w, (taps, w.shape[3])) if hwio else jnp.transpose(jnp.reshape(w, (w.shape[0], taps)))
    tap_positions = np.array(list(np.ndindex(*kernel)), np.int32).reshape(taps, 2)
    offsets = jnp.asarray(tap_positions * np.array(dilations, np.int32))
    strided = (slice(None), slice(None, None, strides[0]), slice(None, None, strides[1]), slice(None))

    def add_tap(tap, y):
        start = offsets[tap]
        zero = start[0] * 0  # the batch and channel offsets, in the integer type dynamic_slice wants
        window = lax.dynamic_slice(x, (zero, start[0], start[1], zero), (x.shape[0],) + span + (x.shape[3],))
        weight = lax.dynamic_index_in_dim(weights, tap, axis=0, keepdims=False)
        return y + window[strided].astype(y.dtype) * weight.astype(y.dtype)

    return lax.fori_loop(0, taps, add_tap, jnp.zeros((x.shape[0],) + out + (x.shape[3],), carry)).astype(dtype)


@runtime_helper
def _depthwise_conv_rows(x, w, b, padding, hwio=False):
    """A stride-1, undilated depthwise 2-D convolution of a channels-last input (weight (C, 1, kh, kw),
    or (kh, kw, 1, C) with ``hwio``), plus its bias ``b`` (or None), as a loop over the kernel's rows:
    each step adds that row's kw taps, written out, over a band of the padded input's rows.

    ``_depthwise_conv_nhwc``'s loop over every tap runs a kernel of XLA's per tap (49 for ConvNeXt's
    and ConvMixer's 7x7); per row the seven taps are one fused kernel and the loop has seven steps:
    1.0-1.7x faster per layer at ConvNeXt-atto's, ConvNeXt-T's and ConvMixer's shapes, while writing
    all 49 out was slower than the loop on the smaller maps (docs/onnx_to_jax_corpus.md, "7x7
    depthwise kernels row by row"). The Conv emitter calls it where ``_depthwise_rows_padding`` says.
    """
    x = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),))
    kernel = w.shape[:2] if hwio else w.shape[2:]
    out = (x.shape[1] - kernel[0] + 1, x.shape[2] - kernel[1] + 1)
    dtype = jnp.result_type(x, w)
    carry = _accumulation_dtype(dtype)
    rows = w[:, :, 0] if hwio else jnp.transpose(w[:, 0], (1, 2, 0))  # (kh, kw, C)

    def add_row(row, y):
        band = lax.dynamic_slice_in_dim(x, row, out[0], axis=1)
        taps = lax.dynamic_index_in_dim(rows, row, axis=0, keepdims=False).astype(carry)
        for j in range(kernel[1]):
            y = y + band[:, :, j : j + out[1]].astype(carry) * taps[j]
        return y

    y = lax.fori_loop(0, kernel[0], add_row, jnp.zeros((x.shape[0],) + out + (x.shape[3],), carry)).astype(dtype)
    return y if b is None else y + b


@runtime_helper
def _conv_as_dot(out_spatial, kernel, dilations, group):
    """Whether a channels-last 2-D convolution runs faster as one dot over its unfolded windows
    (``_conv_im2col``) than as XLA's convolution or Winograd's form: dense (one group), at most 3x3,
    undilated, on an output map of at most 13x13 (169 positions).

    With YNNPACK fusing only dots (the models of 10 M weights and more,
    workbench/onnx_to_jax/jit_options.py), convolutions run as XLA CPU's own kernel, which slows
    from ~30 to ~8 GMAC/s as the map shrinks and the channels grow; the unfolded windows times the
    (k*k*I, O) weight are one YNNPACK dot. Measured per layer shape of ResNet-18/50 and on the
    whole networks (tests/benchmarks/bench_conv_forms.py; docs/onnx_to_jax_corpus.md, "Small
    convolutions as dots"): the dot is faster from 12x12 down, XLA's kernel at 24x24. At 13x13
    (Inception v3's 3x3 layers of 64-96 channels, none in ResNet) the dot rather than Winograd's form
    left Inception's latency as it was and its compile 0.3-0.4 CPU s shorter (docs/onnx_to_jax_corpus.md,
    "Inception's Winograd kernels"). Only asked for code compiled with dots only (``_conv``'s
    ``small_as_dot``): under XLA's default YNNPACK fusion the same rule made DenseNet-121 slower (27.8
    against 29.6 ms) and compile 1.5x longer.
    """
    positions = out_spatial[0] * out_spatial[1]
    return group == 1 and positions <= 169 and all(k <= 3 for k in kernel) and all(d == 1 for d in dilations)


@runtime_helper
def _conv_im2col(x, w, strides, padding):
    """A dense 2-D convolution of a channels-last (N, H, W, I) input with an HWIO weight as one dot:
    the kh*kw windows of every output position gathered into (N, H', W', kh*kw*I) times the weight
    read as (kh*kw*I, O). ``_conv_as_dot`` says when this is faster than XLA's convolution.

    One gather of channel rows (positions computed here, at trace time) rather than kh*kw strided
    slices concatenated: as fast, but XLA compiled each slice as a kernel of its own (ResNet-18
    compiled in 3.7 against 1.2 s); one dot rather than one per tap: the kh*kw dots were as fast
    alone but made ResNet-50 1.2x slower as a whole (docs/onnx_to_jax_corpus.md, "Small
    convolutions as dots").
    """
    x = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),))
    batch, height, width, channels = x.shape
    kernel = w.shape[:2]
    out = tuple(_window_positions(x.shape[1 + i], kernel[i], strides[i]) for i in range(2))
    rows = np.arange(out[0])[:, None, None, None] * strides[0] + np.arange(kernel[0])[None, None, :, None]
    cols = np.arange(out[1])[None, :, None, None] * strides[1] + np.arange(kernel[1])[None, None, None, :]
    positions = np.reshape(rows * width + cols, -1).astype(np.int32)  # (H', W', kh, kw), row-major
    pixels = jnp.reshape(x, (batch, height * width, channels))
    columns = pixels[:, positions]  # positions are in bounds: indexing gathers without masking
    columns = jnp.reshape(columns, (batch, out[0], out[1], kernel[0] * kernel[1] * channels))
    dtype = jnp.result_type(x, w)
    carry = _accumulation_dtype(dtype)
    weight = jnp.reshape(w, (-1, w.shape[-1]))
    return jnp.einsum("nhwc,co->nhwo", columns, weight, preferred_element_type=carry).astype(dtype)


@runtime_helper
def _conv_as_winograd(out_spatial, kernel, strides, dilations, group, in_channels):
    """Whether a channels-last 2-D convolution runs faster by Winograd's F(2x2, 3x3)
    (``_conv_winograd``) than by XLA's convolution kernel: dense (one group), 3x3, stride 1,
    undilated, at least 64 input channels, on an output map of more than 169 positions (the maps
    ``_conv_as_dot`` leaves to XLA's kernel).

    Winograd's form does 16 products of (positions/4, I) by (I, O) instead of 9 of (positions, I) by
    (I, O): 2.25x fewer multiply-adds, as YNNPACK dots, for input and output transforms that are a few
    adds per element. Only asked for code compiled with YNNPACK fusing only dots (``_conv``'s
    ``small_as_dot``), where XLA's own convolution kernel runs the larger maps. Measured (CPU time
    per call, in-process A/B; docs/onnx_to_jax_corpus.md, "Winograd convolutions"): a 3x3 layer with
    64 channels at 24x24 runs 1.4x faster than XLA's kernel, ResNet-18 as a whole 7% faster, ResNet-50
    (three such layers among 53) within noise. At 12x12 (128 channels) it beat the single dot per
    layer, but not on ResNet-18 as a whole, and added compile time; at 3x3 maps with 512 channels,
    where the call reads mostly weights, its 16/9 larger transformed weight made the layer 1.7x slower.
    With 32 input channels (Inception v3's Conv2d_2a/2b on 61x61 maps), where the transforms' passes
    outweigh 16 dots of depth 32, XLA's kernel ran Inception as fast or faster and compiled 0.4 CPU s
    less (docs/onnx_to_jax_corpus.md, "Inception's Winograd kernels").
    """
    positions = out_spatial[0] * out_spatial[1]
    return (
        group == 1 and positions > 169 and tuple(kernel) == (3, 3) and in_channels >= 64
        and all(s == 1 for s in strides) and all(d == 1 for d in dilations)
    )


@runtime_helper
def _conv_winograd(x, w, padding, dilations=(1, 1)):
    """A 3x3 stride-1 dense 2-D convolution of a channels-last (N, H, W, I) input with an HWIO weight
    by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2016): the output in 2x2 tiles, each
    from its 4x4 input tile d and the 3x3 kernel g as A^T [(G g G^T) * (B^T d B)] A, the elementwise
    product summed over the input channels, i.e. 16 dots of (tiles, I) by (I, O). A dilated one runs
    undilated on its input's interleaved grids (``_space_to_batch_conv``).

    All three transforms are applied one axis at a time, as sums and differences (no constant
    matrices in the traced code). The input transform B^T d B: tile t of an axis reads rows 2t..2t+3,
    which are the even and odd rows t and t+1, so each axis takes four sums or differences of slices
    of the rows split into (pairs, 2) (a first form that cut the 16 tile windows out one by one ran
    as fast but compiled twice as long; the 16 sums written out of the pairs of both axes, stacked
    once or as stacks of stacks, made more kernels or larger ones). The output transform writes each
    of the 2x2 outputs as its sum of 9 products, stacked once: one kernel per layer shape where the
    transform one axis at a time was two, and Inception v3 ran 5% faster (docs/onnx_to_jax_corpus.md,
    "Inception's Winograd kernels"). The weight transform G g G^T reads the weight alone: a concrete
    weight (folded into the jitted function) is transformed with numpy at trace time
    (``_winograd_weight``: XLA's constant folding of the transform made FCN-ResNet50's 2048 -> 512 head
    compile in 4.7 against 0.7 CPU s), a traced one with jnp. ``_conv_as_winograd`` and
    ``_conv_wide_form`` say when this is faster. Rounding: the transforms' coefficients are 0, +-1
    and 1/2, so the result stays within a few float32 units of the direct sum
    (tests/onnx_to_jax/test_conv_forms.py compares it with onnxruntime).
    """

    def transform_input(z, axis):  # B^T along ``axis`` (length 2t + 2): a new leading axis of 4, ``axis`` of t
        pairs = jnp.reshape(z, z.shape[:axis] + (z.shape[axis] // 2, 2) + z.shape[axis + 1:])
        even = lax.index_in_dim(pairs, 0, axis + 1, keepdims=False)
        odd = lax.index_in_dim(pairs, 1, axis + 1, keepdims=False)
        t = even.shape[axis] - 1
        d0, d2 = lax.slice_in_dim(even, 0, t, axis=axis), lax.slice_in_dim(even, 1, t + 1, axis=axis)
        d1, d3 = lax.slice_in_dim(odd, 0, t, axis=axis), lax.slice_in_dim(odd, 1, t + 1, axis=axis)
        return jnp.stack([d0 - d2, d1 + d2, d2 - d1, d1 - d3])

    def output_terms(terms):  # A^T over four terms: 2 outputs
        return terms[0] + terms[1] + terms[2], terms[1] - terms[2] - terms[3]

    dtype = jnp.result_type(x, w)
    carry = _accumulation_dtype(dtype)
    if any(d != 1 for d in dilations):
        undilated = lambda grids: _conv_winograd(grids, w, ((0, 0), (0, 0)))  # noqa: E731
        return _space_to_batch_conv(undilated, x, padding, dilations)
    (top, bottom), (left, right) = padding
    out = (x.shape[1] + top + bottom - 2, x.shape[2] + left + right - 2)
    tiles = (-(-out[0] // 2), -(-out[1] // 2))
    # padded to whole tiles: an odd output map gets one more row or column, cropped at the end
    pads = ((0, 0), (top, bottom + 2 * tiles[0] - out[0]), (left, right + 2 * tiles[1] - out[1]), (0, 0))
    x = jnp.pad(x.astype(carry), pads)
    batch, channels = x.shape[0], x.shape[3]
    v = transform_input(transform_input(x, 1), 3)  # (4 column terms, 4 row terms, N, tiles..., I)
    u = _winograd_weight(w, carry)  # (4 column terms, 4 row terms, I, O)
    m = jnp.einsum(
        "tnhwc,tco->tnhwo", jnp.reshape(v, (16, batch) + tiles + (channels,)), jnp.reshape(u, (16,) + w.shape[2:])
    )
    # A^T m A: product 4 * c + r is column term c, row term r; A^T over the column terms of each row term,
    # then over the row terms, and the four outputs stacked once (a stack per axis was one kernel more)
    by_row = [output_terms([m[4 * c + r] for c in range(4)]) for r in range(4)]  # (column 0, column 1)
    y = [output_terms([by_row[r][column] for r in range(4)]) for column in range(2)]  # (row 0, row 1)
    y = jnp.reshape(jnp.stack([y[0][0], y[1][0], y[0][1], y[1][1]]), (2, 2) + m.shape[1:])  # (2 rows, 2 columns, ...)
    y = jnp.reshape(jnp.transpose(y, (2, 3, 0, 4, 1, 5)), (batch, 2 * tiles[0], 2 * tiles[1], w.shape[-1]))
    return y[:, :out[0], :out[1], :].astype(dtype)


@runtime_helper
def _winograd_weight(w, carry):
    """Winograd's G g G^T of an HWIO 3x3 weight, (4 column terms, 4 row terms, I, O) in ``carry``.

    A concrete weight (the folded weights of ``jit_forward``, or an eager call) is transformed with
    numpy, as one (16, 9) by (9, I * O) product (its coefficients 0, +-1/4, +-1/2 and 1 are exact),
    so that XLA gets the transformed weight as a constant rather than folding the transform itself
    (FCN-ResNet50's head, 2048 -> 512, compiled in 4.7 against 0.7 CPU s so; numpy's sums one axis at a
    time took 1.3 s for FCN's eleven Winograd weights, the product 0.03 s for the head); a traced one
    (weights as jit arguments, gradients) with jnp, one axis at a time.
    """
    if not isinstance(w, jax.core.Tracer):
        g = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
        both = np.reshape(np.einsum("bi,aj->abij", g, g), (16, 9)).astype(carry)  # (column, row term) x (kh, kw)
        u = both @ np.reshape(np.asarray(w, carry), (9, -1))
        return np.reshape(u, (4, 4) + w.shape[2:])

    def transform_weight(k, axis):  # G along ``axis`` (length 3): a new leading axis of 4
        k0, k1, k2 = (lax.index_in_dim(k, i, axis, keepdims=False) for i in range(3))
        return jnp.stack([k0, (k0 + k1 + k2) * 0.5, (k0 - k1 + k2) * 0.5, k2])

    return transform_weight(transform_weight(w.astype(carry), 0), 1)


@runtime_helper
def _conv_as_stem_dot(in_channels, kernel, out_channels, group):
    """Whether a channels-last 2-D convolution runs faster as one dot over its windows laid side by
    side (``_conv_stem_dot``) than as XLA's own convolution kernel: dense (one group), at most 27
    input values per output (``in_channels * kh * kw``: an RGB image's 3x3 stem) and at most 64
    output channels. Only asked for code that XLA's own kernels convolve (YNNPACK fusing only dots,
    or nothing: ``_conv``'s ``stem_as_dot``).

    XLA CPU's convolution runs such a stem at 3-7 GMAC/s, 3-7x onnxruntime's time, plus a
    transpose of the NCHW image before it. The dot of depth 27 reads the windows through that
    transpose. Measured with the activation and the depthwise convolution that follow a stem
    (CPU us per call, YNNPACK off; docs/onnx_to_jax_corpus.md, "Stems as one dot"): 3 -> 16 with
    ReLU 474 -> 264, 3 -> 32 with SiLU 614 -> 402, 3 -> 24 with ReLU 657 -> 437. Not the taps
    written out as one elementwise kernel: faster alone, but XLA fuses that kernel into the
    consumers' padded copies (twice where SiLU reads it twice), slower as a whole; not
    ``_conv_im2col``'s gather, slower here than XLA's kernel.
    """
    return group == 1 and in_channels * int(np.prod(kernel)) <= 27 and out_channels <= 64


@runtime_helper
def _conv_stem_dot(x, w, strides, padding, dilations):
    """A dense 2-D convolution of a channels-last (N, H, W, I) input with an HWIO weight as one dot:
    its kh*kw shifted, strided windows concatenated along the channels, (N, H', W', kh*kw*I), times
    the weight read as (kh*kw*I, O). ``_conv_as_stem_dot`` says when this is faster."""
    x = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),))
    kernel = w.shape[:2]
    out = tuple(_window_positions(x.shape[1 + i], kernel[i], strides[i], dilations[i]) for i in range(2))
    windows = [_tap_window(x, tap, out, strides, dilations) for tap in np.ndindex(*kernel)]
    columns = jnp.concatenate(windows, axis=-1)  # (i, j, c) order: the HWIO weight's rows
    dtype = jnp.result_type(x, w)
    weight = jnp.reshape(w, (-1, w.shape[-1]))
    return jnp.einsum("nhwc,co->nhwo", columns, weight, preferred_element_type=_accumulation_dtype(dtype)).astype(dtype)


@runtime_helper
def _live_taps(size, kernel, stride, dilation, padding):
    """The first and last tap along one axis of a convolution whose windows read at least one input
    element rather than only the zero padding, and the axis's padding with the taps outside them
    dropped; ``None`` where every tap reads input, or where dropping them would need negative padding.

    Dropping taps that meet only zeros changes no output value. It matters where the dilation or the
    padding reaches past the map: DeepLabv3's ASPP runs 3x3 convolutions dilated 12, 24 and 36 on a
    6x6 map at the corpus's 96x96 input, whose eight outer taps read padding only. XLA CPU computes
    them all (4.6 ms each, 960 -> 256 channels) where the centre tap alone is a 1x1 convolution, one
    dot (0.14-0.34 ms; onnxruntime 0.27-0.38 ms; docs/onnx_to_jax_corpus.md).
    """
    begin, end = padding
    out = _window_positions(size + begin + end, kernel, stride, dilation)
    live = [k for k in range(kernel) if any(0 <= k * dilation - begin + i * stride < size for i in range(out))]
    if not live or (live[0] == 0 and live[-1] == kernel - 1):
        return None
    first, last = live[0], live[-1]
    trimmed = (begin - first * dilation, end - (kernel - 1 - last) * dilation)
    return (first, last, trimmed) if min(trimmed) >= 0 else None


@runtime_helper
def _hwio_weight(w, hwio):
    """A 2-D convolution weight as (kh, kw, I, O), the layout the channels-last forms read: ``w`` itself
    when it is already so (``hwio``: prepared), else ONNX's (O, I, kh, kw) transposed."""
    return w if hwio else jnp.transpose(w, (2, 3, 1, 0))


@runtime_helper
def _conv(
    x, w, b, strides, pads, dilations, group, auto_pad, channels_last=False, hwio=False, small_as_dot=False,
    stem_as_dot=False, merge_groups=False, depthwise_taps=False,
):
    """Conv with ONNX's (O, I/group, k...) weight. ``channels_last``: a 2-D convolution of an NHWC input
    with an NHWC result (workbench/onnx_to_jax/layout.py), else on ONNX's (N, C, spatial...) axes.
    ``hwio`` (channels-last only): the weight arrives as (kh, kw, I/group, O), the layout XLA's CPU
    kernels read, which ``prepare`` gave it once (``_prepare_params``); else it is transposed to
    that layout here, in every call when the weights are jit arguments. ``small_as_dot`` (channels-last
    code compiled with YNNPACK fusing only dots): the small dense convolutions ``_conv_as_dot`` picks
    run as one dot over their unfolded windows (``_conv_im2col``), the larger 3x3 stride-1 ones
    ``_conv_as_winograd`` picks by Winograd's F(2x2, 3x3) (``_conv_winograd``), and the wide 3x3 ones
    (256 channels and more, dilated or not) by Winograd or one dot per live tap, as
    ``_conv_wide_form`` says (``_conv_live_taps``). ``stem_as_dot``
    (channels-last code whose convolutions XLA's own kernel runs: YNNPACK fusing only dots, or
    nothing): the stems ``_conv_as_stem_dot`` picks run as one dot (``_conv_stem_dot``).
    ``merge_groups`` (channels-last code whose convolutions YNNPACK runs: ``ctx.ynn_convolutions``): a
    grouped convolution of a few channels per group runs with ``_group_merge``'s neighbouring groups
    merged into one (``_merged_group_weight``: block-diagonal), as a dense one for 8 groups or fewer.
    ``depthwise_taps`` (channels-last): a depthwise convolution's taps are written out whatever its
    kernel (``_depthwise_conv_nhwc``'s ``written_out``).
    """
    nd = x.ndim - 2
    kernel = w.shape[:nd] if hwio else w.shape[2:]
    out_channels = w.shape[-1] if hwio else w.shape[0]
    strides = strides or (1,) * nd
    dilations = dilations or (1,) * nd
    channels = x.shape[-1] if channels_last else x.shape[1]
    onnx_shape = (x.shape[0], channels) + x.shape[1:-1] if channels_last else x.shape
    padding = _conv_pads(onnx_shape, kernel, strides, dilations, pads, auto_pad)
    for i in range(nd):  # taps whose windows read only zero padding add nothing: drop them (_live_taps)
        live = _live_taps(onnx_shape[2 + i], kernel[i], strides[i], dilations[i], padding[i])
        if live is not None:
            first, last, padding[i] = live
            axis = i if hwio else 2 + i
            w = lax.slice_in_dim(w, first, last + 1, axis=axis)
            kernel = w.shape[:nd] if hwio else w.shape[2:]
    pointwise = group == 1 and all(k == 1 for k in kernel) and all(s == 1 for s in strides)
    as_dot = small_as_dot and channels_last and nd == 2 and jnp.issubdtype(x.dtype, jnp.floating)
    as_winograd = False
    as_stem_dot = (
        stem_as_dot and channels_last and nd == 2 and jnp.issubdtype(x.dtype, jnp.floating)
        and _conv_as_stem_dot(channels, kernel, out_channels, group)
    )
    merge = _group_merge(group, channels // group) if merge_groups and channels_last and nd == 2 else 1
    wide = None
    if as_dot:
        out_spatial = [
            _window_positions(onnx_shape[2 + i] + sum(padding[i]), kernel[i], strides[i], dilations[i]) for i in range(2)
        ]
        wide = _conv_wide_form(onnx_shape[2:], kernel, strides, dilations, padding, group, channels)
        as_winograd = wide == "winograd" or _conv_as_winograd(out_spatial, kernel, strides, dilations, group, channels)
        as_dot = _conv_as_dot(out_spatial, kernel, dilations, group)
    if pointwise and all(p == (0, 0) for p in padding):
        # A 1x1 convolution is a matmul over channels. Written NCHW, XLA CPU would run it through
        # its NHWC kernel with a transpose of the input, the weight and the output each, and
        # compile every transpose of a new shape separately: as a dot, a DenseNet's 1x1 layers
        # compile about twice as fast and run faster with the weights as arguments.
        if hwio:
            y = jnp.einsum("n...c,co->n...o", x, jnp.reshape(w, w.shape[nd:]))
        else:
            pattern = "n...c,oc->n...o" if channels_last else "nc...,oc->no..."
            y = jnp.einsum(pattern, x, jnp.reshape(w, w.shape[:2]))
    elif group > 1 and group == channels and out_channels == group and jnp.issubdtype(x.dtype, jnp.floating):
        if channels_last:
            y = _depthwise_conv_nhwc(x, w, strides, padding, dilations, hwio=hwio, written_out=depthwise_taps)
        else:
            y = _depthwise_conv(x, w, strides, padding, dilations)
    elif merge > 1:
        y = lax.conv_general_dilated(
            x, _merged_group_weight(_hwio_weight(w, hwio), group, merge),
            window_strides=strides, padding=padding, rhs_dilation=dilations, feature_group_count=group // merge,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
    elif as_winograd:
        y = _conv_winograd(x, _hwio_weight(w, hwio), padding, dilations)
    elif wide == "live_taps":
        y = _conv_live_taps(x, _hwio_weight(w, hwio), padding, dilations)
    elif as_dot:
        y = _conv_im2col(x, _hwio_weight(w, hwio), strides, padding)
    elif as_stem_dot:
        y = _conv_stem_dot(x, _hwio_weight(w, hwio), strides, padding, dilations)
    else:
        y = lax.conv_general_dilated(
            x, w, window_strides=strides, padding=padding, rhs_dilation=dilations, feature_group_count=group,
            dimension_numbers=("NHWC", "HWIO" if hwio else "OIHW", "NHWC") if channels_last else None,
        )
    if b is None:
        return y
    return y + (b if channels_last else jnp.reshape(b, (1, -1) + (1,) * nd))


@runtime_helper
def _prepare_params(params, layouts):
    """``params`` with each weight named in ``layouts`` transposed by its axes (``np.transpose``'s
    ``axes``): convolution weights (O, I, kh, kw) -> (kh, kw, I, O) as ``_conv(..., hwio=True)`` reads
    them, Gemm's transB weights (N, K) -> (K, N); every other entry as it is.

    Concrete weights (numpy or JAX arrays) are transposed with numpy, once, outside any jitted
    function, and come back as the same kind of array; traced ones (``prepare`` called inside
    ``jax.jit`` or ``jax.grad``) with ``jnp.transpose``, so gradients reach the ONNX-layout weights.
    """
    prepared = dict(params)
    for name, axes in layouts.items():
        w = params[name]
        if isinstance(w, jax.core.Tracer):
            prepared[name] = jnp.transpose(w, axes)
        else:
            laid_out = np.ascontiguousarray(np.transpose(np.asarray(w), axes))
            prepared[name] = laid_out if isinstance(w, np.ndarray) else jax.device_put(laid_out)
    return prepared


def _depthwise_rows_padding(ctx: NodeContext) -> tuple[tuple[int, int], ...] | None:
    """The (begin, end) padding per spatial axis of a Conv that runs as ``_depthwise_conv_rows``, else None:
    one ``_depthwise_rows_form`` admits whose every tap reads input somewhere (where some read only padding,
    ``_conv`` drops them first: ``_live_taps``). The padding is ``_conv``'s own (``_conv_pads``)."""
    if not _depthwise_rows_form(ctx):
        return None
    x_shape, kernel = ctx.shape(0), ctx.shape(1)[2:]
    padding = tuple(_conv_pads(x_shape, kernel, (1, 1), (1, 1), ctx.attr("pads", None), ctx.attr("auto_pad", "NOTSET")))
    if any(_live_taps(size, k, 1, 1, p) is not None for size, k, p in zip(x_shape[2:], kernel, padding)):
        return None
    return padding


@emitter("Conv", since=(1, 11))
def conv(ctx: NodeContext) -> str:
    attrs = _conv_attrs(ctx)
    layout = {"channels_last": "True"} if ctx.channels_last else {}
    if ctx.channels_last and ctx.prepared_weight(1, HWIO):
        # prepare() lays this weight out as XLA's CPU kernels read it, once, outside jax.jit
        layout["hwio"] = "True"
    if ctx.channels_last and ctx.dots_only:
        # XLA's own convolution kernel is slow on small maps: those run as one dot (_conv_as_dot)
        layout["small_as_dot"] = "True"
    if ctx.channels_last and (ctx.dots_only or not ctx.ynn_convolutions):
        # nor does it, or YNNPACK's convolution beside its dots, run an image's stem fast (_conv_as_stem_dot)
        layout["stem_as_dot"] = "True"
    if ctx.channels_last and ctx.ynn_convolutions and not ctx.dots_only and ctx.attr("group", 1) > 1:
        # YNNPACK's grouped convolution is slow with a few channels per group: merged (_group_merge;
        # measured without YNNPACK's dots, so not beside them)
        layout["merge_groups"] = "True"
    padding = _depthwise_rows_padding(ctx)
    if padding is not None:
        # a 7x7 (or larger) depthwise convolution: a loop over its rows, not over its 49 taps
        hwio = {"hwio": "True"} if "hwio" in layout else {}
        return ctx.call(_depthwise_conv_rows, ctx.x(0), ctx.x(1), ctx.opt(2), padding=ctx.lit(padding), **hwio)
    if _depthwise_taps_written_out(ctx):
        # a 5x5 depthwise convolution whose taps XLA computes once: written out, not looped over
        layout["depthwise_taps"] = "True"
    return ctx.call(_conv, ctx.x(0), ctx.x(1), ctx.opt(2), group=ctx.lit(ctx.attr("group", 1)), **attrs, **layout)


@runtime_helper
def _conv_transpose(x, w, b, strides, pads, dilations, group, auto_pad, output_padding, output_shape):
    nd = x.ndim - 2
    c_in = w.shape[0]
    c_out_per_group = w.shape[1]
    kernel = w.shape[2:]
    strides = strides or (1,) * nd
    dilations = dilations or (1,) * nd
    output_padding = output_padding or (0,) * nd
    k_eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    in_sizes = x.shape[2:]
    if output_shape is not None:
        output_shape = output_shape[-nd:]
        pairs = []
        for i in range(nd):
            total = strides[i] * (in_sizes[i] - 1) + output_padding[i] + k_eff[i] - output_shape[i]
            small, big = total // 2, total - total // 2
            pairs.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pairs = []
        for i in range(nd):
            total = max(strides[i] * (in_sizes[i] - 1) + output_padding[i] + k_eff[i] - in_sizes[i] * strides[i], 0)
            small, big = total // 2, total - total // 2
            pairs.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
    elif auto_pad == "VALID":
        pairs = [(0, 0)] * nd
    else:
        pads = pads or (0,) * (2 * nd)
        pairs = [(pads[i], pads[i + nd]) for i in range(nd)]
    # transposed conv = conv of the stride-dilated input with the flipped, in/out-swapped kernel
    wg = jnp.reshape(w, (group, c_in // group, c_out_per_group) + tuple(kernel))
    wg = jnp.swapaxes(wg, 1, 2)
    wt = jnp.reshape(wg, (group * c_out_per_group, c_in // group) + tuple(kernel))
    wt = jnp.flip(wt, axis=tuple(range(2, 2 + nd)))
    padding = [
        (k_eff[i] - 1 - pairs[i][0], k_eff[i] - 1 - pairs[i][1] + output_padding[i]) for i in range(nd)
    ]
    y = lax.conv_general_dilated(
        x, wt, window_strides=(1,) * nd, padding=padding, lhs_dilation=strides,
        rhs_dilation=dilations, feature_group_count=group,
    )
    if b is not None:
        y = y + jnp.reshape(b, (1, -1) + (1,) * nd)
    return y


@emitter("ConvTranspose", since=(1, 11))
def conv_transpose(ctx: NodeContext) -> str:
    attrs = _conv_attrs(ctx)
    output_padding = ctx.attr("output_padding", None)
    output_shape = ctx.attr("output_shape", None)
    return ctx.call(
        _conv_transpose, ctx.x(0), ctx.x(1), ctx.opt(2), group=ctx.lit(ctx.attr("group", 1)), **attrs,
        output_padding="None" if output_padding is None else ctx.lit(tuple(output_padding)),
        output_shape="None" if output_shape is None else ctx.lit(tuple(output_shape)),
    )
