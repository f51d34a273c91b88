"""Writing an ONNX model atomically: the model file and its side file of weights as one unit.

The one writer of ONNX files (``wb.to_onnx(path=...)``, the web harness). It follows one
external-data policy (:class:`ExternalData`): large initializers go to a side file beside the
model, written with onnx's own external-data helpers.

The side file is named after the model and its content, ``<model file>.<16 hex digits of its
SHA-256>.data``, so a new write never overwrites the weights an existing model file points to:
:func:`write_model` puts the new side file in place, then replaces the model file (one atomic
rename), then removes the side files of the model that no longer belong to it. A reader sees the
old model with its old weights or the new model with its new weights, never one with the other's;
a writer killed at any point leaves the old pair in place, and the next write removes whatever it
left (its temp files and an orphaned side file). Writers of one folder take turns
(:func:`workbench.files.folder_lock`): two threads or processes writing one path give one
complete model.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import external_data_helper

from workbench import files
from workbench.errors import OnnxModelError, SpecError, WorkbenchError
from workbench.onnx_io.load import external_tensors

#: Initializers of at least this many bytes go to the side file (``wb.to_onnx``'s default).
DEFAULT_TENSOR_THRESHOLD = 1024 * 1024
DATA_SUFFIX = ".data"
_DIGEST_DIGITS = 16


@dataclass(frozen=True)
class ExternalData:
    """Which initializers :func:`write_model` moves to the model's side file of weights.

    A tensor of at least ``tensor_bytes`` bytes moves there, when the serialized model is larger
    than ``model_bytes`` (0: whatever its size). ``ExternalData()`` moves tensors of 1 MiB and
    more; the web harness keeps a model under 64 MiB in one file (``ExternalData(1024, 64 MiB)``).
    """

    tensor_bytes: int = DEFAULT_TENSOR_THRESHOLD
    model_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("tensor_bytes", "model_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SpecError(f"external data threshold {name}: expected an int >= 0 (bytes), got {value!r}.")

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


def data_file_name(model_file_name: str, digest: str) -> str:
    """The side file of ``model.onnx`` whose content has the SHA-256 ``digest``: ``model.onnx.<16 hex>.data``."""
    return f"{model_file_name}.{digest[:_DIGEST_DIGITS]}{DATA_SUFFIX}"


def _side_file_pattern(model_file_name: str) -> re.Pattern[str]:
    """Side files this writer may have written for ``model_file_name`` (and the plain ``.data`` of older writes)."""
    return re.compile(rf"{re.escape(model_file_name)}(\.[0-9a-f]{{{_DIGEST_DIGITS}}})?{re.escape(DATA_SUFFIX)}")


def write_model(
    model: onnx.ModelProto,
    path: str | os.PathLike[str],
    *,
    external_data: ExternalData | None = ExternalData(),
) -> WrittenModel:
    """Write ``model`` to ``path`` atomically, large weights to its side file as ``external_data`` says.

    ``external_data=None`` keeps every weight in the model file. The caller's ModelProto is not
    modified. The folder must exist. Files get the mode of any new file (0o666 less the umask).
    A failure (disk full...) raises :class:`~workbench.files.WriteError` and keeps the old files.
    """
    if external_data is not None and not isinstance(external_data, ExternalData):
        raise SpecError(f"external_data: expected an ExternalData or None, got {type(external_data).__name__}.")
    target = Path(path)
    if target.is_dir():
        raise WorkbenchError(f"cannot write the ONNX model to {target}: it is a directory; give a file path.")
    folder = target.parent if str(target.parent) else Path(".")
    files.existing_folder(folder, "the ONNX model")
    external = external_data is not None and external_data.applies_to(model)
    with files.folder_lock(folder), files.write_errors(f"the ONNX model {target}"):
        files.remove_stale_temps(target)
        if external:
            assert external_data is not None  # for type checkers: applies_to() was called on it
            data_name = _write_with_side_file(model, target, external_data)
        else:
            data_name = None
            with files.replacing(target) as temp:
                _save(model, temp)
        _remove_side_files(folder, target.name, keep=data_name)
    return WrittenModel(target, None if data_name is None else folder / data_name)


def _write_with_side_file(model: onnx.ModelProto, target: Path, policy: ExternalData) -> str:
    """Stage the side file and the model, then commit them: side file in place first, then the model."""
    folder = target.parent if str(target.parent) else Path(".")
    staged_data = files.create_temp_beside(target)  # onnx appends to the file it is given: an empty new one
    staged_model = files.create_temp_beside(target)
    try:
        copy = onnx.ModelProto()  # onnx moves the weights out of the proto it is given: hand it a copy
        copy.CopyFrom(model)
        external_data_helper.convert_model_to_external_data(
            copy, all_tensors_to_one_file=True, location=staged_data.name, size_threshold=policy.tensor_bytes,
            convert_attribute=False,
        )  # fmt: skip
        external_data_helper.write_external_data_tensors(copy, str(folder))
        data_name = data_file_name(target.name, _sha256(staged_data))
        for tensor in external_tensors(copy):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data_name
        _save(copy, staged_model)
        os.replace(staged_data, folder / data_name)  # a new name: no model refers to it yet
        os.replace(staged_model, target)  # the commit: from here on readers get the new pair
    except BaseException:
        staged_data.unlink(missing_ok=True)
        staged_model.unlink(missing_ok=True)
        raise
    return data_name


def _remove_side_files(folder: Path, model_name: str, *, keep: str | None) -> None:
    """Remove the side files of ``model_name`` other than ``keep`` (after the model that used them was replaced)."""
    pattern = _side_file_pattern(model_name)
    for entry in os.scandir(folder):
        if entry.name != keep and pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def _save(model: onnx.ModelProto, path: Path) -> None:
    try:
        data = model.SerializeToString()
    except ValueError as error:  # protobuf refuses to serialize a message over 2 GB
        raise OnnxModelError(
            f"cannot serialize the model for {path.name}: {error}. Keep its weights in external data "
            "(a smaller external data threshold)."
        ) from error
    with open(path, "wb") as handle:
        handle.write(data)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _raw_bytes(tensor: onnx.TensorProto) -> int:
    return len(tensor.raw_data) if tensor.HasField("raw_data") else 0


__all__ = ["DATA_SUFFIX", "DEFAULT_TENSOR_THRESHOLD", "ExternalData", "WrittenModel", "data_file_name", "write_model"]
