"""Convolution results held channels-first while lowering (workbench/jax_to_onnx/relaid.py).

A channels-last CNN (convolution blocks, a max pool, residual adds, relus, a global mean, a dense head) is
lowered without the layout Transposes the channel-layout pass used to cancel: only the input's Transpose
is made, and the pass finds nothing to move. Readers that need the jaxpr's layout (a graph output, a
reshape, an add of a graph input, a per-channel constant) get one Transpose of the held value. Every export
is checked by onnx's checker, compared with JAX in onnxruntime (static and symbolic batch), and with the
export made without convolution blocks (lowered equation by equation, laid out by the pass): the same
interface, the same numbers, no more nodes.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from jax import lax

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax, concrete_inputs, run_onnx
from workbench.jax_to_onnx import block_plan, program
from workbench.jax_to_onnx.passes import layout

_RNG = np.random.default_rng(0)
_C = 8
_NHWC = ("NHWC", "HWIO", "NHWC")


def _random(*shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return _RNG.uniform(low, high, shape).astype(np.float32)


_STEM = _random(3, 3, 3, _C) / 3
_KERNELS = [_random(3, 3, _C, _C) / 8 for _ in range(4)]
_SCALES = [_random(_C, low=0.5, high=1.5) for _ in range(5)]
_SHIFTS = [_random(_C) for _ in range(5)]
_HEAD = _random(_C, 5)
_HEAD_BIAS = _random(5)


def _conv(x: jax.Array, kernel: np.ndarray, layer: int, *, relu: bool) -> jax.Array:
    """A convolution, a per-channel affine of constants (an inference BatchNorm), maybe ``jax.nn.relu``."""
    y = lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_NHWC)
    y = y * _SCALES[layer] + _SHIFTS[layer]
    return jax.nn.relu(y) if relu else y


def _max_pool(x: jax.Array) -> jax.Array:
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _resnet(x: jax.Array) -> jax.Array:
    """Stem, max pool, two residual blocks, global mean, dense head: the zoo ResNet's shape."""
    h = _max_pool(_conv(x, _STEM, 0, relu=True))
    for block in range(2):
        inner = _conv(h, _KERNELS[2 * block], 1 + 2 * block, relu=True)
        h = jax.nn.relu(h + _conv(inner, _KERNELS[2 * block + 1], 2 + 2 * block, relu=False))
    return h.mean(axis=(1, 2)) @ _HEAD + _HEAD_BIAS


