"""Graph IR files: the JSON document, and optionally its large tensors in a ``.safetensors`` file beside it.

``save_graph_ir(ir, "model.json", external_weights=True)`` writes ``model.<digest>.safetensors`` (tensors of
at least ``threshold`` bytes, keyed by tensor name; the name holds its content's SHA-256) and then
``model.json`` whose entries point at it (see :func:`save_document`): a reader never sees a JSON pointing at
a missing file or at another save's weights.
Reading resolves a pointer only to a bare file name inside the JSON's own folder (never ``..`` or an
absolute path) and checks the stored dtype and shape against the document.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import GraphIRError, SpecError, check_flag
from workbench.files import (
    WriteError,
    create_temp_beside,
    existing_folder,
    folder_lock,
    remove_stale_temps,
    write_errors,
    write_text_atomic,
)
from workbench.jax_to_onnx.graph_ir.values import bytes_to_array, decode_array

DEFAULT_EXTERNAL_THRESHOLD = 1024  # bytes: tensors this large go to the side file when asked for
SIDE_SUFFIX = ".safetensors"
_DIGEST_DIGITS = 16  # hex digits of the side file's SHA-256 in its name (as onnx_io.write names ONNX side files)
# dtypes safetensors stores natively (others are stored as their raw bytes, uint8, shape [nbytes])
_SAFETENSORS_NATIVE = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64", "bfloat16", "complex64"}
)


def document_to_text(document: dict[str, Any], *, indent: int | None = 1) -> str:
    """The document as strict JSON (no NaN/Infinity literals, which other readers reject)."""
    return json.dumps(document, indent=indent, allow_nan=False, ensure_ascii=False) + "\n"


def save_document(
    document: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    external_weights: bool = False,
    threshold: int = DEFAULT_EXTERNAL_THRESHOLD,
) -> Path:
    """Write the document to ``path`` (and, with ``external_weights``, its large tensors to a side file beside it).

    The side file is named after the JSON and its content, ``<stem>.<16 hex digits of its SHA-256>.safetensors``,
    so a new save never overwrites the weights an existing JSON points to: the side file goes in place first
    (a new name), then the JSON (one atomic rename: the commit), then the side files of this JSON that no
    longer belong to it are removed (a plain ``<stem>.safetensors`` of older saves too). A save killed or out
    of disk at any point leaves the old pair readable as it was; writers of one folder take turns.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise SpecError(f"path: expected a file path such as model.json (str or os.PathLike), got {type(path).__name__}.")
    check_flag("external_weights", external_weights)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise SpecError(f"threshold: expected an int >= 0 (bytes), got {threshold!r}.")
    target = Path(path)
    if target.is_dir():
        raise WriteError(errno.EISDIR, f"cannot write the Graph IR to {target}: it is a directory; give a file path such as model.json.")
    existing_folder(target.parent, "the Graph IR")  # a WriteError naming a missing folder or a file on the path
    document = copy.deepcopy(document)
    folder = target.parent
    with folder_lock(folder), write_errors(f"the Graph IR {target}"):
        remove_stale_temps(target)  # what a killed save of this JSON left, its side file's temp included
        data_name = None
        side = _move_to_side_file(document, threshold) if external_weights else {}
        if side:
            data = _safetensors_bytes(side)
            data_name = f"{target.stem}.{hashlib.sha256(data).hexdigest()[:_DIGEST_DIGITS]}{SIDE_SUFFIX}"
            for name in side:
                document["tensors"][name]["data"] = {"external": {"file": data_name, "key": name}}
            _write_side_file(target, folder / data_name, data)
        write_text_atomic(target, document_to_text(document))  # the commit
        _remove_side_files(folder, target.stem, keep=data_name)
    return target


def _write_side_file(target: Path, side_file: Path, data: bytes) -> None:
    """``data`` to ``side_file`` through a temp file named after the JSON ``target`` (so the next save of that
    JSON removes it when a killed save left it), then renamed: a new name no JSON points to yet."""
    temp = create_temp_beside(target)
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
        os.replace(temp, side_file)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def side_file_pattern(stem: str) -> re.Pattern[str]:
    """Side files a save of ``<stem>.json`` may have written: ``<stem>.<16 hex>.safetensors`` (and older saves' plain name)."""
    return re.compile(rf"{re.escape(stem)}(\.[0-9a-f]{{{_DIGEST_DIGITS}}})?{re.escape(SIDE_SUFFIX)}")


def _remove_side_files(folder: Path, stem: str, *, keep: str | None) -> None:
    """Remove the side files of ``<stem>.json`` other than ``keep`` (after the JSON that used them was replaced)."""
    pattern = side_file_pattern(stem)
    for entry in os.scandir(folder):
        if entry.name != keep and pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def _move_to_side_file(document: dict[str, Any], threshold: int) -> dict[str, np.ndarray]:
    """The tensors of at least ``threshold`` bytes, as safetensors stores them (their entries are repointed by the caller)."""
    side: dict[str, np.ndarray] = {}
    for name, entry in document["tensors"].items():
        if "external" in entry["data"]:
            raise GraphIRError(f"tensors[{name!r}] is already external; load the IR with its weights first.")
        array = decode_array(entry, f"tensors[{name!r}]")
        if array.nbytes < threshold:
            continue
        side[name] = array if entry["dtype"] in _SAFETENSORS_NATIVE else np.frombuffer(array.tobytes(), dtype=np.uint8)
    return side


def _safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({name: np.ascontiguousarray(array) for name, array in tensors.items()})


def external_reader(folder: Path) -> Any:
    """A reader for the document's external tensors, confined to ``folder``."""
    opened: dict[str, Any] = {}

    def read(file_name: str, key: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        where = f"external tensor {key!r} in {file_name!r}"
        if Path(file_name).name != file_name or file_name in (".", "..") or not file_name.endswith(".safetensors"):
            raise GraphIRError(f"{where}: only a .safetensors file name beside the JSON is allowed, not a path.")
        path = folder / file_name
        if not path.is_file():
            raise GraphIRError(f"{where}: {path} does not exist; keep the .safetensors file beside the JSON.")
        handle = opened.get(file_name)
        if handle is None:
            from safetensors import safe_open

            try:
                handle = safe_open(str(path), framework="numpy")
            except Exception as error:  # safetensors raises its own error type for corrupt headers
                raise GraphIRError(f"{where}: {path} is not a readable safetensors file: {error}") from error
            opened[file_name] = handle
        if key not in handle.keys():
            raise GraphIRError(f"{where}: {path} has no tensor {key!r}.")
        stored = handle.get_tensor(key)
        if stored.dtype == dtype and tuple(stored.shape) == tuple(shape):
            return stored
        if stored.dtype == np.uint8 and stored.ndim == 1 and stored.size == math.prod(shape) * dtype.itemsize:
            return bytes_to_array(stored.tobytes(), dtype, shape, where)
        raise GraphIRError(
            f"{where}: stored as {stored.dtype}{list(stored.shape)}, the document says {dtype}{list(shape)}."
        )

    return read
