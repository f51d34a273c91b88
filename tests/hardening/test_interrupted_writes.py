"""Interrupted and failing writes: a reader finds the old model or the new one, never a mix, and nothing is left.

Each writer (``write_model`` inline and with a side file of weights, ``save_jax`` into a new and
into an existing folder) is killed at every point where it changes the file system (see
tests/support/crash_points.py). After each kill the model on disk must load and be exactly the
old model or exactly the new one; the next write must then succeed and leave only its own files
(temp files and orphaned side files of the killed writer removed, nothing appended to).
Disk-full is real: a 1 MiB tmpfs when the tests run as root (as .ci/run does), else a file-size
limit (RLIMIT_FSIZE) in a child process; plus injected ENOSPC errors.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.support import crash_points
from workbench.errors import WorkbenchError
from workbench.files import WriteError
from workbench.onnx_io import ExternalData, load_model, write_model

SIDE_FILE_BYTES = 512  # initializers of at least this many bytes go to the side file in these tests


def _model(seed: int, size: int = 32) -> onnx.ModelProto:
    """y = x @ W + b with W of ``size`` x ``size``: W goes to the side file, b stays inline."""
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        f"affine{seed}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])],
        [numpy_helper.from_array(rng.standard_normal((size, size)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.standard_normal(size).astype(np.float32), "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _loads_as(path: Path) -> onnx.ModelProto:
    return load_model(path).proto  # external data read and inlined: comparable with the in-memory model


# ------------------------------------------------------------------------------ write_model, killed
@pytest.mark.parametrize(
    "tensor_bytes, onnx_ir", [(None, False), (SIDE_FILE_BYTES, False), (SIDE_FILE_BYTES, True)],
    ids=["inline", "side_file", "side_file_onnx_ir"],  # onnx_ir: the model given as an onnx-ir model (Conversion.save)
)
def test_write_model_killed_at_every_point_leaves_the_old_or_the_new_model(tmp_path: Path, tensor_bytes, onnx_ir):
    old, new, third = _model(1), _model(2), _model(3)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    new_file = scratch / "new.onnx.pb"
    new_file.write_bytes(new.SerializeToString())
    before = tmp_path / "before"
    before.mkdir()
    policy = None if tensor_bytes is None else ExternalData(tensor_bytes=tensor_bytes)
    write_model(old, before / "m.onnx", external_data=policy)
    work = tmp_path / "work"
    crash_points.copy_tree(before, work)
    args = (str(new_file), str(work / "m.onnx"), tensor_bytes, onnx_ir)
    changes = crash_points.count_changes(crash_points.write_model_job, args, scratch)
    if onnx_ir:  # onnx-ir writes the model its way (value_info of the initializers...): compare with that
        new = _loads_as(work / "m.onnx")
        assert [t.name for t in new.graph.initializer] == ["W", "b"] and new.graph.node == _model(2).graph.node
        for written, given in zip(new.graph.initializer, _model(2).graph.initializer, strict=True):
            np.testing.assert_array_equal(numpy_helper.to_array(written), numpy_helper.to_array(given))
    assert _loads_as(work / "m.onnx") == new
    assert changes >= 3  # temp file(s) created, committed, old side file removed...
    seen = set()
    for crash_at in range(changes):
        crash_points.copy_tree(before, work)
        crash_points.run_killed_at(crash_points.write_model_job, args, crash_at, scratch)
        found = _loads_as(work / "m.onnx")
        assert found in (old, new), f"killed before change {crash_at}: the model on disk is neither the old nor the new one"
        seen.add("new" if found == new else "old")
        # the next write removes what the killed one left and adds nothing to it
        written = write_model(third, work / "m.onnx", external_data=policy)
        assert _listing(work) == sorted(p.name for p in written.files), f"left behind after change {crash_at}"
        assert _loads_as(work / "m.onnx") == third
    assert seen == {"old", "new"}  # the kills fell before and after the commit


def test_a_crashed_writers_temp_files_do_not_grow_the_next_side_file(tmp_path: Path):
    model = _model(1, size=64)
    target = tmp_path / "m.onnx"
    written = write_model(model, target, external_data=ExternalData(tensor_bytes=SIDE_FILE_BYTES))
    size = written.data.stat().st_size
    # what a writer killed mid-way leaves: a staged side file (100 KB of it) and a staged model
    (tmp_path / ".m.onnx.0123456789ab.tmp").write_bytes(b"\0" * 100_000)
    (tmp_path / ".m.onnx.ba9876543210.tmp").write_bytes(b"partial model")
    (tmp_path / "m.onnx.ffffffffffffffff.data").write_bytes(b"an orphaned side file")
    again = write_model(model, target, external_data=ExternalData(tensor_bytes=SIDE_FILE_BYTES))
    assert again.data.stat().st_size == size
    assert _listing(tmp_path) == ["m.onnx", again.data.name]
    assert _loads_as(target) == model


# ------------------------------------------------------------------------------ save_jax, killed
def _saved_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("existing", [True, False], ids=["replacing_a_folder", "new_folder"])
def test_save_jax_killed_at_every_point_leaves_the_old_or_the_new_folder(tmp_path: Path, existing: bool):
    from workbench.onnx_to_jax.api import generate, save_jax

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    generated = generate(_model(2))
    generated_file = scratch / "generated.pickle"
    generated_file.write_bytes(pickle.dumps(generated))
    before = tmp_path / "before"
    before.mkdir()
    if existing:
        save_jax(_model(1), before / "out")
        old_files = _saved_files(before / "out")
    work = tmp_path / "work"
    crash_points.copy_tree(before, work)
    args = (str(generated_file), str(work / "out"))
    changes = crash_points.count_changes(crash_points.save_jax_job, args, scratch)
    new_files = _saved_files(work / "out")
    assert set(new_files) == {"model_jax.py", "weights.npz", "weights.json", "load.py"}
    seen = set()
    for crash_at in range(changes):
        crash_points.copy_tree(before, work)
        crash_points.run_killed_at(crash_points.save_jax_job, args, crash_at, scratch)
        if (work / "out").exists():
            found = _saved_files(work / "out")
            assert found in ([old_files, new_files] if existing else [new_files]), (
                f"killed before change {crash_at}: the folder mixes files of the old and the new model"
            )
            seen.add("new" if found == new_files else "old")
        else:
            assert not existing, f"killed before change {crash_at}: the existing folder disappeared"
            seen.add("none")
        save_jax(_model(3), work / "out")
        assert _listing(work) == ["out"], f"left behind after change {crash_at}"
    assert seen == ({"old", "new"} if existing else {"none", "new"})


def test_save_jax_refuses_a_folder_with_other_files_and_deletes_nothing(tmp_path: Path):
    from workbench.onnx_to_jax.api import save_jax

    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(WorkbenchError, match=r"holds files save_jax did not write \(notes\.txt\)"):
        save_jax(_model(1), out)
    assert _listing(out) == ["notes.txt"] and _listing(tmp_path) == ["project"]
    # a folder an earlier save_jax wrote is replaced as a whole (the __pycache__ Python adds goes too)
    save_jax(_model(1), tmp_path / "jax")
    (tmp_path / "jax" / "__pycache__").mkdir()
    save_jax(_model(2), tmp_path / "jax")
    assert _listing(tmp_path / "jax") == ["load.py", "model_jax.py", "weights.json", "weights.npz"]


# ------------------------------------------------------------------------------ export_web_harness, killed
def _fake_web_cache(folder: Path) -> Path:
    """A cache folder as `workbench web setup` leaves it, with placeholder runtime files (nothing is run here)."""
    import json

    from workbench.web import runtime

    package = folder / f"onnxruntime-web-{runtime.ORT_WEB_VERSION}" / "node_modules" / "onnxruntime-web"
    (package / "dist").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"version": runtime.ORT_WEB_VERSION}))
    for name in runtime.bundle_for(("wasm",)).files:
        (package / "dist" / name).write_text(f"placeholder {name}")
    return folder


def test_export_web_harness_killed_at_every_point_is_the_old_harness_the_new_one_or_refused(tmp_path: Path):
    """Each file of a harness is replaced atomically, the manifest last; a kill in between leaves files of two
    exports, which the smoke test must refuse (sha256 in the manifest) rather than run. The nastiest case: the same
    model exported again with other example inputs (the model file is the same; was: the old manifest's expected
    outputs were read against the new inputs, a failing comparison instead of a refusal)."""
    from workbench.web.harness import EXAMPLE_INPUTS_NAME, MANIFEST_NAME, export_web_harness
    from workbench.web.smoke import _read_manifest

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cache = _fake_web_cache(tmp_path / "cache")
    model_file = scratch / "model.onnx"
    model_file.write_bytes(_model(1).SerializeToString())
    before = tmp_path / "before"
    export_web_harness(_model(1), before / "web", providers=("wasm",), seed=0, cache_dir=cache)
    work = tmp_path / "work"

    def state(folder: Path) -> tuple[bytes, bytes]:
        return (folder / MANIFEST_NAME).read_bytes(), (folder / EXAMPLE_INPUTS_NAME).read_bytes()

    old = state(before / "web")
    crash_points.copy_tree(before, work)
    args = (str(model_file), str(work / "web"), 1, str(cache))
    changes = crash_points.count_changes(crash_points.web_harness_job, args, scratch)
    new = state(work / "web")
    assert new != old and (work / "web" / "model.onnx").read_bytes() == (before / "web" / "model.onnx").read_bytes()
    listing = _listing(work / "web")
    seen = set()
    for crash_at in range(changes):
        crash_points.copy_tree(before, work)
        crash_points.run_killed_at(crash_points.web_harness_job, args, crash_at, scratch)
        try:
            _read_manifest(work / "web")
        except WorkbenchError as error:
            assert "does not match the sha256" in str(error), error
            seen.add("refused")
        else:
            found = state(work / "web")
            assert found in (old, new), f"killed before change {crash_at}: the smoke test would run a mixed harness"
            seen.add("new" if found == new else "old")
        export_web_harness(_model(1), work / "web", providers=("wasm",), seed=1, cache_dir=cache)
        assert _listing(work / "web") == listing, f"left behind after change {crash_at}"
    assert seen >= {"old", "refused"}, seen  # killed after the manifest's replacement: "new"


# ------------------------------------------------------------------------------ disk full
def _can_mount_tmpfs() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def small_disk(tmp_path: Path):
    """A folder on a 1 MiB tmpfs (as root), else ``None`` (the test then limits the file size instead)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if _can_mount_tmpfs() and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                             capture_output=True).returncode == 0:  # fmt: skip
        try:
            yield mount
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    else:
        yield None


