"""workbench.onnx_io.write: one atomic writer, one external-data policy, model and side file as one unit."""

from __future__ import annotations

import os
import stat

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import workbench as wb
from tests.support.codegen_models import cnn, run_onnxruntime
from workbench.onnx_io import ExternalData, load_model, write, write_model
from workbench.onnx_io.load import external_tensors

X = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_inline_write_round_trips(tmp_path):
    model = cnn()
    written = write_model(model, tmp_path / "cnn.onnx", external_data=None)
    assert written.files == (tmp_path / "cnn.onnx",) and written.data is None
    assert _files(tmp_path) == ["cnn.onnx"]
    assert onnx.load_model(str(tmp_path / "cnn.onnx")) == model


def test_large_tensors_go_to_the_side_file_and_the_callers_model_is_untouched(tmp_path):
    model = cnn()
    before = model.SerializeToString()
    written = write_model(model, tmp_path / "cnn.onnx", external_data=ExternalData(tensor_bytes=512))
    assert model.SerializeToString() == before
    assert written.data == tmp_path / "cnn.onnx.data" and _files(tmp_path) == ["cnn.onnx", "cnn.onnx.data"]
    on_disk = onnx.load_model(str(tmp_path / "cnn.onnx"), load_external_data=False)
    moved = {t.name for t in external_tensors(on_disk)}
    big = {t.name for t in model.graph.initializer if len(t.raw_data) >= 512}
    assert moved == big == {"conv.w", "fc.w"}
    assert {e.value for t in external_tensors(on_disk) for e in t.external_data if e.key == "location"} == {"cnn.onnx.data"}
    loaded = load_model(tmp_path / "cnn.onnx").proto
    for tensor in model.graph.initializer:
        twin = next(t for t in loaded.graph.initializer if t.name == tensor.name)
        np.testing.assert_array_equal(numpy_helper.to_array(twin), numpy_helper.to_array(tensor))
    np.testing.assert_allclose(run_onnxruntime(loaded, X)[0], run_onnxruntime(model, X)[0], rtol=1e-6)


def test_model_size_threshold(tmp_path):
    model = cnn()
    small = ExternalData(tensor_bytes=512, model_bytes=model.ByteSize())  # the model is not larger than that
    assert write_model(model, tmp_path / "a.onnx", external_data=small).data is None
    large = ExternalData(tensor_bytes=512, model_bytes=model.ByteSize() - 1)
    assert write_model(model, tmp_path / "b.onnx", external_data=large).data is not None
    with pytest.raises(ValueError, match=">= 0 bytes"):
        ExternalData(tensor_bytes=-1)


def test_rewriting_inline_removes_the_models_old_side_file(tmp_path):
    target = tmp_path / "cnn.onnx"
    write_model(cnn(), target, external_data=ExternalData(tensor_bytes=512))
    write_model(cnn(seed=1), target, external_data=None)
    assert _files(tmp_path) == ["cnn.onnx"]
    assert onnx.load_model(str(target)) == cnn(seed=1)


@pytest.mark.parametrize("external", [None, ExternalData(tensor_bytes=512)], ids=["inline", "external"])
def test_a_failed_write_keeps_the_old_files_and_leaves_no_temp_file(tmp_path, monkeypatch, external):
    target = tmp_path / "cnn.onnx"
    write_model(cnn(), target, external_data=external)
    before = {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)}
    for stage in ("_stage", "_stage_proto"):  # the writer's two ways of writing into its staging folder
        real = getattr(write, stage)

        def stage_then_fail(*args, real=real, **kwargs):
            real(*args, **kwargs)  # the staged files exist when the failure comes
            raise OSError("disk full")

        monkeypatch.setattr(write, stage, stage_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_model(cnn(seed=1), target, external_data=external)
    assert {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)} == before


def test_bad_targets(tmp_path):
    with pytest.raises(wb.WorkbenchError, match="it is a directory"):
        write_model(cnn(), tmp_path)
    with pytest.raises(wb.WorkbenchError, match="does not exist"):
        write_model(cnn(), tmp_path / "missing" / "cnn.onnx")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_get_the_mode_of_any_new_file(tmp_path, umask):
    previous = os.umask(umask)
    try:
        written = write_model(cnn(), tmp_path / "cnn.onnx", external_data=ExternalData(tensor_bytes=512))
    finally:
        os.umask(previous)
    assert {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in written.files} == {
        "cnn.onnx": oct(0o666 & ~umask), "cnn.onnx.data": oct(0o666 & ~umask),
    }
