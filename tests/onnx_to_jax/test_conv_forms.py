"""Convolutions the generator writes in another form than lax.conv_general_dilated, against onnxruntime.

Depthwise convolutions (group = channels) become a sum of k^2 shifted products (XLA CPU's grouped
convolution is far slower); 1x1 convolutions become a matmul over channels.
"""

from __future__ import annotations

import jax
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import run_onnx


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
