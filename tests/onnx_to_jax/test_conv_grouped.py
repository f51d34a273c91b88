"""Grouped convolutions of a few channels per group with their groups merged, against onnxruntime.

In channels-last code whose convolutions YNNPACK runs (XLA's default fusion, or each convolution alone: the
small models with convolutions, jit_options.py), a grouped convolution of
2 to 8 input channels per group runs with neighbouring groups merged into one (block-diagonal weight,
``_merged_group_weight``): all of them (a dense convolution) for 8 groups or fewer, pairs for an even
number of more (``_group_merge``; RegNet's grouped 3x3 layers, docs/onnx_to_jax_corpus.md). Checked:
the group count XLA's convolution gets, the outputs in every jit form against onnxruntime (odd maps,
asymmetric and SAME pads, strides, dilation, batch 2, groups wider out than in), float16 and the
gradient against XLA's grouped convolution, and the other options' code left as it was.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.generated_forms import jaxpr_text, outputs_in_every_form
from tests.support.harness import run_onnx
from workbench.onnx_to_jax import generator, jit_options
from workbench.onnx_to_jax.api import generate_module
from workbench.onnx_to_jax.emitters.grouped import _group_merge
from workbench.onnx_to_jax.jit_options import YNN_CONVOLUTIONS_ONLY, YNN_FUSION_TYPE, YNN_NONE


def _grouped_model(x_shape, w_shape, group, **attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(w_shape[0]).astype(np.float32), "b")]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=group, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _group_counts(primitives: str) -> list[int]:
    """The ``feature_group_count`` of every convolution in a jaxpr's text."""
    return [int(n) for n in re.findall(r"feature_group_count=(\d+)", primitives)]


def test_group_merge_rule():
    assert _group_merge(6, 8) == 6  # RegNetY-400MF's 48-channel layer: dense
    assert _group_merge(8, 2) == 8
    assert _group_merge(26, 8) == 2 and _group_merge(13, 8) == 1 and _group_merge(55, 8) == 1
    assert _group_merge(4, 16) == 1 and _group_merge(4, 1) == 1 and _group_merge(1, 8) == 1


