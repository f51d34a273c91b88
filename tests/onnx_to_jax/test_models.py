"""Generated JAX code parses, runs (eagerly and under jax.jit) and matches onnxruntime."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.codegen_models import cnn, if_and_loop, mlp, run_onnxruntime
from workbench.onnx_to_jax.literals import array_literal

MODELS = {"mlp": (mlp, (3, 8)), "cnn": (cnn, (2, 3, 8, 8)), "if_loop": (if_and_loop, (4,))}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_generated_code_matches_onnxruntime(name):
    build, shape = MODELS[name]
    model = build()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    source = wb.to_jax_source(model)
    ast.parse(source)
    forward, params = wb.to_jax(model)
    expected = run_onnxruntime(model, x)
    got = forward(params, x)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        np.testing.assert_allclose(np.asarray(have), want, rtol=1e-4, atol=1e-5)
    jitted = jax.jit(forward)(params, x)
    jitted = jitted if isinstance(jitted, tuple) else (jitted,)
    for want, have in zip(expected, jitted):
        np.testing.assert_allclose(np.asarray(have), want, rtol=1e-4, atol=1e-5)


def test_if_takes_the_else_branch_too():
    model = if_and_loop()
    x = -np.abs(np.random.default_rng(2).standard_normal(4)).astype(np.float32)
    forward, params = wb.to_jax(model)
    expected = run_onnxruntime(model, x)
    for want, have in zip(expected, jax.jit(forward)(params, x)):
        np.testing.assert_allclose(np.asarray(have), want, rtol=1e-5, atol=1e-6)


def test_source_is_readable_and_params_keyed_by_initializer_name():
    source = wb.to_jax_source(mlp())
    assert "def forward(params, x):" in source
    assert "params['dense1.kernel']" in source
    assert "jnp.matmul(" in source
    _, params = wb.to_jax(mlp())
    assert set(params) == {"dense1.kernel", "dense1.bias", "dense2.kernel", "dense2.bias"}


def test_shapes_are_folded_so_jit_needs_no_static_arguments():
    source = wb.to_jax_source(cnn())
    # Shape -> Gather on a statically known shape becomes a literal, Reshape gets a literal shape
    # (of the convolution's output, held channels-last and read back on ONNX's axes: layout.py)
    assert "jnp.reshape(jnp.transpose(a, (0, 3, 1, 2)), (2, -1))" in source
    assert "batch = np.array(2, dtype=jnp.int64)" in source


def test_function_name_option():
    source = wb.to_jax_source(mlp(), function_name="predict")
    tree = ast.parse(source)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "predict" for n in tree.body)
    with pytest.raises(ValueError):
        wb.to_jax_source(mlp(), function_name="not valid")


def test_save_jax_runs_with_jax_alone(tmp_path):
    model = cnn()
    out = wb.save_jax(model, tmp_path / "out")
    assert {p.name for p in out.iterdir()} >= {"model_jax.py", "weights.npz", "weights.json", "load.py"}
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["workbench"] = None  # make sure the generated code never needs us
        sys.path.insert(0, {str(out)!r})
        import numpy as np
        from load import load
        forward, params = load()
        y, batch = forward(params, np.load({str(tmp_path / 'x.npy')!r}))
        np.save({str(tmp_path / 'y.npy')!r}, np.asarray(y))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path, timeout=120)
    expected = run_onnxruntime(model, x)[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 3, 3), (3, 0, 2)])
def test_empty_folded_arrays_keep_their_shape(shape):
    """An empty constant's literal keeps every dimension (``tolist()`` of a (0, 3, 3) array is ``[]``)."""
    value = eval(array_literal(np.zeros(shape, np.float32)), {"np": np, "jnp": jax.numpy})  # noqa: S307
    assert value.shape == shape and value.dtype == np.float32


def test_scatter_nd_of_empty_constant_updates_matches_onnxruntime():
    """ScatterND with zero updates (0, 3, 3) folded from constants returns its data unchanged, under
    jax.jit too, as onnxruntime does (Swin3D-T's window masks at small clips: the generated literal was
    a (0,) array, and the scatter could not broadcast it)."""
    indices = numpy_helper.from_array(np.zeros((0, 1), np.int64), "indices")
    updates = numpy_helper.from_array(np.zeros((0, 3, 3), np.float32), "updates")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["i"], value=indices),
         helper.make_node("Constant", [], ["u"], value=updates),
         helper.make_node("Neg", ["u"], ["v"]),
         helper.make_node("ScatterND", ["x", "i", "v"], ["scattered"]),
         helper.make_node("Add", ["scattered", "x"], ["y"])],
        "empty_scatter",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.random.default_rng(3).standard_normal((2, 3, 3)).astype(np.float32)
    assert "np.zeros((0, 3, 3)" in wb.to_jax_source(model)
    forward, params = wb.to_jax(model)
    (expected,) = run_onnxruntime(model, x)
    np.testing.assert_array_equal(np.asarray(forward(params, x)), expected)
    np.testing.assert_array_equal(np.asarray(jax.jit(forward)(params, x)), expected)
