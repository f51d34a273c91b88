"""Graph IR files: the JSON document, and optionally its large tensors in a ``.safetensors`` file beside it.

``save_graph_ir(ir, "model.json", external_weights=True)`` writes ``model.safetensors`` (tensors of at
least ``threshold`` bytes, keyed by tensor name) and then ``model.json`` whose entries point at it;
both are written atomically, data first, so a reader never sees a JSON pointing at a missing file.
Reading resolves a pointer only to a bare file name inside the JSON's own folder (never ``..`` or an
absolute path) and checks the stored dtype and shape against the document.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import GraphIRError
from workbench.files import write_bytes_atomic, write_text_atomic
from workbench.jax_to_onnx.graph_ir.values import bytes_to_array, decode_array

DEFAULT_EXTERNAL_THRESHOLD = 1024  # bytes: tensors this large go to the side file when asked for
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
    """Write the document to ``path`` (and ``<stem>.safetensors`` beside it with ``external_weights``)."""
    target = Path(path)
    if target.is_dir():
        raise GraphIRError(f"cannot write the Graph IR to {target}: it is a directory; give a file path such as model.json.")
    if not target.parent.exists():
        raise GraphIRError(f"cannot write the Graph IR to {target}: folder {target.parent} does not exist.")
    document = copy.deepcopy(document)
    if external_weights:
        data_name = target.stem + ".safetensors"
        side = _move_to_side_file(document, data_name, threshold)
        if side:
            write_bytes_atomic(target.parent / data_name, _safetensors_bytes(side))
    write_text_atomic(target, document_to_text(document))
    return target


def _move_to_side_file(document: dict[str, Any], data_name: str, threshold: int) -> dict[str, np.ndarray]:
    side: dict[str, np.ndarray] = {}
    for name, entry in document["tensors"].items():
        if "external" in entry["data"]:
            raise GraphIRError(f"tensors[{name!r}] is already external; load the IR with its weights first.")
        array = decode_array(entry, f"tensors[{name!r}]")
        if array.nbytes < threshold:
            continue
        side[name] = array if entry["dtype"] in _SAFETENSORS_NATIVE else np.frombuffer(array.tobytes(), dtype=np.uint8)
        entry["data"] = {"external": {"file": data_name, "key": name}}
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
