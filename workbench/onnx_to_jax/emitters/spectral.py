"""Spectral ops: DFT and STFT over ``jnp.fft``.

ONNX stores complex values as a trailing axis of size 2 (real, imaginary); a
trailing axis of size 1 is a real signal. ``dft_length`` zero-pads or
truncates the signal, ``onesided`` keeps the ``n // 2 + 1`` non-redundant
bins (and, inverse, means the input holds only those bins: irfft), the
inverse transform is normalized by ``1 / n`` as numpy's ``ifft`` is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _to_complex(x):
    """ONNX's [..., 1] (real) or [..., 2] (real, imag) layout as a complex array without that axis.

    Computed in complex128 when 64-bit types are enabled (as numpy's fft, the spec's reference, does):
    complex64 transforms leave ~1e-6 noise where the exact result is 0.
    """
    dtype = jax.dtypes.canonicalize_dtype(jnp.complex128)
    if x.shape[-1] == 1:
        return x[..., 0].astype(dtype)
    return lax.complex(x[..., 0], x[..., 1]).astype(dtype)


@runtime_helper
def _from_complex(z, dtype):
    """A complex array in ONNX's [..., 2] layout."""
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1).astype(dtype)


@runtime_helper
def _dft(x, dft_length, axis, inverse, onesided):
    axis = axis % x.ndim
    if dft_length is None:
        dft_length = 2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis]
    signal = _to_complex(x)
    if inverse and onesided:
        return jnp.fft.irfft(signal, n=dft_length, axis=axis)[..., None].astype(x.dtype)
    if inverse:
        return _from_complex(jnp.fft.ifft(signal, n=dft_length, axis=axis), x.dtype)
    spectrum = jnp.fft.fft(signal, n=dft_length, axis=axis)
    if onesided:
        spectrum = lax.slice_in_dim(spectrum, 0, dft_length // 2 + 1, axis=axis)
    return _from_complex(spectrum, x.dtype)


@emitter("DFT", since=(17, 20))
def dft(ctx: NodeContext) -> str:
    length = "None"
    if ctx.has(1):
        length = f"int(np.asarray({ctx.host(1)}).reshape(()))"
        static = ctx.static(1)
        if static is not None:
            length = ctx.lit(int(np.asarray(static).reshape(())))
    if ctx.opset >= 20:
        axis = ctx.lit(-2)
        if ctx.has(2):
            static = ctx.static(2)
            axis = ctx.lit(int(np.asarray(static).reshape(()))) if static is not None else (
                f"int(np.asarray({ctx.host(2)}).reshape(()))")
    else:
        axis = ctx.lit(ctx.attr("axis", 1))
    return ctx.call(_dft, ctx.x(0), length, axis, ctx.lit(bool(ctx.attr("inverse", 0))),
                    ctx.lit(bool(ctx.attr("onesided", 0))))


@runtime_helper
def _stft(signal, frame_step, window, frame_length, onesided):
    if frame_length is None:
        frame_length = signal.shape[-2] if window is None else window.shape[0]
    if window is None:
        window = jnp.ones((frame_length,), signal.dtype)
    n_frames = 1 + (signal.shape[-2] - frame_length) // frame_step
    starts = jnp.arange(n_frames)[:, None] * frame_step + jnp.arange(frame_length)[None, :]
    frames = jnp.take(signal, starts, axis=1)  # [batch, frames, frame_length, 1 or 2]
    frames = frames * jnp.reshape(window, (1, 1, -1, 1)).astype(signal.dtype)
    spectrum = jnp.fft.fft(_to_complex(frames), n=frame_length, axis=-1)
    if onesided:
        spectrum = spectrum[..., : frame_length // 2 + 1]
    return _from_complex(spectrum, signal.dtype)


@emitter("STFT", since=17)
def stft(ctx: NodeContext) -> str:
    def scalar(i: int) -> str:
        static = ctx.static(i)
        if static is not None:
            return ctx.lit(int(np.asarray(static).reshape(())))
        return f"int(np.asarray({ctx.host(i)}).reshape(()))"

    frame_length = scalar(3) if ctx.has(3) else "None"
    return ctx.call(_stft, ctx.x(0), scalar(1), ctx.opt(2), frame_length, ctx.lit(bool(ctx.attr("onesided", 1))))


@runtime_helper
def _mel_weight_matrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, dtype):
    """Triangular mel filters [dft_length // 2 + 1, num_mel_bins], computed on the host as the spec does
    (the band edges are rounded down to DFT bins, so every argument must be a concrete value)."""
    num_mel_bins, dft_length, sample_rate = (int(np.asarray(v).reshape(())) for v in
                                             (num_mel_bins, dft_length, sample_rate))
    low, high = (float(np.asarray(v).reshape(())) for v in (lower_edge_hertz, upper_edge_hertz))
    low_mel = 2595 * np.log1p(low / 700) / np.log(10)
    high_mel = 2595 * np.log1p(high / 700) / np.log(10)
    mels = np.arange(num_mel_bins + 2) * ((high_mel - low_mel) / (num_mel_bins + 2)) + low_mel
    edges = (((dft_length + 1) * (700 * np.expm1(mels / 2595 * np.log(10)))) // sample_rate).astype(np.int64)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    j = np.arange(dft_length // 2 + 1)[:, None].astype(np.float64)
    rising = (j >= left) & (j <= center) & (center > left)
    falling = (j >= center) & (j < right)
    weights = np.zeros((dft_length // 2 + 1, num_mel_bins))
    weights = np.where(rising, (j - left) / np.maximum(center - left, 1), weights)
    weights = np.where((center == left) & (j == center), 1.0, weights)
    weights = np.where(falling, (right - j) / np.maximum(right - center, 1), weights)
    return jnp.asarray(weights.astype(dtype))


@emitter("MelWeightMatrix", since=17)
def mel_weight_matrix(ctx: NodeContext) -> str:
    dtype = ctx.onnx_dt(ctx.attr("output_datatype", 1))
    return ctx.call(_mel_weight_matrix, *(ctx.host(i) for i in range(5)), dtype)
