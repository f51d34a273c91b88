"""Convolutions the generator writes in another form than lax.conv_general_dilated, against onnxruntime.

Depthwise convolutions (group = channels) become a sum of k^2 shifted products (XLA CPU's grouped
convolution is far slower); 1x1 convolutions become a matmul over channels; dense convolutions of
channels-last networks with an output map of at most 13x13 become one dot over their unfolded windows
(``_conv_im2col``, in models compiled with YNNPACK fusing only dots: XLA CPU's own convolution
kernel is slow on small maps with many channels), and in the same models 3x3 stride-1 ones on larger
maps with at least 64 input channels are computed by Winograd's F(2x2, 3x3) (``_conv_winograd``: 16 dots
on transformed tiles).
Taps whose windows read only zero padding (dilations or kernels reaching past a small map, as in
DeepLabv3's ASPP) are dropped first (``_live_taps``). An image's stem (at most 27 input values per
output) becomes one dot over its windows laid side by side (``_conv_stem_dot``) in every model whose
convolutions XLA's own kernel runs (YNNPACK fusing only dots or nothing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.benchmarks.hlo_kernels import kernel_table
from tests.support.generated_forms import jaxpr_text, outputs_in_every_form
from tests.support.harness import run_onnx
from workbench.onnx_to_jax import jit_options
from workbench.onnx_to_jax.api import generate_module
from workbench.onnx_to_jax.emitters.conv import _live_taps
from workbench.onnx_to_jax import generator
from workbench.onnx_to_jax.jit_options import (
    LLVM_LEVEL, LLVM_LEVEL_CHOSEN, YNN_CONVOLUTIONS_ONLY, YNN_DOTS_AND_CONVOLUTIONS, YNN_FUSION_TYPE, YNN_NONE,
)

LEVEL = {LLVM_LEVEL: LLVM_LEVEL_CHOSEN}  # every model's LLVM level (jit_options.py)
# a small model with a convolution: YNNPACK runs each convolution alone (jit_options.py)
CONVOLUTIONS = {YNN_FUSION_TYPE: YNN_CONVOLUTIONS_ONLY, **LEVEL}


def _conv_model(x_shape, w_shape, **attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(w_shape[0]).astype(np.float32), "b")]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("attrs", [
    {"pads": [1, 1, 1, 1]},
    {"pads": [2, 1, 2, 1], "strides": [2, 2]},
    {"pads": [2, 2, 2, 2], "dilations": [2, 2]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2]},
], ids=["same", "strided", "dilated", "auto_pad", "5x5"])
def test_depthwise_convolution_matches_onnxruntime(attrs):
    k = attrs.get("kernel_shape", [3, 3])
    model = _conv_model((2, 6, 9, 11), (6, 1, *k), group=6, **attrs)
    x = np.random.default_rng(1).standard_normal((2, 6, 9, 11)).astype(np.float32)
    expected = run_onnx(model, [x])[0]
    forward, params = wb.to_jax(model)
    assert "_depthwise_conv" in wb.to_jax_source(model)
    for got in (forward(params, x), jax.jit(forward)(params, x)):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_depthwise_convolution_1d_and_gradient():
    model = _conv_model((1, 4, 10), (4, 1, 3), group=4, pads=[1, 1])
    x = np.random.default_rng(2).standard_normal((1, 4, 10)).astype(np.float32)
    forward, params = wb.to_jax(model)
    np.testing.assert_allclose(np.asarray(forward(params, x)), run_onnx(model, [x])[0], rtol=1e-5, atol=1e-5)
    grads = jax.grad(lambda p: (forward(p, x) ** 2).sum())(params)

    def reference(w):  # the same convolution through XLA's grouped kernel
        y = jax.lax.conv_general_dilated(x, w, (1,), [(1, 1)], feature_group_count=4)
        return ((y + params["b"][None, :, None]) ** 2).sum()

    np.testing.assert_allclose(np.asarray(grads["w"]), np.asarray(jax.grad(reference)(params["w"])), rtol=1e-4,
                               atol=1e-4)


@pytest.fixture
def dots_only(monkeypatch):
    """Every model counts as large: a CNN without MatMul layers gets YNNPACK's dots and each
    convolution alone, and the dot forms of the dots-only code (jit_options.py)."""
    monkeypatch.setattr(jit_options, "MIN_WEIGHTS", 0)


@pytest.mark.parametrize("x_shape, w_shape, attrs, form", [
    ((1, 16, 12, 12), (24, 16, 3, 3), {"pads": [1, 1, 1, 1]}, "dot"),
    ((1, 16, 13, 13), (24, 16, 3, 3), {"pads": [1, 1, 1, 1]}, "dot"),
    ((2, 8, 24, 24), (16, 8, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, "dot"),
    ((1, 8, 7, 9), (12, 8, 3, 3), {"pads": [0, 1, 2, 1], "strides": [2, 1]}, "dot"),
    ((1, 8, 6, 6), (8, 8, 2, 2), {"strides": [2, 2]}, "dot"),
    ((1, 8, 10, 10), (8, 8, 3, 3), {"auto_pad": "SAME_LOWER"}, "dot"),
    ((1, 8, 12, 12), (8, 8, 1, 1), {"strides": [2, 2]}, "dot"),
    ((1, 64, 24, 24), (8, 64, 3, 3), {"pads": [1, 1, 1, 1]}, "winograd"),
    ((2, 64, 13, 15), (10, 64, 3, 3), {"pads": [1, 1, 1, 1]}, "winograd"),
    ((1, 64, 16, 19), (8, 64, 3, 3), {"pads": [0, 2, 1, 0]}, "winograd"),
    ((1, 64, 14, 14), (12, 64, 3, 3), {"auto_pad": "SAME_UPPER"}, "winograd"),
    ((1, 32, 24, 24), (16, 32, 3, 3), {"pads": [1, 1, 1, 1]}, "xla"),
    ((1, 8, 24, 24), (8, 8, 3, 3), {"pads": [1, 1, 1, 1], "strides": [1, 2]}, "xla"),
    ((1, 8, 10, 10), (8, 8, 3, 3), {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, "xla"),
    ((1, 8, 10, 10), (8, 4, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}, "xla"),
    ((1, 8, 10, 10), (8, 8, 5, 5), {"pads": [2, 2, 2, 2]}, "xla"),
    ((2, 8, 6, 6), (12, 8, 1, 7), {"pads": [0, 3, 0, 3]}, "xla"),
    ((1, 8, 7, 5), (8, 8, 7, 1), {"pads": [3, 0, 2, 0], "strides": [1, 2]}, "xla"),
    ((1, 3, 40, 40), (16, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, "stem"),
    ((2, 3, 33, 31), (32, 3, 3, 3), {"strides": [2, 2]}, "stem"),
    ((1, 3, 30, 27), (24, 3, 3, 3), {"pads": [0, 2, 1, 0], "strides": [2, 1], "dilations": [2, 1]}, "stem"),
    ((1, 1, 30, 30), (8, 1, 5, 5), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, "stem"),
    ((1, 3, 40, 40), (96, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, "xla"),
    ((1, 3, 40, 40), (16, 3, 4, 4), {"strides": [4, 4]}, "xla"),
], ids=["12x12", "13x13", "strided-to-12x12", "asymmetric-pads", "2x2-stride-2", "same-lower", "1x1-strided",
        "winograd-24x24", "winograd-odd-map-batch-2", "winograd-asymmetric-pads", "winograd-same-upper",
        "32-channels-24x24",
        "24x24-strided", "dilated", "grouped", "5x5", "1x7-batch-2", "7x1-uneven-pads-strided",
        "stem", "stem-odd-map-batch-2", "stem-dilated-asymmetric-pads", "stem-5x5-same-upper",
        "stem-96-channels", "stem-4x4-patches"])
def test_dense_convolution_form_matches_onnxruntime(dots_only, x_shape, w_shape, attrs, form):
    """Each form of the generated code (weights as arguments or folded, ONNX-layout or prepared HWIO
    weights) against onnxruntime; the convolution is one dot over gathered windows exactly where
    ``_conv_as_dot`` says so, Winograd's tiles where ``_conv_as_winograd`` does, the windows side by
    side where ``_conv_as_stem_dot`` does, else XLA's."""
    model = _conv_model(x_shape, w_shape, **attrs)
    x = np.random.default_rng(3).standard_normal(x_shape).astype(np.float32)
    expected = run_onnx(model, [x])[0]
    generated = generate_module(model)
    params = generated.params
    prepared = generated.prepare(params)
    assert generated.forward.__globals__["XLA_COMPILER_OPTIONS"] == {YNN_FUSION_TYPE: YNN_DOTS_AND_CONVOLUTIONS, **LEVEL}
    for primitives in (jaxpr_text(generated.forward, params, x),
                       jaxpr_text(generated.forward_prepared, prepared, x)):
        assert ("conv_general_dilated" in primitives) == (form == "xla"), primitives
        assert ("gather" in primitives) == (form == "dot"), primitives
        assert ("concatenate" in primitives) == (form == "stem"), primitives
    for got in outputs_in_every_form(generated, x):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_small_convolution_stays_xla_s_where_ynnpack_runs_convolutions():
    """A model under the weights threshold has YNNPACK run its convolutions (each alone) and keeps
    lax.conv (the dot form was slower under XLA's default fusion: DenseNet-121)."""
    model = _conv_model((1, 16, 12, 12), (24, 16, 3, 3), pads=[1, 1, 1, 1])
    generated = generate_module(model)
    assert generated.forward.__globals__["XLA_COMPILER_OPTIONS"] == CONVOLUTIONS
    x = np.random.default_rng(5).standard_normal((1, 16, 12, 12)).astype(np.float32)
    assert "conv_general_dilated" in jaxpr_text(generated.forward, generated.params, x)
    got = wb.jit_forward(generated.forward, generated.params)(x)
    np.testing.assert_allclose(np.asarray(got), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-4)


