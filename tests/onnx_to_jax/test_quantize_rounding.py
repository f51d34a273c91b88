"""Quantizers round exactly as onnxruntime does, eagerly and under ``jax.jit``.

XLA turns a division by a broadcast scalar into a multiplication by its reciprocal; for a
quantization scale that moves values on a rounding boundary into the neighbouring bucket (one
quantum off), and through a quantized network such flips add up (a dynamically quantized ResNet-18
drifted by 0.4% of its logits). The inputs here are chosen so that ``x / s`` and ``x * (1 / s)``
round to different integers, so these tests fail for any quantizer that multiplies.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import run_onnx


def _boundary_values(scale: np.float32, count: int = 64) -> np.ndarray:
    """Values v with round(v / scale) != round(v * (1 / scale)) in float32."""
    rng = np.random.default_rng(0)
    found = []
    while len(found) < count:
        v = ((rng.integers(1, 120, 4096) + 0.5) * scale).astype(np.float32)
        v = np.nextafter(v, rng.choice([-np.inf, np.inf], v.shape).astype(np.float32))
        differ = np.round(v / scale) != np.round(v * (np.float32(1) / scale))
        found.extend(v[differ].tolist())
    return np.asarray(found[:count], np.float32)


def _generated(model):
    forward, params = wb.to_jax(model)
    return {"eager": functools.partial(forward, params), "jit": jax.jit(functools.partial(forward, params))}


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_quantize_linear_with_a_constant_scale_divides(mode):
    scale = np.float32(0.0123)
    x = _boundary_values(scale)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [x.size])],
        initializer=[numpy_helper.from_array(np.array(scale), "s"), numpy_helper.from_array(np.array(0, np.uint8), "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    np.testing.assert_array_equal(np.asarray(_generated(model)[mode](x)), run_onnx(model, [x])[0])


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_dynamic_quantize_linear_scale_and_values_are_exact(mode):
    # the scale (max - min) / 255 divides by a constant: multiplied by 1/255 it rounds differently for most ranges
    rng = np.random.default_rng(1)
    models = []
    # the last input is all zeros: no range, onnxruntime's scale is 1 (0 / 0 before the fix: scale 0, values
    # from a NaN cast to uint8)
    for x in [*(rng.uniform(-3, 5, 256).astype(np.float32) for _ in range(20)), np.zeros(256, np.float32)]:
        node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
        graph = helper.make_graph(
            [node], "dq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
            [helper.make_tensor_value_info("y", TensorProto.UINT8, [x.size]),
             helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
             helper.make_tensor_value_info("z", TensorProto.UINT8, [])],
        )
        models.append((helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), x))
    model = models[0][0]
    run = _generated(model)[mode]
    for _, x in models:
        want = run_onnx(model, [x])
        got = run(x)
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(np.asarray(g), w)


# ConvInteger runs as float32 convolutions of integers (XLA CPU's int32 convolution is slow), exact
# while partial sums stay below 2**24: 3x3 kernels over 16 channels (144 products per output) take
# one float32 convolution, 64 channels (576) split the activations into 4-bit halves, 512 channels
# (4,608) split the weights too. Extreme values (0 and 255 against zero points 0 / 255) make the
# largest products; any rounding would show as an off-by-one against onnxruntime's int32 result.
@pytest.mark.parametrize("channels", [16, 64, 512])
@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_conv_integer_is_exact_in_every_split(channels, mode):
    rng = np.random.default_rng(channels)
    x = rng.choice(np.array([0, 1, 254, 255], np.uint8), (1, channels, 6, 6))
    x[0, :, 0, 0] = 255  # one window of all-extreme activations
    w = rng.choice(np.array([0, 255, 7, 200], np.uint8), (4, channels, 3, 3))
    w[0] = 0  # against w_zero 255: all products are 255 * 255 in that filter's first window
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "ci", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0, np.uint8), "xz"),
                     numpy_helper.from_array(np.array(255, np.uint8), "wz")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    expected = run_onnx(model, [x])[0]
    assert np.abs(expected).max() > 2 ** 24 // 16  # the sums are long enough to need the split they test
    np.testing.assert_array_equal(np.asarray(_generated(model)[mode](x)), expected)
