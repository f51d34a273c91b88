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


def _bfloat16_square() -> onnx.ModelProto:
    """x @ x computed in bfloat16: onnxruntime's CPU provider has no bfloat16 MatMul kernel, so it refuses the model."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["x"], ["xb"], name="narrow", to=TensorProto.BFLOAT16),
             helper.make_node("MatMul", ["xb", "xb"], ["y"], name="square")]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2, 2])],
                              value_info=[helper.make_tensor_value_info("xb", TensorProto.BFLOAT16, [2, 2])])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


_ORT_REFUSAL = "Could not find an implementation for MatMul(13) node with name 'square'"


def test_a_missing_kernel_names_the_node_types_and_keeps_onnxruntimes_error(monkeypatch):
    """The advice names the node's types from the model; when the model cannot tell (onnx-ir refuses to read it),
    the op as onnxruntime names it: onnxruntime's own error is in the message either way."""
    from workbench.onnx_io import session as session_module

    with pytest.raises(wb.OnnxModelError, match="no kernel for node 'square', MatMul \\(opset 21\\) on bfloat16, "
                                                "bfloat16 -> bfloat16; convert with") as info:  # fmt: skip
        open_session(_bfloat16_square())
    assert _ORT_REFUSAL in str(info.value)

    def unreadable(model: onnx.ModelProto) -> None:
        raise session_module.ir.serde.SerdeError("onnx-ir refuses this model")

    monkeypatch.setattr(session_module.ir.serde, "deserialize_model", unreadable)
    with pytest.raises(wb.OnnxModelError, match="no kernel for node 'square', MatMul\\(13\\); convert with") as info:
        open_session(_bfloat16_square())
    assert _ORT_REFUSAL in str(info.value)


def test_a_fault_of_the_advice_code_is_not_swallowed_and_keeps_onnxruntimes_error(monkeypatch):
    """Was: contextlib.suppress(Exception) around the advice: a bug there gave the shorter advice silently. Only
    what reading the model can raise is caught now; anything else surfaces, onnxruntime's error as its context."""
    from workbench.onnx_io import session as session_module

    def broken(node: object, opsets: dict[str, int]) -> None:
        raise AssertionError("a bug in the advice code")

    monkeypatch.setattr(session_module, "signature", broken)
    with pytest.raises(AssertionError, match="a bug in the advice code") as info:
        open_session(_bfloat16_square())
    assert _ORT_REFUSAL in str(info.value.__context__)


def test_a_load_error_reads_the_graph_the_caller_gave_not_the_file_again(tmp_path, monkeypatch):
    """Was: the message's types came from reading the file again (a >100 MB model with its weights inside: a
    second full read on the error path). With the graph the caller already read, the file is not opened again."""
    path = tmp_path / "square.onnx"
    onnx.save_model(_bfloat16_square(), str(path))
    graph = onnx.load(str(path))
    reads: list[str] = []
    load = onnx.load

    def counting(source: object, *args: object, **kwargs: object) -> onnx.ModelProto:
        reads.append(str(source))
        return load(source, *args, **kwargs)

    monkeypatch.setattr(onnx, "load", counting)
    for given, expected_reads in ((graph, 0), (None, 1)):  # without it, the one read the message needs
        reads.clear()
        with pytest.raises(wb.OnnxModelError, match="no kernel for node 'square', MatMul \\(opset 21\\) on bfloat16") as info:
            open_session(path, graph=given)
        assert _ORT_REFUSAL in str(info.value) and reads == [str(path)] * expected_reads


def test_a_large_bfloat16_weight_held_in_memory_reaches_onnxruntime():
    """Was: RuntimeError 'Creation of OrtValues is currently only supported from non-string numpy arrays': a
    conversion with a bfloat16 weight of 1 MiB or more (handed to onnxruntime as an in-memory initializer) could
    not open a session, so runtime="onnxruntime-cpu", parity and run failed on any such bfloat16 model."""
    import jax
    import jax.numpy as jnp

    w = jax.random.normal(jax.random.key(0), (1024, 512)).astype(jnp.bfloat16)  # 1 MiB: set aside, not serialized

    def project(x: jax.Array) -> jax.Array:
        return x.astype(jnp.bfloat16) @ w

    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 1024)), np.float32)
    got = wb.convert(project, [x.shape], runtime="onnxruntime-cpu").run(x)[0]
    want = np.asarray(project(x))
    assert got.dtype == want.dtype and np.abs(want.astype(np.float32)).max() > 1
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2**-7)  # within 1 bfloat16 eps


def test_a_missing_kernel_in_a_model_stating_no_types_is_described_with_the_inferred_ones(tmp_path):
    """Was: 'MatMul(13)' alone for a model written with onnx.helper without value_info (the node's input types
    unknown); the graph read for the message is typed by ONNX shape inference, the caller's model untouched."""
    model = _bfloat16_square()
    del model.graph.value_info[:]
    path = tmp_path / "untyped.onnx"
    onnx.save_model(model, str(path))
    for source in (model, path):
        with pytest.raises(wb.OnnxModelError, match="no kernel for node 'square', MatMul \\(opset 21\\) on bfloat16, "
                                                    "bfloat16 -> bfloat16; convert with") as info:  # fmt: skip
            open_session(source)
        assert _ORT_REFUSAL in str(info.value)
    assert len(model.graph.value_info) == 0