@pytest.fixture
def ynn_off(monkeypatch):
    """Every model gets the options of a model with depthwise convolutions: YNNPACK fusing nothing."""
    monkeypatch.setattr(generator, "choose_compiler_options", lambda graph: {YNN_FUSION_TYPE: YNN_NONE})


def test_stem_as_one_dot_with_ynnpack_off(ynn_off):
    """YNNPACK off (the depthwise-separable models): the stem is one dot, matching onnxruntime in
    every jit form; XLA's default fusion keeps XLA's convolution (YNNPACK runs it faster there)."""
    model = _conv_model((1, 3, 30, 30), (16, 3, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2])
    x = np.random.default_rng(8).standard_normal((1, 3, 30, 30)).astype(np.float32)
    generated = generate_module(model)
    assert generated.forward.__globals__["XLA_COMPILER_OPTIONS"] == {YNN_FUSION_TYPE: YNN_NONE}
    primitives = jaxpr_text(generated.forward, generated.params, x)
    assert "conv_general_dilated" not in primitives and "concatenate" in primitives, primitives
    expected = run_onnx(model, [x])[0]
    for got in (generated.forward(generated.params, x), wb.jit_forward(generated.forward, generated.params)(x)):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def test_stem_stays_xla_s_where_ynnpack_runs_convolutions():
    model = _conv_model((1, 3, 30, 30), (16, 3, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2])
    generated = generate_module(model)
    assert generated.forward.__globals__["XLA_COMPILER_OPTIONS"] == CONVOLUTIONS
    x = np.random.default_rng(9).standard_normal((1, 3, 30, 30)).astype(np.float32)
    assert "conv_general_dilated" in jaxpr_text(generated.forward, generated.params, x)


