"""Fixtures for the notebook-layer tests: a small real ONNX MLP built with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def make_mlp(batch: str | int = "B") -> onnx.ModelProto:
    """in_0[B,30] -> Gemm(30->20) -> Gelu -> Gemm(20->10) -> out_1[B,10], without value_info."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.standard_normal((30, 20)).astype(np.float32), "fc1.kernel"),
        numpy_helper.from_array(rng.standard_normal(20).astype(np.float32), "fc1.bias"),
        numpy_helper.from_array(rng.standard_normal((20, 10)).astype(np.float32), "fc2.kernel"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Gemm", ["in_0", "fc1.kernel", "fc1.bias"], ["h1"], name="fc1"),
        helper.make_node("Gelu", ["h1"], ["h2"], name="act"),
        helper.make_node("Gemm", ["h2", "fc2.kernel", "fc2.bias"], ["out_1"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("in_0", TensorProto.FLOAT, [batch, 30])],
        [helper.make_tensor_value_info("out_1", TensorProto.FLOAT, [batch, 10])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture
def mlp_model() -> onnx.ModelProto:
    return make_mlp()


@pytest.fixture
def no_server_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the viewer pick the kernel-side server, whatever the environment says."""
    from workbench.jupyter.model_store import ENV_BASE_URL, ENV_STORE_DIR

    monkeypatch.delenv(ENV_BASE_URL, raising=False)
    monkeypatch.delenv(ENV_STORE_DIR, raising=False)
