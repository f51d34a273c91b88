"""Backend.run checks its inputs against the model as onnxruntime does, naming the input."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.onnx_to_jax.backend import Backend


def _matmul_model():
    """y = x @ w with x: float32[B, 3] (B symbolic), w: float32[3, 2]."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 2])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


X = np.arange(12, dtype=np.float32).reshape(4, 3)
W = np.ones((3, 2), np.float32)


@pytest.fixture(scope="module")
def prepared():
    return Backend.prepare(_matmul_model())


def test_matching_inputs_run_and_agree_with_onnxruntime(prepared):
    session = onnxruntime.InferenceSession(_matmul_model().SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 4):  # B is symbolic: any size
        (ours,) = prepared.run([X[:batch], W])
        (theirs,) = session.run(None, {"x": X[:batch], "w": W})
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([X.astype(np.int32), W], r"input 'x': unexpected data type int32; the model declares tensor\(float\) \(float32\)"),
        ([X, W.astype(np.float64)], r"input 'w': unexpected data type float64; the model declares tensor\(float\)"),
        ([X, np.ones((4, 2), np.float32)], r"input 'w': invalid dimension 0: got 4, expected 3 \(shape \[4, 2\], the model declares \[3, 2\]\)"),
        ([X[0], W], r"input 'x': got 1 dimension\(s\) \[3\], the model declares 2: \[B, 3\]"),
        ([X.tolist(), W], r"input 'x': unexpected data type float64"),  # a list of Python floats is float64, as numpy reads it
        ([X], r"the model has 2 input\(s\) and 1 were given; missing: 'w'"),
    ],
    ids=["int32", "float64", "shape", "rank", "python_list", "missing"],
)
def test_mismatched_inputs_name_the_input(prepared, inputs, message):
    with pytest.raises(wb.SpecError, match=message):
        prepared.run(inputs)
    session = onnxruntime.InferenceSession(_matmul_model().SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = dict(zip(["x", "w"], [np.asarray(v) for v in inputs]))
    with pytest.raises(Exception, match=r"(data type|dimensions|Required inputs|Missing Input|rank)"):  # noqa: B017 - onnxruntime's own types
        session.run(None, feeds)
