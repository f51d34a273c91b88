"""Convolutions and pooling: conv_general_dilated (1/2/3-D, grouped, transposed), reduce_window (pooling).

Layouts: ONNX Conv/Pool want ``N, C, spatial...``; any ``dimension_numbers`` layout (NHWC as
Flax uses, NCHW, ...) is brought there with one Transpose per operand and brought back after.

``conv_general_dilated``:
- plain, strided, rhs-dilated, grouped (depthwise) convolutions map to ``Conv``;
- ``lhs_dilation`` (what ``lax.conv_transpose`` / ``nnx.ConvTranspose`` produce) maps to
  ``ConvTranspose`` with the spatially flipped kernel when its padding fits (window strides 1, no
  groups, padding no larger than the dilated kernel); otherwise zeros are inserted between input
  elements explicitly (the definition of lhs dilation) and a ``Conv`` follows;
- ``batch_group_count`` (JAX's weight-gradient form) is rewritten as a grouped convolution;
- negative padding becomes a Slice; padding that depends on symbolic dims (``SAME`` on a symbolic
  spatial size) becomes a runtime ``Pad``;
- float64: onnxruntime has no double ``Conv``/``ConvTranspose`` kernel, so the convolution is written
  as what it is, a sum over the kernel window: one strided Slice of the padded input per kernel
  offset, stacked, then one ``Einsum`` with the kernel (grouped by ``feature_group_count``). Exact in
  double precision, and ``prod(kernel)`` Slices, so meant for the small kernels float64 models use.

``reduce_window_{max,min,sum}``: ``MaxPool`` / ``AveragePool`` (sum = average with
``count_include_pad=1`` times the window size, which is exact in meaning: padded zeros add nothing)
when onnxruntime's pooling constraints hold (float types, pads smaller than the window, no base
dilation); otherwise a general path: pad with the reduction's identity, then one strided Slice per
window offset, combined by a variadic Max/Min/Sum.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import is_static, onnx_dtype, typed_like
from workbench.jax_to_onnx.handlers.shape import reshape_to
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

_INT64_MIN = int(np.iinfo(np.int64).min)
_INT64_MAX = int(np.iinfo(np.int64).max)
_POOL_FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))


# ----------------------------------------------------------------------------- helpers
def _transpose(ctx: LoweringContext, x: ir.Value, perm: Sequence[int]) -> ir.Value:
    perm = [int(p) for p in perm]
    if perm == list(range(len(perm))):
        return x
    return ctx.op("Transpose", x, perm=perm)


def _typed(value: ir.Value, like: ir.Value, dims: Sequence[Any]) -> ir.Value:
    """Type a handler-internal value (the passes after lowering read its shape), unless it is ``like`` itself."""
    return value if value is like else typed_like(value, like, dims)


def _inverse(perm: Sequence[int]) -> list[int]:
    return [int(i) for i in np.argsort(perm)]


def _all_static(values: Sequence[Any]) -> bool:
    return all(is_static(v) for v in values)


def _dilate(
    ctx: LoweringContext, x: ir.Value, shape: list[Any], axis: int, factor: int, fill: ir.Value
) -> tuple[ir.Value, list[Any]]:
    """Insert ``factor - 1`` copies of ``fill`` between neighbours along ``axis`` (lhs/base dilation).

    (..., L, ...) → Unsqueeze → (..., L, 1, ...) → Pad → (..., L, factor, ...) → Reshape →
    (..., L*factor, ...) → Slice off the trailing ``factor - 1`` → (..., (L-1)*factor+1, ...).
    """
    rank = len(shape)
    x = ctx.op("Unsqueeze", x, ctx.i64([axis + 1]))
    pads = [0] * (2 * (rank + 1))
    pads[rank + 1 + axis + 1] = factor - 1
    x = ctx.op("Pad", x, ctx.i64(pads), fill, mode="constant")
    merged = list(shape)
    merged[axis] = shape[axis] * factor
    x = reshape_to(ctx, x, tuple(merged))
    x = ctx.op("Slice", x, ctx.i64([0]), ctx.i64([-(factor - 1)]), ctx.i64([axis]))
    dilated = list(shape)
    dilated[axis] = (shape[axis] - 1) * factor + 1
    return x, dilated


def _apply_padding(
    ctx: LoweringContext,
    x: ir.Value,
    shape: list[Any],
    padding: Sequence[tuple[Any, Any]],
    first_axis: int,
    fill: ir.Value,
    *,
    keep_static_positive: bool,
) -> tuple[ir.Value, list[tuple[int, int]]]:
    """Handle what an ONNX ``pads`` attribute cannot: negative (Slice) and symbolic (runtime Pad) padding.

    ``padding`` holds one (low, high) pair per axis from ``first_axis`` on. Returns the value and the
    remaining static non-negative pads, for the consumer's ``pads`` attribute when
    ``keep_static_positive`` (else they are applied here with ``fill`` and zeros are returned).
    """
    rank = len(shape)
    flat = [p for pair in padding for p in pair]
    if not _all_static(flat):
        begins: list[Any] = [0] * rank
        ends: list[Any] = [0] * rank
        for offset, (low, high) in enumerate(padding):
            begins[first_axis + offset], ends[first_axis + offset] = low, high
        x = ctx.op("Pad", x, ctx.shape_value(begins + ends), fill, mode="constant")
        return x, [(0, 0)] * len(padding)
    starts, stops, axes = [], [], []
    remaining: list[tuple[int, int]] = []
    for offset, (low, high) in enumerate(padding):
        low, high = int(low), int(high)
        if low < 0 or high < 0:
            starts.append(max(-low, 0))
            stops.append(high if high < 0 else _INT64_MAX)
            axes.append(first_axis + offset)
        remaining.append((max(low, 0), max(high, 0)))
    if axes:
        x = ctx.op("Slice", x, ctx.i64(starts), ctx.i64(stops), ctx.i64(axes))
    if not keep_static_positive and any(low or high for low, high in remaining):
        pads = [0] * (2 * rank)
        for offset, (low, high) in enumerate(remaining):
            pads[first_axis + offset], pads[rank + first_axis + offset] = low, high
        x = ctx.op("Pad", x, ctx.i64(pads), fill, mode="constant")
        remaining = [(0, 0)] * len(padding)
    return x, remaining


def _pads_attr(pairs: Sequence[tuple[int, int]]) -> list[int]:
    return [low for low, _ in pairs] + [high for _, high in pairs]


# ----------------------------------------------------------------------------- conv_general_dilated
_X4 = ("B", 8, 8, 3)


@functools.cache
def _zoo_modules() -> dict[str, Any]:
    """Small Flax NNX modules for testcases, built on first use (flax is not imported with the handlers)."""
    import jax
    from flax import nnx

    class ConvBlock(nnx.Module):
        def __init__(self) -> None:
            rngs = nnx.Rngs(0)
            self.conv1 = nnx.Conv(3, 8, (3, 3), rngs=rngs)
            self.conv2 = nnx.Conv(8, 8, (3, 3), strides=(2, 2), feature_group_count=8, rngs=rngs)

        def __call__(self, x: Any) -> Any:
            return self.conv2(nnx.relu(self.conv1(x)))

    # the first call may happen while a testcase is being traced: build the weights eagerly
    with jax.ensure_compile_time_eval():
        return {"conv_block": ConvBlock(), "deconv": nnx.ConvTranspose(3, 5, (3, 3), strides=(2, 2), rngs=nnx.Rngs(1))}


def _nnx_conv_block(x: Any) -> Any:
    return _zoo_modules()["conv_block"](x)


def _nnx_conv_transpose(x: Any) -> Any:
    return _zoo_modules()["deconv"](x)


def _nnx_max_pool(x: Any) -> Any:
    from flax import nnx
    return nnx.max_pool(x, (3, 3), (2, 2), padding="SAME")


def _nnx_avg_pool(x: Any) -> Any:
    from flax import nnx
    return nnx.avg_pool(x, (2, 2), (2, 2))


def _nnx_avg_pool_same(x: Any) -> Any:
    from flax import nnx
    return nnx.avg_pool(x, (3, 3), (1, 1), padding="SAME")


def _linen_avg_pool_exclude_pad(x: Any) -> Any:
    from flax import linen

    return linen.avg_pool(x, (3, 3), (2, 2), padding="SAME", count_include_pad=False)


def _conv(dn: Any, **kwargs: Any) -> Any:
    return lambda x, w: lax.conv_general_dilated(x, w, dimension_numbers=dn, **kwargs)


_NHWC = ("NHWC", "HWIO", "NHWC")
_NCHW = ("NCHW", "OIHW", "NCHW")
_CONV_TOL = {"rtol": 1e-4, "atol": 1e-4}


@handler("conv_general_dilated", onnx_ops=("Conv", "ConvTranspose", "Transpose", "Slice", "Pad", "Reshape", "Einsum"), testcases=[
    Testcase("conv2d_nhwc_same", _conv(_NHWC, window_strides=(1, 1), padding="SAME"), [_X4, (3, 3, 3, 4)], expect_ops=("Conv",), **_CONV_TOL),
    Testcase("conv2d_nchw_strided_dilated", _conv(_NCHW, window_strides=(2, 1), padding=((1, 2), (0, 1)), rhs_dilation=(2, 1)), [("B", 3, 9, 8), (4, 3, 3, 2)], **_CONV_TOL),
    Testcase("conv1d_valid_strided", _conv(("NWC", "WIO", "NWC"), window_strides=(2,), padding="VALID"), [("B", 11, 2), (3, 2, 5)], **_CONV_TOL),
    Testcase("conv3d_ndhwc_same", _conv(("NDHWC", "DHWIO", "NDHWC"), window_strides=(1, 2, 1), padding="SAME"), [(2, 5, 6, 4, 2), (3, 3, 2, 2, 3)], **_CONV_TOL),
    Testcase("conv_depthwise", _conv(_NHWC, window_strides=(1, 1), padding="SAME", feature_group_count=3), [_X4, (3, 3, 1, 6)], **_CONV_TOL),
    Testcase("conv_grouped_nchw", _conv(_NCHW, window_strides=(1, 1), padding="VALID", feature_group_count=2), [(2, 4, 6, 6), (6, 2, 3, 3)], **_CONV_TOL),
    Testcase("conv_negative_padding", _conv(_NCHW, window_strides=(1, 1), padding=((-1, 2), (1, -2))), [(2, 3, 7, 7), (2, 3, 2, 2)], **_CONV_TOL),
    Testcase("conv_symbolic_spatial_same_strided", _conv(_NHWC, window_strides=(2, 2), padding="SAME"), [("B", "H", "W", 3), (3, 3, 3, 4)], symbolic_sizes={"B": 2, "H": 7, "W": 8}, **_CONV_TOL),
    Testcase("conv_transpose_same", lambda x, w: lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=_NHWC), [_X4, (3, 3, 3, 4)], expect_ops=("ConvTranspose",), **_CONV_TOL),
    Testcase("conv_transpose_valid_iohw", lambda x, w: lax.conv_transpose(x, w, (2, 3), "VALID", dimension_numbers=("NCHW", "IOHW", "NCHW")), [(2, 3, 5, 4), (3, 4, 3, 2)], expect_ops=("ConvTranspose",), **_CONV_TOL),
    Testcase("conv_lhs_dilation_general", _conv(_NHWC, window_strides=(2, 1), padding=((3, -1), (0, 4)), lhs_dilation=(2, 3), rhs_dilation=(1, 2), feature_group_count=3), [(2, 5, 4, 3), (2, 2, 1, 6)], **_CONV_TOL),
    Testcase("conv_batch_group", _conv(_NCHW, window_strides=(1, 1), padding="VALID", batch_group_count=2), [(4, 3, 6, 6), (4, 3, 3, 3)], **_CONV_TOL),
    Testcase("conv_f64_grouped_strided_dilated", _conv(_NCHW, window_strides=(2, 1), padding=((1, 2), (0, 1)), rhs_dilation=(2, 1), feature_group_count=2),
             [jax.ShapeDtypeStruct(("B", 4, 9, 8), np.float64), jax.ShapeDtypeStruct((6, 2, 3, 2), np.float64)], rtol=1e-12, atol=1e-12, x64=True),
    Testcase("conv_f64_nhwc_same_symbolic", _conv(_NHWC, window_strides=(2, 2), padding="SAME"),
             [jax.ShapeDtypeStruct(("B", "H", "W", 3), np.float64), jax.ShapeDtypeStruct((3, 3, 3, 4), np.float64)],
             symbolic_sizes={"B": 2, "H": 7, "W": 8}, rtol=1e-12, atol=1e-12, x64=True),
    Testcase("conv_transpose_f64", lambda x, w: lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=_NHWC),
             [jax.ShapeDtypeStruct((2, 4, 4, 3), np.float64), jax.ShapeDtypeStruct((3, 3, 3, 4), np.float64)], rtol=1e-12, atol=1e-12, x64=True),
    Testcase("nnx_conv_block", _nnx_conv_block, [_X4], **_CONV_TOL),
    Testcase("nnx_conv_transpose", _nnx_conv_transpose, [(2, 5, 5, 3)], **_CONV_TOL),
])
def _conv_general_dilated(
    ctx: LoweringContext,
    lhs: ir.Value,
    rhs: ir.Value,
    *,
    window_strides: Sequence[int],
    padding: Sequence[tuple[Any, Any]],
    lhs_dilation: Sequence[int],
    rhs_dilation: Sequence[int],
    dimension_numbers: Any,
    feature_group_count: int,
    batch_group_count: int,
    precision: Any,
    preferred_element_type: Any,
    out_sharding: Any,
) -> ir.Value:
    """lax.conv_general_dilated → Conv / ConvTranspose between layout Transposes.

    Params: window_strides, padding (explicit (low, high) pairs, possibly negative or symbolic),
    lhs_dilation (transposed conv), rhs_dilation (atrous), dimension_numbers (layouts),
    feature_group_count (grouped/depthwise), batch_group_count, preferred_element_type (cast after).
    """
    del precision, out_sharding  # precision is an XLA hint; out_sharding is XLA-only
    lhs_aval, rhs_aval = ctx.avals_in
    if not jnp.issubdtype(lhs_aval.dtype, jnp.floating):
        raise ConversionError(
            f"conv_general_dilated on {np.dtype(lhs_aval.dtype)} inputs: ONNX Conv only takes floating point "
            "inputs; cast the operands to a float type before the convolution."
        )
    rank = len(lhs_aval.shape)
    if dimension_numbers is None:
        lhs_spec = rhs_spec = out_spec = tuple(range(rank))
    else:
        lhs_spec, rhs_spec, out_spec = (tuple(int(a) for a in spec) for spec in dimension_numbers)
    n_spatial = rank - 2
    lhs_dilation = tuple(lhs_dilation or (1,) * n_spatial)
    rhs_dilation = tuple(rhs_dilation or (1,) * n_spatial)
    x_shape = [lhs_aval.shape[a] for a in lhs_spec]
    x = _typed(_transpose(ctx, lhs, lhs_spec), lhs, x_shape)
    kernel_spatial = [rhs_aval.shape[a] for a in rhs_spec[2:]]
    if not _all_static(kernel_spatial):
        raise ConversionError("conv_general_dilated with a symbolic kernel size cannot become an ONNX Conv.")
    effective = [(int(k) - 1) * d + 1 for k, d in zip(kernel_spatial, rhs_dilation, strict=True)]
    zero = ctx.scalar(0, lhs_aval.dtype)

    if batch_group_count > 1:
        x, x_shape = _batch_groups_as_feature_groups(ctx, x, x_shape, batch_group_count)
        feature_group_count = batch_group_count

    transposed = any(d != 1 for d in lhs_dilation)
    by_patches = np.dtype(lhs_aval.dtype) == np.dtype(np.float64)
    if (transposed and not by_patches
            and _fits_conv_transpose(window_strides, padding, effective, lhs_dilation, feature_group_count)):
        w = _transpose(ctx, rhs, [rhs_spec[1], rhs_spec[0], *rhs_spec[2:]])
        spatial_axes = list(range(2, rank))
        w = ctx.op("Slice", w, ctx.i64([-1] * n_spatial), ctx.i64([_INT64_MIN] * n_spatial),
                   ctx.i64(spatial_axes), ctx.i64([-1] * n_spatial))
        pads = [e - 1 - int(low) for e, (low, _) in zip(effective, padding, strict=True)]
        pads += [max(e - 1 - int(high), 0) for e, (_, high) in zip(effective, padding, strict=True)]
        # high padding beyond the kernel only appends zero outputs: ConvTranspose's output_padding
        extra = [max(int(high) - (e - 1), 0) for e, (_, high) in zip(effective, padding, strict=True)]
        y = ctx.op("ConvTranspose", x, w, strides=list(lhs_dilation), dilations=list(rhs_dilation),
                   pads=pads, kernel_shape=[int(k) for k in kernel_spatial],
                   output_padding=extra if any(extra) else None)
        y = _typed(y, lhs, [ctx.aval_out.shape[a] for a in out_spec])
    else:
        for axis, factor in enumerate(lhs_dilation):
            if factor != 1:
                x, x_shape = _dilate(ctx, x, x_shape, axis + 2, int(factor), zero)
        x, pads_pairs = _apply_padding(ctx, x, x_shape, padding, 2, zero, keep_static_positive=not by_patches)
        w = _transpose(ctx, rhs, rhs_spec)
        y_shape = [ctx.aval_out.shape[a] for a in out_spec]
        if by_patches:
            y = _conv_by_patches(ctx, x, w, strides=[int(s) for s in window_strides], dilations=list(rhs_dilation),
                                 kernel=[int(k) for k in kernel_spatial], groups=int(feature_group_count),
                                 in_channels=int(x_shape[1]), y_shape=y_shape)
        else:
            y = ctx.op("Conv", x, w, strides=[int(s) for s in window_strides], dilations=list(rhs_dilation),
                       pads=_pads_attr(pads_pairs), group=int(feature_group_count),
                       kernel_shape=[int(k) for k in kernel_spatial])
        y = _typed(y, lhs, y_shape)
    y = _transpose(ctx, y, _inverse(out_spec))
    out_dtype = np.dtype(ctx.aval_out.dtype)
    if preferred_element_type is not None and out_dtype != np.dtype(lhs_aval.dtype):
        y = ctx.op("Cast", y, to=onnx_dtype(out_dtype))
    return y


def _conv_by_patches(
    ctx: LoweringContext,
    x: ir.Value,
    w: ir.Value,
    *,
    strides: Sequence[int],
    dilations: Sequence[int],
    kernel: Sequence[int],
    groups: int,
    in_channels: int,
    y_shape: Sequence[Any],
) -> ir.Value:
    """An unpadded ``N, C, spatial...`` convolution with the ``O, C/groups, kernel...`` weights ``w`` as
    Slices and one Einsum (for float64, which onnxruntime's Conv lacks; see the module docstring)."""
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    axes = list(range(2, 2 + len(kernel)))
    window: list[ir.Value] = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        starts = [o * d for o, d in zip(offset, dilations, strict=True)]
        # the last start of a window at this offset is size - effective + start: a stop relative to the end
        stops = [start - (e - 1) if start != e - 1 else _INT64_MAX for start, e in zip(starts, effective, strict=True)]
        patch = ctx.op("Slice", x, ctx.i64(starts), ctx.i64(stops), ctx.i64(axes), ctx.i64(list(strides)))
        window.append(ctx.op("Unsqueeze", patch, ctx.i64([2])))
    size = len(window)
    stacked = window[0] if size == 1 else ctx.op("Concat", *window, axis=2)  # N, C, K, out spatial...
    per_group = in_channels // groups
    patches = ctx.op("Reshape", stacked, ctx.i64([0, groups, per_group, size, -1]))  # N, G, C/G, K, S
    out_channels = int(y_shape[1])
    weights = ctx.op("Reshape", w, ctx.i64([groups, out_channels // groups, per_group, size]))  # G, O/G, C/G, K
    y = ctx.op("Einsum", patches, weights, equation="ngcks,gock->ngos")
    return ctx.op("Reshape", y, ctx.shape_value(list(y_shape)))


def _fits_conv_transpose(
    window_strides: Sequence[int],
    padding: Sequence[tuple[Any, Any]],
    effective: Sequence[int],
    lhs_dilation: Sequence[int],
    groups: int,
) -> bool:
    """ConvTranspose(pads=K_eff-1-pad) equals the lhs-dilated conv with the flipped kernel when pads >= 0.

    High padding past the kernel (``VALID`` with stride > kernel) is ConvTranspose's output_padding,
    which must stay below the stride.
    """
    if groups != 1 or any(s != 1 for s in window_strides):
        return False
    flat = [p for pair in padding for p in pair]
    if not _all_static(flat):
        return False
    return all(
        0 <= int(low) <= e - 1 and 0 <= int(high) < e - 1 + s
        for (low, high), e, s in zip(padding, effective, lhs_dilation, strict=True)
    )


def _batch_groups_as_feature_groups(
    ctx: LoweringContext, x: ir.Value, shape: list[Any], groups: int
) -> tuple[ir.Value, list[Any]]:
    """batch_group_count G: batch (G*n) → features, so that group g sees lhs[g*n:(g+1)*n] (XLA semantics).

    (G*n, C, S...) → (G, n, C, S...) → (n, G, C, S...) → (n, G*C, S...), then a Conv with group=G.
    """
    batch, channels, spatial = shape[0], shape[1], shape[2:]
    per_group = batch // groups
    x = reshape_to(ctx, x, (groups, per_group, channels, *spatial))
    x = ctx.op("Transpose", x, perm=[1, 0, *range(2, len(shape) + 1)])
    new_shape = [per_group, channels * groups, *spatial]
    return reshape_to(ctx, x, tuple(new_shape)), new_shape


# ----------------------------------------------------------------------------- reduce_window (pooling)
def _identity_value(kind: str, dtype: Any) -> Any:
    dtype = np.dtype(dtype)
    if kind == "sum":
        return np.zeros((), dtype)
    if np.issubdtype(dtype, np.floating):
        return np.array(-np.inf if kind == "max" else np.inf, dtype)
    if dtype == np.dtype(bool):
        return np.array(kind == "min", dtype)
    info = np.iinfo(dtype)
    return np.array(info.min if kind == "max" else info.max, dtype)


def _window_testcases(kind: str) -> list[Testcase]:
    reducer = {"max": lax.max, "min": lax.min, "sum": lax.add}[kind]
    init = {"max": -jnp.inf, "min": jnp.inf, "sum": 0.0}[kind]

    def window(dims: Any, strides: Any, padding: Any, **kwargs: Any) -> Any:
        return lambda x: lax.reduce_window(x, init, reducer, dims, strides, padding, **kwargs)

    cases = [
        Testcase(f"reduce_window_{kind}_nhwc_valid", window((1, 2, 2, 1), (1, 2, 2, 1), "VALID"), [("B", 8, 8, 3)]),
        Testcase(f"reduce_window_{kind}_padded", window((1, 3, 3, 1), (1, 1, 2, 1), ((0, 0), (1, 1), (2, 1), (0, 0))), [("B", 7, 8, 2)], rtol=1e-5, atol=1e-5),
        Testcase(f"reduce_window_{kind}_1d_last_axis", window((3,), (2,), ((1, 1),)), [(9,)], rtol=1e-5, atol=1e-5),
        Testcase(f"reduce_window_{kind}_general_dilations", window((2, 2), (1, 2), ((2, -1), (0, 3)), base_dilation=(2, 1), window_dilation=(1, 2)), [(5, 7)], rtol=1e-5, atol=1e-5),
        Testcase(f"reduce_window_{kind}_int", lambda x: lax.reduce_window(x, np.int32(0 if kind == "sum" else (-2**31 if kind == "max" else 2**31 - 1)), reducer, (2, 2), (1, 1), "SAME"), [np.arange(20, dtype=np.int32).reshape(4, 5) % 7]),
    ]
    if kind == "max":
        cases += [
            Testcase("max_pool_nnx_same", _nnx_max_pool, [("B", "H", "W", 3)], symbolic_sizes={"B": 2, "H": 9, "W": 8}, expect_ops=("MaxPool",)),
            Testcase("max_pool_window_dilation", window((1, 1, 2, 3), (1, 1, 1, 2), "VALID", window_dilation=(1, 1, 2, 2)), [(2, 3, 8, 9)], expect_ops=("MaxPool",)),
        ]
    if kind == "sum":
        cases += [
            Testcase("avg_pool_nnx", _nnx_avg_pool, [("B", 8, 8, 3)], expect_ops=("AveragePool",)),
            Testcase("avg_pool_same_include_pad", _nnx_avg_pool_same, [("B", 6, 6, 3)], rtol=1e-5, atol=1e-5),
            Testcase("avg_pool_linen_exclude_pad", _linen_avg_pool_exclude_pad, [("B", 7, 7, 3)], rtol=1e-5, atol=1e-5),
        ]
    return cases


def _reduce_window(
    kind: str,
    ctx: LoweringContext,
    x: ir.Value,
    *,
    window_dimensions: Sequence[int],
    window_strides: Sequence[int],
    padding: Sequence[tuple[Any, Any]],
    base_dilation: Sequence[int],
    window_dilation: Sequence[int],
) -> ir.Value:
    """reduce_window_{max,min,sum} → MaxPool / AveragePool where they apply, else Slice + Max/Min/Sum.

    Params: window_dimensions, window_strides, padding ((low, high) per axis), base_dilation
    (holes in the input), window_dilation (holes in the window).
    """
    aval = ctx.avals_in[0]
    shape = list(aval.shape)
    rank = len(shape)
    pooled = [
        axis for axis in range(rank)
        if window_dimensions[axis] != 1 or window_strides[axis] != 1 or tuple(padding[axis]) != (0, 0)
        or base_dilation[axis] != 1 or window_dilation[axis] != 1
    ]
    if not pooled:
        return ctx.op("Identity", x)
    fill = ctx.scalar(_identity_value(kind, aval.dtype), aval.dtype)
    if _fits_onnx_pool(ctx, kind, aval.dtype, window_dimensions, padding, base_dilation, window_dilation, pooled):
        window = _Window(list(window_dimensions), list(window_strides), list(padding), list(window_dilation))
        return _onnx_pool(ctx, kind, x, shape, list(ctx.aval_out.shape), pooled, window, fill)
    for axis in pooled:
        if base_dilation[axis] != 1:
            x, shape = _dilate(ctx, x, shape, axis, int(base_dilation[axis]), fill)
    x, _ = _apply_padding(ctx, x, shape, [padding[a] for a in range(rank)], 0, fill, keep_static_positive=False)
    offsets = [range(int(window_dimensions[a])) for a in pooled]
    pieces = []
    for offset in itertools.product(*offsets):
        starts, stops = [], []
        for axis, o in zip(pooled, offset, strict=True):
            start = o * int(window_dilation[axis])
            effective = (int(window_dimensions[axis]) - 1) * int(window_dilation[axis]) + 1
            stop_from_end = effective - 1 - start
            starts.append(start)
            stops.append(-stop_from_end if stop_from_end else _INT64_MAX)
        pieces.append(ctx.op("Slice", x, ctx.i64(starts), ctx.i64(stops), ctx.i64(pooled),
                             ctx.i64([int(window_strides[a]) for a in pooled])))
    if len(pieces) == 1:
        return ctx.op("Identity", pieces[0])
    op_type = {"max": "Max", "min": "Min", "sum": "Sum"}[kind]
    if np.dtype(aval.dtype) == np.dtype(bool):
        op_type = {"max": "Or", "min": "And", "sum": "Or"}[kind]
        result = pieces[0]
        for piece in pieces[1:]:
            result = ctx.op(op_type, result, piece)
        return result
    if kind == "sum" and not jnp.issubdtype(aval.dtype, jnp.floating):
        result = pieces[0]  # onnxruntime's Sum is float-only; Add covers the integer types
        for piece in pieces[1:]:
            result = ctx.op("Add", result, piece)
        return result
    return ctx.op(op_type, *pieces)


def _fits_onnx_pool(
    ctx: LoweringContext,
    kind: str,
    dtype: Any,
    window_dimensions: Sequence[int],
    padding: Sequence[tuple[Any, Any]],
    base_dilation: Sequence[int],
    window_dilation: Sequence[int],
    pooled: Sequence[int],
) -> bool:
    if np.dtype(dtype) not in _POOL_FLOAT_TYPES or any(d != 1 for d in base_dilation):
        return False
    if len(pooled) > 3:
        return False
    if kind == "sum" and ctx.opset < 19 and any(window_dilation[a] != 1 for a in pooled):
        return False  # AveragePool has dilations from opset 19 on
    for axis in pooled:
        low, high = padding[axis]
        if not (is_static(low) and is_static(high)):
            continue  # a runtime Pad with the identity value handles it
        # onnxruntime requires every pad smaller than the kernel (negative ones are sliced off first)
        if max(int(low), int(high)) >= int(window_dimensions[axis]):
            return False
    return True


@dataclass(frozen=True)
class _Window:
    """reduce_window's per-axis window parameters (one entry per axis of the operand)."""

    dimensions: list[int]
    strides: list[int]
    padding: list[tuple[Any, Any]]
    dilation: list[int]

    def without(self, axes: Sequence[int]) -> _Window:
        keep = [a for a in range(len(self.dimensions)) if a not in axes]
        return _Window(*([values[a] for a in keep] for values in (self.dimensions, self.strides, self.padding, self.dilation)))


def _onnx_pool(
    ctx: LoweringContext,
    kind: str,
    x: ir.Value,
    shape: list[Any],
    out_shape: list[Any],
    pooled: Sequence[int],
    window: _Window,
    fill: ir.Value,
) -> ir.Value:
    """Move the pooled axes last, fold the others into (N, C), pool, and undo both.

    Unpooled axes of size 1 beyond (N, C) are squeezed out first and put back after: ``vmap`` of a
    per-example NHWC pool pools (B, 1, H, W, C), which is then the (B, H, W, C) pool a channel-layout
    pass can see, rather than a Reshape merging B with the unit axis.
    """
    rank = len(shape)
    kept = [a for a in range(rank) if a not in pooled]
    units = [a for a in kept if is_static(shape[a]) and int(shape[a]) == 1][: max(len(kept) - 2, 0)]
    if units:
        squeezed = _typed(ctx.op("Squeeze", x, ctx.i64(units)), x, [d for a, d in enumerate(shape) if a not in units])
        remaining = [a for a in range(rank) if a not in units]
        y = _onnx_pool(
            ctx, kind, squeezed, [shape[a] for a in remaining], [out_shape[a] for a in remaining],
            [remaining.index(a) for a in pooled], window.without(units), fill,
        )
        return _typed(ctx.op("Unsqueeze", y, ctx.i64(units)), x, out_shape)
    perm = kept + list(pooled)
    moved_shape = [shape[a] for a in perm]
    x = _typed(_transpose(ctx, x, perm), x, moved_shape)
    kept_shape = moved_shape[: len(kept)]
    if len(kept) == 2:
        pool_in, pool_shape = x, moved_shape
    elif len(kept) < 2:
        pool_shape = [1] * (2 - len(kept)) + moved_shape
        pool_in = ctx.op("Unsqueeze", x, ctx.i64(list(range(2 - len(kept)))))
    else:
        flat = 1
        for d in kept_shape[1:]:
            flat = flat * d
        pool_shape = [kept_shape[0], flat, *moved_shape[len(kept):]]
        pool_in = reshape_to(ctx, x, tuple(pool_shape))
    negated = kind == "min"
    if negated:
        pool_in = ctx.op("Neg", pool_in)
        fill = ctx.op("Neg", fill)
    pool_in, pads_pairs = _apply_padding(
        ctx, pool_in, pool_shape, [window.padding[a] for a in pooled], 2, fill, keep_static_positive=True
    )
    attrs: dict[str, Any] = {
        "kernel_shape": [int(window.dimensions[a]) for a in pooled],
        "strides": [int(window.strides[a]) for a in pooled],
        "pads": _pads_attr(pads_pairs),
    }
    if any(window.dilation[a] != 1 for a in pooled):
        attrs["dilations"] = [int(window.dilation[a]) for a in pooled]
    moved_out = [out_shape[a] for a in perm]
    if kind == "sum":
        y = ctx.op("AveragePool", pool_in, count_include_pad=1, **attrs)
        if len(kept) == 2:
            y = _typed(y, x, moved_out)
        window_size = int(np.prod([int(window.dimensions[a]) for a in pooled]))
        y = ctx.op("Mul", y, ctx.scalar(window_size, ctx.avals_in[0].dtype))
    else:
        y = ctx.op("MaxPool", pool_in, **attrs)
        if negated:
            y = ctx.op("Neg", y)
    if len(kept) == 2:
        y = _typed(y, x, moved_out)
    if len(kept) < 2:
        y = ctx.op("Squeeze", y, ctx.i64(list(range(2 - len(kept)))))
    elif len(kept) > 2:
        y = reshape_to(ctx, y, tuple(moved_out))
    return _typed(_transpose(ctx, y, _inverse(perm)), x, out_shape)


for _kind in ("max", "min", "sum"):
    handler(
        f"reduce_window_{_kind}",
        onnx_ops=("MaxPool", "AveragePool", "Mul", "Neg", "Transpose", "Slice", "Pad", "Max", "Min", "Sum", "Add"),
        testcases=_window_testcases(_kind),
    )(functools.partial(_reduce_window, _kind))
