"""tests/support/quantization_step.py tells a quantization step at a rounding boundary from a wrong result.

The opt-in Optimum corpus (tests/onnx_to_jax/test_corpus_optimum.py) relies on it for two quantized files whose
outputs differ from onnxruntime's by one activation element rounding to the neighbouring integer; CI has no
Optimum, so the helper is checked here on a graph built with onnx.helper: a bias before a DynamicQuantizeLinear,
an int8 MatMulInteger after it. The code under test is the generated code of the same graph with one bias
element moved (one float32 unit: what two float32 implementations of the layer before a quantizer differ by;
or far more: a wrong value), and with a quantizer that rounds one element wrongly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.corpus import assert_outputs_match
from tests.support.harness import run_onnx
from tests.support.quantization_step import assert_matches_up_to_boundary_steps

WIDTH = 16
BOUNDARY = 1  # the input element that sits on a rounding boundary


def boundary_inputs() -> tuple[np.ndarray, float]:
    """One row of activations: 2.55 (the largest, so scale = 2.55 / 255 and zero point 0), at BOUNDARY a value v
    with v / scale rounding to an even integer and the next float32 above it to the odd one after, the rest
    random; and the float32 step from v to that next value."""
    x = np.random.default_rng(0).uniform(0.1, 2.5, (1, WIDTH)).astype(np.float32)
    x[0, 0] = 2.55
    scale = np.float32(2.55) / np.float32(255)
    v = np.float32(100.5) * scale
    for _ in range(64):
        above = np.nextafter(v, np.float32(np.inf))
        if np.round(v / scale) == 100 and np.round(above / scale) == 101:
            break
        v = np.nextafter(v, np.float32(np.inf if np.round(v / scale) == 100 else -np.inf))
    else:
        raise AssertionError("no float32 value on the rounding boundary near 100.5 * scale")
    x[0, BOUNDARY] = v
    return x, float(np.spacing(v))


def quantized_model(bias: np.ndarray) -> onnx.ModelProto:
    """y = (x + bias) quantized by DynamicQuantizeLinear, times int8 weights by MatMulInteger, rescaled to float."""
    weights = np.random.default_rng(1).integers(-60, 61, (WIDTH, 4)).astype(np.int8)
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["h"]),
        helper.make_node("DynamicQuantizeLinear", ["h"], ["hq", "hs", "hz"], name="quantize_h"),
        helper.make_node("MatMulInteger", ["hq", "w", "hz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["acc_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["hs", "w_scale"], ["s"]),
        helper.make_node("Mul", ["acc_f", "s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "quantized", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[numpy_helper.from_array(bias.astype(np.float32), "bias"), numpy_helper.from_array(weights, "w"),
                     numpy_helper.from_array(np.array(0.01, np.float32), "w_scale")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _with_bias(bias: np.ndarray, mode: str) -> Callable[[onnx.ModelProto], Callable]:
    """A runner giving the generated code of the helper's copy of the model, with ``bias`` for its own."""
    def runner(exposed: onnx.ModelProto) -> Callable:
        moved = onnx.ModelProto()
        moved.CopyFrom(exposed)
        index = [tensor.name for tensor in moved.graph.initializer].index("bias")
        moved.graph.initializer[index].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), "bias"))
        forward, params = wb.to_jax(moved)
        run = functools.partial(forward, params)
        return jax.jit(run) if mode == "jit" else run

    return runner


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_one_boundary_element_is_pinned_and_explains_the_difference(mode):
    x, step = boundary_inputs()
    bias = np.zeros(WIDTH, np.float32)
    moved = bias.copy()
    moved[BOUNDARY] = step  # x + bias at BOUNDARY: the next float32 above v
    model = quantized_model(bias)
    forward, params = wb.to_jax(quantized_model(moved))
    with pytest.raises(AssertionError):  # the plain comparison fails: one step carried through the matmul
        assert_outputs_match(model, run_onnx(model, [x]), [np.asarray(forward(params, x))])
    pins = assert_matches_up_to_boundary_steps(model, [x], _with_bias(moved, mode))
    assert [(pin.node, pin.flipped, pin.size) for pin in pins] == [("quantize_h", 1, WIDTH)]
    assert pins[0].boundary_distance < 1e-4


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_no_pin_where_both_round_alike(mode):
    x, _ = boundary_inputs()
    bias = np.zeros(WIDTH, np.float32)
    assert assert_matches_up_to_boundary_steps(quantized_model(bias), [x], _with_bias(bias, mode)) == []


def test_a_wrong_input_is_not_a_boundary_step():
    x, _ = boundary_inputs()
    bias = np.zeros(WIDTH, np.float32)
    moved = bias.copy()
    moved[BOUNDARY] = 0.05  # five quantization steps: a wrong value before the quantizer, not rounding
    with pytest.raises(AssertionError, match="over the tolerance"):
        assert_matches_up_to_boundary_steps(quantized_model(bias), [x], _with_bias(moved, "eager"))


def test_a_quantizer_that_rounds_wrongly_is_not_a_boundary_step():
    x, _ = boundary_inputs()
    bias = np.zeros(WIDTH, np.float32)

    def runner(exposed: onnx.ModelProto) -> Callable:
        forward, params = wb.to_jax(exposed)
        position = [value.name for value in exposed.graph.output].index("hq")

        def run(*inputs):
            outputs = list(forward(params, *inputs))
            outputs[position] = np.asarray(outputs[position]).copy()
            outputs[position][0, 3] += 1  # an element far from a boundary, one step up
            return tuple(outputs)

        return run

    with pytest.raises(AssertionError, match="the quantizer itself differs"):
        assert_matches_up_to_boundary_steps(quantized_model(bias), [x], runner)