def _check_float16_and_gradient(forward, params, x) -> None:
    """``forward`` of a 3x3, pad-1 convolution model computes float16 as XLA's convolution does
    (products summed in float32, rounded once), and its gradient w.r.t. the ONNX-layout weights
    equals the gradient of XLA's convolution."""
    half = {k: v.astype(np.float16) for k, v in params.items()}
    got16 = np.asarray(jax.jit(forward)(half, x.astype(np.float16)))
    assert got16.dtype == np.float16
    want16 = jax.lax.conv_general_dilated(
        x.astype(np.float16), half["w"], (1, 1), [(1, 1), (1, 1)], preferred_element_type=np.float32
    ).astype(np.float16) + half["b"][None, :, None, None]
    np.testing.assert_allclose(got16.astype(np.float32), np.asarray(want16, np.float32), rtol=2e-3, atol=2e-2)

    def reference(p):
        y = jax.lax.conv_general_dilated(x, p["w"], (1, 1), [(1, 1), (1, 1)]) + p["b"][None, :, None, None]
        return (jnp.tanh(y) ** 2).sum()

    got = jax.grad(lambda p: (jnp.tanh(forward(p, x)) ** 2).sum())(params)
    want = jax.grad(reference)(params)
    for name in ("w", "b"):
        # float32 rounding of sums over every output position, relative to the gradient's scale: the two
        # programs sum in different orders (on an AMD EPYC one of 9,216 weight-gradient elements came
        # 1.3e-4 apart, on gradients of order 1 to 3)
        scale = float(np.abs(np.asarray(want[name])).max())
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]), rtol=1e-4, atol=1e-4 * scale)


