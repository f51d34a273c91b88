"""wb.to_onnx: callables of every kind, input specs, names, saving, and bad input."""

from __future__ import annotations

import errno
import functools
import os
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from flax import nnx
from jax.extend.core import Primitive

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax, run_onnx
from workbench.files import WriteError
from workbench.jax_to_onnx.registry import REGISTRY, HandlerRegistry, Testcase, handler
from workbench.onnx_io import write as write_module


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(30, 20, rngs=rngs)
        self.bn = nnx.BatchNorm(20, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.linear2 = nnx.Linear(20, 10, rngs=rngs)

    def __call__(self, x):
        return self.linear2(self.dropout(nnx.gelu(self.bn(self.linear1(x)))))


@pytest.fixture(scope="module")
def mlp() -> MLP:
    return MLP(nnx.Rngs(0))


def _initializer_names(model: onnx.ModelProto) -> set[str]:
    return {t.name for t in model.graph.initializer}


def test_nnx_module_names_inputs_outputs_and_weights(mlp):
    model = wb.to_onnx(mlp, [("B", 30)])
    assert_graph_quality(model)
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["output"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "B" and dims[1].dim_value == 30
    # the inference BatchNorm is folded into linear1's kernel and bias
    assert {"linear1.kernel", "linear1.bias", "linear2.kernel"} <= _initializer_names(model)
    assert not {"bn.mean", "bn.var"} & _initializer_names(model)
    x = np.random.default_rng(0).standard_normal((7, 30)).astype(np.float32)
    eval_copy = nnx.merge(*nnx.split(mlp))
    eval_copy.eval()
    assert_matches_jax(eval_copy, model, [x], rtol=1e-5, atol=1e-5)


def test_nnx_export_leaves_the_users_module_in_train_mode(mlp):
    wb.to_onnx(mlp, [("B", 30)])
    assert mlp.dropout.deterministic is False


def test_jit_function_and_concrete_array_spec():
    @jax.jit
    def f(x, y):
        return jnp.tanh(x) * y

    x = np.ones((2, 3), np.float32)
    model = wb.to_onnx(f, [x, jax.ShapeDtypeStruct((2, 3), jnp.float32)])
    assert [i.name for i in model.graph.input] == ["x", "y"]
    assert_matches_jax(f, model, [x, np.full((2, 3), 2.0, np.float32)])


def test_pytree_inputs_and_outputs_are_flattened_with_path_names():
    def f(batch, scale):
        return {"sum": batch["a"] + batch["b"], "scaled": batch["a"] * scale}

    model = wb.to_onnx(f, [{"a": ("B", 3), "b": ("B", 3)}, ()])
    assert [i.name for i in model.graph.input] == ["batch.a", "batch.b", "scale"]
    assert [o.name for o in model.graph.output] == ["output.scaled", "output.sum"]
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    s = np.float32(3.0)
    got = run_onnx(model, [a, b, np.asarray(s)])
    np.testing.assert_allclose(got[0], a * s, rtol=1e-6)
    np.testing.assert_allclose(got[1], a + b, rtol=1e-6)


def test_custom_names_and_int_dtype():
    model = wb.to_onnx(
        lambda ids: ids * 2,
        [jax.ShapeDtypeStruct((5,), jnp.int32)],
        input_names=["token_ids"],
        output_names=["doubled"],
    )
    assert model.graph.input[0].name == "token_ids"
    assert run_onnx(model, [np.arange(5, dtype=np.int32)])[0].tolist() == [0, 2, 4, 6, 8]


def test_output_that_is_an_input_gets_an_identity():
    model = wb.to_onnx(lambda x: (x, x + 1), [(3,)])
    assert_graph_quality(model)
    x = np.arange(3, dtype=np.float32)
    first, second = run_onnx(model, [x])
    np.testing.assert_array_equal(first, x)
    np.testing.assert_array_equal(second, x + 1)


def test_double_precision():
    def f(x):
        return jnp.sin(x) * 1e-3

    model = wb.to_onnx(f, [jax.ShapeDtypeStruct((4,), jnp.float64)], enable_double_precision=True)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    x = np.linspace(0, 1, 4)
    got = run_onnx(model, [x])[0]
    np.testing.assert_allclose(got, np.sin(x) * 1e-3, rtol=1e-14)


def test_linen_partial_apply_names_weights_by_module_path():
    class LinenMLP(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(4)(linen.relu(linen.Dense(8)(x)))

    model_def = LinenMLP()
    variables = model_def.init(jax.random.key(0), jnp.ones((1, 6)))
    fn = functools.partial(model_def.apply, variables)
    model = wb.to_onnx(fn, [("B", 6)])
    assert {"Dense_0.kernel", "Dense_0.bias", "Dense_1.kernel"} <= _initializer_names(model)
    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    assert_matches_jax(fn, model, [x], rtol=1e-5, atol=1e-6)


def test_equinox_module_names_weights_by_field_path():
    model_def = eqx.nn.MLP(6, 3, width_size=8, depth=2, key=jax.random.key(0))
    model = wb.to_onnx(model_def, [(6,)])
    assert {"layers.0.weight", "layers.0.bias", "layers.2.weight"} <= _initializer_names(model)
    x = np.random.default_rng(3).standard_normal(6).astype(np.float32)
    assert_matches_jax(model_def, model, [x], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- saving
def test_path_writes_the_model_atomically_and_external_data(tmp_path, mlp):
    target = tmp_path / "mlp.onnx"
    model = wb.to_onnx(mlp, [("B", 30)], path=target, external_data_threshold=256)
    (data,) = tmp_path.glob("mlp.onnx.*.data")  # the side file is named after its content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx", data.name]
    loaded = onnx.load(str(target))
    x = np.ones((2, 30), np.float32)
    np.testing.assert_allclose(run_onnx(loaded, [x])[0], run_onnx(model, [x])[0], rtol=1e-6)


def test_failed_export_leaves_no_file(tmp_path):
    target = tmp_path / "bad.onnx"
    with pytest.raises(wb.UnsupportedPrimitiveError):
        wb.to_onnx(lambda x: _mystery(x), [(3,)], path=target)
    assert list(tmp_path.iterdir()) == []


def test_write_failure_cleans_up_temp_files(tmp_path, monkeypatch):
    target = tmp_path / "m.onnx"

    def broken_save(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(write_module, "_save", broken_save)
    with pytest.raises(WriteError, match=r"m\.onnx: No space left on device"):
        wb.to_onnx(lambda x: x + 1, [(3,)], path=target)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- bad input
_mystery_p = Primitive("workbench_test_mystery")
_mystery_p.def_abstract_eval(lambda x: x)
_mystery_p.def_impl(lambda x: np.asarray(x) * 3)
_enigma_p = Primitive("workbench_test_enigma")
_enigma_p.def_abstract_eval(lambda x: x)
_enigma_p.def_impl(lambda x: np.asarray(x) + 7)


def _mystery(x):
    return _mystery_p.bind(x)


def _enigma(x):
    return _enigma_p.bind(x)


def test_unsupported_primitives_are_all_listed_with_counts_and_lines():
    def f(x):
        y = _mystery(x)
        y = _mystery(y)
        y = jax.jit(lambda v: _mystery(v))(y)
        return _enigma(y)

    with pytest.raises(wb.UnsupportedPrimitiveError) as info:
        wb.to_onnx(f, [(3,)])
    by_name = {p.name: p for p in info.value.primitives}
    assert by_name["workbench_test_mystery"].count == 3
    assert by_name["workbench_test_enigma"].count == 1
    message = str(info.value)
    assert "workbench_test_mystery ×3" in message and "workbench_test_enigma ×1" in message
    assert f"{Path(__file__).name}:" in message
    locations = by_name["workbench_test_mystery"].locations
    assert all(loc.file == __file__ for loc in locations)


def test_a_handler_registered_at_run_time_makes_it_convert():
    def rule(ctx, x):
        return ctx.op("Mul", x, ctx.scalar(3, ctx.avals_in[0].dtype))

    handler("workbench_test_mystery", onnx_ops=("Mul",), testcases=[Testcase("mystery", _mystery, [(3,)])])(rule)
    try:
        model = wb.to_onnx(_mystery, [(3,)])
        np.testing.assert_allclose(run_onnx(model, [np.arange(3, dtype=np.float32)])[0], [0, 3, 6])
        with pytest.raises(ValueError, match="already registered"):
            handler("workbench_test_mystery", onnx_ops=("Mul",))(rule)
    finally:
        REGISTRY.unregister("workbench_test_mystery")


def test_broken_plugin_fails_loudly_with_its_name(tmp_path, monkeypatch):
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [workbench.handlers]
            broken = workbench_no_such_plugin_module
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = HandlerRegistry()
    with pytest.raises(wb.PluginLoadError, match="'broken'.*workbench_no_such_plugin_module"):
        registry.ensure_loaded()


@pytest.mark.parametrize(
    "fn, inputs, pattern",
    [
        (42, [(3,)], "fn: expected a callable"),
        (lambda x: x, "B,3", "inputs: expected a list"),
        (lambda x: x, [(3,), (3,)], r"takes 1 positional argument\(s\) \(x\), and inputs gives 2 spec\(s\)"),
        (lambda x: x, [(3.5,)], "must be an int or a string"),
        (lambda x: x, [("B!",)], "not a name or expression"),
        (lambda x: x, [(-1,)], "negative"),
        (lambda x: x, [object()], "cannot use object as an input spec"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_argument(fn, inputs, pattern):
    with pytest.raises(ValueError, match=pattern):
        wb.to_onnx(fn, inputs)


def test_inconsistent_symbolic_dimensions_name_the_shapes():
    with pytest.raises(wb.TraceError, match=r"float32\[B, 3\].*float32\[C, 3\]"):
        wb.to_onnx(lambda x, y: x + y, [("B", 3), ("C", 3)])


def test_bad_opset_and_names():
    with pytest.raises(ValueError, match="opset"):
        wb.to_onnx(lambda x: x + 1, [(3,)], opset=7)
    with pytest.raises(ValueError, match="input_names"):
        wb.to_onnx(lambda x: x + 1, [(3,)], input_names=["a", "b"])


def test_user_errors_do_not_leak_as_raw_jax_tracebacks():
    def broken(x):
        return x @ jnp.ones((4, 4))

    with pytest.raises(wb.TraceError, match="tracing broken"):
        wb.to_onnx(broken, [(3,)])


def test_importing_workbench_is_light():
    code = "import sys, workbench; print(sorted(m for m in ('jax', 'onnxruntime', 'plotly', 'IPython', 'ipywidgets') if m in sys.modules))"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ})
    assert out.stdout.strip() == "[]"
