"""``ai.onnx.preview::FlexAttention`` in forms the node suite does not write.

The node suite checks the op's numbers (default and explicit scale, grouped-query heads, float16 and
double, score_mod / prob_mod graphs that read only their input). Here: a score_mod that reads a tensor of
the outer graph (a per-head bias, as a PyTorch score_mod closure over a tensor exports), together with a
prob_mod, grouped-query heads, float16 inputs and an explicit softmax_precision, under ``wb.jit_forward``.
onnxruntime has no kernel for the op and onnx's reference cannot run a modifier that reads an outer
value, so the expected numbers are computed here in float64 from the spec's formula. Bad shapes and
modifier graphs give a WorkbenchError naming the node (ONNX shape inference finds them; the reader
runs it first).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb

PREVIEW = "ai.onnx.preview"
HEADS, KV_HEADS, L, S, E, EV = 4, 2, 5, 7, 8, 6


def _modifier(op: str, operand: str) -> onnx.GraphProto:
    """A modifier graph ``out = op(x, operand)``; ``operand`` names a value of the outer graph."""
    return helper.make_graph(
        [helper.make_node(op, ["x", operand], ["x_out"])], f"{op.lower()}_mod",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "H", "L", "S"])],
        [helper.make_tensor_value_info("x_out", TensorProto.FLOAT, ["B", "H", "L", "S"])],
    )


def _model(*, q_shape=(1, HEADS, L, E), **attributes) -> onnx.ModelProto:
    node = helper.make_node("FlexAttention", ["q", "k", "v"], ["y"], domain=PREVIEW, **attributes)
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT16, shape)
              for name, shape in (("q", q_shape), ("k", (1, KV_HEADS, S, E)), ("v", (1, KV_HEADS, S, EV)))]
    inits = [numpy_helper.from_array(_head_bias(), "head_bias"), numpy_helper.from_array(np.float32(0.75), "keep")]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT16, (1, HEADS, L, EV))
    graph = helper.make_graph([node], "g", inputs, [output], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26), helper.make_opsetid(PREVIEW, 1)])


def _head_bias() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(1, HEADS, 1, S)).astype(np.float32)


def _inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=shape).astype(np.float16)
            for shape in ((1, HEADS, L, E), (1, KV_HEADS, S, E), (1, KV_HEADS, S, EV))]


def _expected(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """The spec's formula in float64: scores, + head bias, softmax, * 0.75, @ V (K/V heads repeated)."""
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    k, v = np.repeat(k, HEADS // KV_HEADS, axis=1), np.repeat(v, HEADS // KV_HEADS, axis=1)
    scores = q @ np.swapaxes(k, -1, -2) * scale + _head_bias()
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = probs / probs.sum(axis=-1, keepdims=True) * 0.75
    return probs @ v


def test_modifiers_reading_outer_values_under_jit():
    model = _model(scale=0.3, softmax_precision=TensorProto.FLOAT,
                   score_mod=_modifier("Add", "head_bias"), prob_mod=_modifier("Mul", "keep"))
    onnx.checker.check_model(model, full_check=True)
    inputs = _inputs()
    forward, params = wb.to_jax(model)
    got = np.asarray(wb.jit_forward(forward)(params, *inputs))
    assert got.dtype == np.float16 and got.shape == (1, HEADS, L, EV)
    # float16 output (|y| < 2, an ulp is 1e-3): measured 4.5e-4 from the float64 result
    np.testing.assert_allclose(got.astype(np.float64), _expected(*inputs, 0.3), rtol=0, atol=1.5e-3)


def test_default_scale_without_modifiers_under_jit():
    inputs = _inputs()
    forward, params = wb.to_jax(_model())
    q, k, v = (t.astype(np.float64) for t in inputs)
    k, v = np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1)
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(E)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    want = probs / probs.sum(axis=-1, keepdims=True) @ v
    got = np.asarray(wb.jit_forward(forward)(params, *inputs)).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=1.5e-3)


@pytest.mark.parametrize("model, fault", [
    (lambda: _model(q_shape=(1, L, HEADS * E)), "FlexAttention.*requires rank-4 inputs"),
    (lambda: _model(q_shape=(1, 3, L, E)), "FlexAttention.*must be a multiple of kv_num_heads"),
    (lambda: _model(score_mod=helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["x_out"])], "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", "H", "L", "S"]) for n in ("x", "y")],
        [helper.make_tensor_value_info("x_out", TensorProto.FLOAT, ["B", "H", "L", "S"])])),
     "FlexAttention.*score_mod expected 1 input but graph has 2"),
], ids=["rank", "heads", "modifier-inputs"])
def test_bad_input_names_the_node(model, fault):
    with pytest.raises(wb.WorkbenchError, match=fault):
        wb.to_jax(model())
