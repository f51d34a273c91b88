"""``fft`` (``jnp.fft.fft/ifft/rfft/irfft`` and their 2-D / N-D forms) through ONNX ``DFT``.

ONNX's DFT transforms one axis of a tensor whose last axis holds (real, imaginary) - the same
layout the exported graph uses for every complex value (``complex_numbers.py``), so the FFT
needs no conversion: ``FFT``/``IFFT`` chain one DFT per transformed axis (the inverse includes
the 1/n), ``RFFT`` is a one-sided DFT of the last axis (real input given a trailing axis of 1)
then full DFTs of the others, and ``IRFFT`` inverts the leading axes first and ends with the
one-sided inverse DFT of the last axis (``onesided=1, inverse=1``, length ``fft_lengths[-1]``),
which reads only the non-negative frequencies and ignores the imaginary parts that a real
signal's spectrum cannot have, as numpy/JAX's ``irfft`` does.

Forms per opset: DFT-20 takes the axis as an input, DFT-17 as an attribute; below 17 there is no
DFT (the handler needs opset 17).

Accuracy (float32 inputs, against JAX's pocketfft): onnxruntime runs power-of-two lengths with a
radix-2 FFT (~1e-6 relative to the largest output); other lengths with a direct O(n²) sum in the
input type, which in float32 reaches ~2e-4 relative error at n = 1000. So float32 transforms of
lengths that are not powers of two are computed in float64 (a Cast before, one after), which
brings them to float32's own rounding; float64 inputs are computed in float64 as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import onnx_dtype
from workbench.jax_to_onnx.complex_numbers import real_dtype
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

MIN_DFT_OPSET = 17
AXIS_INPUT_OPSET = 20


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def dft(ctx: LoweringContext, x: ir.Value, axis: int, *, inverse: bool = False, onesided: bool = False, length: int | None = None) -> ir.Value:
    """One ONNX DFT over ``axis`` of a pair tensor ([..., 1] real or [..., 2] complex), in the opset's form."""
    attributes = {"inverse": int(inverse), "onesided": int(onesided)}
    dft_length = ctx.const(np.asarray(length, np.int64)) if length is not None else None
    if ctx.opset >= AXIS_INPUT_OPSET:
        return ctx.op("DFT", x, dft_length, ctx.const(np.asarray(axis, np.int64)), **attributes)
    return ctx.op("DFT", x, dft_length, axis=axis, **attributes)


def _case(name: str, fn: Any, specs: Sequence[Any], **kwargs: Any) -> Testcase:
    return Testcase(name, fn, specs, **{"rtol": 1e-4, "atol": 1e-4, **kwargs})


_C = np.complex64


@handler("fft", onnx_ops=("DFT", "Unsqueeze", "Squeeze", "Cast"), complex_numbers=True, min_opset=MIN_DFT_OPSET, testcases=[
    _case("fft_complex", jnp.fft.fft, [jax.ShapeDtypeStruct(("B", 16), _C)]),
    _case("fft_real_input_odd_length", jnp.fft.fft, [("B", 15)]),
    _case("ifft", jnp.fft.ifft, [jax.ShapeDtypeStruct((3, 8), _C)]),
    _case("rfft", jnp.fft.rfft, [("B", 32)]),
    _case("irfft_odd_length", lambda z: jnp.fft.irfft(z, n=9), [jax.ShapeDtypeStruct(("B", 5), _C)]),
    _case("rfft_irfft_roundtrip_even", lambda x: jnp.fft.irfft(jnp.fft.rfft(x), n=x.shape[-1]), [(2, 12)]),
    _case("fft2", jnp.fft.fft2, [jax.ShapeDtypeStruct((2, 4, 6), _C)]),
    _case("ifftn_3d", lambda z: jnp.fft.ifftn(z, axes=(0, 1, 2)), [jax.ShapeDtypeStruct((4, 3, 5), _C)]),
    _case("rfft2_irfft2", lambda x: jnp.fft.irfft2(jnp.fft.rfft2(x) * 0.5, s=x.shape[-2:]), [("B", 6, 8)]),
    _case("rfftn_3d", jnp.fft.rfftn, [(4, 6, 8)]),
    _case("fft_axis_and_norm", lambda x: jnp.fft.fft(x, axis=0, norm="ortho"), [(10, "B")]),
    _case("fft_convolution", lambda a, b: jnp.fft.irfft(jnp.fft.rfft(a, n=16) * jnp.fft.rfft(b, n=16), n=16), [("B", 9), ("B", 8)]),
    _case("fft_length_1000", jnp.fft.fft, [(1000,)], atol=2e-3),
    _case("fft_complex128", jnp.fft.fft, [jax.ShapeDtypeStruct((3, 12), np.complex128)], rtol=1e-12, atol=1e-11, x64=True),
])
def _fft(ctx: LoweringContext, x: ir.Value, *, fft_type: Any, fft_lengths: Sequence[int]) -> ir.Value:
    """FFT / IFFT / RFFT / IRFFT over the trailing ``len(fft_lengths)`` axes. Params: fft_type,
    fft_lengths (the signal lengths; for IRFFT the last is the real output's length)."""
    if ctx.opset < MIN_DFT_OPSET:
        raise ConversionError(f"fft needs ONNX DFT (opset >= {MIN_DFT_OPSET}); the export targets opset {ctx.opset}.")
    kind = lax.FftType(int(fft_type))
    logical_rank = len(ctx.avals_in[0].shape)
    axes = list(range(logical_rank - len(fft_lengths), logical_rank))
    parts_dtype = real_dtype(ctx.avals_in[0].dtype)
    in_double = parts_dtype == np.dtype(np.float32) and not all(_is_power_of_two(int(n)) for n in fft_lengths)
    y = ctx.op("Cast", x, to=ir.DataType.DOUBLE) if in_double else x
    if kind in (lax.FftType.FFT, lax.FftType.IFFT):
        for axis in axes:
            y = dft(ctx, y, axis, inverse=kind == lax.FftType.IFFT)
    elif kind == lax.FftType.RFFT:
        y = dft(ctx, ctx.op("Unsqueeze", y, ctx.i64([-1])), axes[-1], onesided=True)
        for axis in axes[:-1]:
            y = dft(ctx, y, axis)
    else:  # IRFFT
        for axis in axes[:-1]:
            y = dft(ctx, y, axis, inverse=True)
        y = dft(ctx, y, axes[-1], inverse=True, onesided=True, length=int(fft_lengths[-1]))
        y = ctx.op("Squeeze", y, ctx.i64([-1]))
    return ctx.op("Cast", y, to=onnx_dtype(parts_dtype)) if in_double else y
