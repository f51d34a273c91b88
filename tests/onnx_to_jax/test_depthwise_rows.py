"""Depthwise convolutions of more than 25 taps (ConvNeXt's and ConvMixer's 7x7) as a loop over the kernel's rows.

The generator writes a channels-last, stride-1, undilated depthwise convolution of more than 25 taps, every
tap of which reads some input, as ``_depthwise_conv_rows``: a ``fori_loop`` over the kernel's rows, each step
the row's taps written out (``_depthwise_rows_padding``; docs/onnx_to_jax_corpus.md, "7x7 depthwise kernels
row by row"). Each block below is checked against onnxruntime in every way the generated code is called,
and for the form it was written in; the convolutions the rule leaves alone keep ``_conv``.
"""

from __future__ import annotations

import jax
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests.support.generated_forms import outputs_in_every_form
from tests.support.harness import run_onnx
from workbench.onnx_to_jax import jit_options
from workbench.onnx_to_jax.api import generate_module

CHANNELS = 8


def _block(x_shape, kernel, bias=True, dtype=np.float32, linear=False, **conv_attrs) -> onnx.ModelProto:
    """A 1x1 expansion to CHANNELS, a depthwise convolution of ``kernel`` (``conv_attrs``; by default
    padded by half the kernel), a Relu, and a 1x1 projection; ``linear``: the projection as ConvNeXt-T
    exports it, a MatMul over the channels-last values between two Transposes."""
    rng = np.random.default_rng(0)
    given = "pads" in conv_attrs or "auto_pad" in conv_attrs
    attrs = conv_attrs if given else {"pads": [k // 2 for k in kernel] * 2, **conv_attrs}

    def weight(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(dtype), name)

    inits = [weight("we", (CHANNELS, x_shape[1], 1, 1)), weight("wd", (CHANNELS, 1, *kernel)),
             weight("bd", (CHANNELS,)), weight("wp", (6, CHANNELS, 1, 1))]
    depthwise_inputs = ["e", "wd", "bd"] if bias else ["e", "wd"]
    nodes = [helper.make_node("Conv", ["x", "we"], ["e"]),
             helper.make_node("Conv", depthwise_inputs, ["d"], group=CHANNELS, kernel_shape=list(kernel), **attrs),
             helper.make_node("Relu", ["d"], ["a"])]
    if linear:
        inits.append(weight("wl", (CHANNELS, 6)))
        nodes += [helper.make_node("Transpose", ["a"], ["t"], perm=[0, 2, 3, 1]),
                  helper.make_node("MatMul", ["t", "wl"], ["l"]),
                  helper.make_node("Transpose", ["l"], ["y"], perm=[0, 3, 1, 2])]
    else:
        nodes.append(helper.make_node("Conv", ["a", "wp"], ["y"]))
    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", element, list(x_shape))],
                              [helper.make_tensor_value_info("y", element, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _check(model: onnx.ModelProto, kernel: tuple[int, int], tolerance: float = 1e-4) -> None:
    generated = generate_module(model)
    tensor_type = model.graph.input[0].type.tensor_type
    shape = [d.dim_value for d in tensor_type.shape.dim]
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    assert "_depthwise_conv_rows(" in generated.source
    primitives = str(jax.make_jaxpr(generated.forward)(generated.params, x))
    assert "while[" in primitives or "scan[" in primitives, primitives  # fori_loop may trace to either
    # the loop reads the weight by rows, (kh, kw, C), not by taps as _conv's loop does, (kh * kw, C)
    weight_type = "f16" if dtype == np.float16 else "f32"
    assert f"{weight_type}[{kernel[0]},{kernel[1]},{CHANNELS}]" in primitives, primitives
    assert f"{weight_type}[{kernel[0] * kernel[1]},{CHANNELS}]" not in primitives, primitives
    expected = run_onnx(model, [x])[0]
    for got in outputs_in_every_form(generated, x):
        np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("x_shape, kernel, attrs, bias", [
    ((1, 4, 12, 12), (7, 7), {}, True),
    ((1, 4, 4, 4), (7, 7), {}, True),  # ConvNeXt's 4x4 stage: the outer taps read the map's edge rows only
    ((2, 4, 10, 9), (7, 7), {"auto_pad": "SAME_UPPER"}, True),  # ConvMixer's padding, batch 2
    ((1, 4, 9, 11), (6, 6), {"auto_pad": "SAME_LOWER"}, False),
    ((1, 4, 9, 12), (7, 5), {"pads": [1, 2, 4, 0]}, False),  # uneven pads, no bias
    ((1, 4, 11, 11), (9, 9), {}, True),
    ((1, 4, 12, 12), (7, 7), {"auto_pad": "VALID"}, True),
], ids=["7x7", "7x7-on-4x4", "same-upper-batch-2", "6x6-same-lower", "7x5-uneven-pads", "9x9", "valid"])
def test_large_depthwise_kernels_run_row_by_row(x_shape, kernel, attrs, bias):
    _check(_block(x_shape, kernel, bias, **attrs), kernel)


def test_rows_in_float16():
    _check(_block((1, 4, 8, 8), (7, 7), dtype=np.float16), (7, 7), tolerance=2e-2)


@pytest.mark.parametrize("x_shape, kernel, attrs", [
    ((1, 4, 12, 12), (7, 7), {"strides": [2, 2]}),
    ((1, 4, 12, 12), (7, 7), {"dilations": [2, 2], "pads": [6, 6, 6, 6]}),
    ((1, 4, 2, 2), (7, 7), {}),  # taps reading only padding: _conv drops them (3x3 left, written out)
    ((1, 4, 12, 12), (5, 5), {}),  # 25 taps: _depthwise_taps_written_out's rule
], ids=["strided", "dilated", "2x2-map", "5x5"])
def test_other_depthwise_convolutions_keep_conv(x_shape, kernel, attrs):
    model = _block(x_shape, kernel, **attrs)
    generated = generate_module(model)
    assert "_depthwise_conv_rows(" not in generated.source
    x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32)
    expected = run_onnx(model, [x])[0]
    for got in outputs_in_every_form(generated, x):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_dots_only_code_keeps_the_tap_loop(monkeypatch):
    """Compiled with YNNPACK's dots (a large model with MatMul layers: ConvNeXt-T), the row loop ran no
    faster as a whole, so ``_conv``'s loop over the taps stays."""
    monkeypatch.setattr(jit_options, "MIN_WEIGHTS", 0)
    model = _block((1, 4, 12, 12), (7, 7), linear=True)
    generated = generate_module(model)
    assert "LIBRARY_FUSION_TYPE_DOT" in generated.source
    assert "_depthwise_conv_rows(" not in generated.source and "group=8" in generated.source
    x = np.random.default_rng(1).standard_normal((1, 4, 12, 12)).astype(np.float32)
    expected = run_onnx(model, [x])[0]
    for got in outputs_in_every_form(generated, x):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_linear_blocks_run_row_by_row_without_dots():
    _check(_block((1, 4, 12, 12), (7, 7), linear=True), (7, 7))
