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


def test_the_module_docstring_names_the_call_as_defined():
    """Was 'Call forward(params, *inputs)' above 'def forward(params, image)': the docstring now says the call, with
    the model's output names when they are plain identifiers (a name from the file never reaches the source raw)."""
    import ast

    def model(outputs: list[str]) -> onnx.ModelProto:
        nodes = [helper.make_node("Relu", ["image"], [outputs[0]]), *(helper.make_node("Neg", ["image"], [name]) for name in outputs[1:])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [2])],
                                  [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2]) for name in outputs])  # fmt: skip
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    hostile = 'y"""\nimport os  # \'\'\''
    for outputs, call in [(["logits"], "forward(params, image) -> logits"),
                          (["boxes", "scores"], "forward(params, image) -> (boxes, scores)"),
                          ([hostile], "forward(params, image) -> its output (ONNX_OUTPUT_NAMES[0])"),
                          (["a", "2"], "forward(params, image) -> 2 outputs (ONNX_OUTPUT_NAMES)")]:  # fmt: skip
        source = wb.to_jax_source(model(outputs))
        docstring = ast.get_docstring(ast.parse(source))
        assert f"Call {call};" in docstring, docstring
        assert ast.parse(source).body[0].end_lineno == 5  # the docstring ends where it should: nothing was injected
        forward, params = wb.to_jax(model(outputs))
        x = np.array([-1.0, 2.0], np.float32)
        first = forward(params, x)[0] if len(outputs) > 1 else forward(params, x)
        np.testing.assert_array_equal(np.asarray(first), np.maximum(x, 0))
