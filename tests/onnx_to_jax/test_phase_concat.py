"""Concat of strided phases (Swin's patch merging, YOLOv5's Focus) becomes one transpose: phases.py."""

from __future__ import annotations

import jax
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.onnx_to_jax.api import generate
from workbench.onnx_to_jax.phases import Phase, phase_concat_plan, phase_of_slice

END = 2**63 - 1  # what torch.onnx writes for "to the end"


def _phases_model(shape: tuple[int, ...], slices: list[list[tuple[int, int, int, int]]], axis: int,
                  opset: int = 17) -> onnx.ModelProto:
    """``Concat(axis)`` of one chain of Slice nodes per entry of ``slices``: (axis, start, end, step) each."""
    nodes = []

    def constant(name: str, value: int) -> str:
        tensor = helper.make_tensor(name, TensorProto.INT64, [1], [value])
        nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        return name

    parts = []
    for i, chain in enumerate(slices):
        value = "x"
        for j, (ax, start, end, step) in enumerate(chain):
            out = f"p{i}_{j}"
            inputs = [constant(f"{out}_{k}", v) for k, v in (("s", start), ("e", end), ("a", ax), ("t", step))]
            nodes.append(helper.make_node("Slice", [value, *inputs], [out]))
            value = out
        parts.append(value)
    nodes.append(helper.make_node("Concat", parts, ["y"], axis=axis))
    graph = helper.make_graph(nodes, "phases", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _check(model: onnx.ModelProto, shape: tuple[int, ...], *, one_transpose: bool) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    source, _ = generate(model)
    forward_lines = source.split("def _")[0]
    assert ("_phase_concat(" in forward_lines) == one_transpose
    assert ("jnp.concatenate(" in forward_lines) != one_transpose
    forward, params = wb.to_jax(model)
    np.testing.assert_array_equal(np.asarray(forward(params, x)), expected)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: forward(params, v))(x)), expected)


def _grid(axes: tuple[int, int], order: list[tuple[int, int]]) -> list[list[tuple[int, int, int, int]]]:
    return [[(axes[0], a, END, 2), (axes[1], b, END, 2)] for a, b in order]


SWIN_ORDER = [(0, 0), (1, 0), (0, 1), (1, 1)]  # torchvision's PatchMerging: x0, x1, x2, x3 (rows vary first)


def test_swin_patch_merging_is_one_transpose() -> None:
    _check(_phases_model((1, 8, 6, 5), _grid((1, 2), SWIN_ORDER), -1), (1, 8, 6, 5), one_transpose=True)


def test_focus_layer_concatenating_before_the_strided_axes() -> None:
    # YOLOv5's Focus: NCHW, phases of H and W concatenated along the channels (axis 1)
    _check(_phases_model((2, 3, 4, 6), _grid((2, 3), SWIN_ORDER), 1), (2, 3, 4, 6), one_transpose=True)


def test_row_major_order_and_a_three_phase_axis() -> None:
    _check(_phases_model((1, 4, 6, 2), _grid((1, 2), [(0, 0), (0, 1), (1, 0), (1, 1)]), 3), (1, 4, 6, 2),
           one_transpose=True)
    _check(_phases_model((2, 9, 3), [[(1, start, END, 3)] for start in range(3)], 0), (2, 9, 3), one_transpose=True)


@pytest.mark.parametrize("slices", [
    _grid((1, 2), [(0, 0), (1, 1), (1, 0), (0, 1)]),  # an order no transpose gives
    _grid((1, 2), SWIN_ORDER[:3]),  # not every phase
    _grid((1, 2), [(0, 0), (1, 0), (0, 1), (0, 1)]),  # one phase twice
    [[(1, 0, 7, 2), (2, 0, END, 2)]] + _grid((1, 2), SWIN_ORDER[1:]),  # an end before the last row
], ids=["order", "missing", "twice", "short"])
def test_other_concats_of_slices_stay_concatenations(slices) -> None:
    _check(_phases_model((1, 8, 6, 5), slices, -1), (1, 8, 6, 5), one_transpose=False)


def test_plan_refuses_mixed_sources_and_the_concat_axis_strided() -> None:
    a = phase_of_slice("x", None, [0], [END], [1], [2], (4, 4))
    b = phase_of_slice("x", None, [1], [END], [1], [2], (4, 4))
    other = phase_of_slice("z", None, [1], [END], [1], [2], (4, 4))
    assert a == Phase("x", (1,), (2,), (0,)) and phase_concat_plan([a, b], 0, 2) == ("x", (1,), (2,), (1,))
    assert phase_concat_plan([a, other], 0, 2) is None
    assert phase_concat_plan([a, b], 1, 2) is None  # concatenating along the strided axis itself
    assert phase_of_slice("x", None, [0], [END], [1], [2], (4, 5)) is None  # 5 columns: phases of 3 and 2
    assert phase_of_slice("x", a, [0], [END], [1], [2], (2, 4)) is None  # the same axis strided twice