def test_convolution_as_one_dot_in_float16_and_its_gradient(dots_only):
    """The dot form in float16 and its gradient (through the gather) against XLA's convolution."""
    model = _conv_model((1, 8, 6, 6), (16, 8, 3, 3), pads=[1, 1, 1, 1])
    forward, params = wb.to_jax(model)
    x = np.random.default_rng(4).standard_normal((1, 8, 6, 6)).astype(np.float32)
    assert "conv_general_dilated" not in jaxpr_text(forward, params, x)
    _check_float16_and_gradient(forward, params, x)


def test_stem_as_one_dot_in_float16_and_its_gradient(ynn_off):
    """The stem's dot in float16 and its gradient (through the windows) against XLA's convolution."""
    model = _conv_model((1, 3, 14, 14), (16, 3, 3, 3), pads=[1, 1, 1, 1])
    forward, params = wb.to_jax(model)
    x = np.random.default_rng(7).standard_normal((1, 3, 14, 14)).astype(np.float32)
    primitives = jaxpr_text(forward, params, x)
    assert "conv_general_dilated" not in primitives and "concatenate" in primitives, primitives
    _check_float16_and_gradient(forward, params, x)


def test_winograd_convolution_in_float16_and_its_gradient(dots_only):
    """Winograd's form in float16 and its gradient (through the transforms, to the ONNX-layout
    weight) against XLA's convolution."""
    model = _conv_model((1, 64, 14, 14), (16, 64, 3, 3), pads=[1, 1, 1, 1])
    forward, params = wb.to_jax(model)
    x = np.random.default_rng(6).standard_normal((1, 64, 14, 14)).astype(np.float32)
    primitives = jaxpr_text(forward, params, x)
    assert "conv_general_dilated" not in primitives and "gather" not in primitives, primitives
    _check_float16_and_gradient(forward, params, x)


@pytest.mark.parametrize("x_shape", [(1, 64, 24, 24), (2, 64, 13, 15)], ids=["24x24", "odd-map-batch-2"])
def test_winograd_output_transform_is_one_kernel(dots_only, x_shape):
    """A Winograd layer + Relu against onnxruntime, compiled as YNNPACK's dots and four kernels of XLA's:
    the input's layout transpose with the padding, the input transform's two axes, and the output
    transform with the Relu and the transpose back to NCHW. Applied one axis at a time, the output
    transform was one kernel more (``subtract_concatenate_fusion``); Inception v3 had 6 such."""
    model = _conv_model(x_shape, (8, x_shape[1], 3, 3), pads=[1, 1, 1, 1])
    relu = helper.make_node("Relu", ["y"], ["z"])
    model.graph.node.append(relu)
    model.graph.output[0].name = "z"
    x = np.random.default_rng(10).standard_normal(x_shape).astype(np.float32)
    generated = generate_module(model)
    assert "conv_general_dilated" not in jaxpr_text(generated.forward, generated.params, x)
    jitted = wb.jit_forward(generated.forward, generated.params)
    np.testing.assert_allclose(np.asarray(jitted(x)), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-4)
    kernels = {kind: distinct for kind, distinct, _ in kernel_table(jitted.lower(x).compile().as_text())
               if not kind.startswith("ynn")}
    assert sum(kernels.values()) == 4, kernels


