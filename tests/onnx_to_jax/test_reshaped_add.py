"""Reshape -> Add -> Reshape back as one Add at the first shape (reshaped_add.py): onnxruntime's values, shared kernels.

Swin's shifted-window blocks add their mask to the attention scores through a 5-D view and reshape back;
XLA compiled the softmax after it for that view, apart from the unshifted blocks' softmax of the same
shape. The tests check the rewrite's values against onnxruntime (bit for bit against the chain as
written), the cases it must leave alone, and that the two blocks' softmax exponentials compile as one
kernel (two with the chain as written).
"""

from __future__ import annotations

import re

import jax
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import workbench as wb
from tests.benchmarks.hlo_kernels import computations, signature
from workbench.onnx_to_jax import generator
from workbench.onnx_to_jax.api import generate, generate_module
from workbench.onnx_to_jax.jit_options import supported_options
from workbench.onnx_to_jax.reshaped_add import reshaped_add_plan

WINDOWS, HEADS, N, DEPTH = 4, 3, 49, 32
# Swin-T's XLA options (10 M weights or more: YNNPACK fuses only dots, jit_options.py); the small test
# model would get YNNPACK's default fusions, which take the softmax into YNNPACK
YNN_DOTS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def _int64(name: str, values: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _masked_attention_model(*, other_first: bool = False, reshaped_read_twice: bool = False,
                            back_to: tuple[int, ...] = (-1, HEADS, N, N)) -> onnx.ModelProto:
    """``Softmax(q @ kt)`` of an unshifted block and ``Softmax(Reshape(Reshape(q2 @ kt2) + mask))`` of a
    shifted one, as torchvision's Swin exports them (mask: (windows, n, n), unsqueezed to (1, w, 1, n, n))."""
    nodes = [
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("MatMul", ["q2", "kt2"], ["scores2"]),
        helper.make_node("Softmax", ["scores"], ["plain"], axis=-1),
        helper.make_node("Reshape", ["scores2", "view"], ["viewed"]),
        helper.make_node("Unsqueeze", ["mask", "axes"], ["mask5"]),
        helper.make_node("Add", ["mask5", "viewed"] if other_first else ["viewed", "mask5"], ["masked"]),
        helper.make_node("Reshape", ["masked", "back"], ["back_shaped"]),
        helper.make_node("Softmax", ["back_shaped"], ["shifted"], axis=-1),
    ]
    outputs = [helper.make_tensor_value_info("plain", TensorProto.FLOAT, None),
               helper.make_tensor_value_info("shifted", TensorProto.FLOAT, None)]
    if reshaped_read_twice:
        outputs.append(helper.make_tensor_value_info("viewed", TensorProto.FLOAT, None))
    inits = [_int64("view", [1, WINDOWS, HEADS, N, N]), _int64("back", list(back_to)), _int64("axes", [0, 2])]
    queries, keys = [WINDOWS, HEADS, N, DEPTH], [WINDOWS, HEADS, DEPTH, N]
    graph = helper.make_graph(
        nodes, "masked_attention",
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, queries),
         helper.make_tensor_value_info("kt", TensorProto.FLOAT, keys),
         helper.make_tensor_value_info("q2", TensorProto.FLOAT, queries),
         helper.make_tensor_value_info("kt2", TensorProto.FLOAT, keys),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, [WINDOWS, N, N])],
        outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.where(rng.random((WINDOWS, N, N)) < 0.4, np.float32(-100.0), np.float32(0.0))
    queries, keys = (WINDOWS, HEADS, N, DEPTH), (WINDOWS, HEADS, DEPTH, N)
    return {"q": rng.standard_normal(queries, dtype=np.float32), "kt": rng.standard_normal(keys, dtype=np.float32),
            "q2": rng.standard_normal(queries, dtype=np.float32), "kt2": rng.standard_normal(keys, dtype=np.float32),
            "mask": mask}


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    forward, params = wb.to_jax(model)
    got = wb.jit_forward(forward, params)(*feeds.values())
    return [np.asarray(g) for g in got]


