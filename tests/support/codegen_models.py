"""Small ONNX models built in code for the codegen tests (MLP, CNN, If/Loop)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(graph: onnx.GraphProto, opset: int = OPSET) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def mlp(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "dense1.kernel"),
        numpy_helper.from_array(rng.standard_normal((16,)).astype(np.float32), "dense1.bias"),
        numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "dense2.kernel"),
        numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "dense2.bias"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "dense1.kernel"], ["h0"]),
        helper.make_node("Add", ["h0", "dense1.bias"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Gemm", ["h2", "dense2.kernel", "dense2.bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [3, 4])],
        inits,
    )
    return _model(graph)


def cnn(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "conv.w"),
        numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "conv.b"),
        numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "bn.scale"),
        numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "bn.bias"),
        numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "bn.mean"),
        numpy_helper.from_array(rng.random((8,)).astype(np.float32) + 0.5, "bn.var"),
        numpy_helper.from_array(rng.standard_normal((8 * 4 * 4, 5)).astype(np.float32), "fc.w"),
        numpy_helper.from_array(np.array([2, -1], dtype=np.int64), "flat_shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["a"], ["a_shape"]),
        helper.make_node("Gather", ["a_shape", "zero"], ["batch"], axis=0),
        helper.make_node("Reshape", ["a", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc.w"], ["y"]),
    ]
    zero = helper.make_tensor("zero", TensorProto.INT64, [], [0])
    nodes.insert(0, helper.make_node("Constant", [], ["zero"], value=zero))
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5]),
         helper.make_tensor_value_info("batch", TensorProto.INT64, [])],
        inits,
    )
    return _model(graph)


def if_and_loop() -> onnx.ModelProto:
    """y = x * 2 if sum(x) > 0 else x - 1; then add x to it ``n`` (=3) times in a Loop."""
    then_graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["then_out"])], "then_branch", [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [4])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Sub", ["x", "one"], ["else_out"])], "else_branch", [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [4])],
    )
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "x"], ["acc_out"]),
            helper.make_node("Cast", ["i"], ["i_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["acc_out", "i_float"], ["scan_out"]),
        ],
        "loop_body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("scan_out", TensorProto.FLOAT, [4]),
        ],
    )
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero_f"], ["positive"]),
        helper.make_node("If", ["positive"], ["branch"], then_branch=then_graph, else_branch=else_graph),
        helper.make_node("Loop", ["trip", "true"], ["final", "steps"], body=body),
        helper.make_node("Add", ["branch", "final"], ["y"]),
    ]
    nodes[3].input.append("branch")
    inits = [
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
        numpy_helper.from_array(np.array(3, np.int64), "trip"),
        numpy_helper.from_array(np.array(True), "true"),
    ]
    graph = helper.make_graph(
        nodes, "control",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("steps", TensorProto.FLOAT, [3, 4])],
        inits,
    )
    return _model(graph)


def run_onnxruntime(model: onnx.ModelProto, *inputs: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))
