"""Scan-8 (opset 8): a batch axis 0 run independently, the sequence along axis 1, optional sequence_lens.

The node suite's one Scan-8 case has a batch of one, no sequence_lens and forward directions. Here: a
batch of three with their own lengths (5, 2 and 1 of 5; onnxruntime refuses a length of 0), two states
(a running sum and a running maximum), a forward and a reverse scan input and two scan outputs, against
onnxruntime, eagerly and under ``wb.jit_forward``. Scan outputs past a sequence's end are undefined by the
spec; onnxruntime writes 0 there, as the generated code does, so they are compared too. A length past the
sequence axis is refused by name.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from tests.support.harness import assert_generated_matches_onnxruntime

BATCH, STEPS, WIDTH = 3, 5, 4


def _body() -> onnx.GraphProto:
    """(sum, peak, x_forward, x_reverse) -> (sum + x_forward, max(peak, x_reverse), sum', x_forward * x_reverse)."""
    value = [WIDTH]
    nodes = [
        helper.make_node("Add", ["sum_in", "fwd"], ["sum_out"]),
        helper.make_node("Max", ["peak_in", "rev"], ["peak_out"]),
        helper.make_node("Identity", ["sum_out"], ["running"]),
        helper.make_node("Mul", ["fwd", "rev"], ["product"]),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, value) for n in ("sum_in", "peak_in", "fwd", "rev")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, value)
               for n in ("sum_out", "peak_out", "running", "product")]
    return helper.make_graph(nodes, "body", inputs, outputs)


def _model(with_lengths: bool) -> onnx.ModelProto:
    node = helper.make_node("Scan", ["lens" if with_lengths else "", "sum0", "peak0", "x", "x"],
                            ["sum", "peak", "running", "product"], num_scan_inputs=2, directions=[0, 1],
                            body=_body())
    state = [BATCH, WIDTH]
    seq = [BATCH, STEPS, WIDTH]
    inputs = ([helper.make_tensor_value_info("lens", TensorProto.INT64, [BATCH])] if with_lengths else []) + [
        helper.make_tensor_value_info("sum0", TensorProto.FLOAT, state),
        helper.make_tensor_value_info("peak0", TensorProto.FLOAT, state),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, seq),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
               for n, s in (("sum", state), ("peak", state), ("running", seq), ("product", seq))]
    model = helper.make_model(helper.make_graph([node], "g", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 8)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _values() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.normal(size=(BATCH, WIDTH)).astype(np.float32), np.full((BATCH, WIDTH), -5, np.float32),
            rng.normal(size=(BATCH, STEPS, WIDTH)).astype(np.float32)]


@pytest.mark.parametrize("with_lengths", [False, True], ids=["whole", "sequence_lens"])
def test_batched_scan_gives_onnxruntimes_numbers(with_lengths):
    lengths = [np.array([STEPS, 2, 1], np.int64)] if with_lengths else []
    assert_generated_matches_onnxruntime(_model(with_lengths), lengths + _values(), rtol=1e-6, atol=1e-6)


def test_reverse_input_starts_at_each_sequences_own_end():
    """Independent of onnxruntime: the second sequence (length 2) reads x[1], x[0] in reverse, so its
    first product is x[0] * x[1] and its running maximum covers only those two elements."""
    forward, params = wb.to_jax(_model(True))
    sum0, peak0, x = _values()
    _, peak, _, product = (np.asarray(v) for v in forward(params, np.array([STEPS, 2, 1], np.int64), sum0, peak0, x))
    np.testing.assert_allclose(product[1, 0], x[1, 0] * x[1, 1], rtol=1e-6)
    np.testing.assert_allclose(peak[1], np.maximum(x[1, 0], x[1, 1]), rtol=0)
    np.testing.assert_allclose(peak[2], np.maximum(peak0[2], x[2, 0]), rtol=0)  # one step: x[2, 0] only
    np.testing.assert_array_equal(product[1, 2:], 0)  # past the end: 0, as onnxruntime writes


def test_a_length_past_the_sequence_axis_is_refused():
    forward, params = wb.to_jax(_model(True))
    with pytest.raises(wb.ModelRunError, match=r"node #0 \(Scan\).*sequence_lens \[5, 6, 1\] must lie in \[0, 5\]"):
        forward(params, np.array([STEPS, 6, 1], np.int64), *_values())