def _feature_map_out(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A held value that is a graph output and the input of another convolution."""
    y = _conv(x, _STEM, 0, relu=True)
    return y, _conv(y, _KERNELS[0], 1, relu=False)


def _flattened(x: jax.Array) -> jax.Array:
    """A held value read by a convolution and by a reshape (which needs the jaxpr's layout)."""
    y = _conv(x, _STEM, 0, relu=True)
    z = _conv(y, _KERNELS[0], 1, relu=True)
    return (y.reshape(y.shape[0], -1) + z.reshape(z.shape[0], -1)).sum(axis=1)


def _input_residual(x: jax.Array) -> jax.Array:
    """An add of a held value and a value in the jaxpr's layout (the input), then a per-channel constant."""
    y = _conv(x, _KERNELS[0], 1, relu=True) + x
    return _conv(y * _SCALES[4], _KERNELS[1], 2, relu=False) - _SHIFTS[4]


def _avg_pool_tanh(x: jax.Array) -> jax.Array:
    """An average pool (a window sum, then a division by a scalar) and element-wise ops on the held value."""
    y = _conv(x, _STEM, 0, relu=True)
    pooled = lax.reduce_window(y, 0.0, lax.add, (1, 3, 3, 1), (1, 2, 2, 1), "SAME") / 9.0
    return _conv(jnp.tanh(pooled) * 2.0, _KERNELS[0], 1, relu=False)


CASES = [
    # (id, callable, input spec, the Transposes lowered when only the input's and the output's are made, or None)
    ("resnet", _resnet, ("B", 16, 16, 3), 1),
    ("feature_map_out", _feature_map_out, ("B", 8, 8, 3), None),
    ("flattened", _flattened, ("B", 6, 6, 3), None),
    ("input_residual", _input_residual, ("B", 6, 6, _C), None),
    ("avg_pool_tanh", _avg_pool_tanh, ("B", 9, 9, 3), 2),  # the output is a feature map
]


def _lowered_ops(monkeypatch: pytest.MonkeyPatch, fn, specs) -> tuple[onnx.ModelProto, collections.Counter, int]:
    """The export, the op types of the graph the lowering made (before the passes), and how many Transposes the
    channel-layout pass moved."""
    seen: dict[str, object] = {}
    run_passes, sink = program.run_passes, layout.sink_channel_transposes

    def recording_passes(model, **options):
        seen["ops"] = collections.Counter(node.op_type for node in model.graph)
        return run_passes(model, **options)

    def recording_sink(graph):
        seen["moved"] = sink(graph)
        return seen["moved"]

    with monkeypatch.context() as patch:
        patch.setattr(program, "run_passes", recording_passes)
        patch.setattr("workbench.jax_to_onnx.passes.sink_channel_transposes", recording_sink)
        model = wb.convert(fn, specs).model
    return model, seen["ops"], seen["moved"]


def _without_conv_blocks(monkeypatch: pytest.MonkeyPatch, fn, specs) -> onnx.ModelProto:
    with monkeypatch.context() as patch:
        patch.delitem(block_plan._RECOGNISERS, "conv_general_dilated")
        return wb.convert(fn, specs).model


@pytest.mark.parametrize("symbolic", [False, True], ids=["static", "symbolic"])
@pytest.mark.parametrize(("fn", "spec", "transposes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_held_layout_export_matches_jax_and_the_pass(monkeypatch, fn, spec, transposes, symbolic):
    specs = [spec if symbolic else tuple(2 if d == "B" else d for d in spec)]
    model, lowered, moved = _lowered_ops(monkeypatch, fn, specs)
    assert_graph_quality(model)
    inputs = concrete_inputs(specs, sizes={"B": 3})
    assert_matches_jax(fn, model, inputs, rtol=1e-4, atol=1e-4)
    final = collections.Counter(node.op_type for node in model.graph.node)
    if transposes is not None:
        assert lowered["Transpose"] == transposes and final["Transpose"] == transposes, (lowered, final)
        assert moved == 0
    reference = _without_conv_blocks(monkeypatch, fn, specs)
    assert [(i.name, i.type) for i in model.graph.input] == [(i.name, i.type) for i in reference.graph.input]
    assert [(o.name, o.type) for o in model.graph.output] == [(o.name, o.type) for o in reference.graph.output]
    assert len(model.graph.node) <= len(reference.graph.node)
    assert final["Transpose"] <= collections.Counter(node.op_type for node in reference.graph.node)["Transpose"]
    for ours, theirs in zip(run_onnx(model, inputs), run_onnx(reference, inputs), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_resnet_lowers_to_its_final_graph(monkeypatch):
    """The ResNet's feature maps are lowered as exported: the passes add and move no Transpose and change no
    convolution, pool, relu or mean (only the head's MatMul and bias add become a Gemm)."""
    model, lowered, moved = _lowered_ops(monkeypatch, _resnet, [(2, 16, 16, 3)])
    final = collections.Counter(node.op_type for node in model.graph.node)
    body = ("Conv", "Relu", "Transpose", "MaxPool", "ReduceMean")
    assert {op: lowered[op] for op in body} == {op: final[op] for op in body} == {
        "Conv": 5, "Relu": 5, "Transpose": 1, "MaxPool": 1, "ReduceMean": 1}
    assert lowered["Add"] == 3 and final["Add"] == 2 and final["Gemm"] == 1  # the residual adds and the head's
    assert moved == 0


def test_held_values_are_located_against_jax():
    """The held values are recorded as the JAX values they hold transposed: the divergence locator compares
    them (and finds nothing diverging)."""
    conversion = wb.convert(_resnet, [(2, 16, 16, 3)])
    held = {name for name, perm in conversion.layouts.items() if perm == [0, 2, 3, 1]}
    produced = {output for node in conversion.model.graph.node for output in node.output}
    assert len(held) >= 8 and held <= produced
    report = conversion.locate_divergence(concrete_inputs([(2, 16, 16, 3)]))
    assert report.ok
    compared = {output for node in report.nodes if node.compared for output in node.outputs}
    assert held <= compared
