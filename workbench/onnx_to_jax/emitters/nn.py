"""Neural-network ops: MatMul, Gemm, Conv, ConvTranspose, pooling, Softmax family, LRN, Dropout, Einsum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.conv_wide import _conv_live_taps, _conv_wide_form, _space_to_batch_conv
from workbench.onnx_to_jax.emitters.depthwise import _depthwise_rows_form, _depthwise_taps_written_out
from workbench.onnx_to_jax.emitters.grouped import _group_merge, _merged_group_weight
from workbench.onnx_to_jax.emitters.rounding import _bfloat16_sum
from workbench.onnx_to_jax.helpers import _accumulation_dtype
from workbench.onnx_to_jax.registry import emitter, runtime_helper

# the axes that take ONNX's (O, I, kh, kw) convolution weight to the (kh, kw, I, O) XLA's CPU kernels read
HWIO = (2, 3, 1, 0)


@emitter("MatMul", since=(1, 9, 13))
def matmul(ctx: NodeContext) -> str:
    return f"jnp.matmul({ctx.x(0)}, {ctx.x(1)})"


@emitter("MatMulInteger", since=10)
def matmul_integer(ctx: NodeContext) -> str:
    a, b = ctx.x(0), ctx.x(1)
    a_expr = f"jnp.asarray({a}, jnp.int32)"
    b_expr = f"jnp.asarray({b}, jnp.int32)"
    if ctx.has(2):
        zero = ctx.x(2)
        a_expr = f"({a_expr} - jnp.reshape(jnp.asarray({zero}, jnp.int32), (-1, 1) if jnp.ndim({zero}) == 1 else ()))"
    if ctx.has(3):
        b_expr = f"({b_expr} - jnp.asarray({ctx.x(3)}, jnp.int32))"
    return f"jnp.matmul({a_expr}, {b_expr})"


@runtime_helper
def _gemm(a, b, c, alpha, beta, trans_a, trans_b):
    a = jnp.transpose(a) if trans_a else a
    b = jnp.transpose(b) if trans_b else b
    y = jnp.matmul(a, b)
    if alpha != 1.0:
        y = (alpha * y).astype(y.dtype)
    if c is not None:
        y = y + (c if beta == 1.0 else (beta * c).astype(y.dtype))
    return y


@emitter("Gemm", since=(7, 11, 13))
def gemm(ctx: NodeContext) -> str:
    alpha, beta = ctx.fattr("alpha", 1.0), ctx.fattr("beta", 1.0)
    trans_a, trans_b = ctx.attr("transA", 0), ctx.attr("transB", 0)
    if alpha == 1.0 and beta == 1.0 and not trans_a:
        if trans_b and ctx.prepared_weight(1, (1, 0)):
            b = ctx.x(1)  # prepare() gave it the (K, N) layout, once, outside jax.jit
        else:
            b = f"jnp.transpose({ctx.x(1)})" if trans_b else ctx.x(1)
        product = f"jnp.matmul({ctx.x(0)}, {b})"
        return f"{product} + {ctx.x(2)}" if ctx.has(2) else product
    return ctx.call(
        _gemm, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.lit(alpha), ctx.lit(beta),
        ctx.lit(bool(trans_a)), ctx.lit(bool(trans_b)),
    )


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


@runtime_helper
def _softmax_2d(fn, x, axis):
    """Softmax family before opset 13: flatten to 2-D at ``axis``, normalize rows, reshape back."""
    x = jnp.asarray(x)
    axis = axis % x.ndim if x.ndim else 0
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    flat = jnp.reshape(x, (rows, -1))
    return jnp.reshape(fn(flat, axis=1), x.shape)


@runtime_helper
def _softmax(x, axis):
    """``jax.nn.softmax``'s arithmetic, its exponent written ``exp(-(max - x))``: the same values, a cheaper compile.

    ``-(m - x)`` is ``x - m`` exactly (IEEE subtraction rounds symmetrically; only a zero's sign differs,
    and ``exp(-0) == exp(0)``). The extra negation changes what LLVM does with the exponential's loop
    when XLA CPU writes ``exp(x - m)`` in place over ``x`` (an attention score from a YNNPACK dot whose
    buffer dies there): the one-row loop of ``x - m`` and the ``llvm.exp`` call is small enough to be
    fully unrolled before the loop vectorizer, and each of the unrolled exponentials then expands to its
    polynomial: a 49-wide row (Swin's 7x7 windows) became ~370 KB of optimized IR and ~1 CPU s of LLVM
    codegen per distinct shape (docs/onnx_to_jax_corpus.md, "Which kernels cost the compile").
    A bfloat16 row's sum is added as onnx's reference adds it (``rounding.py``).
    """
    x_max = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    unnormalized = jnp.exp(-(x_max - x))
    if unnormalized.dtype == jnp.bfloat16:
        return unnormalized / _bfloat16_sum(unnormalized, axis)
    return unnormalized / jnp.sum(unnormalized, axis=axis, keepdims=True)


@runtime_helper
def _hardmax(x, axis):
    index = jnp.argmax(x, axis=axis)
    return jax.nn.one_hot(index, x.shape[axis], axis=axis, dtype=x.dtype)


def _softmax_family(fn: str):
    def emit(ctx: NodeContext) -> str:
        if fn == "hardmax":
            name = ctx.helper(_hardmax)
        elif fn == "softmax":
            name = ctx.helper(_softmax)
        else:
            name = f"jax.nn.{fn}"
        if ctx.opset < 13:
            return ctx.call(_softmax_2d, name, ctx.x(0), ctx.lit(ctx.attr("axis", 1)))
        return f"{name}({ctx.x(0)}, axis={ctx.lit(ctx.attr('axis', -1))})"

    return emit


emitter("Softmax", since=(1, 11, 13))(_softmax_family("softmax"))
emitter("LogSoftmax", since=(1, 11, 13))(_softmax_family("log_softmax"))
emitter("Hardmax", since=(1, 11, 13))(_softmax_family("hardmax"))


@runtime_helper
def _lrn(x, size, alpha, beta, bias):
    squared = jnp.square(x)
    before = (size - 1) // 2
    after = size - 1 - before
    padded = jnp.pad(squared, ((0, 0), (before, after)) + ((0, 0),) * (x.ndim - 2))
    window = (1, size) + (1,) * (x.ndim - 2)
    total = lax.reduce_window(padded, np.array(0, x.dtype), lax.add, window, (1,) * x.ndim, "VALID")
    return (x / (bias + alpha / size * total) ** beta).astype(x.dtype)


@emitter("LRN", since=(1, 13))
def lrn(ctx: NodeContext) -> str:
    return ctx.call(
        _lrn, ctx.x(0), ctx.lit(ctx.attr("size")), ctx.lit(ctx.fattr("alpha", 0.0001)),
        ctx.lit(ctx.fattr("beta", 0.75)), ctx.lit(ctx.fattr("bias", 1.0)),
    )


@runtime_helper
def _inference_dropout(x, training, ratio, node):
    """Dropout whose ``training_mode`` (or ratio) is known only at run time (a graph input, as jax2onnx
    exports a ``deterministic`` flag): ``x`` in inference mode and, in training mode, with a ratio of 0
    (every element kept, scaled by 1); otherwise training-mode values are random in ONNX and cannot be
    reproduced: an error raised from a host callback (under ``jax.jit`` too)."""

    def refuse(flag, drop):
        if bool(np.asarray(flag)) and float(np.asarray(drop)) != 0.0:
            raise ValueError(
                f"Dropout node {node!r} ran with training_mode=True and ratio {float(np.asarray(drop))}: "
                "training-mode dropout is random and the generated code computes inference mode (or ratio 0) "
                "only; feed False (or deterministic=True) for this input"
            )

    jax.debug.callback(refuse, training, ratio)
    return x


@emitter("Dropout", since=(7, 10, 12, 13))
def dropout(ctx: NodeContext) -> list[str]:
    x = data = ctx.x(0)
    ratio = ctx.static(1) if ctx.has(1) else None
    no_ratio = ratio is not None and float(np.asarray(ratio).reshape(())) == 0.0
    if ctx.opset >= 12 and ctx.has(2) and not no_ratio:
        training = ctx.static(2)
        if training is None:  # decided at run time: inference mode or ratio 0, or an error at run time
            ratio_expr = ctx.x(1) if ctx.has(1) else "0.5"  # the spec's default ratio
            x = ctx.call(_inference_dropout, x, ctx.x(2), ratio_expr, ctx.lit(ctx.node.name or ctx.node.output[0]))
        elif bool(np.asarray(training).reshape(())):
            raise ctx.unsupported("Dropout in training mode is random; only inference is supported")
    outputs = [x]
    if ctx.has_output(1):
        outputs.append(f"jnp.ones(jnp.shape({data}), dtype=bool)")
    return outputs


@emitter("Einsum", since=12)
def einsum(ctx: NodeContext) -> str:
    equation = ctx.attr("equation")
    return f"jnp.einsum({ctx.lit(equation)}, {', '.join(ctx.xs())})"


__all__ = ["np"]
