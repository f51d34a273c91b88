"""Convolution + per-channel affine of constants (+ relu) lowered as one Conv (workbench/jax_to_onnx/conv_blocks.py).

Each form (Flax NNX and Linen BatchNorm on running averages, Haiku's BatchNorm with ``is_training=False``,
Equinox's in inference mode, a plain affine of constants, NCHW, grouped, float16) is recognised on the jaxpr,
exported as ``Conv`` [+ ``Relu``] with the BatchNorm folded into the kernel and bias, checked by onnx's checker,
compared with JAX in onnxruntime (static and symbolic batch), and compared with the export made without the
block (lowered equation by equation and folded by the passes): the same outputs, no more nodes, the same
folded kernel and bias to float32 rounding. Blocks whose intermediate values are read elsewhere, whose
statistics are run-time values, or whose kernel another convolution also reads are declined or keep the
shared weight intact.
"""

from __future__ import annotations

import collections

import equinox as eqx
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from flax import linen, nnx
from jax import lax

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax, concrete_inputs, run_onnx
from workbench.jax_to_onnx import block_plan

_RNG = np.random.default_rng(0)


def _random(*shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return _RNG.uniform(low, high, shape).astype(np.float32)


def _trained_nnx_norm(channels: int) -> nnx.BatchNorm:
    """An NNX BatchNorm on running averages, with statistics and parameters as after training."""
    norm = nnx.BatchNorm(channels, use_running_average=True, rngs=nnx.Rngs(0))
    norm.mean[...] = jnp.asarray(_random(channels))
    norm.var[...] = jnp.asarray(_random(channels, low=0.5, high=2.0))
    norm.scale[...] = jnp.asarray(_random(channels, low=0.5, high=1.5))
    norm.bias[...] = jnp.asarray(_random(channels))
    return norm


class _NnxConvNorm(nnx.Module):
    def __init__(self, relu: bool, *, use_bias: bool = False, groups: int = 1, strides: int = 1) -> None:
        self.conv = nnx.Conv(8, 8, (3, 3), strides=strides, feature_group_count=groups, use_bias=use_bias,
                             rngs=nnx.Rngs(1))
        if use_bias:
            self.conv.bias[...] = jnp.asarray(_random(8))
        self.norm = _trained_nnx_norm(8)
        self.relu = relu

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.norm(self.conv(x))
        return nnx.relu(y) if self.relu else y


_LINEN = linen.Sequential([linen.Conv(8, (3, 3), use_bias=False), linen.BatchNorm(use_running_average=True), linen.relu])
_LINEN_VARS = jax.tree_util.tree_map(lambda v: v + 0.1 * jnp.asarray(_RNG.uniform(0.5, 1.0, v.shape).astype(np.float32)),
                                     _LINEN.init(jax.random.key(0), jnp.ones((1, 8, 8, 3))))


def _linen_conv_norm(x: jax.Array) -> jax.Array:
    return _LINEN.apply(_LINEN_VARS, x)


def _haiku_net(x: jax.Array, is_training: bool) -> jax.Array:
    y = hk.Conv2D(8, 3, with_bias=False)(x)
    y = hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)(y, is_training=is_training)
    return jax.nn.relu(y)


_HAIKU = hk.transform_with_state(_haiku_net)
_HAIKU_PARAMS, _HAIKU_STATE = _HAIKU.init(jax.random.key(0), np.ones((1, 8, 8, 3), np.float32), is_training=True)
_HAIKU_STATE = jax.tree_util.tree_map(lambda s: s + jnp.asarray(_RNG.uniform(0.1, 0.5, s.shape).astype(np.float32)), _HAIKU_STATE)
_HAIKU_PARAMS = jax.tree_util.tree_map(lambda p: p + jnp.asarray(_RNG.uniform(-0.2, 0.2, p.shape).astype(np.float32)), _HAIKU_PARAMS)


def _haiku_conv_norm(x: jax.Array) -> jax.Array:
    return _HAIKU.apply(_HAIKU_PARAMS, _HAIKU_STATE, None, x, is_training=False)[0]