def _without_rewrite(monkeypatch) -> None:
    monkeypatch.setattr(generator, "find_reshaped_adds", lambda nodes, outputs: {})


@pytest.mark.parametrize("other_first", [False, True])
def test_rewritten_chain_matches_onnxruntime_and_the_chain_as_written(other_first, monkeypatch) -> None:
    model = _masked_attention_model(other_first=other_first)
    feeds = _feeds()
    source, _ = generate(model)
    assert re.search(r"= jnp\.add\(.*jnp\.reshape\(jnp\.broadcast_to\(", source), source
    # the first Reshape (to the 5-D view) and the Add are dead once the last Reshape reads around them:
    # their statements are gone from the source (the chain as written below keeps them)
    assert "viewed = " not in source and "masked = " not in source and source.count("jnp.add(") == 1, source
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    got = _run(model, feeds)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=2e-6, atol=2e-7)
    _without_rewrite(monkeypatch)
    written_source, _ = generate(model)
    assert "viewed = " in written_source and "masked = " in written_source, written_source
    written = _run(model, feeds)
    for g, w in zip(got, written):
        np.testing.assert_array_equal(g, w)  # the same additions: the same bits


@pytest.mark.parametrize("case", ["reshaped value read twice", "not back to the source's shape"])
def test_chains_it_must_leave_alone(case) -> None:
    if case == "reshaped value read twice":
        model = _masked_attention_model(reshaped_read_twice=True)
    else:
        model = _masked_attention_model(back_to=(WINDOWS * HEADS, N, N))
    feeds = _feeds()
    source, _ = generate(model)
    assert "jnp.broadcast_to(" not in source, source
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for g, e in zip(_run(model, feeds), session.run(None, feeds)):
        np.testing.assert_allclose(g, e, rtol=2e-6, atol=2e-7)


def test_plan_rejects_shapes_it_cannot_rewrite() -> None:
    source, view = (4, 3, 49, 49), (1, 4, 3, 49, 49)
    assert reshaped_add_plan(source, source, view, view, (1, 4, 1, 49, 49)) == view
    assert reshaped_add_plan((12, 49, 49), source, view, view, (1, 4, 1, 49, 49)) is None  # not back
    assert reshaped_add_plan(source, source, view, (2, 4, 3, 49, 49), (2, 4, 1, 49, 49)) is None  # Add broadcasts
    assert reshaped_add_plan(source, source, view, view, (2, 1, 4, 1, 49, 49)) is None  # higher rank
    assert reshaped_add_plan(source, source, view, view, (1, None, 1, 49, 49)) is None  # unknown dim
    assert reshaped_add_plan(source, source, view, view, (1, 4, 2, 49, 49)) is None  # not broadcastable


def _distinct_exponentials(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> int:
    module = generate_module(model)
    params = {k: jax.device_put(v) for k, v in module.params.items()}
    jitted = wb.jit_forward(module.forward, params, compiler_options=supported_options(YNN_DOTS))
    hlo = jitted.lower(*feeds.values()).compile().as_text()
    found, entry = computations(hlo)
    bodies = set()
    for line in found[entry]:
        call = re.search(r"%([\w.\-]+) = \S+ fusion\(.*calls=%([\w.\-]+)", line)
        if call and "exponential" in call.group(1):
            bodies.add(signature(call.group(2), found))
    return len(bodies)


def test_both_blocks_share_one_exponential_kernel(monkeypatch) -> None:
    if not supported_options(YNN_DOTS):
        pytest.skip("this jaxlib has no YNNPACK dot fusions, the form whose kernels the rewrite shares")
    model, feeds = _masked_attention_model(), _feeds()
    assert _distinct_exponentials(model, feeds) == 1
    _without_rewrite(monkeypatch)  # the chain as written: the shifted block's exponential reads a 5-D view
    assert _distinct_exponentials(model, feeds) == 2
