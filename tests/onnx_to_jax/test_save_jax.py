"""Regression: ``wb.save_jax`` keeps every weight's shape, scalars included.

``np.ascontiguousarray`` turns a 0-d array into shape (1,), so a scalar initializer came
back from ``load()`` as a vector and broadcasting changed the model's output shape (found by
the zoo round trip: the GRU's scalar constants). The loader is imported here from the saved
directory, exactly as a user without workbench would use it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.saved_jax import load_saved


def _scalar_weight_model() -> onnx.ModelProto:
    """y = Unsqueeze(scale, [0, 1]) * x + offset: a (1, 1) broadcast from a scalar, then (3,) from (3,)."""
    inits = [
        numpy_helper.from_array(np.array(2.5, np.float32), "scale"),
        numpy_helper.from_array(np.array([0.5, -1.0, 2.0], np.float32), "offset"),
        numpy_helper.from_array(np.array([0, 1], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["scale", "axes"], ["scale_2d"]),
        helper.make_node("Mul", ["x", "scale_2d"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "scalar_weight",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_saved_scalar_weights_keep_their_shape(tmp_path):
    model = _scalar_weight_model()
    out = wb.save_jax(model, tmp_path / "saved")
    forward, params = load_saved(out)
    _, in_memory = wb.to_jax(model)
    assert {k: np.shape(v) for k, v in params.items()} == {k: np.shape(v) for k, v in in_memory.items()}
    assert np.shape(params["scale"]) == ()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.asarray(forward(params, x))
    assert y.shape == (2, 3)
    np.testing.assert_allclose(y, x * 2.5 + np.array([0.5, -1.0, 2.0], np.float32), rtol=1e-6)
