"""`workbench export pkg.module:attr --input ... -o model.onnx` and the wiring of `workbench web`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.support.harness import run_onnx
from workbench.cli import build_parser, main


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "cli_user_models.py").write_text(
        "import jax.numpy as jnp\n"
        "TABLE = jnp.arange(20.0).reshape(10, 2)\n"
        "def embed_sum(ids, x):\n"
        "    return jnp.take(TABLE, ids, axis=0).sum(-1) + x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_export_writes_a_model_that_runs(user_module, capsys):
    out = user_module / "m.onnx"
    assert main(["export", "cli_user_models:embed_sum", "-i", "B:int32", "-i", "B", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    ids = np.array([0, 3, 9], np.int32)
    x = np.ones(3, np.float32)
    np.testing.assert_allclose(run_onnx(model, [ids, x])[0], np.arange(20.0).reshape(10, 2)[ids].sum(-1) + 1)


def test_export_takes_constraints_on_symbolic_dims(tmp_path, monkeypatch):
    # a mask cut from a 16-row table has min(16, T) rows: it converts only with the bound T <= 16
    (tmp_path / "cli_masked.py").write_text(
        "import jax.numpy as jnp\n"
        "def masked(x):\n"
        "    return x * jnp.tril(jnp.ones((16, 16)))[: x.shape[1], : x.shape[1]].sum(-1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "m.onnx"
    assert main(["export", "cli_masked:masked", "-i", "B,T", "-o", str(out)]) == 1
    assert main(["export", "cli_masked:masked", "-i", "B,T", "-c", "T <= 16", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    for shape in ((2, 5), (1, 16)):
        x = np.ones(shape, np.float32)
        np.testing.assert_allclose(run_onnx(model, [x])[0], np.arange(1, shape[1] + 1, dtype=np.float32)[None] * x)


@pytest.mark.parametrize(
    "target, code, message",
    [
        ("cli_user_models:missing", 1, "has no attribute 'missing'"),
        ("no_such_module_here:f", 1, "cannot import module"),
        ("just_a_name", 2, "expected the form pkg.module:attr"),
    ],
)
def test_export_errors_are_one_line(user_module, capsys, target, code, message):
    assert main(["export", target, "-i", "3", "-o", str(user_module / "x.onnx")]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (user_module / "x.onnx").exists()


def test_web_subcommands_are_wired_in():
    args = build_parser().parse_args(["web", "smoke", "some/dir"])
    assert args.command == "web" and args.web_command == "smoke"
