"""Wide 3x3 convolutions (256 input channels or more, 144 output positions or more, dilated or not) in
models compiled with YNNPACK dots only, against onnxruntime: FCN-ResNet50's dilated backbone and head.

``_conv_wide_form`` (workbench/onnx_to_jax/emitters/conv_wide.py) picks Winograd's F(2x2, 3x3) (a
dilated convolution on its input's interleaved grids, ``_space_to_batch_conv``) or one dot per tap over
the outputs that tap reads input for (``_conv_live_taps``), whichever multiplies fewer rows; narrower
or smaller convolutions keep their forms (tests/onnx_to_jax/test_conv_forms.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.support.generated_forms import jaxpr_text, outputs_in_every_form
from tests.support.harness import run_onnx
from workbench.onnx_to_jax import jit_options
from workbench.onnx_to_jax.api import generate_module
from workbench.onnx_to_jax.emitters.conv_wide import _conv_wide_form, _tap_rows
from workbench.onnx_to_jax.emitters.conv import _winograd_weight
from workbench.onnx_to_jax.jit_options import LLVM_LEVEL, LLVM_LEVEL_CHOSEN, YNN_DOTS_AND_CONVOLUTIONS, YNN_FUSION_TYPE


@pytest.fixture
def dots_only(monkeypatch):
    """Every model counts as large: a CNN without MatMul layers gets YNNPACK's dots and each
    convolution alone, and the dot forms of the dots-only code (jit_options.py)."""
    monkeypatch.setattr(jit_options, "MIN_WEIGHTS", 0)


def _conv_model(x_shape, w_shape, seed=0, **attrs) -> onnx.ModelProto:
    """Conv + Relu with weights scaled to unit output variance (so a float32 tolerance means something)."""
    rng = np.random.default_rng(seed)
    fan_in = int(np.prod(w_shape[1:]))
    inits = [numpy_helper.from_array((rng.standard_normal(w_shape) / np.sqrt(fan_in)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(w_shape[0]).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("x_shape, out_channels, attrs, form", [
    ((1, 256, 12, 12), 64, {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, "winograd"),
    ((1, 256, 12, 12), 64, {"pads": [4, 4, 4, 4], "dilations": [4, 4]}, "live_taps"),
    ((1, 256, 12, 12), 32, {"pads": [1, 1, 1, 1]}, "winograd"),
    ((2, 256, 14, 13), 16, {"pads": [2, 1, 2, 3], "dilations": [2, 3]}, "winograd"),
    ((1, 256, 13, 15), 16, {"pads": [3, 5, 1, 4], "dilations": [3, 5]}, "live_taps"),
    ((1, 256, 12, 13), 16, {"auto_pad": "SAME_UPPER"}, "winograd"),
    ((1, 128, 12, 12), 16, {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, "xla"),
    ((1, 256, 6, 6), 16, {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, "xla"),
    ((1, 256, 12, 12), 16, {"pads": [2, 2, 2, 2], "dilations": [2, 2], "strides": [2, 2]}, "xla"),
], ids=["dilated-2", "dilated-4", "undilated-head", "uneven-dilations-pads-batch-2", "live-taps-uneven",
        "same-upper-odd-map", "128-channels", "6x6-map", "strided"])
def test_wide_convolution_form_matches_onnxruntime(dots_only, x_shape, out_channels, attrs, form):
    """Every jit form (weights eager, traced as arguments, prepared, folded: the weight transforms run
    in numpy for concrete weights, in jnp for traced ones) against onnxruntime; the form is the one
    ``_conv_wide_form`` names: Winograd's batched product, the live taps' nine dots, or XLA's kernel."""
    model = _conv_model(x_shape, (out_channels, x_shape[1], 3, 3), **attrs)
    x = np.random.default_rng(3).standard_normal(x_shape).astype(np.float32)
    expected = run_onnx(model, [x])[0]
    generated = generate_module(model)
    params = generated.params
    prepared = generated.prepare(params)
    assert generated.forward.__globals__["XLA_COMPILER_OPTIONS"] == {
        YNN_FUSION_TYPE: YNN_DOTS_AND_CONVOLUTIONS, LLVM_LEVEL: LLVM_LEVEL_CHOSEN}
    for primitives in (jaxpr_text(generated.forward, params, x),
                       jaxpr_text(generated.forward_prepared, prepared, x)):
        assert ("conv_general_dilated" in primitives) == (form == "xla"), primitives
        assert "gather" not in primitives, primitives  # not the single gathered dot of smaller layers
        dots = primitives.count("dot_general")
        assert dots == {"winograd": 1, "live_taps": 9, "xla": 0}[form], primitives
    for got in outputs_in_every_form(generated, x):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_wide_form_rule_on_fcn_resnet50_shapes():
    """FCN-ResNet50 at 96x96 (12x12 maps): its head and dilation-2 layers take Winograd, its
    dilation-4 layers the live taps; ResNet-50's 3x3 layers keep their forms (128 channels at 12x12,
    36 positions at 6x6, strided)."""
    assert _tap_rows(12, 4, (4, 4)) == [8, 12, 8]
    assert _tap_rows(12, 2, (2, 2)) == [10, 12, 10]
    assert _tap_rows(6, 12, (12, 12)) == [0, 6, 0]
    same = ((1, 1), (1, 1))
    assert _conv_wide_form((12, 12), (3, 3), (1, 1), (1, 1), same, 1, 2048) == "winograd"
    assert _conv_wide_form((12, 12), (3, 3), (1, 1), (2, 2), ((2, 2), (2, 2)), 1, 256) == "winograd"
    assert _conv_wide_form((12, 12), (3, 3), (1, 1), (2, 2), ((2, 2), (2, 2)), 1, 512) == "winograd"
    assert _conv_wide_form((12, 12), (3, 3), (1, 1), (4, 4), ((4, 4), (4, 4)), 1, 512) == "live_taps"
    assert _conv_wide_form((12, 12), (3, 3), (1, 1), (1, 1), same, 1, 128) is None
    assert _conv_wide_form((6, 6), (3, 3), (1, 1), (1, 1), same, 1, 256) is None
    assert _conv_wide_form((24, 24), (3, 3), (2, 2), (1, 1), same, 1, 256) is None
    assert _conv_wide_form((12, 12), (3, 3), (1, 1), (1, 1), same, 2, 512) is None
    assert _conv_wide_form((12, 12), (5, 5), (1, 1), (1, 1), ((2, 2), (2, 2)), 1, 512) is None


