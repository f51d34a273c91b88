"""Each fusion rewrite: the pattern JAX emits becomes the named ONNX op, and outputs still match JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workbench as wb
from tests.harness import assert_graph_quality, assert_matches_jax, concrete_inputs

W = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
BIAS = np.random.default_rng(1).standard_normal((5,)).astype(np.float32)


def _dense(x):
    return x @ W + BIAS


def _dense_3d(x):
    return x @ W + BIAS


def _scale_and_shift(x):
    return x * BIAS - BIAS


CASES = [
    # (id, fn, input specs, op that must appear, ops that must be gone, opset)
    ("gemm", _dense, [("B", 8)], "Gemm", ("MatMul", "Reshape"), 21),
    ("bias_3d_no_reshape", _dense_3d, [("B", "T", 8)], "MatMul", ("Reshape", "Gemm"), 21),
    ("mul_sub_bias_no_reshape", _scale_and_shift, [("B", 5)], "Mul", ("Reshape",), 21),
    ("softmax_last", lambda x: jax.nn.softmax(x), [("B", 7)], "Softmax", ("Exp", "ReduceMax"), 21),
    ("softmax_axis1", lambda x: jax.nn.softmax(x, axis=1), [("B", 4, 6)], "Softmax", ("Exp",), 18),
    ("gelu_tanh", lambda x: jax.nn.gelu(x), [("B", 9)], "Gelu", ("Tanh",), 21),
    ("gelu_erf", lambda x: jax.nn.gelu(x, approximate=False), [("B", 9)], "Gelu", ("Erf",), 20),
    ("gelu_tanh_below_opset20", lambda x: jax.nn.gelu(x), [("B", 9)], "Tanh", ("Gelu",), 19),
    ("gelu_erf_below_opset20", lambda x: jax.nn.gelu(x, approximate=False), [("B", 9)], "Erf", ("Gelu",), 18),
]


@pytest.mark.parametrize(("fn", "specs", "present", "absent", "opset"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rewrite_fuses_and_preserves_outputs(fn, specs, present, absent, opset):
    model = wb.to_onnx(fn, specs, opset=opset)
    assert_graph_quality(model)
    ops = [n.op_type for n in model.graph.node]
    assert present in ops, f"expected {present} in {ops}"
    for op in absent:
        assert op not in ops, f"{op} should have been fused away: {ops}"
    assert_matches_jax(fn, model, concrete_inputs(specs), rtol=1e-5, atol=1e-5)


def test_softmax_with_other_guard_is_not_fused():
    # max(0, reduce_max) is not softmax's -inf guard: the rule must leave it alone
    def almost_softmax(x):
        shifted = x - jnp.maximum(0.0, jnp.max(x, axis=-1, keepdims=True))
        e = jnp.exp(shifted)
        return e / jnp.sum(e, axis=-1, keepdims=True)

    model = wb.to_onnx(almost_softmax, [("B", 7)])
    assert "Softmax" not in [n.op_type for n in model.graph.node]
    assert_matches_jax(almost_softmax, model, concrete_inputs([("B", 7)]))