_FSIZE_CHILD = """
import resource, signal, sys
import numpy as np
from pathlib import Path
from tests.hardening.test_interrupted_writes import _model
from workbench.onnx_io import ExternalData, write_model
from workbench.onnx_to_jax.api import save_jax
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
folder = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
for name, write in [("model", lambda: write_model(_model(2, size=600), folder / "m.onnx", external_data=ExternalData(512))),
                    ("jax", lambda: save_jax(_model(2, size=600), folder / "jax"))]:
    try:
        write()
        print(name, "written")
    except Exception as error:
        print(name, type(error).__name__, error)
"""


def test_a_full_disk_keeps_the_old_files_and_leaves_no_temp_file(tmp_path: Path, small_disk: Path | None):
    from workbench.onnx_to_jax.api import save_jax

    folder = small_disk or tmp_path / "limited"
    folder.mkdir(exist_ok=True)
    old = _model(1)
    write_model(old, folder / "m.onnx", external_data=ExternalData(tensor_bytes=SIDE_FILE_BYTES))
    save_jax(old, folder / "jax")
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    big = _model(2, size=600)  # 1.4 MB of weights: more than the 1 MiB disk holds
    if small_disk is not None:
        with pytest.raises(WriteError, match=r"m\.onnx: No space left on device\. Free some space"):
            write_model(big, folder / "m.onnx", external_data=ExternalData(tensor_bytes=SIDE_FILE_BYTES))
        with pytest.raises(WriteError, match=r"jax: No space left on device"):
            save_jax(big, folder / "jax")
    else:  # no tmpfs: a child process may not write files over 200 KB
        result = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(folder)], capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)  # fmt: skip
        assert "model WriteError" in result.stdout and "File too large" in result.stdout, result.stdout + result.stderr
        assert "jax WriteError" in result.stdout, result.stdout + result.stderr
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before  # the old model, its side file and the old JAX folder, nothing else
    assert _loads_as(folder / "m.onnx") == old


