"""Writing an ONNX model atomically: the model file and its side file of weights as one unit.

The one writer of ONNX files (``wb.to_onnx(path=...)``, ``Conversion.save``, the web harness). It
takes a ``ModelProto`` or an onnx-ir model and follows one external-data policy
(:class:`ExternalData`): large initializers go to a side file beside the model, written by onnx-ir
tensor by tensor, straight from each weight's own memory (a NumPy array, a memory-mapped file, a
tensor of the proto), so saving never holds a second copy of the weights.

The side file is named after the model and its content, ``<model file>.<16 hex digits of its
SHA-256>.data``, so a new write never overwrites the weights an existing model file points to:
:func:`write_model` stages both files in a private folder beside the target, puts the new side
file in place, then replaces the model file (one atomic rename: the commit), then removes the side
files of the model that no longer belong to it. A reader sees the old model with its old weights
or the new model with its new weights, never one with the other's; a writer killed at any point
leaves the old pair in place, and the next write removes whatever it left (its staging folder and
an orphaned side file). Writers of one folder take turns (:func:`workbench.files.folder_lock`):
two threads or processes writing one path give one complete model.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_ir as ir

from workbench import files
from workbench.errors import OnnxModelError, SpecError
from workbench.onnx_io.load import external_tensors
from workbench.onnx_io.shapes import model_without_initializers

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

    def applies_to(self, model: onnx.ModelProto | ir.Model) -> bool:
        """True when the model has a tensor to move and is large enough for the side file."""
        if isinstance(model, ir.Model):
            sizes = [tensor.nbytes for tensor in _ir_initializers(model)]
            if not any(size >= self.tensor_bytes for size in sizes):
                return False
            # the weights are most of a model's bytes: their sum decides without serializing
            return self.model_bytes == 0 or sum(sizes) > self.model_bytes
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
    model: onnx.ModelProto | ir.Model,
    path: str | os.PathLike[str],
    *,
    external_data: ExternalData | None = ExternalData(),
) -> WrittenModel:
    """Write ``model`` to ``path`` atomically, large weights to its side file as ``external_data`` says.

    ``model`` is a ``ModelProto`` or an onnx-ir model; neither is modified, and no weight is copied
    as a whole (each goes from its own memory to the side file). ``external_data=None`` keeps every
    weight in the model file, which protobuf limits to 2 GB. The folder must exist. Files get the
    mode of any new file (0o666 less the umask). A failure (disk full...) raises :class:`~workbench.files.WriteError` and keeps the old files.
    """
    if external_data is not None and not isinstance(external_data, ExternalData):
        raise SpecError(f"external_data: expected an ExternalData or None, got {type(external_data).__name__}.")
    if not isinstance(path, (str, os.PathLike)):  # Conversion.save(42) was a bare TypeError from pathlib
        raise SpecError(f"path: expected a file path (str or os.PathLike), got {type(path).__name__}.")
    target = Path(path)
    if target.is_dir():
        raise files.WriteError(errno.EISDIR, f"cannot write the ONNX model to {target}: it is a directory; give a file path.")
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


def _write_with_side_file(model: onnx.ModelProto | ir.Model, target: Path, policy: ExternalData) -> str:
    """Stage the side file and the model, then commit them: side file in place first, then the model."""
    folder = target.parent if str(target.parent) else Path(".")
    staging = files.staging_folder(target)  # a crash leaves it to the next write's remove_stale_temps
    try:
        staged_data = staging / _STAGED_DATA
        # a file created like any new one (0o666 less the umask); onnx-ir, which replaces its side
        # file through a temp file, keeps the mode of the file it replaces instead of its own 0600
        os.close(os.open(staged_data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        if isinstance(model, ir.Model):
            staged = _stage_ir_model(model, staging, policy.tensor_bytes, target)
        else:
            staged = _stage_proto(model, staged_data, policy.tensor_bytes)
        data_name = data_file_name(target.name, _sha256(staged_data))
        for tensor in external_tensors(staged):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data_name
        _save(staged, staging / target.name)
        os.replace(staged_data, folder / data_name)  # a new name: no model refers to it yet
        os.replace(staging / target.name, target)  # the commit: from here on readers get the new pair
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data_name


def _stage_proto(model: onnx.ModelProto, staged_data: Path, tensor_bytes: int) -> onnx.ModelProto:
    """The model with its large initializers moved to ``staged_data``; nothing else of it changes.

    Written here rather than with onnx's ``convert_model_to_external_data``, which moves the
    weights out of the proto it is given and so needs a copy of the whole model: each tensor's
    bytes go straight from the caller's proto to the file, and only the small rest is copied.
    """
    staged = model_without_initializers(model)
    offset = 0
    with open(staged_data, "wb") as handle:
        for tensor in model.graph.initializer:
            if _raw_bytes(tensor) < tensor_bytes:
                staged.graph.initializer.append(tensor)
                continue
            moved = staged.graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
            if tensor.doc_string:
                moved.doc_string = tensor.doc_string
            moved.data_location = onnx.TensorProto.EXTERNAL
            length = handle.write(tensor.raw_data)
            for key, value in (("location", _STAGED_DATA), ("offset", str(offset)), ("length", str(length))):
                moved.external_data.add(key=key, value=value)
            offset += length
    return staged


def _stage_ir_model(model: ir.Model, staging: Path, tensor_bytes: int, target: Path) -> onnx.ModelProto:
    """The onnx-ir model written with its large initializers in the staging folder's side file; returns the model part.

    onnx-ir writes each tensor from its own memory (a NumPy array, a memory-mapped file) and moves
    tensors strictly larger than its threshold; the model part holds the graph and the small
    tensors only, cheap to read back (its side-file name is set by the caller).
    """
    try:
        ir.save(model, staging / _STAGED_MODEL, format="protobuf", external_data=_STAGED_DATA,
                size_threshold_bytes=max(tensor_bytes - 1, 0))  # fmt: skip
    except ValueError as error:  # protobuf refuses to serialize a message over 2 GB
        raise _too_large(target, error) from error
    return onnx.ModelProto.FromString((staging / _STAGED_MODEL).read_bytes())


_STAGED_MODEL = "staged.onnx"
_STAGED_DATA = "staged.data"


def _remove_side_files(folder: Path, model_name: str, *, keep: str | None) -> None:
    """Remove the side files of ``model_name`` other than ``keep`` (after the model that used them was replaced)."""
    pattern = _side_file_pattern(model_name)
    for entry in os.scandir(folder):
        if entry.name != keep and pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def _save(model: onnx.ModelProto | ir.Model, path: Path) -> None:
    """Write ``model`` (all of it: external references stay as they are) into the file ``path``."""
    try:
        if isinstance(model, ir.Model):
            ir.save(model, path, format="protobuf")  # a temp name: its suffix says nothing of the format
            return
        data = model.SerializeToString()
    except ValueError as error:  # protobuf refuses to serialize a message over 2 GB
        raise _too_large(path, error) from error
    with open(path, "wb") as handle:
        handle.write(data)


def _too_large(path: Path, error: Exception) -> OnnxModelError:
    return OnnxModelError(
        f"cannot serialize the model for {path.name}: {error}. Keep its weights in external data "
        "(a smaller external data threshold)."
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _raw_bytes(tensor: onnx.TensorProto) -> int:
    return len(tensor.raw_data) if tensor.HasField("raw_data") else 0


def _ir_initializers(model: ir.Model) -> list[ir.TensorProtocol]:
    return [value.const_value for graph in model.graphs() for value in graph.initializers.values()
            if value.const_value is not None]  # fmt: skip


__all__ = ["DATA_SUFFIX", "DEFAULT_TENSOR_THRESHOLD", "ExternalData", "WrittenModel", "data_file_name", "write_model"]