def test_winograd_weight_in_numpy_equals_jnp():
    """The folded weights' transform (numpy, one product) and the traced one (jnp, one axis at a time)
    give the same G g G^T, and that is the textbook one."""
    w = np.random.default_rng(4).standard_normal((3, 3, 5, 7)).astype(np.float32)
    folded = _winograd_weight(w, np.float32)
    assert isinstance(folded, np.ndarray) and folded.shape == (4, 4, 5, 7)
    traced = jax.jit(lambda k: _winograd_weight(k, jnp.float32))(w)
    np.testing.assert_allclose(folded, np.asarray(traced), rtol=1e-6, atol=1e-6)
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    np.testing.assert_allclose(folded, np.einsum("aj,bi,ijco->abco", g, g, w.astype(np.float64)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("attrs", [
    {"pads": [2, 2, 2, 2], "dilations": [2, 2]},
    {"pads": [4, 4, 4, 4], "dilations": [4, 4]},
], ids=["winograd-dilated", "live-taps"])
def test_wide_convolution_gradient_equals_xla_s(dots_only, attrs):
    """Gradients through the wide forms w.r.t. the ONNX-layout weights and the input equal those of
    XLA's dilated convolution."""
    model = _conv_model((1, 256, 12, 12), (8, 256, 3, 3), seed=5, **attrs)
    x = np.random.default_rng(6).standard_normal((1, 256, 12, 12)).astype(np.float32)
    generated = generate_module(model)
    params = generated.params
    pad, dilation = attrs["pads"][0], attrs["dilations"][0]

    def reference(p, x):
        y = jax.lax.conv_general_dilated(x, p["w"], (1, 1), [(pad, pad)] * 2, rhs_dilation=(dilation, dilation))
        return (jnp.tanh(jax.nn.relu(y + p["b"][None, :, None, None])) ** 2).sum()

    def loss(p, x):
        return (jnp.tanh(generated.forward(p, x)) ** 2).sum()

    got = jax.grad(loss, argnums=(0, 1))(params, x)
    want = jax.grad(reference, argnums=(0, 1))(params, x)
    for name in ("w", "b"):
        np.testing.assert_allclose(np.asarray(got[0][name]), np.asarray(want[0][name]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-4, atol=1e-4)