@pytest.mark.parametrize("x_shape, w_shape, group, attrs, groups_after", [
    ((1, 48, 48, 48), (48, 8, 3, 3), 6, {"pads": [1, 1, 1, 1], "strides": [2, 2]}, 1),
    ((2, 16, 13, 11), (16, 8, 3, 3), 2, {"pads": [0, 1, 2, 1], "strides": [2, 1]}, 1),
    ((1, 32, 9, 10), (32, 8, 3, 3), 4, {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 1),
    ((1, 32, 9, 10), (32, 8, 3, 3), 4, {"pads": [2, 1, 2, 2], "dilations": [2, 2]}, 1),
    ((1, 16, 7, 7), (32, 8, 3, 3), 2, {"pads": [1, 1, 1, 1]}, 1),
    ((2, 80, 9, 9), (80, 8, 3, 3), 10, {"pads": [1, 1, 1, 1]}, 5),
    ((1, 208, 6, 6), (208, 8, 3, 3), 26, {"pads": [1, 1, 1, 1]}, 13),
    ((1, 72, 7, 7), (72, 8, 3, 3), 9, {"pads": [1, 1, 1, 1]}, 9),
    ((1, 64, 8, 8), (64, 16, 3, 3), 4, {"pads": [1, 1, 1, 1]}, 4),
], ids=["regnet-6-groups-strided", "odd-map-batch-2-asymmetric-pads", "same-upper-strided", "dilated", "wider-out",
        "pairs-batch-2", "regnet-26-groups", "odd-group-count", "16-per-group"])
def test_grouped_convolution_matches_onnxruntime(x_shape, w_shape, group, attrs, groups_after):
    """Each jit form against onnxruntime; XLA's convolution gets ``groups_after`` groups."""
    model = _grouped_model(x_shape, w_shape, group, **attrs)
    x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32)
    expected = run_onnx(model, [x])[0]
    generated = generate_module(model)
    assert generated.forward.__globals__["XLA_COMPILER_OPTIONS"][YNN_FUSION_TYPE] == YNN_CONVOLUTIONS_ONLY
    prepared = generated.prepare(generated.params)
    for primitives in (jaxpr_text(generated.forward, generated.params, x),
                       jaxpr_text(generated.forward_prepared, prepared, x)):
        assert _group_counts(primitives) == [groups_after], primitives
    for got in outputs_in_every_form(generated, x):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_merged_groups_in_float16_and_their_gradient():
    """Float16 as XLA's grouped convolution computes it, and the gradient through the block-diagonal
    weight to the ONNX-layout one (zeros added nowhere) against XLA's grouped convolution's."""
    model = _grouped_model((2, 24, 9, 7), (24, 8, 3, 3), 3, pads=[1, 1, 1, 1])
    forward, params = wb.to_jax(model)
    x = np.random.default_rng(2).standard_normal((2, 24, 9, 7)).astype(np.float32)
    assert _group_counts(jaxpr_text(forward, params, x)) == [1]

    def grouped(p, x):
        y = jax.lax.conv_general_dilated(x, p["w"], (1, 1), [(1, 1), (1, 1)], feature_group_count=3,
                                         preferred_element_type=np.float32)
        return y.astype(x.dtype) + p["b"][None, :, None, None]

    half = {k: v.astype(np.float16) for k, v in params.items()}
    got16 = np.asarray(jax.jit(forward)(half, x.astype(np.float16)))
    assert got16.dtype == np.float16
    want16 = np.asarray(grouped(half, x.astype(np.float16)), np.float32)
    np.testing.assert_allclose(got16.astype(np.float32), want16, rtol=2e-3, atol=2e-2)
    got = jax.grad(lambda p: (jnp.tanh(forward(p, x)) ** 2).sum())(params)
    want = jax.grad(lambda p: (jnp.tanh(grouped(p, x)) ** 2).sum())(params)
    for name in ("w", "b"):
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options", ["dots-only", "off"])
def test_groups_stay_under_the_other_options(monkeypatch, options):
    """Where XLA's own kernel runs the convolutions (YNNPACK fusing dots only or nothing), or YNNPACK
    runs them beside its dots (a large CNN's options: ``dots-only`` here), unmeasured there, the
    grouped convolution keeps its groups."""
    if options == "dots-only":
        monkeypatch.setattr(jit_options, "MIN_WEIGHTS", 0)
    else:
        monkeypatch.setattr(generator, "choose_compiler_options", lambda graph: {YNN_FUSION_TYPE: YNN_NONE})
    model = _grouped_model((1, 48, 12, 12), (48, 8, 3, 3), 6, pads=[1, 1, 1, 1])
    x = np.random.default_rng(3).standard_normal((1, 48, 12, 12)).astype(np.float32)
    generated = generate_module(model)
    assert YNN_FUSION_TYPE in generated.forward.__globals__["XLA_COMPILER_OPTIONS"]
    assert _group_counts(jaxpr_text(generated.forward, generated.params, x)) == [6]
    got = wb.jit_forward(generated.forward, generated.params)(x)
    np.testing.assert_allclose(np.asarray(got), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-4)


def test_groups_merged_under_xla_s_default_fusion_too(monkeypatch):
    """XLA's default fusion (a model of no chosen YNNPACK option) also has YNNPACK run the convolutions."""
    monkeypatch.setattr(generator, "choose_compiler_options", lambda graph: {})
    model = _grouped_model((1, 48, 12, 12), (48, 8, 3, 3), 6, pads=[1, 1, 1, 1])
    x = np.random.default_rng(4).standard_normal((1, 48, 12, 12)).astype(np.float32)
    generated = generate_module(model)
    assert generated.forward.__globals__["XLA_COMPILER_OPTIONS"] == {}
    assert _group_counts(jaxpr_text(generated.forward, generated.params, x)) == [1]
    got = wb.jit_forward(generated.forward, generated.params)(x)
    np.testing.assert_allclose(np.asarray(got), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-4)