@pytest.mark.parametrize("size, kernel, stride, dilation, padding, live", [
    (6, 3, 1, 12, (12, 12), (1, 1, (0, 0))),  # DeepLabv3's ASPP at 96x96: the centre tap only
    (6, 3, 1, 36, (36, 36), (1, 1, (0, 0))),
    (2, 7, 1, 1, (3, 3), (2, 4, (1, 1))),  # ConvNeXt's 7x7 on a 2x2 map
    (6, 5, 1, 2, (4, 4), None),  # MobileNet v3's dilated 5x5 on 6x6: every tap reads input
    (6, 3, 1, 12, (12, 0), None),  # the output map is empty: nothing to trim
    (6, 3, 1, 8, (0, 16), (0, 0, (0, 0))),  # the last two taps read only the end padding
    (4, 3, 2, 5, (5, 5), (1, 1, (0, 0))),
])
def test_live_taps(size, kernel, stride, dilation, padding, live):
    assert _live_taps(size, kernel, stride, dilation, padding) == live


@pytest.mark.parametrize("x_shape, w_shape, attrs, large", [
    ((1, 16, 6, 6), (8, 16, 3, 3), {"pads": [12, 12, 12, 12], "dilations": [12, 12]}, True),
    ((1, 16, 6, 6), (8, 16, 3, 3), {"pads": [24, 24, 24, 24], "dilations": [24, 24]}, False),
    ((2, 8, 5, 7), (6, 8, 3, 3), {"pads": [6, 1, 6, 1], "dilations": [6, 1]}, True),
    ((1, 8, 6, 6), (6, 8, 3, 3), {"pads": [0, 0, 16, 16], "dilations": [8, 8]}, False),
    ((1, 8, 7, 7), (6, 8, 3, 3), {"pads": [5, 5, 5, 5], "dilations": [5, 5], "strides": [2, 2]}, True),
    ((1, 6, 2, 2), (6, 1, 7, 7), {"pads": [3, 3, 3, 3], "group": 6}, True),
    ((1, 6, 2, 2), (6, 1, 7, 7), {"pads": [3, 3, 3, 3], "group": 6}, False),
    ((1, 6, 2, 3), (4, 3, 5, 5), {"pads": [2, 2, 2, 2], "group": 2}, False),
], ids=["aspp-12", "aspp-24-default-fusion", "one-axis", "end-padding", "strided", "depthwise-7x7-on-2x2",
        "depthwise-default-fusion", "grouped"])
def test_convolution_without_its_padding_only_taps_matches_onnxruntime(monkeypatch, x_shape, w_shape, attrs, large):
    """Dropping the taps that read only padding (``_live_taps``) keeps every value and the gradient
    (zero for the dropped taps' weights); the ASPP case is a 1x1 convolution, one dot."""
    if large:
        monkeypatch.setattr(jit_options, "MIN_WEIGHTS", 0)
    model = _conv_model(x_shape, w_shape, **attrs)
    x = np.random.default_rng(7).standard_normal(x_shape).astype(np.float32)
    expected = run_onnx(model, [x])[0]
    generated = generate_module(model)
    params = generated.params
    prepared = generated.prepare(params)
    for got in (
        generated.forward(params, x),
        jax.jit(generated.forward)(params, x),
        wb.jit_forward(generated.forward, params)(x),
        wb.jit_forward(generated.forward_prepared)(prepared, x),
    ):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)
    if attrs.get("dilations") == [12, 12]:
        primitives = jaxpr_text(generated.forward, params, x)
        assert "conv_general_dilated" not in primitives and "gather" not in primitives, primitives
    group, dilations = attrs.get("group", 1), attrs.get("dilations", [1, 1])
    pads, strides = attrs["pads"], attrs.get("strides", [1, 1])

    def reference(p):  # XLA's convolution with every tap
        y = jax.lax.conv_general_dilated(x, p["w"], strides, [(pads[0], pads[2]), (pads[1], pads[3])],
                                         rhs_dilation=dilations, feature_group_count=group)
        return (jnp.tanh(y + p["b"][None, :, None, None]) ** 2).sum()

    got = jax.grad(lambda p: (jnp.tanh(generated.forward(p, x)) ** 2).sum())(params)
    want = jax.grad(reference)(params)
    for name in ("w", "b"):
        # float32 rounding of sums over every output position, relative to the gradient's scale: the two
        # programs sum in different orders (on an AMD EPYC one of 9,216 weight-gradient elements came
        # 1.3e-4 apart, on gradients of order 1 to 3)
        scale = float(np.abs(np.asarray(want[name])).max())
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]), rtol=1e-4, atol=1e-4 * scale)
