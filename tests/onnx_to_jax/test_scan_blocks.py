"""Runs of repeated blocks are generated as one block function applied by ``lax.scan`` (repeats.py).

The graphs are built with onnx.helper: residual blocks of MatMul -> Add -> Tanh -> MatMul -> Mul by a
shared scale -> Add (residual) -> LayerNormalization, then a gated MatMul -> Sigmoid -> Mul -> Add -> Relu ->
Add (13 nodes), each block with its own weights. Scanning
is opt-in (``scan_repeats=True``). Checked: one scanned body, the same numbers as onnxruntime and as the straight code (``scan_repeats=False``),
under ``jax.jit`` in both forms, ``jax.grad`` and ``jax.vmap``; blocks that differ in an attribute or
a shape stay straight code; values of inner blocks read after the run; every value of a scanned block is exposed as the
divergence locator needs; convolution blocks are scanned when ``prepare`` gives their kernels XLA's
layout, not with ONNX-layout kernels.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.onnx_to_jax.api import generate, generate_module

WIDTH = 8
HIDDEN = 16


def _blocks(n: int, *, alphas: list[float] | None = None, hiddens: list[int] | None = None,
            extra_outputs: tuple[str, ...] = (), seed: int = 0) -> onnx.ModelProto:
    """``n`` residual blocks on x of shape (2, 3, WIDTH); block k uses LeakyRelu(alpha_k) where the
    blocks differ in an attribute, else Tanh, and a hidden width of ``hiddens[k]``."""
    rng = np.random.default_rng(seed)
    inits = [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.5])]
    nodes = []
    x = "x"
    for k in range(n):
        hidden = hiddens[k] if hiddens else HIDDEN

        def weight(name: str, shape: tuple[int, ...], k: int = k) -> str:
            key = f"block{k}.{name}"
            inits.append(onnx.numpy_helper.from_array((0.3 * rng.standard_normal(shape)).astype(np.float32), key))
            return key

        p = f"b{k}_"
        nodes += [
            helper.make_node("MatMul", [x, weight("w1", (WIDTH, hidden))], [p + "mm1"], name=p + "mm1"),
            helper.make_node("Add", [p + "mm1", weight("b1", (hidden,))], [p + "add1"], name=p + "add1"),
            helper.make_node("LeakyRelu", [p + "add1"], [p + "act"], name=p + "act", alpha=alphas[k])
            if alphas else helper.make_node("Tanh", [p + "add1"], [p + "act"], name=p + "act"),
            helper.make_node("MatMul", [p + "act", weight("w2", (hidden, WIDTH))], [p + "mm2"], name=p + "mm2"),
            helper.make_node("Mul", [p + "mm2", "scale"], [p + "scaled"], name=p + "scaled"),
            helper.make_node("Add", [x, p + "scaled"], [p + "res"], name=p + "res"),
            helper.make_node("LayerNormalization", [p + "res", weight("ln_scale", (WIDTH,)), weight("ln_bias", (WIDTH,))],
                             [p + "ln"], name=p + "ln", axis=-1),
            # a gated second half: 13 nodes a block (blocks need 12 that compute to be scanned)
            helper.make_node("MatMul", [p + "ln", weight("w3", (WIDTH, WIDTH))], [p + "mm3"], name=p + "mm3"),
            helper.make_node("Sigmoid", [p + "mm3"], [p + "gate"], name=p + "gate"),
            helper.make_node("Mul", [p + "gate", p + "ln"], [p + "gated"], name=p + "gated"),
            helper.make_node("Add", [p + "gated", weight("b3", (WIDTH,))], [p + "add3"], name=p + "add3"),
            helper.make_node("Relu", [p + "add3"], [p + "relu"], name=p + "relu"),
            helper.make_node("Add", [p + "relu", p + "res"], [p + "out"], name=p + "out"),
        ]
        x = p + "out"
    nodes.append(helper.make_node("ReduceSum", [x], ["y"], name="head", keepdims=0))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])]
    outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 3, HIDDEN if "_out" not in name else WIDTH])
                for name in extra_outputs]
    graph = helper.make_graph(nodes, "blocks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, WIDTH])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _x(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, 3, WIDTH)).astype(np.float32)


def _onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_identical_blocks_become_one_scanned_body_that_matches_onnxruntime():
    model = _blocks(5)
    source, _ = generate(model, scan_repeats=True)
    assert source.count("lax.scan(") == 1
    assert source.count("jnp.matmul(") == 3, source  # one block's three MatMuls, written once
    assert "5 blocks of the same 13 nodes" in source
    # the weight table lists each block's ONNX keys; params stay keyed by ONNX names
    assert "('block0.w1', 'block1.w1', 'block2.w1', 'block3.w1', 'block4.w1')," in source
    assert "params['scale']" in source  # a weight every block shares is read as it is
    forward, params = wb.to_jax(model, scan_repeats=True)
    assert "block3.w2" in params and "scale" in params
    x = _x()
    (expected,) = _onnxruntime(model, x)
    np.testing.assert_allclose(np.asarray(forward(params, x)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(jax.jit(forward)(params, x)), expected, rtol=1e-5, atol=1e-5)
    folded = jax.jit(functools.partial(forward, params))
    np.testing.assert_allclose(np.asarray(folded(x)), expected, rtol=1e-5, atol=1e-5)


def test_grad_and_vmap_through_the_scan_match_the_straight_code():
    model = _blocks(4)
    forward, params = wb.to_jax(model, scan_repeats=True)
    straight, _ = wb.to_jax(model)
    assert "lax.scan(" not in wb.to_jax_source(model)  # off by default
    x = _x()

    def loss(fn, p, inputs):
        return jnp.sum(fn(p, inputs) ** 2)

    grads = jax.jit(jax.grad(functools.partial(loss, forward)))(params, x)
    reference = jax.grad(functools.partial(loss, straight))(params, x)
    assert set(grads) == set(params)
    for key in params:
        np.testing.assert_allclose(np.asarray(grads[key]), np.asarray(reference[key]), rtol=1e-4, atol=1e-5,
                                   err_msg=key)
    assert np.abs(np.asarray(grads["block0.w1"])).max() > 0 and np.abs(np.asarray(grads["block3.w2"])).max() > 0
    batch = np.stack([_x(s) for s in range(3)])
    got = jax.jit(jax.vmap(forward, in_axes=(None, 0)))(params, batch)
    want = [_onnxruntime(model, b)[0] for b in batch]
    np.testing.assert_allclose(np.asarray(got), np.stack(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["attribute", "shape"])
def test_blocks_that_differ_are_not_scanned(variant):
    model = _blocks(2, alphas=[0.1, 0.2]) if variant == "attribute" else _blocks(2, hiddens=[HIDDEN, HIDDEN + 4])
    source, _ = generate(model, scan_repeats=True)
    assert "lax.scan(" not in source
    forward, params = wb.to_jax(model, scan_repeats=True)
    x = _x()
    np.testing.assert_allclose(np.asarray(jax.jit(forward)(params, x)), _onnxruntime(model, x)[0], rtol=1e-5, atol=1e-5)


def test_a_differing_block_splits_the_run():
    # blocks 0-2 alike, block 3 with another alpha: the scan covers the first three only
    model = _blocks(4, alphas=[0.1, 0.1, 0.1, 0.3])
    source, _ = generate(model, scan_repeats=True)
    assert source.count("lax.scan(") == 1 and "3 blocks of the same 13 nodes" in source
    assert "alpha=0.3" in source or "0.3)" in source  # block 3 is written out
    forward, params = wb.to_jax(model, scan_repeats=True)
    x = _x()
    np.testing.assert_allclose(np.asarray(jax.jit(forward)(params, x)), _onnxruntime(model, x)[0], rtol=1e-5, atol=1e-5)


def test_values_of_inner_blocks_read_after_the_run_come_out_of_the_scan():
    model = _blocks(4, extra_outputs=("b1_act", "b2_out", "b3_mm1"))
    source, _ = generate(model, scan_repeats=True)
    assert source.count("lax.scan(") == 1
    assert re.search(r"b1_act = \w+\[1\]", source) and re.search(r"b3_mm1 = \w+\[3\]", source), source
    forward, params = wb.to_jax(model, scan_repeats=True)
    x = _x()
    got = jax.jit(forward)(params, x)
    for value, expected in zip(got, _onnxruntime(model, x), strict=True):
        np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-5, atol=1e-5)


def test_every_value_of_a_scanned_block_is_exposed_for_the_divergence_locator():
    # The locator generates a copy of the model whose every node output is a graph output. Scanned, each
    # block's values come out of the scan stacked and are bound after it: the same numbers as the
    # straight code's, node by node, so a scanned copy would still name the node inside a block.
    from workbench.analysis.locate_generated import _expose_every_value
    from workbench.onnx_to_jax.api import generate_compiled

    model = _blocks(4)
    exposed, names = _expose_every_value(model)
    source, scanned, params = generate_compiled(exposed, scan_repeats=True)
    assert source.count("lax.scan(") == 1
    _, straight, _ = generate_compiled(exposed)
    x = _x()
    got, want = jax.jit(scanned)(params, x), straight(params, x)
    assert len(got) == len(names) == 1 + 13 * 4
    for name, a, b in zip(names, got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5, err_msg=name)
    tampered = dict(params)
    tampered["block2.w2"] = params["block2.w2"] * 1.5
    report = wb.locate_divergence(model, tampered, [x])
    assert report.first_divergent is not None and report.first_divergent.node == "b2_mm2", report


def _conv_blocks(n: int, kernel: int, *, pairs_share: bool = False) -> onnx.ModelProto:
    """``n`` blocks of six Conv -> Relu pairs (12 nodes) on a (1, 4, 8, 8) input; with ``pairs_share``
    two convolutions of a block read each weight (so ``prepare`` leaves it in ONNX's layout)."""
    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "x"
    pad = kernel // 2
    for k in range(n):
        for i in range(6):
            key = f"block{k}.conv{i // 2 if pairs_share else i}"
            if i % 2 == 0 or not pairs_share:
                weight = (0.2 * rng.standard_normal((4, 4, kernel, kernel))).astype(np.float32)
                inits.append(onnx.numpy_helper.from_array(weight, key))
            name = f"block{k}.c{i}"
            nodes.append(helper.make_node("Conv", [x, key], [f"{name}.y"], name=name, pads=[pad] * 4))
            nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"], name=f"{name}.relu"))
            x = f"{name}.r"
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("kernel, pairs_share, scanned", [(3, False, True), (3, True, False), (1, True, True)])
def test_convolution_blocks_are_scanned_when_their_kernels_are_in_xla_layout(kernel, pairs_share, scanned):
    # XLA CPU runs a convolution whose (O, I, kh, kw) kernel is sliced from a stacked weight inside a
    # loop 10-15x slower than the straight code, and as fast as straight with an (kh, kw, I, O) one. A
    # weight only its convolution reads reaches the code as HWIO (prepare(params)); one that two
    # convolutions read stays in ONNX's layout, and such blocks are not scanned. 1x1 convolutions are
    # matmuls over the channels (an einsum in _conv) and are scanned either way.
    model = _conv_blocks(3, kernel, pairs_share=pairs_share)
    source, _ = generate(model, scan_repeats=True)
    assert source.count("lax.scan(") == int(scanned)
    assert ("hwio=True" in source) == (not pairs_share)
    generated = generate_module(model, scan_repeats=True)
    x = np.random.default_rng(2).standard_normal((1, 4, 8, 8)).astype(np.float32)
    expected = _onnxruntime(model, x)[0]
    np.testing.assert_allclose(np.asarray(jax.jit(generated.forward)(generated.params, x)), expected, rtol=1e-4, atol=1e-5)
    prepared = generated.prepare(generated.params)
    np.testing.assert_allclose(np.asarray(jax.jit(generated.forward_prepared)(prepared, x)), expected,
                               rtol=1e-4, atol=1e-5)