@pytest.mark.parametrize("where", ["model", "side_file", "side_file_onnx_ir", "save_jax"])
def test_an_injected_enospc_names_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str):
    from workbench.onnx_io import write as write_module
    from workbench.onnx_to_jax import api

    write_model(_model(1), tmp_path / "m.onnx", external_data=ExternalData(tensor_bytes=SIDE_FILE_BYTES))
    api.save_jax(_model(1), tmp_path / "jax")
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "model":
        monkeypatch.setattr(write_module, "_save", no_space)
        write = lambda: write_model(_model(2), tmp_path / "m.onnx", external_data=ExternalData(SIDE_FILE_BYTES))  # noqa: E731
    elif where == "side_file":
        monkeypatch.setattr(write_module, "_stage_proto", no_space)
        write = lambda: write_model(_model(2), tmp_path / "m.onnx", external_data=ExternalData(SIDE_FILE_BYTES))  # noqa: E731
    elif where == "side_file_onnx_ir":  # an onnx-ir model (Conversion.save) is written by onnx-ir
        monkeypatch.setattr(write_module.ir, "save", no_space)
        ir_model = ir.serde.deserialize_model(_model(2))
        write = lambda: write_model(ir_model, tmp_path / "m.onnx", external_data=ExternalData(SIDE_FILE_BYTES))  # noqa: E731
    else:
        monkeypatch.setattr(np, "savez", no_space)
        write = lambda: api.save_jax(_model(2), tmp_path / "jax")  # noqa: E731
    with pytest.raises(WriteError, match=r"No space left on device\. Free some space and write again\. The previous files were kept"):
        write()
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------ writers at once
def test_two_threads_writing_one_path_give_one_complete_model(tmp_path: Path):
    models = [_model(seed, size=128) for seed in (1, 2)]
    target = tmp_path / "m.onnx"
    errors: list[BaseException] = []

    def write(model: onnx.ModelProto) -> None:
        try:
            for _ in range(10):
                write_model(model, target, external_data=ExternalData(tensor_bytes=SIDE_FILE_BYTES))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(model,)) for model in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _loads_as(target) in models
    assert len(_listing(tmp_path)) == 2  # the model and the one side file it names


