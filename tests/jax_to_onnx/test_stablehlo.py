"""The StableHLO door: every handler testcase and zoo model exported with jax.export, converted from its
StableHLO module op by op, and compared with JAX in onnxruntime. Generated from the handler registry.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

import workbench as wb
from tests.support.doors import STABLEHLO_EXPECTED_FAILURES, case_params, export, unknown_entries, zoo_params
from tests.support.harness import assert_matches_jax, concrete_inputs, run_onnx
from workbench import zoo
from workbench.errors import SpecError, StableHLOError, UnsupportedStableHLOOpError
from workbench.jax_to_onnx.stablehlo.registry import REGISTRY
from workbench.specs import parse_input_specs

# Token ids below the GPT's vocabulary, sequence length within its position table (as test_model_zoo.py).
ZOO_INT_HIGH = 100
ZOO_SIZES = {"B": 3, "T": 5}


def test_expected_failures_name_real_cases():
    assert not unknown_entries(STABLEHLO_EXPECTED_FAILURES)


@pytest.mark.parametrize("case", case_params(STABLEHLO_EXPECTED_FAILURES))
def test_handler_testcase_through_stablehlo_matches_jax(case):
    exported = export(case)
    model = wb.to_onnx(exported)
    onnx.checker.check_model(model, full_check=True)
    args = concrete_inputs(case.inputs, int_high=case.int_high, sizes=case.symbolic_sizes)
    with jax.enable_x64(case.x64):
        assert_matches_jax(case.fn, model, args, rtol=case.rtol, atol=case.atol)


@pytest.mark.parametrize("name", zoo_params(STABLEHLO_EXPECTED_FAILURES))
def test_zoo_model_through_stablehlo_matches_jax(name):
    built = zoo.ZOO[name]()
    model_fn = built.eval_fn()

    def forward(x):  # the weights become constants of the StableHLO module, as in a served artefact
        return model_fn(x)

    specs = parse_input_specs(built.inputs)
    model = wb.to_onnx(jax.export.export(jax.jit(forward))(*specs.args))
    first = model.graph.input[0]
    assert first.name == "x"
    assert first.type.tensor_type.shape.dim[0].dim_param == "B"  # the Exported's symbolic dim
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "B"
    args = concrete_inputs(built.inputs, int_high=ZOO_INT_HIGH, sizes=ZOO_SIZES)
    assert_matches_jax(model_fn, model, args, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- sources, names, errors
def _two_outputs(x, scale):
    return {"sum": jnp.sum(x * scale, axis=1), "max": jnp.max(x, axis=0)}


def _exported() -> jax.export.Exported:
    b = jax.export.symbolic_shape("B")[0]
    return jax.export.export(jax.jit(_two_outputs))(
        jax.ShapeDtypeStruct((b, 4), np.float32), jax.ShapeDtypeStruct((), np.float32)
    )


def test_exported_bytes_and_files_convert_with_pytree_names(tmp_path):
    exported = _exported()
    path = tmp_path / "two.jax_exported"
    path.write_bytes(exported.serialize())
    for source in (exported, exported.serialize(), path, str(path)):
        model = wb.to_onnx(source)
        assert [i.name for i in model.graph.input] == ["x", "scale"]
        assert [o.name for o in model.graph.output] == ["output.max", "output.sum"]
        dims = [d.dim_param or d.dim_value for d in model.graph.output[1].type.tensor_type.shape.dim]
        assert dims == ["B"]
    x, scale = np.arange(12, dtype=np.float32).reshape(3, 4), np.array(0.5, np.float32)
    got = run_onnx(model, [x, scale])
    expected = _two_outputs(x, scale)
    np.testing.assert_allclose(got[0], expected["max"])
    np.testing.assert_allclose(got[1], expected["sum"])


def test_exported_converts_in_half_precision_with_float32_io():
    """``precision=`` applies to an Exported as to a function: the pass runs on the model either door built."""
    model = wb.to_onnx(_exported(), precision="float16")
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {onnx.TensorProto.FLOAT}
    assert any(n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT16 for n in model.graph.node)
    x, scale = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4), np.array(0.5, np.float32)
    got = run_onnx(model, [x, scale])
    expected = _two_outputs(x, scale)
    np.testing.assert_allclose(got[0], expected["max"], atol=1e-2)
    np.testing.assert_allclose(got[1], expected["sum"], atol=1e-2)


def test_serialized_exported_converts_in_another_process_without_the_source(tmp_path):
    """One process defines and exports a function; another converts the file knowing nothing of it."""
    writer = textwrap.dedent(
        """
        import sys, jax, jax.numpy as jnp, numpy as np
        def secret(x, w):
            return jax.nn.gelu(x @ w) + jnp.cumsum(x, axis=1)[:, :3]
        b = jax.export.symbolic_shape("B")[0]
        exported = jax.export.export(jax.jit(secret))(jax.ShapeDtypeStruct((b, 5), np.float32),
                                                    jax.ShapeDtypeStruct((5, 3), np.float32))
        open(sys.argv[1], "wb").write(exported.serialize())
        x = np.linspace(-2, 2, 20, dtype=np.float32).reshape(4, 5)
        w = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
        np.savez(sys.argv[2], x=x, w=w, y=np.asarray(secret(x, w)))
        """
    )
    artefact, data, onnx_path = tmp_path / "secret.bin", tmp_path / "io.npz", tmp_path / "secret.onnx"
    subprocess.run([sys.executable, "-c", writer, str(artefact), str(data)], check=True, cwd=tmp_path)
    converter = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "export", "--from-exported", str(artefact), "-o", str(onnx_path)],
        check=False, capture_output=True, text=True, cwd=tmp_path,
    )
    assert converter.returncode == 0, converter.stderr
    io = np.load(data)
    model = onnx.load(str(onnx_path))
    np.testing.assert_allclose(run_onnx(model, [io["x"], io["w"]])[0], io["y"], rtol=1e-5, atol=1e-5)


def test_unsupported_ops_are_reported_all_at_once_with_locations(monkeypatch):
    def f(x):
        return jnp.sin(x) + jnp.cos(x) * jnp.sin(2 * x)

    exported = jax.export.export(jax.jit(f))(jax.ShapeDtypeStruct((3,), np.float32))
    monkeypatch.setattr(REGISTRY, "_converters", {k: v for k, v in REGISTRY.all_by_name().items()
                                                   if k not in ("stablehlo.sine", "stablehlo.cosine")})
    with pytest.raises(UnsupportedStableHLOOpError) as raised:
        wb.to_onnx(exported)
    ops = {op.name: op for op in raised.value.ops}
    assert set(ops) == {"stablehlo.sine", "stablehlo.cosine"} and ops["stablehlo.sine"].count == 2
    assert ops["stablehlo.cosine"].locations[0].file.endswith("test_stablehlo.py")
    assert "stablehlo.sine ×2" in str(raised.value)


@pytest.mark.parametrize(
    "source, error, message",
    [
        (b"not a flatbuffer", StableHLOError, "not a serialized jax.export.Exported"),
        ("no/such/file.bin", SpecError, "'no/such/file.bin' is not a file.*give the function itself"),
    ],
)
def test_bad_artefacts_are_refused_clearly(source, error, message):
    with pytest.raises(error, match=message):
        wb.to_onnx(source)


def test_inputs_with_an_exported_are_a_usage_error():
    with pytest.raises(SpecError, match="carries its own input types"):
        wb.to_onnx(_exported(), [(3, 4)])


def test_every_converter_declares_its_family_and_reference():
    entries = REGISTRY.all()
    assert len(entries) > 60
    for entry in entries:
        assert entry.family in {"elementwise", "shape", "index", "linalg", "reduce", "control"}, entry.op
        assert entry.doc.startswith("https://"), entry.op
        assert entry.via or entry.onnx_ops or entry.family == "control", entry.op
