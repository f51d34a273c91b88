"""Kill a writer at every point where it changes the file system, and report what it left.

:func:`count_changes` runs a write job in a child process with every file-system change counted
(``open`` for writing, ``os.replace``/``rename``/``unlink``/``rmdir``/``mkdir``, the folder swap of
:func:`workbench.files.commit_folder`); :func:`run_killed_at` runs it again and ends the child with
``os._exit`` right before change number ``k``: no ``finally`` block, no clean-up, as when the
process is killed or the machine loses power at that instant (minus what the page cache loses).
The tests then check what a reader finds. Nothing here is part of the workbench: the hooks are
installed in the child only.

Children are forked from a ``forkserver`` that has imported the writers once, so each of the
dozens of runs starts in milliseconds and never inherits JAX's threads.
"""

from __future__ import annotations

import builtins
import multiprocessing
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

KILLED = 86  # the exit code of a child killed at its crash point
_PRELOAD = ["tests.support.crash_points", "workbench.onnx_io.write", "workbench.onnx_to_jax.api", "workbench.web.harness",
            "workbench.jax_to_onnx.graph_ir.storage"]
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def _install_hooks(crash_at: int | None, counter: list[int]) -> None:
    """Count (and at ``crash_at`` end the process before) every change the child makes to the file system."""

    def point() -> None:
        if counter[0] == crash_at:
            os._exit(KILLED)
        counter[0] += 1

    def counting(real: Callable[..., Any]) -> Callable[..., Any]:
        def hooked(*args: Any, **kwargs: Any) -> Any:
            point()
            return real(*args, **kwargs)

        return hooked

    for name in ("replace", "rename", "unlink", "remove", "rmdir", "mkdir", "chmod"):
        setattr(os, name, counting(getattr(os, name)))
    real_os_open, real_open = os.open, builtins.open

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & _WRITE_FLAGS:
            point()
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            point()
        return real_open(file, mode, *args, **kwargs)

    os.open = os_open  # type: ignore[assignment]
    builtins.open = open_  # type: ignore[assignment]
    from workbench import files

    files._exchange = counting(files._exchange)  # noqa: SLF001 - the atomic folder swap is one change


# ------------------------------------------------------------------------------ jobs (run in the child)
def write_model_job(model_file: str, target: str, tensor_bytes: int | None, onnx_ir: bool = False) -> None:
    """``write_model`` of the model serialized in ``model_file`` to ``target`` (as an onnx-ir model: ``onnx_ir``)."""
    import onnx_ir as ir

    from workbench.onnx_io.write import ExternalData, write_model

    model = onnx.ModelProto.FromString(Path(model_file).read_bytes())
    source = ir.serde.deserialize_model(model) if onnx_ir else model
    write_model(source, target, external_data=None if tensor_bytes is None else ExternalData(tensor_bytes=tensor_bytes))


def save_jax_job(generated_file: str, out_dir: str) -> None:
    """``save_jax`` with the generated module read from ``generated_file`` (generating writes nothing)."""
    from workbench.onnx_to_jax import api

    generated = pickle.loads(Path(generated_file).read_bytes())  # noqa: S301 - written by this test run
    api.generate = lambda model, **kwargs: generated  # the child skips code generation, not any write
    api.save_jax(b"unused: generate is replaced", out_dir)


def save_graph_ir_job(document_file: str, target: str, threshold: int) -> None:
    """``wb.save_graph_ir(..., external_weights=True)``'s writer on the (valid) document in the JSON ``document_file``."""
    import json

    from workbench.jax_to_onnx.graph_ir.storage import save_document

    document = json.loads(Path(document_file).read_text(encoding="utf-8"))
    save_document(document, target, external_weights=True, threshold=threshold)


def web_harness_job(model_file: str, out_dir: str, seed: int, cache_dir: str) -> None:
    """``export_web_harness`` of the model serialized in ``model_file`` (example inputs drawn with ``seed``), the
    onnxruntime-web files copied from ``cache_dir``."""
    from workbench.web.harness import export_web_harness

    model = onnx.ModelProto.FromString(Path(model_file).read_bytes())
    export_web_harness(model, out_dir, providers=("wasm",), seed=seed, cache_dir=cache_dir)


def _child(job: Callable[..., None], args: tuple[Any, ...], crash_at: int | None, count_file: str) -> None:
    counter = [0]
    _install_hooks(crash_at, counter)
    job(*args)
    with open(count_file, "w") as handle:  # counted too, after the job: harmless
        handle.write(str(counter[0]))


def _run(job: Callable[..., None], args: tuple[Any, ...], crash_at: int | None, scratch: Path) -> tuple[int, int | None]:
    count_file = scratch / "count.txt"
    if count_file.exists():
        count_file.unlink()
    process = _context().Process(target=_child, args=(job, args, crash_at, str(count_file)))
    process.start()
    process.join(timeout=120)
    if process.exitcode is None:
        process.kill()
        raise AssertionError(f"the writer hung (crash point {crash_at})")
    count = int(count_file.read_text()) if count_file.exists() else None
    return process.exitcode, count


def count_changes(job: Callable[..., None], args: tuple[Any, ...], scratch: Path) -> int:
    """How many file-system changes ``job(*args)`` makes when nothing kills it (it completes the write)."""
    exitcode, count = _run(job, args, None, scratch)
    assert exitcode == 0 and count is not None, f"the writer failed (exit code {exitcode})"
    return count


def run_killed_at(job: Callable[..., None], args: tuple[Any, ...], crash_at: int, scratch: Path) -> None:
    """Run ``job(*args)`` and kill it right before its change number ``crash_at`` (0-based)."""
    exitcode, _ = _run(job, args, crash_at, scratch)
    assert exitcode == KILLED, f"the writer was not killed at change {crash_at} (exit code {exitcode})"


def copy_tree(source: Path, target: Path) -> None:
    """``target`` becomes an exact copy of the folder ``source`` (to restore the state before each run)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=True)
