"""The ``workbench inspect`` and ``workbench to-jax`` subcommands."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.support.codegen_models import cnn, run_onnxruntime
from tests.support.saved_jax import load_saved
from workbench.cli import main


def _save(tmp_path, model: onnx.ModelProto):
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path


def test_inspect_json(tmp_path, capsys):
    path = _save(tmp_path, cnn())
    assert main(["inspect", str(path), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["inputs"] == [{"name": "x", "dtype": "float", "shape": [2, 3, 8, 8]}]
    assert summary["opsets"] == {"ai.onnx": 17}
    assert summary["op_histogram"]["Conv"] == 1
    assert summary["parameters"]["count"] == 8 * 3 * 3 * 3 + 8 * 5 + 8 * 4 * 4 * 5 + 2
    conv = next(n for n in summary["nodes"] if n["op_type"] == "Conv")
    assert conv["outputs"][0]["shape"] == [2, 8, 8, 8]  # from shape inference


def test_inspect_text(tmp_path, capsys):
    path = _save(tmp_path, cnn())
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "'x': float [2, 3, 8, 8]" in out
    assert "MaxPool" in out and "parameters:" in out


def test_to_jax_writes_a_runnable_module(tmp_path, capsys):
    model = cnn()
    path = _save(tmp_path, model)
    assert main(["to-jax", str(path), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out  # every file of the folder (weights.json was left out)
    assert out.startswith(f"wrote {tmp_path / 'out'}: load.py, model_jax.py, weights.json, weights.npz\n"), out
    forward, params = load_saved(tmp_path / "out")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y, _ = forward(params, x)
    np.testing.assert_allclose(np.asarray(y), run_onnxruntime(model, x)[0], rtol=1e-4, atol=1e-5)


def test_bad_file_gives_an_error_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    assert main(["inspect", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.onnx" in err and "Traceback" not in err
