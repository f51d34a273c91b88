"""`workbench ir export|to-onnx|validate|schema` and `workbench export --from-exported FILE`."""

from __future__ import annotations

import json

import jax
import numpy as np
import onnx
import pytest

from tests.support.harness import run_onnx
from workbench.cli import main


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "ir_user_models.py").write_text(
        "import jax, jax.numpy as jnp, numpy as np\n"
        "W = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)\n"
        "def dense(x):\n"
        "    return jax.nn.relu(x @ W)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _expected(x):
    return np.maximum(x @ np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), 0)


def test_ir_export_validate_and_to_onnx(user_module, capsys):
    document, model_path = user_module / "dense.json", user_module / "dense.onnx"
    assert main(["ir", "export", "ir_user_models:dense", "-i", "B,4", "-o", str(document), "--external-weights"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert json.loads(document.read_text())["format"] == "workbench_graph_ir_v1"
    assert main(["ir", "validate", str(document)]) == 0
    assert "valid workbench_graph_ir_v1 Graph IR of 'dense'" in capsys.readouterr().out
    assert main(["ir", "to-onnx", str(document), "-o", str(model_path), "--opset", "19"]) == 0
    model = onnx.load(str(model_path))
    assert model.opset_import[0].version == 19
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(run_onnx(model, [x])[0], _expected(x), rtol=1e-6)


def test_ir_schema_prints_the_json_schema(capsys):
    assert main(["ir", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["properties"]["format"]["const"] == "workbench_graph_ir_v1"


def test_ir_errors_are_one_line(user_module, capsys):
    broken = user_module / "broken.json"
    broken.write_text('{"format": "workbench_graph_ir_v1"}')
    assert main(["ir", "to-onnx", str(broken), "-o", str(user_module / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert "not a valid workbench_graph_ir_v1 Graph IR" in err and "Traceback" not in err
    assert not (user_module / "x.onnx").exists()


def test_export_from_exported_file(user_module, tmp_path, capsys):
    from ir_user_models import dense  # noqa: PLC0415 - the module the fixture wrote

    b = jax.export.symbolic_shape("B")[0]
    artefact = tmp_path / "dense.exported"
    artefact.write_bytes(jax.export.export(jax.jit(dense))(jax.ShapeDtypeStruct((b, 4), np.float32)).serialize())
    out = tmp_path / "dense.onnx"
    assert main(["export", "--from-exported", str(artefact), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "B"
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(run_onnx(model, [x])[0], _expected(x), rtol=1e-6)



@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "--from-exported", "f.bin", "-i", "3", "-o", "x.onnx"], "give no callable, --input or --constraint"),
        (["export", "-o", "x.onnx"], "or --from-exported FILE"),
    ],
)
def test_export_argument_mistakes(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_ir_to_onnx_and_export_at_half_precision(user_module, capsys):
    document = user_module / "dense.json"
    assert main(["ir", "export", "ir_user_models:dense", "-i", "B,4", "-o", str(document)]) == 0
    from_ir, direct = user_module / "dense_ir.onnx", user_module / "dense.onnx"
    assert main(["ir", "to-onnx", str(document), "-o", str(from_ir), "--precision", "float16"]) == 0
    assert main(["export", "ir_user_models:dense", "-i", "B,4", "-o", str(direct), "--precision", "float16"]) == 0
    model = onnx.load(str(from_ir))
    assert model.SerializeToString() == onnx.load(str(direct)).SerializeToString()
    assert {tensor.data_type for tensor in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(run_onnx(model, [x])[0], _expected(x), rtol=1e-2, atol=1e-2)


def test_precision_choices_are_the_converters():
    from workbench.cli import PRECISION_CHOICES, RUNTIME_CHOICES
    from workbench.jax_to_onnx.cpu_widening import RUNTIMES
    from workbench.jax_to_onnx.precision import PRECISIONS

    assert PRECISION_CHOICES == PRECISIONS and RUNTIME_CHOICES == RUNTIMES


def test_ir_to_onnx_and_export_in_bfloat16_for_onnxruntime_cpu(user_module):
    document = user_module / "dense.json"
    assert main(["ir", "export", "ir_user_models:dense", "-i", "B,4", "-o", str(document)]) == 0
    from_ir, direct = user_module / "dense_ir.onnx", user_module / "dense.onnx"
    flags = ["--precision", "bfloat16", "--runtime", "onnxruntime-cpu"]
    assert main(["ir", "to-onnx", str(document), "-o", str(from_ir), *flags]) == 0
    assert main(["export", "ir_user_models:dense", "-i", "B,4", "-o", str(direct), *flags]) == 0
    model = onnx.load(str(from_ir))
    assert model.SerializeToString() == onnx.load(str(direct)).SerializeToString()
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(run_onnx(model, [x])[0], _expected(x), rtol=2e-2, atol=2e-2)  # onnxruntime loads it
