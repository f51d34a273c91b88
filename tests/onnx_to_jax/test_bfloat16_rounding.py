"""bfloat16 computed as ONNX's types say: every operation's result rounded, as onnx's reference does.

The node suite's bfloat16 Attention cases (4-8 keys, no softcap) check the Attention emitter and the
same attention written out as ONNX ops. Here, against onnx's reference (onnxruntime's CPU provider runs
neither op in bfloat16), under ``wb.jit_forward``: a chain of elementwise ops into a Softmax and a MatMul
(XLA would keep the fused chain in float32 without ``xla_allow_excess_precision`` off) against the
ReferenceEvaluator; Attention with a softcap and a float attention mask against the reference's
``_compute_attention`` (through ``workbench.compat.onnx_reference_attention``), which the node suite's
cases call (the ReferenceEvaluator hands it the softcap as a numpy float32, which promotes the softcap
and softmax to float32: not the spec's bfloat16); and a row longer than the 64 terms summed in the
reference's order (longer ones are summed in float32 and rounded once, closer to exact than the
reference: workbench/onnx_to_jax/emitters/rounding.py).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import workbench as wb
from workbench.compat import onnx_reference_attention
from workbench.onnx_to_jax import jit_options

BF16 = ml_dtypes.bfloat16


def _bf16(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(BF16)


def _jitted(model: onnx.ModelProto, inputs: list[np.ndarray]) -> np.ndarray:
    """The generated code's output under wb.jit_forward, as float32."""
    forward, params = wb.to_jax(model)
    return np.asarray(wb.jit_forward(forward)(params, *inputs)).astype(np.float32)


def _chain(width: int) -> onnx.ModelProto:
    """y = Softmax(x * w + b) @ v, all bfloat16."""
    nodes = [helper.make_node("Mul", ["x", "w"], ["scaled"]), helper.make_node("Add", ["scaled", "b"], ["shifted"]),
             helper.make_node("Softmax", ["shifted"], ["probs"], axis=-1),
             helper.make_node("MatMul", ["probs", "v"], ["y"])]
    inits = [numpy_helper.from_array(_bf16((width,), 1), "w"), numpy_helper.from_array(_bf16((width,), 2), "b"),
             numpy_helper.from_array(_bf16((width, 8), 3), "v")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [4, width])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [4, 8])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_a_bfloat16_model_is_compiled_without_excess_precision():
    assert jit_options.choose_compiler_options(_chain(12).graph)[jit_options.EXCESS_PRECISION] is False
    float_model = onnx.helper.make_model(onnx.helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]))
    assert jit_options.EXCESS_PRECISION not in jit_options.choose_compiler_options(float_model.graph)


def test_elementwise_chain_softmax_and_matmul_equal_the_reference_bit_for_bit():
    x = _bf16((4, 12), 0)
    want = ReferenceEvaluator(_chain(12)).run(None, {"x": x})[0].astype(np.float32)
    np.testing.assert_array_equal(_jitted(_chain(12), [x]), want)


def _attention(keys: int, **attributes) -> onnx.ModelProto:
    node = helper.make_node("Attention", ["q", "k", "v", "mask"], ["y"], **attributes)
    shapes = {"q": [2, 3, 5, 16], "k": [2, 3, keys, 16], "v": [2, 3, keys, 16], "mask": [5, keys]}
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.BFLOAT16, s)
                                            for n, s in shapes.items()],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2, 3, 5, 16])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


def _attention_inputs(keys: int) -> list[np.ndarray]:
    return [_bf16((2, 3, 5, 16), 4), _bf16((2, 3, keys, 16), 5), _bf16((2, 3, keys, 16), 6), _bf16((5, keys), 7)]


@pytest.mark.parametrize("attributes", [{}, {"softcap": 2.5}, {"softcap": 2.5, "is_causal": 1}],
                         ids=["mask", "softcap", "softcap-causal"])
def test_attention_with_softcap_and_mask_equals_the_reference_bit_for_bit(attributes):
    inputs = _attention_inputs(40)
    want = onnx_reference_attention(*inputs[:3], attn_mask=inputs[3], **attributes)[0].astype(np.float32)
    np.testing.assert_array_equal(_jitted(_attention(40, **attributes), inputs), want)


@pytest.mark.parametrize("keys", [100, 1000])
def test_attention_over_more_than_64_keys_is_closer_to_exact_than_the_reference(keys):
    """Past 64 keys the softmax's sum is in float32: measured against float64 attention, the largest error
    was 0.0058 (100 keys) and 0.0041 (1,000), the reference's in-order bfloat16 sum 0.018 and 0.067."""
    inputs = _attention_inputs(keys)
    exact = onnx_reference_attention(*(t.astype(np.float64) for t in inputs[:3]), attn_mask=inputs[3].astype(np.float64))[0]
    reference = onnx_reference_attention(*inputs[:3], attn_mask=inputs[3])[0].astype(np.float64)
    error = np.abs(_jitted(_attention(keys), inputs) - exact).max()
    assert error < 0.01 and error < np.abs(reference - exact).max()