_EQX_CONV = eqx.nn.Conv2d(3, 8, 3, padding=1, key=jax.random.key(2))
_EQX_NORM = eqx.nn.BatchNorm(8, axis_name="batch", inference=True, mode="batch")
_EQX_NORM = eqx.tree_at(lambda m: (m.weight, m.bias), _EQX_NORM, (jnp.asarray(_random(8, low=0.5, high=1.5)), jnp.asarray(_random(8))))
_EQX_STATE = eqx.nn.State(_EQX_NORM)


def _equinox_conv_norm(x: jax.Array) -> jax.Array:
    def one(image: jax.Array) -> jax.Array:
        y, _ = _EQX_NORM(_EQX_CONV(image), _EQX_STATE)
        return jax.nn.relu(y)

    return jax.vmap(one, axis_name="batch")(x)


_KERNEL_HWIO = _random(3, 3, 3, 8)
_SCALE, _SHIFT = _random(8, low=0.5, high=2.0), _random(8)
_NCHW = ("NCHW", "OIHW", "NCHW")


def _plain_affine(x: jax.Array) -> jax.Array:
    """A convolution, then ``* scale + shift`` with closed-over per-channel constants, then ``max(y, 0)``."""
    y = lax.conv_general_dilated(x, _KERNEL_HWIO, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.maximum(y * _SCALE + _SHIFT, 0.0)


_KERNEL_OIHW = _random(8, 3, 3, 3)


def _nchw_affine(x: jax.Array) -> jax.Array:
    """NCHW: the per-channel constants broadcast as ``(C, 1, 1)``; a division and a subtraction of the chain."""
    y = lax.conv_general_dilated(x, _KERNEL_OIHW, (2, 2), ((1, 0), (0, 1)), dimension_numbers=_NCHW)
    return (_SHIFT[:, None, None] - y) / _SCALE[:, None, None]


CASES = [
    # (id, callable, input specs, relu expected)
    ("nnx_relu", _NnxConvNorm(True), [("B", 8, 8, 8)], True),
    ("nnx_no_relu", _NnxConvNorm(False), [("B", 8, 8, 8)], False),
    ("nnx_conv_bias_strided", _NnxConvNorm(True, use_bias=True, strides=2), [("B", 9, 9, 8)], True),
    ("nnx_depthwise", _NnxConvNorm(False, groups=8), [("B", 6, 6, 8)], False),
    ("linen", _linen_conv_norm, [("B", 8, 8, 3)], True),
    ("haiku", _haiku_conv_norm, [("B", 8, 8, 3)], True),
    ("equinox_vmap", _equinox_conv_norm, [("B", 3, 8, 8)], True),
    ("plain_affine", _plain_affine, [("B", 7, 7, 3)], True),
    ("nchw_sub_div", _nchw_affine, [("B", 3, 9, 8)], False),
]


def _ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(node.op_type for node in model.graph.node)


def _without_conv_blocks(monkeypatch: pytest.MonkeyPatch, fn, specs) -> onnx.ModelProto:
    with monkeypatch.context() as patch:
        patch.delitem(block_plan._RECOGNISERS, "conv_general_dilated")
        return wb.convert(fn, specs).model


def _conv_parameters(model: onnx.ModelProto) -> list[tuple[np.ndarray, np.ndarray]]:
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return [(initializers[node.input[1]], initializers[node.input[2]]) for node in model.graph.node if node.op_type == "Conv"]


def _static(specs):
    return [tuple(2 if d == "B" else d for d in spec) for spec in specs]


@pytest.mark.parametrize("symbolic", [False, True], ids=["static", "symbolic"])
@pytest.mark.parametrize(("fn", "specs", "relu"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_conv_and_affine_are_lowered_as_one_conv(monkeypatch, fn, specs, relu, symbolic):
    specs = specs if symbolic else _static(specs)
    conversion = wb.convert(fn, specs)
    kinds = [block.kind for block in block_plan.plan_blocks(conversion.traced.closed_jaxpr.jaxpr, 21).values()]
    assert kinds == ["ConvAffine"]
    model = conversion.model
    assert_graph_quality(model)
    ops = _ops(model)
    assert ops["Conv"] == 1 and ops["Relu"] == int(relu), ops
    assert not ops.keys() & {"Mul", "Add", "Sub", "Div", "BatchNormalization", "Max"}, ops
    inputs = concrete_inputs(specs, sizes={"B": 3})
    assert_matches_jax(fn, model, inputs, rtol=1e-4, atol=1e-4)
    # the export lowered equation by equation and folded by the passes: same interface, no fewer nodes, same numbers
    reference = _without_conv_blocks(monkeypatch, fn, specs)
    assert [(i.name, i.type) for i in model.graph.input] == [(i.name, i.type) for i in reference.graph.input]
    assert [(o.name, o.type) for o in model.graph.output] == [(o.name, o.type) for o in reference.graph.output]
    assert len(model.graph.node) <= len(reference.graph.node)
    for ours, theirs in zip(run_onnx(model, inputs), run_onnx(reference, inputs), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    for (kernel, bias), (kernel_ref, bias_ref) in zip(_conv_parameters(model), _conv_parameters(reference), strict=True):
        np.testing.assert_allclose(kernel, kernel_ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(bias, bias_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("use_bias", [False, True], ids=["no_conv_bias", "conv_bias"])
def test_nnx_weights_keep_their_names_and_the_callers_arrays(use_bias):
    module = _NnxConvNorm(True, use_bias=use_bias)
    before = np.array(module.conv.kernel[...])
    model = wb.convert(module, [(1, 8, 8, 8)]).model
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    assert list(conv.input[1:]) == ["conv.kernel", "conv.bias"]
    kernel = next(t for t in model.graph.initializer if t.name == "conv.kernel")
    assert list(kernel.dims) == [8, 8, 3, 3]  # laid out OIHW
    np.testing.assert_array_equal(np.asarray(module.conv.kernel[...]), before)  # folded into a copy


def test_intermediate_read_outside_the_block_is_kept(monkeypatch):
    norm = _trained_nnx_norm(8)

    def conv_norm_and_centered(x):
        y = lax.conv_general_dilated(x, _KERNEL_HWIO, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        centered = y - norm.mean[...]
        return jax.nn.relu(centered * lax.rsqrt(norm.var[...] + 1e-5) * norm.scale[...] + norm.bias[...]), centered

    specs = [("B", 6, 6, 3)]
    conversion = wb.convert(conv_norm_and_centered, specs)
    blocks = list(block_plan.plan_blocks(conversion.traced.closed_jaxpr.jaxpr, 21).values())
    # the block stops at the value read twice: the convolution and its subtraction only (the relu at the end of the
    # rest of the chain is a block of its own)
    assert [block.kind for block in blocks] == ["ConvAffine", "Relu"]
    jaxpr = conversion.traced.closed_jaxpr.jaxpr
    names = [jaxpr.eqns[i].primitive.name for i in blocks[0].members]
    assert names[0] == "conv_general_dilated" and names[-1] == "sub" and not {"mul", "rsqrt"} & set(names), names
    model = conversion.model
    assert_graph_quality(model)
    assert_matches_jax(conv_norm_and_centered, model, concrete_inputs(specs, sizes={"B": 2}), rtol=1e-4, atol=1e-4)
    assert len(model.graph.node) <= len(_without_conv_blocks(monkeypatch, conv_norm_and_centered, specs).graph.node)


def test_conv_output_read_twice_is_not_a_block():
    def two_uses(x):
        y = lax.conv_general_dilated(x, _KERNEL_HWIO, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y * _SCALE + _SHIFT, y

    conversion = wb.convert(two_uses, [(1, 5, 5, 3)])
    assert not block_plan.plan_blocks(conversion.traced.closed_jaxpr.jaxpr, 21)
    assert_matches_jax(two_uses, conversion.model, concrete_inputs([(1, 5, 5, 3)]), rtol=1e-4, atol=1e-4)


def test_run_time_statistics_decline(monkeypatch):
    """Statistics given as inputs are not constants: lowered equation by equation, as without the block."""
    def with_statistics(x, mean, var):
        y = lax.conv_general_dilated(x, _KERNEL_HWIO, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu((y - mean) * lax.rsqrt(var + 1e-5))

    specs = [("B", 5, 5, 3), (8,), (8,)]
    inputs = concrete_inputs(specs, sizes={"B": 2})
    inputs[2] = np.abs(inputs[2]) + 0.5
    conversion = wb.convert(with_statistics, specs)
    assert [b.kind for b in block_plan.plan_blocks(conversion.traced.closed_jaxpr.jaxpr, 21).values()] == ["ConvAffine"]
    model = conversion.model
    assert _ops(model)["Sub"] == 1  # the statistics are applied at run time
    assert_matches_jax(with_statistics, model, inputs, rtol=1e-4, atol=1e-4)
    reference = _without_conv_blocks(monkeypatch, with_statistics, specs)
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in reference.graph.node]


def test_kernel_shared_by_two_convolutions_stays_intact():
    kernel = jnp.asarray(_random(3, 3, 8, 8))

    class Shared(nnx.Module):
        def __init__(self) -> None:
            self.kernel = nnx.Param(kernel)
            self.norm = _trained_nnx_norm(8)

        def __call__(self, x):
            conv = lambda v: lax.conv_general_dilated(v, self.kernel[...], (1, 1), "SAME",  # noqa: E731
                                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return conv(nnx.relu(self.norm(conv(x))))

    module = Shared()
    specs = [("B", 6, 6, 8)]
    model = wb.convert(module, specs).model
    assert_graph_quality(model)
    assert_matches_jax(module, model, concrete_inputs(specs, sizes={"B": 2}), rtol=1e-4, atol=1e-4)


def test_float16_block_matches_the_folding_pass(monkeypatch):
    kernel, scale, shift = _KERNEL_HWIO.astype(np.float16), _SCALE.astype(np.float16), _SHIFT.astype(np.float16)

    def half(x):
        y = lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(y * scale + shift)

    specs = [jax.ShapeDtypeStruct((2, 6, 6, 3), np.float16)]
    model = wb.convert(half, specs).model
    assert _ops(model) == collections.Counter({"Transpose": 2, "Conv": 1, "Relu": 1})
    reference = _without_conv_blocks(monkeypatch, half, specs)
    for (k, b), (k_ref, b_ref) in zip(_conv_parameters(model), _conv_parameters(reference), strict=True):
        assert k.dtype == np.float16 and b.dtype == np.float16
        np.testing.assert_array_equal(k, k_ref)
        np.testing.assert_array_equal(b, b_ref)
    assert_matches_jax(half, model, concrete_inputs(specs), rtol=2e-2, atol=2e-2)


def test_unoptimized_export_lowers_every_equation():
    model = wb.convert(_plain_affine, [(1, 5, 5, 3)], optimize=False).model
    assert {"Mul", "Add", "Max"} <= set(_ops(model))


def _conv_affine_relu(x: jax.Array) -> jax.Array:
    y = lax.conv_general_dilated(x, _KERNEL_SQUARE, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(y * _SCALE[:4] + _SHIFT[:4])


_KERNEL_SQUARE = _random(3, 3, 4, 4)


@pytest.mark.parametrize(("fn", "condition"), [
    (lambda x: jax.jit(_conv_affine_relu)(x) + _conv_affine_relu(x), None),  # nested jit: one closed-over kernel twice
    (lambda x: lax.scan(lambda c, _: (_conv_affine_relu(c), None), x, None, length=3)[0], None),  # a Loop body
    (lambda x, p: lax.cond(p > 0, _conv_affine_relu, lambda v: v * 2.0, x), 1.0),  # an If branch
    (lambda x, p: lax.cond(p > 0, _conv_affine_relu, lambda v: v * 2.0, x), -1.0),
], ids=["nested_jit", "scan", "cond_true", "cond_false"])
def test_block_inside_nested_jaxprs_and_bodies(fn, condition):
    args = [_random(2, 5, 5, 4)] + ([] if condition is None else [np.float32(condition)])
    model = wb.to_onnx(fn, [np.shape(a) if np.ndim(a) else jax.ShapeDtypeStruct((), np.float32) for a in args])
    assert_graph_quality(model)
    assert_matches_jax(fn, model, args, rtol=1e-4, atol=1e-4)
