"""Writing an ONNX model atomically: the model file and its side file of weights as one unit.

The one writer of ONNX files (``wb.to_onnx(path=...)``, the web harness). It follows one
external-data policy (:class:`ExternalData`): large initializers go to ``<model file>.data``
beside the model, written by onnx's own external-data writer. Both files are written under
their final names into a private staging folder inside the target folder and then committed by
:func:`_commit`, the one place that decides how they replace what was there: readers see the old
files or the new ones, never a half-written file, and nothing is left behind when writing fails.
A side file left by an earlier write of the same model name is removed when the new model keeps
its weights inline: the side file belongs to its model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from workbench.errors import OnnxModelError, WorkbenchError

#: Initializers of at least this many bytes go to the side file (``wb.to_onnx``'s default).
DEFAULT_TENSOR_THRESHOLD = 1024 * 1024
DATA_SUFFIX = ".data"


@dataclass(frozen=True)
class ExternalData:
    """Which initializers :func:`write_model` moves to the side file ``<model file name>.data``.

    A tensor of at least ``tensor_bytes`` bytes moves there, when the serialized model is larger
    than ``model_bytes`` (0: whatever its size). ``ExternalData()`` moves tensors of 1 MiB and
    more; the web harness keeps a model under 64 MiB in one file (``ExternalData(1024, 64 MiB)``).
    """

    tensor_bytes: int = DEFAULT_TENSOR_THRESHOLD
    model_bytes: int = 0

    def __post_init__(self) -> None:
        if self.tensor_bytes < 0 or self.model_bytes < 0:
            raise ValueError(f"external data thresholds must be >= 0 bytes, got {self}")

    def applies_to(self, model: onnx.ModelProto) -> bool:
        """True when the model has a tensor to move and is large enough for the side file."""
        if not any(_raw_bytes(t) >= self.tensor_bytes for t in model.graph.initializer):
            return False
        return self.model_bytes == 0 or model.ByteSize() > self.model_bytes


@dataclass(frozen=True)
class WrittenModel:
    """The files :func:`write_model` wrote: the model, and its side file when weights went there."""

    model: Path
    data: Path | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.model,) if self.data is None else (self.model, self.data)


def data_file_name(model_file_name: str) -> str:
    """The side file of ``model.onnx``: ``model.onnx.data``."""
    return model_file_name + DATA_SUFFIX


def write_model(
    model: onnx.ModelProto,
    path: str | os.PathLike[str],
    *,
    external_data: ExternalData | None = ExternalData(),
) -> WrittenModel:
    """Write ``model`` to ``path`` atomically, large weights to ``<path>.data`` as ``external_data`` says.

    ``external_data=None`` keeps every weight in the model file. The caller's ModelProto is not
    modified. The folder must exist. Files get the mode of any new file (0o666 less the umask).
    """
    target = Path(path)
    if target.is_dir():
        raise WorkbenchError(f"cannot write the ONNX model to {target}: it is a directory; give a file path.")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise WorkbenchError(f"cannot write the ONNX model to {target}: folder {folder} does not exist.")
    external = external_data is not None and external_data.applies_to(model)
    data_name = data_file_name(target.name)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder))
    try:
        if external:
            assert external_data is not None  # for type checkers: applies_to() was called on it
            # onnx moves the weights out of the proto it is given: hand it a copy
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            # onnx creates a missing data file 0600 but appends to an existing one: create it like any new file
            os.close(os.open(staging / data_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            _save(copy, staging / target.name, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=data_name, size_threshold=external_data.tensor_bytes)  # fmt: skip
        else:
            _save(model, staging / target.name)
        _commit(staging, folder, target.name, data_name if external else None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return WrittenModel(target, folder / data_name if external else None)


def _save(model: onnx.ModelProto, path: Path, **external: object) -> None:
    try:
        onnx.save_model(model, str(path), **external)
    except ValueError as error:  # protobuf refuses to serialize a message over 2 GB
        raise OnnxModelError(
            f"cannot serialize the model for {path.name}: {error}. Keep its weights in external data "
            "(a smaller external data threshold)."
        ) from error


def _commit(staging: Path, folder: Path, model_name: str, data_name: str | None) -> None:
    """Move the staged files into ``folder``: the side file first, so the model never names a missing one.

    Each move is an atomic ``os.replace`` within one file system (the staging folder sits in
    ``folder``). Without a side file, one left by an earlier write of this model is removed.
    """
    if data_name is not None:
        os.replace(staging / data_name, folder / data_name)
    os.replace(staging / model_name, folder / model_name)
    if data_name is None:
        (folder / data_file_name(model_name)).unlink(missing_ok=True)


def _raw_bytes(tensor: onnx.TensorProto) -> int:
    return len(tensor.raw_data) if tensor.HasField("raw_data") else 0


__all__ = ["DATA_SUFFIX", "DEFAULT_TENSOR_THRESHOLD", "ExternalData", "WrittenModel", "data_file_name", "write_model"]
