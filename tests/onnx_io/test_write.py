"""workbench.onnx_io.write: one atomic writer, one external-data policy, model and side file as one unit."""

from __future__ import annotations

import errno
import hashlib
import os
import stat

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import workbench as wb
from tests.support.codegen_models import cnn, run_onnxruntime
from workbench.files import WriteError
from workbench.onnx_io import ExternalData, load_model, write_model
from workbench.onnx_io import write as write_module
from workbench.onnx_io.write import data_file_name
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
    # the side file is named after the model and its content
    assert written.data is not None
    digest = hashlib.sha256(written.data.read_bytes()).hexdigest()
    assert written.data.name == data_file_name("cnn.onnx", digest) == f"cnn.onnx.{digest[:16]}.data"
    assert _files(tmp_path) == ["cnn.onnx", written.data.name]
    on_disk = onnx.load_model(str(tmp_path / "cnn.onnx"), load_external_data=False)
    moved = {t.name for t in external_tensors(on_disk)}
    big = {t.name for t in model.graph.initializer if len(t.raw_data) >= 512}
    assert moved == big == {"conv.w", "fc.w"}
    assert {e.value for t in external_tensors(on_disk) for e in t.external_data if e.key == "location"} == {written.data.name}
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
    with pytest.raises(ValueError, match=r"expected an int >= 0 \(bytes\), got -1"):
        ExternalData(tensor_bytes=-1)


def test_rewriting_removes_the_models_old_side_files(tmp_path):
    target = tmp_path / "cnn.onnx"
    (tmp_path / "cnn.onnx.data").write_bytes(b"a side file of an older writer")
    (tmp_path / "other.onnx.0123456789abcdef.data").write_bytes(b"another model's")
    first = write_model(cnn(), target, external_data=ExternalData(tensor_bytes=512))
    assert _files(tmp_path) == ["cnn.onnx", first.data.name, "other.onnx.0123456789abcdef.data"]
    second = write_model(cnn(seed=1), target, external_data=ExternalData(tensor_bytes=512))
    assert second.data != first.data
    assert _files(tmp_path) == ["cnn.onnx", second.data.name, "other.onnx.0123456789abcdef.data"]
    write_model(cnn(seed=1), target, external_data=None)
    assert _files(tmp_path) == ["cnn.onnx", "other.onnx.0123456789abcdef.data"]
    assert onnx.load_model(str(target)) == cnn(seed=1)


@pytest.mark.parametrize("external", [None, ExternalData(tensor_bytes=512)], ids=["inline", "external"])
def test_a_failed_write_keeps_the_old_files_and_leaves_no_temp_file(tmp_path, monkeypatch, external):
    target = tmp_path / "cnn.onnx"
    write_model(cnn(), target, external_data=external)
    before = {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)}
    real_save = write_module._save

    def save_then_fail(model, path):
        real_save(model, path)  # the staged files exist when the failure comes
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(write_module, "_save", save_then_fail)
    with pytest.raises(WriteError, match=r"cnn\.onnx: No space left on device\. Free some space"):
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
        "cnn.onnx": oct(0o666 & ~umask), written.data.name: oct(0o666 & ~umask),
    }
