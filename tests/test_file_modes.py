"""Files the workbench writes get the mode of any new file (0o666 less the umask), and stay atomic.

Each writer is driven through its public entry point (``wb.to_onnx(path=...)`` with inline and
external weights, ``workbench to-jax``, the web harness export, the viewer's model store and the
helpers of ``workbench.files``) under two umasks; every file it leaves must have exactly
``0o666 & ~umask`` and no temp file may be left beside it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import workbench as wb
from tests.support import web_models
from tests.web import test_harness
from workbench import cli, files
from workbench.jupyter.model_store import ModelStore, new_token
from workbench.web.harness import export_web_harness

fake_cache = test_harness.fake_cache  # the harness tests' fixture, shared


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _assert_modes(folder: Path, umask: int, expected_names: set[str]) -> None:
    names = {p.name for p in folder.iterdir() if p.is_file()}
    assert names == expected_names, f"unexpected files (a temp file left behind?): {sorted(names ^ expected_names)}"
    want = 0o666 & ~umask
    modes = {name: stat.S_IMODE((folder / name).stat().st_mode) for name in sorted(names)}
    wrong = {name: oct(mode) for name, mode in modes.items() if mode != want}
    assert not wrong, f"expected mode {oct(want)} under umask {oct(umask)}, got {wrong}"


def _affine(x):
    weight = jnp.asarray(np.arange(64 * 64, dtype=np.float32).reshape(64, 64) / 4096)
    return jnp.tanh(x @ weight)


@pytest.mark.parametrize("threshold", [None, 1024], ids=["inline", "external_data"])
def test_to_onnx_path(tmp_path: Path, umask: int, threshold: int | None):
    out = tmp_path / "affine.onnx"
    wb.to_onnx(_affine, [("B", 64)], path=out, external_data_threshold=threshold)
    data_files = {p.name for p in tmp_path.glob("affine.onnx.*.data")}
    assert len(data_files) == (1 if threshold else 0)
    _assert_modes(tmp_path, umask, {"affine.onnx"} | data_files)
    # written twice: os.replace onto an existing file still gives the new file's mode
    wb.to_onnx(_affine, [("B", 64)], path=out, external_data_threshold=threshold)
    _assert_modes(tmp_path, umask, {"affine.onnx"} | data_files)


def test_to_jax_cli(tmp_path: Path, umask: int):
    model = tmp_path / "model.onnx"
    model.write_bytes(web_models.mlp().SerializeToString())
    assert cli.main(["to-jax", str(model), "-o", str(tmp_path / "jax")]) == 0
    _assert_modes(tmp_path / "jax", umask, {"model_jax.py", "weights.npz", "weights.json", "load.py"})


@pytest.mark.parametrize("threshold", [1 << 20, 1024], ids=["inline", "external_data"])
def test_web_harness(fake_cache: Path, tmp_path: Path, umask: int, threshold: int):
    info = export_web_harness(
        web_models.mlp(), tmp_path / "harness", providers=("wasm",), external_data_threshold=threshold
    )
    assert any(name.startswith("model.onnx.") and name.endswith(".data") for name in info.files) == (threshold == 1024)
    _assert_modes(tmp_path / "harness", umask, set(info.files))


def test_viewer_model_store(tmp_path: Path, umask: int):
    store = ModelStore(tmp_path / "store")
    path = store.put(new_token(), web_models.mlp().SerializeToString())
    _assert_modes(store.directory, umask, {path.name})
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700, "the store folder keeps the models private"


def test_files_helpers(tmp_path: Path, umask: int):
    source = tmp_path / "source.bin"
    source.write_bytes(b"runtime")
    source.chmod(0o600)  # the copy is a new file: it does not take the source's mode
    files.write_bytes_atomic(tmp_path / "out" / "a.bin", b"bytes")
    files.write_json_atomic(tmp_path / "out" / "b.json", {"a": 1})
    files.copy_file_atomic(source, tmp_path / "out" / "c.mjs")
    _assert_modes(tmp_path / "out", umask, {"a.bin", "b.json", "c.mjs"})
    assert (tmp_path / "out" / "c.mjs").read_bytes() == b"runtime"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "runtime.mjs"
    files.write_bytes_atomic(target, b"old")
    (tmp_path / "source.mjs").write_bytes(b"new")

    def disk_full(reader, writer):  # fails after the temp file was created and partly written
        writer.write(b"ne")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copyfileobj", disk_full)
    with pytest.raises(files.WriteError, match=r"runtime\.mjs: No space left on device\. Free some space"):
        files.copy_file_atomic(tmp_path / "source.mjs", target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtime.mjs", "source.mjs"]
    with pytest.raises(FileNotFoundError):  # a missing source is not a write error
        files.copy_file_atomic(tmp_path / "missing.mjs", target)
