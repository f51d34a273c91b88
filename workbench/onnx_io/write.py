"""Writing an ONNX model atomically: the model file and its side file of weights as one unit.

The one writer of ONNX files (``wb.to_onnx(path=...)``, ``Conversion.save``, the web harness). It
takes a ``ModelProto`` or an onnx-ir model and follows one external-data policy
(:class:`ExternalData`): large initializers go to ``<model file>.data`` beside the model. The side
file is written by onnx-ir tensor by tensor, straight from each weight's own memory (a NumPy array,
a memory-mapped file, a tensor of the proto), so saving never holds a second copy of the weights;
only the model without its weights is serialized. Both files are written under their final names
into a private staging folder inside the target folder and then committed by :func:`_commit`, the
one place that decides how they replace what was there: readers see the old files or the new
ones, never a half-written file, and nothing is left behind when writing fails. A side file left
by an earlier write of the same model name is removed when the new model keeps its weights
inline: the side file belongs to its model.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_ir as ir

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


def data_file_name(model_file_name: str) -> str:
    """The side file of ``model.onnx``: ``model.onnx.data``."""
    return model_file_name + DATA_SUFFIX


def write_model(
    model: onnx.ModelProto | ir.Model,
    path: str | os.PathLike[str],
    *,
    external_data: ExternalData | None = ExternalData(),
) -> WrittenModel:
    """Write ``model`` to ``path`` atomically, large weights to ``<path>.data`` as ``external_data`` says.

    ``model`` is a ``ModelProto`` or an onnx-ir model; neither is modified, and no weight is copied
    as a whole (each goes from its own memory to the side file). ``external_data=None`` keeps every
    weight in the model file, which protobuf limits to 2 GB. The folder must exist. Files get the
    mode of any new file (0o666 less the umask).
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
            # onnx-ir reads a ModelProto's tensors where they are (no copy of the proto)
            ir_model = model if isinstance(model, ir.Model) else ir.serde.deserialize_model(model)
            _stage(ir_model, staging / target.name, data_name, external_data.tensor_bytes)
            _give_new_file_mode(staging / data_name, staging)
        elif isinstance(model, ir.Model):
            _stage(model, staging / target.name, None, 0)
        else:
            _stage_proto(model, staging / target.name)
        _commit(staging, folder, target.name, data_name if external else None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return WrittenModel(target, folder / data_name if external else None)


def _stage(model: ir.Model, path: Path, data_name: str | None, tensor_bytes: int) -> None:
    """Write an onnx-ir model (with its side file ``data_name`` when given) into the staging folder."""
    try:
        if data_name is None:
            ir.save(model, path)
        else:  # onnx-ir moves tensors strictly larger than its threshold
            ir.save(model, path, external_data=data_name, size_threshold_bytes=max(tensor_bytes - 1, 0))
    except ValueError as error:  # protobuf refuses to serialize a message over 2 GB
        raise _too_large(path, error) from error


def _stage_proto(model: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.save_model(model, str(path))
    except ValueError as error:
        raise _too_large(path, error) from error


def _too_large(path: Path, error: Exception) -> OnnxModelError:
    return OnnxModelError(
        f"cannot serialize the model for {path.name}: {error}. Keep its weights in external data "
        "(a smaller external data threshold)."
    )


def _give_new_file_mode(path: Path, folder: Path) -> None:
    """Give ``path`` the mode a new file gets here (onnx-ir creates its side file 0600 through a temp file)."""
    probe = folder / ".mode-probe"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    os.chmod(path, stat.S_IMODE(probe.stat().st_mode))
    probe.unlink()


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


def _ir_initializers(model: ir.Model) -> list[ir.TensorProtocol]:
    return [value.const_value for graph in model.graphs() for value in graph.initializers.values()
            if value.const_value is not None]  # fmt: skip


__all__ = ["DATA_SUFFIX", "DEFAULT_TENSOR_THRESHOLD", "ExternalData", "WrittenModel", "data_file_name", "write_model"]
