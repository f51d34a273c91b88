"""Softmax as ``exp(-(max - x))`` (emitters/nn.py ``_softmax``): onnxruntime's values, a small exponential kernel.

XLA CPU writes an attention score's ``exp(x - max)`` in place over the score when the score's buffer
dies there, and LLVM then fully unrolls the row loop and expands every exponential (~370 KB of
optimized IR and ~1 CPU s of codegen per distinct shape for Swin's 49-wide rows); the negated
difference keeps the loop vectorized. The tests check the values against onnxruntime and jax.nn's
softmax (masked rows and its gradient included) and the kernel's size in XLA's dump.
"""

from __future__ import annotations

import glob
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.onnx_to_jax.api import generate
from workbench.onnx_to_jax.jit_options import supported_options

YNN_DOTS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def _attention_scores_model(q_shape: tuple[int, ...], opset: int = 17, axis: int = -1,
                            masked: bool = False) -> onnx.ModelProto:
    """``Softmax(MatMul(q, k^T) [+ mask], axis)``: the attention probabilities of Swin or ViT."""
    *batch, rows, depth = q_shape
    nodes = [helper.make_node("MatMul", ["q", "kt"], ["scores"])]
    inputs = [helper.make_tensor_value_info("q", TensorProto.FLOAT, list(q_shape)),
              helper.make_tensor_value_info("kt", TensorProto.FLOAT, [*batch, depth, rows])]
    scores = "scores"
    if masked:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [rows, rows]))
        nodes.append(helper.make_node("Add", ["scores", "mask"], ["masked"]))
        scores = "masked"
    nodes.append(helper.make_node("Softmax", [scores], ["probs"], axis=axis))
    graph = helper.make_graph(nodes, "attention", inputs,
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _feeds(q_shape: tuple[int, ...], masked: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    *batch, rows, depth = q_shape
    feeds = {"q": rng.standard_normal(q_shape, dtype=np.float32),
             "kt": rng.standard_normal((*batch, depth, rows), dtype=np.float32)}
    if masked:  # Swin's shifted-window mask: -100 between regions; and -inf, which a causal mask holds
        mask = np.where(rng.random((rows, rows)) < 0.3, np.float32(-100.0), np.float32(0.0))
        mask[np.triu_indices(rows, 1)] = -np.inf
        feeds["mask"] = mask
    return feeds


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize(("q_shape", "opset", "axis", "masked"), [
    ((9, 3, 49, 32), 17, -1, False),  # Swin-T's first stage at the corpus size
    ((1, 12, 17, 64), 13, 3, True),  # ViT-B/16-like rows, a causal -inf mask and -100 entries
    ((2, 5, 7), 11, 1, False),  # opset 11: flattened to 2-D at the axis
])
def test_softmax_matches_onnxruntime_and_uses_the_helper(q_shape, opset, axis, masked) -> None:
    model = _attention_scores_model(q_shape, opset, axis, masked)
    feeds = _feeds(q_shape, masked)
    expected = _ort(model, feeds)
    source, _ = generate(model)
    forward_body = source.split("\ndef forward(")[1].split("\ndef ")[0]
    assert re.search(r"\b_softmax\b", forward_body) and "jax.nn.softmax" not in forward_body, forward_body
    forward, params = wb.to_jax(model)
    got = np.asarray(wb.jit_forward(forward, params)(*feeds.values()))
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-7)
    normalized = tuple(range(axis % got.ndim, got.ndim)) if opset < 13 else axis  # opset 11: coerced to 2-D
    np.testing.assert_allclose(got.sum(axis=normalized), 1.0, rtol=1e-5)


def test_same_values_and_gradient_as_jax_nn_softmax() -> None:
    from workbench.onnx_to_jax.emitters.nn import _softmax

    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 6, 49, 49), dtype=np.float32))
    x = x.at[..., :3].set(-jnp.inf)  # masked columns
    np.testing.assert_array_equal(np.asarray(jax.jit(_softmax, static_argnums=1)(x, -1)),
                                  np.asarray(jax.jit(jax.nn.softmax, static_argnames="axis")(x, axis=-1)))
    weights = jnp.asarray(np.random.default_rng(2).standard_normal(x.shape, dtype=np.float32))
    finite = jnp.where(jnp.isfinite(x), x, -30.0)
    ours = jax.grad(lambda v: jnp.sum(_softmax(v, -1) * weights))(finite)
    reference = jax.grad(lambda v: jnp.sum(jax.nn.softmax(v, axis=-1) * weights))(finite)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), rtol=1e-5, atol=1e-7)


def test_exponential_kernel_stays_small(tmp_path) -> None:
    options = supported_options(YNN_DOTS)
    if not options:
        pytest.skip("this jaxlib has no YNNPACK dot fusions, the form whose in-place exponential was the problem")
    q_shape = (9, 3, 49, 32)
    model = _attention_scores_model(q_shape)
    forward, params = wb.to_jax(model)
    feeds = _feeds(q_shape)
    lowered = jax.jit(lambda q, kt: forward(params, q, kt)).lower(*feeds.values())
    # LLVM at XLA's default optimization (tests/conftest.py turns it down for the suite's speed)
    lowered.compile(dict(options, xla_dump_to=str(tmp_path), xla_backend_optimization_level=3,
                         xla_llvm_disable_expensive_passes=False))
    kernels = glob.glob(os.path.join(tmp_path, "*exponential*.ir-with-opt.ll"))
    assert kernels, sorted(os.listdir(tmp_path))
    sizes = {os.path.basename(k): os.path.getsize(k) for k in kernels}
    # the in-place exp(x - max) unrolled to ~370 KB here; the vectorized loop is ~22 KB
    assert max(sizes.values()) < 100_000, sizes
