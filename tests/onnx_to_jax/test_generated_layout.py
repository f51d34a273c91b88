"""The generated module reads top-down: forward first, the runtime helpers after it, no dead literals."""

from __future__ import annotations

import ast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.onnx_to_jax.api import compile_source, generate
from workbench.onnx_to_jax.generator import HELPERS_MARKER


def _conv_model() -> onnx.ModelProto:
    """Conv -> Reshape by a constant shape initializer (folded into a literal) -> Relu."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([-1, 4 * 6 * 6], np.int64), "flat_shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
        helper.make_node("Reshape", ["c", "flat_shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 144])], initializer=initializers,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _assigned_and_read(function: ast.FunctionDef) -> tuple[list[str], set[str]]:
    assigned = [t.id for node in ast.walk(function) if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)]
    read = {node.id for node in ast.walk(function) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return assigned, read


def test_forward_comes_before_the_helpers_it_calls() -> None:
    source, params = generate(_conv_model())
    tree = ast.parse(source)
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions[0] == "forward" and "_conv" in functions[1:]
    assert source.index("def forward(") < source.index(HELPERS_MARKER) < source.index("def _conv(")
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    got = np.asarray(compile_source(source)(params, x))
    import onnxruntime

    session = onnxruntime.InferenceSession(_conv_model().SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_no_literal_is_assigned_without_being_read() -> None:
    source, _ = generate(_conv_model())
    forward = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "forward")
    assigned, read = _assigned_and_read(forward)
    returned = {node.value.id for node in ast.walk(forward) if isinstance(node, ast.Return) and isinstance(node.value, ast.Name)}
    assert [name for name in assigned if name not in read | returned] == []
    assert "flat_shape" not in source.split(HELPERS_MARKER)[0].replace("'flat_shape'", "")  # folded into the Reshape


def test_converted_cnn_has_no_dead_assignments_and_keeps_literals_subgraphs_read() -> None:
    from workbench.zoo import ZOO

    built = ZOO["nnx_cnn"]()
    source = wb.to_jax_source(wb.to_onnx(built.fn, built.inputs))
    forward = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "forward")
    assigned, read = _assigned_and_read(forward)
    returned = {node.value.id for node in ast.walk(forward) if isinstance(node, ast.Return) and isinstance(node.value, ast.Name)}
    assert [name for name in assigned if name not in read | returned] == []

    # a literal of the main graph read only inside a Loop body is still written before the body's def
    def counted(x):
        import jax
        import jax.numpy as jnp

        offsets = jnp.arange(3, dtype=jnp.float32) * 0.5
        return jax.lax.fori_loop(0, 3, lambda i, acc: acc + offsets[i], x)

    model = wb.to_onnx(counted, [(3,)])
    source, params = generate(model)
    x = np.ones(3, np.float32)
    np.testing.assert_allclose(np.asarray(compile_source(source)(params, x)), counted(x), rtol=1e-6)
