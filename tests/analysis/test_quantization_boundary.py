"""The ONNX -> JAX divergence locator says when its root cause is a DynamicQuantizeLinear rounding at a boundary.

Built on the graph of tests/onnx_to_jax/test_quantization_step.py (a bias, a DynamicQuantizeLinear, an int8
MatMulInteger): the generated code runs with one bias element moved by one float32 unit, so one activation's
``x / scale`` crosses a half-integer. The locator names the quantizer and notes the boundary step; a wrong value
before the quantizer, or a quantizer that rounds otherwise, gets no such note.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.onnx_to_jax.test_quantization_step import BOUNDARY, WIDTH, boundary_inputs, quantized_model
from tests.support.harness import run_onnx
from workbench.analysis.locate_generated import locate_generated_divergence
from workbench.analysis.quantization_boundary import boundary_step_caveat, dynamic_quantize


def _quantizer() -> tuple:
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"], name="q")
    model = helper.make_model(
        helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info(name, kind, None) for name, kind in
                           (("y", TensorProto.UINT8), ("s", TensorProto.FLOAT), ("z", TensorProto.UINT8))]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return node, model


@pytest.mark.parametrize("case", ["boundary", "random", "negative", "constant"])
def test_numpy_dynamic_quantize_is_onnxruntime_bit_for_bit(case):
    x, _ = boundary_inputs()
    rng = np.random.default_rng(2)
    x = {"boundary": x, "random": rng.normal(size=(64, 33)).astype(np.float32) * 3,
         "negative": -np.abs(rng.normal(size=(7, 5))).astype(np.float32), "constant": np.zeros((3, 4), np.float32)}[case]
    _, model = _quantizer()
    want = run_onnx(model, [x])
    got = dynamic_quantize(x)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1] and got[2] == want[2]


def test_locator_notes_the_boundary_step():
    x, step = boundary_inputs()
    bias = np.zeros(WIDTH, np.float32)
    moved = bias.copy()
    moved[BOUNDARY] = step
    model = quantized_model(bias)
    report = locate_generated_divergence(model, {"bias": moved}, [x])
    assert report.first_divergent is not None and report.first_divergent.node == "quantize_h"
    notes = [note for note in report.caveats if "quantize_h" in note]
    assert len(notes) == 1 and f"1 of {WIDTH} quantized values one step apart" in notes[0], report.caveats


def test_locator_gives_no_note_for_a_wrong_value_before_the_quantizer():
    x, _ = boundary_inputs()
    bias = np.zeros(WIDTH, np.float32)
    moved = bias.copy()
    moved[BOUNDARY] = 0.05
    report = locate_generated_divergence(quantized_model(bias), {"bias": moved}, [x])
    assert report.first_divergent is not None and report.first_divergent.op_type == "Add"
    assert not [note for note in report.caveats if "DynamicQuantizeLinear" in note]


def test_no_note_for_a_quantizer_that_rounds_otherwise():
    """Half away from zero instead of half to even: the generated side's values are not what its input gives."""
    node, model = _quantizer()
    scale = np.float32(2.55) / np.float32(255)
    x = np.array([2.55, 0.0, 0.0], np.float32)
    for k in range(1, 250):  # a value whose float32 quotient is exactly k + 0.5 with k even
        v = np.float32((k + 0.5) * scale)
        if k % 2 == 0 and v / scale == np.float32(k + 0.5):
            x[1] = v
            break
    reference = tuple(np.asarray(value) for value in run_onnx(model, [x]))
    wrong = reference[0].copy()
    wrong[1] += 1  # rounded up, away from the even integer
    assert boundary_step_caveat(node, (x, wrong, *reference[1:]), (x, *reference)) is None
    assert boundary_step_caveat(node, (x, *reference), (x, *reference)) is None  # nothing differs
