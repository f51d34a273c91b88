"""5x5 depthwise convolutions with their taps written out (``_conv(..., depthwise_taps=True)``) or looped over.

The generator writes a channels-last, undilated depthwise convolution of 10-25 taps out as one sum
where XLA computes it once, and keeps ``_depthwise_conv_nhwc``'s loop where a Relu or Clip of it (or the
convolution itself) is read by two nodes, which XLA would each give their own copy of the taps
(``_depthwise_taps_written_out``; docs/onnx_to_jax_corpus.md, "5x5 depthwise taps written out where XLA
fuses them once"). Each block below is checked against onnxruntime in every way the generated code is
called, and for the form it was written in.
"""

from __future__ import annotations

import jax
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.support.generated_forms import outputs_in_every_form
from tests.support.harness import run_onnx
from workbench.onnx_to_jax.api import generate_module

CHANNELS = 8


def _block(tail: str, x_shape=(1, 4, 13, 11), kernel=(5, 5), **conv_attrs) -> onnx.ModelProto:
    """A 1x1 expansion to CHANNELS, a depthwise convolution of ``kernel``, and ``tail`` after it:
    ``relu`` (then a 1x1 projection: MNASNet), ``silu_se`` (SiLU, then squeeze-excitation's mean and
    scaling and a projection: EfficientNet), ``relu_se`` (the same after a Relu: MobileNet-v3-large),
    ``hardswish_se`` (MobileNet-v3), or ``plain_se`` (no activation)."""
    rng = np.random.default_rng(0)
    given = "pads" in conv_attrs or "auto_pad" in conv_attrs
    attrs = conv_attrs if given else {"pads": [k // 2 for k in kernel] * 2, **conv_attrs}

    def weight(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    inits = [weight("we", (CHANNELS, x_shape[1], 1, 1)), weight("be", (CHANNELS,)),
             weight("wd", (CHANNELS, 1, *kernel)), weight("bd", (CHANNELS,)), weight("wp", (6, CHANNELS, 1, 1))]
    nodes = [helper.make_node("Conv", ["x", "we", "be"], ["e"]),
             helper.make_node("Conv", ["e", "wd", "bd"], ["d"], group=CHANNELS, kernel_shape=list(kernel), **attrs)]
    if tail == "relu":
        nodes += [helper.make_node("Relu", ["d"], ["a"])]
    elif tail == "relu_se":
        nodes += [helper.make_node("Relu", ["d"], ["a0"])]
    elif tail == "silu_se":
        nodes += [helper.make_node("Sigmoid", ["d"], ["s"]), helper.make_node("Mul", ["d", "s"], ["a0"])]
    elif tail == "hardswish_se":
        nodes += [helper.make_node("HardSwish", ["d"], ["a0"])]
    if tail.endswith("_se"):
        source = "d" if tail == "plain_se" else "a0"
        nodes += [helper.make_node("GlobalAveragePool", [source], ["m"]),
                  helper.make_node("Sigmoid", ["m"], ["g"]),
                  helper.make_node("Mul", [source, "g"], ["a"])]
    nodes.append(helper.make_node("Conv", ["a", "wp"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _check(model: onnx.ModelProto, written_out: bool) -> None:
    generated = generate_module(model)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    assert ("depthwise_taps=True" in generated.source) == written_out
    primitives = str(jax.make_jaxpr(generated.forward)(generated.params, x))
    looped = "while[" in primitives or "scan[" in primitives  # fori_loop with static bounds traces to scan
    assert looped == (not written_out), primitives
    expected = run_onnx(model, [x])[0]
    for got in outputs_in_every_form(generated, x):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tail, written_out", [
    ("relu", True), ("silu_se", True), ("hardswish_se", True), ("relu_se", False), ("plain_se", False),
])
def test_5x5_taps_written_out_where_computed_once(tail, written_out):
    _check(_block(tail), written_out)


@pytest.mark.parametrize("x_shape, kernel, attrs", [
    ((1, 4, 13, 11), (5, 5), {"strides": [2, 2]}),
    ((2, 4, 10, 9), (5, 5), {"auto_pad": "SAME_UPPER", "strides": [2, 1]}),
    ((1, 4, 9, 12), (3, 5), {"pads": [0, 2, 2, 1]}),
    ((1, 4, 3, 3), (5, 5), {}),  # every tap reads padding somewhere; the corner ones read the map once
    ((1, 4, 1, 1), (5, 5), {}),  # taps that read only padding add zeros
], ids=["strided", "same-upper-batch-2", "3x5-uneven-pads", "3x3-map", "1x1-map"])
def test_5x5_taps_written_out_match_onnxruntime(x_shape, kernel, attrs):
    _check(_block("relu", x_shape, kernel, **attrs), written_out=True)


@pytest.mark.parametrize("kernel, attrs", [((5, 5), {"dilations": [2, 2], "pads": [4, 4, 4, 4]}), ((7, 7), {})],
                         ids=["dilated", "7x7"])
def test_dilated_and_larger_kernels_keep_the_loop(kernel, attrs):
    _check(_block("relu", (1, 4, 12, 12), kernel, **attrs), written_out=False)
