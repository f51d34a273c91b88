"""Symbolic shapes reasoned about by name (workbench/jax_to_onnx/dims.py): Reshape targets without a
run-time Shape, the dims a Reshape yields, broadcasting."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.jax_to_onnx.dims import broadcast_dims, reshape_target, reshaped_dims, same_size


@pytest.mark.parametrize(("source", "target", "expected"), [
    (["B", "T", 32], ["B", "T", 4, 8], [0, 0, 4, 8]),
    (["B", 4, "T", "T"], ["B", 4, "T", 1, "T"], [0, 4, 0, 1, -1]),
    ([1, 1, 1, "T", "T"], [1, 1, "T", "T"], [1, 1, -1, 0]),
    (["B", 4, "T", "T"], [1, "B", 4, "T", "T"], None),  # two symbolic dims change place: no constant says it
    (["B", "T", 32], ["B", "T", 31], None),  # different sizes
    (["B", "T"], ["T", "B"], None),
])
def test_reshape_target(source, target, expected):
    assert reshape_target(source, target) == expected


def test_reshape_targets_run_in_onnxruntime():
    # the constants above, run: (2, 4, 3, 3) -> (2, 4, 3, 1, 3) and (1, 1, 1, 5, 5) -> (1, 1, 5, 5)
    for source, target, feed in (
        (["B", 4, "T", "T"], ["B", 4, "T", 1, "T"], np.arange(72, dtype=np.float32).reshape(2, 4, 3, 3)),
        ([1, 1, 1, "T", "T"], [1, 1, "T", "T"], np.arange(25, dtype=np.float32).reshape(1, 1, 1, 5, 5)),
    ):
        shape = numpy_helper.from_array(np.array(reshape_target(source, target), np.int64), "shape")
        graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"x": feed})
        sizes = {"B": feed.shape[0], "T": feed.shape[-1]}
        expected = [sizes.get(d, d) if isinstance(d, str) else d for d in target]
        assert list(got.shape) == expected
        np.testing.assert_array_equal(got.reshape(-1), feed.reshape(-1))


def test_reshaped_dims_and_broadcast():
    assert reshaped_dims(["B", "T", 32], [0, 0, 4, 8]) == ["B", "T", 4, 8]
    assert reshaped_dims(["B", 4, "T", 8], [0, 0, -1, 1, 8]) == ["B", 4, "T", 1, 8]
    assert reshaped_dims(["B", "T", 32], [-1, 32]) is None  # B*T has no name
    assert reshaped_dims([2, 3, 4], [-1, 4]) == [6, 4]
    assert broadcast_dims(["B", 1, "T", "T"], [1, 4, 1, "T"]) == ["B", 4, "T", "T"]
    assert broadcast_dims(["B"], ["T"]) is None  # B and T may differ
    assert same_size(["B", 4, "T"], ["T", 2, 2, "B"]) and not same_size(["B"], ["T"])