def test_two_threads_saving_jax_to_one_folder_give_one_complete_folder(tmp_path: Path):
    from workbench.onnx_to_jax.api import generate, save_jax

    generated = [generate(_model(seed)) for seed in (1, 2)]
    out = tmp_path / "jax"
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            for _ in range(5):
                save_jax(_model(index + 1), out)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (out / "model_jax.py").read_text() in (generated[0][0], generated[1][0])
    with np.load(out / "weights.npz") as weights:
        found = [weights[f"p{i}"] for i in range(len(weights.files))]
    matches = [
        all(np.array_equal(a, b) for a, b in zip(found, params.values(), strict=True)) for _, params in generated
    ]
    assert sorted(matches) == [False, True]  # all the weights of one of the two models
    assert _listing(tmp_path) == ["jax"]


def test_two_processes_writing_one_path_take_turns(tmp_path: Path):
    """The folder lock holds across processes too (flock): each writer's model is complete when it lands."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    files = []
    for seed in (1, 2):
        path = scratch / f"{seed}.pb"
        path.write_bytes(_model(seed, size=256).SerializeToString())
        files.append(path)
    code = (
        "import sys; from tests.support.crash_points import write_model_job\n"
        "for _ in range(5): write_model_job(sys.argv[1], sys.argv[2], 512)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [subprocess.Popen([sys.executable, "-c", code, str(f), str(out / "m.onnx")], env=env) for f in files]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    assert _loads_as(out / "m.onnx") in [_model(1, size=256), _model(2, size=256)]
    assert len(_listing(out)) == 2


# ------------------------------------------------------------------------------ Graph IR with a side file
def _graph_ir(seed: int) -> dict:
    """x @ W, then one more step that differs by seed: the old JSON with the new weights is neither document."""
    import jax.numpy as jnp

    import workbench as wb

    weight = np.random.default_rng(seed).standard_normal((8, 8)).astype(np.float32)  # 256 bytes: to the side file
    step = {1: jnp.tanh, 2: jnp.sin, 3: jnp.cos}[seed]
    return wb.export_graph_ir(lambda x: step(x @ weight), [(2, 8)])


def test_save_graph_ir_killed_at_every_point_leaves_the_old_json_with_its_own_weights(tmp_path: Path):
    """The side file was <stem>.safetensors, replaced before the JSON: a save killed between the two left the old
    JSON reading the new weights (same shapes: silently wrong values). Now it is named by its content's digest."""
    import workbench as wb

    old, new, third = _graph_ir(1), _graph_ir(2), _graph_ir(3)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "new.json").write_text(wb.to_json(new))
    before = tmp_path / "before"
    before.mkdir()
    wb.save_graph_ir(old, before / "m.json", external_weights=True, threshold=16)
    work = tmp_path / "work"
    crash_points.copy_tree(before, work)
    args = (str(scratch / "new.json"), str(work / "m.json"), 16)
    changes = crash_points.count_changes(crash_points.save_graph_ir_job, args, scratch)
    assert wb.load_graph_ir(work / "m.json") == json.loads(wb.to_json(new))
    seen = set()
    for crash_at in range(changes):
        crash_points.copy_tree(before, work)
        crash_points.run_killed_at(crash_points.save_graph_ir_job, args, crash_at, scratch)
        found = wb.load_graph_ir(work / "m.json")
        assert found in (json.loads(wb.to_json(old)), json.loads(wb.to_json(new))), (
            f"killed before change {crash_at}: the JSON reads weights of another save"
        )
        seen.add("new" if found == json.loads(wb.to_json(new)) else "old")
        wb.save_graph_ir(third, work / "m.json", external_weights=True, threshold=16)
        listing = _listing(work)
        assert len(listing) == 2 and "m.json" in listing, f"left behind after change {crash_at}: {listing}"
    assert seen == {"old", "new"}
