"""workbench.onnx_io.session: one onnxruntime helper; numbers checked against onnx's reference evaluator."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

import workbench as wb
from tests.support.analysis_models import swap_op
from tests.support.codegen_models import cnn, mlp
from workbench.onnx_io import open_session


def test_proto_and_path_sessions_compute_what_the_reference_evaluator_computes(tmp_path):
    model = cnn()
    path = tmp_path / "cnn.onnx"
    onnx.save_model(model, str(path))
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    for session in (open_session(model), open_session(path, optimize=False)):
        assert session.input_names == ["x"] and session.output_names == ["y", "batch"]
        np.testing.assert_allclose(session.run({"x": x})[0], want, rtol=1e-4, atol=1e-5)
    assert open_session(path).label == str(path) and open_session(model).label == "<ModelProto>"


def test_options_and_providers_are_passed_through():
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = open_session(mlp(), options=options, providers=["CPUExecutionProvider"])
    assert session.inner.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert session.inner.get_providers() == ["CPUExecutionProvider"]
    assert open_session(mlp(), optimize=False).inner.get_session_options().graph_optimization_level == (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )


def test_load_and_run_errors_name_the_model_node_and_inputs():
    broken, _ = swap_op(mlp(), "Relu", "NoSuchOp")
    broken.graph.node[2].name = "activation"
    with pytest.raises(wb.OnnxModelError, match="onnxruntime could not load model net.onnx") as info:
        open_session(broken, label="net.onnx")
    assert "(failing node 'activation')" in str(info.value)
    session = open_session(mlp(), label="mlp")
    with pytest.raises(wb.OnnxModelError, match=r"failed to run model mlp .*on inputs \{'x': 'float32\[5, 8\]'\}"):
        session.run({"x": np.zeros((5, 8), np.float32)})  # the model's batch is fixed at 3
