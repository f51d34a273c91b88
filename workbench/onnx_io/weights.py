"""Models whose weights stay where they are: in the caller's arrays, or memory-mapped from the side file.

A ModelProto holds a copy of every weight and protobuf cannot serialize one above 2 GB, so large
models are kept as onnx-ir models instead, whose tensors are views of memory that already exists.
This module gives the two things every layer needs from such a model without touching its bytes:

- :func:`weights_set_aside`: the model with its large initializers replaced by typed placeholders
  for as long as a ``with`` block lasts (serialize the graph, hand the weights to onnxruntime
  separately); :func:`skeleton` is the serialized graph alone, for the viewer and the summaries.
- :func:`load_memory_mapped`: an ONNX file as an onnx-ir model whose external tensors are read
  through ``mmap`` when first used (onnx-ir's own loader), with every external location checked
  to name a file inside the model's folder first (ONNX files are untrusted input).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir

from workbench.errors import OnnxModelError
from workbench.onnx_io.load import check_location_text, external_tensors, parse_model
from workbench.onnx_io.validate import tensor_bytes

#: Initializers of at least this many bytes are set aside (the rest is small enough to serialize).
LARGE_TENSOR_BYTES = 1024 * 1024
# a placeholder's location: never a file (onnxruntime gets the tensor in memory, the viewer no data)
_NOWHERE = "<in memory>"


def large_initializers(model: ir.Model, min_bytes: int = LARGE_TENSOR_BYTES) -> list[ir.Value]:
    """The main graph's initializers of at least ``min_bytes`` bytes, and those kept in files, in order."""
    return [
        value
        for value in model.graph.initializers.values()
        if value.const_value is not None
        and (value.const_value.nbytes >= min_bytes or isinstance(value.const_value, ir.ExternalTensor))
    ]


@contextlib.contextmanager
def weights_set_aside(model: ir.Model, min_bytes: int = LARGE_TENSOR_BYTES) -> Iterator[list[tuple[ir.Value, ir.TensorProtocol]]]:
    """Within the block, ``model``'s large initializers are data-less placeholders; yields (value, tensor) pairs.

    The placeholders keep each initializer's name, type and shape (an external tensor that points
    nowhere), so the serialized model is the real graph without the weights' bytes. The tensors
    are put back when the block ends, whatever happens in it. The model must not be used by
    another thread meanwhile.
    """
    aside = [(value, value.const_value) for value in large_initializers(model, min_bytes)]
    try:
        for value, tensor in aside:
            value.const_value = ir.ExternalTensor(
                _NOWHERE, offset=0, length=tensor.nbytes, dtype=tensor.dtype, shape=tensor.shape, name=value.name
            )
        yield aside  # type: ignore[misc]  # const_value was checked not to be None
    finally:
        for value, tensor in aside:
            value.const_value = tensor


def skeleton(model: ir.Model, min_bytes: int = LARGE_TENSOR_BYTES) -> onnx.ModelProto:
    """``model`` serialized without the bytes of its large initializers (they are external, location nowhere).

    Enough to draw, summarize or shape-infer the graph, whatever the size of the weights.
    """
    with weights_set_aside(model, min_bytes):
        return ir.serde.serialize_model(model)


def without_weight_bytes(model: onnx.ModelProto | ir.Model, min_bytes: int = LARGE_TENSOR_BYTES) -> onnx.ModelProto:
    """A ModelProto of ``model``'s graph whose initializers of ``min_bytes`` or more carry no data.

    For showing and summarizing a graph of any size; the caller's model is not modified and no
    weight is copied (a ModelProto is read in place through onnx-ir).
    """
    return skeleton(model if isinstance(model, ir.Model) else ir.serde.deserialize_model(model), min_bytes)


def load_memory_mapped(path: str | os.PathLike[str]) -> ir.Model:
    """The ONNX file at ``path`` as an onnx-ir model whose external weights are memory-mapped, not read.

    Every external tensor must name an existing file inside the model's folder (no absolute path,
    no ``..`` leading out of it): an OnnxModelError names the tensor otherwise.
    """
    label = os.fspath(path)
    model_path = Path(path)
    if not model_path.is_file():
        raise OnnxModelError(f"ONNX file {label} not found: it does not exist or is not a file; check the path.")
    proto = parse_model(model_path.read_bytes(), label, what="an ONNX file")
    folder = model_path.parent.resolve()
    for tensor in external_tensors(proto):
        _check_location(tensor, folder, label)
    model = ir.serde.deserialize_model(proto)
    ir.external_data.set_base_dir(model.graph, folder)
    return model


def _check_location(tensor: onnx.TensorProto, folder: Path, label: str) -> None:
    """The tensor's external data must pass onnx's containment rules (as :func:`~workbench.onnx_io.load.resolve_external_data`
    applies them) and lie within its file: checked by opening the file as onnx does, nothing read."""
    from workbench import compat  # imports JAX: only where external data is checked

    entries = {entry.key: entry.value for entry in tensor.external_data}
    location = check_location_text(tensor, label)
    try:
        fd = compat.open_onnx_external_data(str(folder), location, tensor.name)
    except (OSError, ValueError, onnx.checker.ValidationError) as error:
        raise OnnxModelError(
            f"{label}: cannot load the external data of tensor {tensor.name!r} from {location!r}: "
            f"{str(error).rstrip('.')}. External data must be a regular file inside the model's folder, "
            "named by a relative path."
        ) from error
    try:
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else size - offset  # no length: to the file's end
    except ValueError as error:
        raise OnnxModelError(f"{label}: tensor {tensor.name!r} has a non-integer offset or length ({error}).") from error
    if offset < 0 or length < 0 or offset + length > size:
        raise OnnxModelError(
            f"{label}: tensor {tensor.name!r} asks for bytes {offset:,} to {offset + length:,} of {location!r}, "
            f"which holds {size:,}; the model does not match its data file."
        )
    needed = tensor_bytes(tensor)
    if tensor.data_type != onnx.TensorProto.STRING and length != needed:
        raise OnnxModelError(
            f"{label}: tensor {tensor.name!r} takes {length:,} bytes of {location!r} (from byte {offset:,}), but its "
            f"shape {list(tensor.dims)} and type need {needed:,}; the model does not match its data file."
        )


__all__ = [
    "LARGE_TENSOR_BYTES",
    "large_initializers",
    "load_memory_mapped",
    "skeleton",
    "weights_set_aside",
    "without_weight_bytes",
]
