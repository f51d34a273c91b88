"""A zero pad before a max pool (workbench/jax_to_onnx/passes/padded_pools.py): exported so that
onnxruntime's PadFusion, which folds a zero Pad into MaxPool's -inf padding, cannot change the numbers.
Each export runs in onnxruntime with its default optimizations (the harness's session) and with none,
on inputs whose windows at the border are all negative (where zero padding and -inf padding differ)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest

import workbench as wb
from tests.support.harness import run_onnx

RNG = np.random.default_rng(3)


def _unoptimized(model, inputs):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs, strict=True)})


def _check(fn, inputs, specs=None):
    model = wb.to_onnx(fn, specs or [x.shape for x in inputs])
    expected = np.asarray(jax.jit(fn)(*inputs))
    for got in (run_onnx(model, inputs)[0], _unoptimized(model, inputs)[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    return [node.op_type for node in model.graph.node]


def _max_pool(x, window, strides, padding="VALID", dilation=None):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, padding, window_dilation=dilation)


def test_zero_pad_after_nhwc_conv_then_max_pool():
    """Keras' ResNet50V2 stem: conv, ZeroPadding2D, MaxPooling2D(3, 2); the layout pass puts the Pad in NCHW
    right before the pool."""
    kernel = RNG.standard_normal((3, 3, 3, 4)).astype(np.float32)

    def stem(x):
        y = jax.lax.conv_general_dilated(x, kernel, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return _max_pool(jnp.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0))), (1, 3, 3, 1), (1, 2, 2, 1))

    ops = _check(stem, [RNG.standard_normal((2, 12, 12, 3)).astype(np.float32)])
    assert "Pad" not in ops and ops.count("MaxPool") == 1 and ops.count("Max") == 1, ops


@pytest.mark.parametrize(
    ("pads", "window", "strides", "padding", "dilation"),
    [
        (((1, 1), (1, 1)), (3, 3), (2, 2), "VALID", None),
        (((2, 0), (0, 1)), (3, 2), (1, 1), "VALID", None),
        (((1, 1), (1, 1)), (3, 3), (2, 1), ((1, 0), (0, 1)), None),  # the pool's own -inf padding on top
        (((1, 1), (1, 1)), (2, 2), (1, 2), "VALID", (2, 2)),
        (((0, 0), (0, 0)), (2, 2), (2, 2), "VALID", None),  # an empty pad: nothing to guard
    ],
)
def test_channels_first_zero_pad_then_max_pool(pads, window, strides, padding, dilation):
    """A channels-first program (Equinox style) writes the Pad → MaxPool pair directly."""

    def padded_pool(x):
        padded = jnp.pad(x, ((0, 0), (0, 0), *pads))
        own = padding if isinstance(padding, str) else ((0, 0), (0, 0), *padding)
        return _max_pool(padded, (1, 1, *window), (1, 1, *strides), own, None if dilation is None else (1, 1, *dilation))

    x = -np.abs(RNG.standard_normal((2, 3, 7, 8))).astype(np.float32)  # all negative: zeros win at the border
    ops = _check(padded_pool, [x])
    assert "Pad" not in ops, ops


def test_zero_pad_then_max_pool_in_three_dimensions():
    def padded_pool(x):
        return _max_pool(jnp.pad(x, ((0, 0), (0, 0), (1, 0), (1, 1), (0, 1))), (1, 1, 2, 3, 2), (1, 1, 2, 2, 1))

    ops = _check(padded_pool, [-np.abs(RNG.standard_normal((1, 2, 5, 6, 4))).astype(np.float32)])
    assert "Pad" not in ops, ops


def test_nonzero_pad_value_keeps_its_pad():
    """onnxruntime fuses only a zero Pad; another value stays a Pad (and matches)."""

    def padded_pool(x):
        return _max_pool(jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-0.5), (1, 1, 3, 3), (1, 1, 2, 2))

    ops = _check(padded_pool, [-np.abs(RNG.standard_normal((2, 3, 7, 7))).astype(np.float32)])
    assert "Pad" in ops, ops


def test_pads_beyond_the_kernel_keep_the_pad():
    """onnxruntime's MaxPool takes pads below the kernel size only: a wider zero pad stays a Pad (correct as
    exported; onnxruntime's PadFusion then makes a MaxPool its own kernel refuses, a known limit)."""

    def padded_pool(x):
        return _max_pool(jnp.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0))), (1, 1, 2, 2), (1, 1, 1, 1))

    x = -np.abs(RNG.standard_normal((2, 3, 5, 5))).astype(np.float32)
    model = wb.to_onnx(padded_pool, [x.shape])
    np.testing.assert_allclose(_unoptimized(model, [x])[0], np.asarray(padded_pool(x)), rtol=1e-6, atol=1e-6)
    assert "Pad" in [node.op_type for node in model.graph.node]


def test_symbolic_spatial_sizes_keep_the_pad():
    """The border is a constant of the output's spatial size: with symbolic sizes the pair is left as is
    (checked without onnxruntime's optimizations, where it is correct)."""

    def padded_pool(x):
        return _max_pool(jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (1, 1, 3, 3), (1, 1, 2, 2))

    x = -np.abs(RNG.standard_normal((2, 3, 7, 7))).astype(np.float32)
    model = wb.to_onnx(padded_pool, [("B", 3, "H", "W")])
    np.testing.assert_allclose(_unoptimized(model, [x])[0], np.asarray(padded_pool(x)), rtol=1e-6, atol=1e-6)
    assert "Pad" in [node.op_type for node in model.graph.node]
