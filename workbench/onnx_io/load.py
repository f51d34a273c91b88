"""Loading an ONNX model from a path, serialized bytes or a ``ModelProto``, with its external data.

ONNX files are untrusted input: they are parsed (protobuf), checked for the obvious ways a file
is not a model (empty, undecodable, no graph), and never executed. Every failure is an
:class:`~workbench.errors.OnnxModelError` naming the file; a source of the wrong type is a
:class:`~workbench.errors.ModelSourceError`.

External data (weights kept in side files next to the model) is read in exactly one place,
:func:`resolve_external_data`, relative to the folder of the model file, for every tensor of
the model (initializers, constants and attribute tensors, in every subgraph and function).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from workbench.errors import ModelSourceError, OnnxModelError
from workbench.onnx_io.describe import default_opset

ModelSource = onnx.ModelProto | str | os.PathLike[str] | bytes | bytearray

PROTO_LABEL = "<ModelProto>"
BYTES_LABEL = "<bytes>"


@dataclass(frozen=True)
class LoadedModel:
    """A parsed model, how messages name it, and the folder its external data is read from.

    ``label`` is the path as given, ``"<bytes>"`` or ``"<ModelProto>"``. ``folder`` is the
    folder of the model file (``None`` for bytes and ModelProtos, which have none).
    """

    proto: onnx.ModelProto
    label: str
    folder: Path | None = None

    @property
    def opset(self) -> int | None:
        """The default-domain (``ai.onnx``) opset the model imports, ``None`` if it imports none."""
        return default_opset(self.proto)


def load_model(source: ModelSource, *, copy: bool = False, external_data: bool = True) -> LoadedModel:
    """Load ``source``: a path to an .onnx file, its serialized bytes or an ``onnx.ModelProto``.

    A ModelProto is used as it is (``copy=True`` for a private copy the caller may modify); a
    file or bytes are parsed into a new one. With ``external_data``, a file's external tensors
    are read from its folder (see :func:`resolve_external_data`).
    """
    if isinstance(source, onnx.ModelProto):
        if not copy:
            return LoadedModel(source, PROTO_LABEL)
        private = onnx.ModelProto()
        private.CopyFrom(source)
        return LoadedModel(private, PROTO_LABEL)
    if isinstance(source, (bytes, bytearray)):
        return LoadedModel(parse_model(bytes(source), BYTES_LABEL), BYTES_LABEL)
    if isinstance(source, (str, os.PathLike)):
        label = os.fspath(source)
        path = Path(source)
        model = parse_model(_read_file(path, label), label, what="an ONNX file")
        loaded = LoadedModel(model, label, path.parent)
        if external_data:
            resolve_external_data(loaded)
        return loaded
    raise ModelSourceError(
        "model: expected an onnx.ModelProto, a path to an .onnx file or its serialized bytes, "
        f"got {type(source).__name__}."
    )


def _read_file(path: Path, label: str) -> bytes:
    if not path.is_file():
        raise OnnxModelError(f"ONNX file {label} not found: it does not exist or is not a file; check the path.")
    try:
        return path.read_bytes()
    except OSError as error:
        raise OnnxModelError(f"cannot read the ONNX file {label} ({error.strerror}).") from error


def parse_model(data: bytes, label: str, *, what: str = "a serialized ONNX model") -> onnx.ModelProto:
    """Decode ``data`` into a ModelProto; ``label`` and ``what`` name it in the errors."""
    if not data:
        raise OnnxModelError(f"{label} is empty (0 bytes); expected {what}.")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise OnnxModelError(
            f"{label} is not {what}: protobuf decoding failed ({error}). "
            "It may be truncated or corrupt; re-export or re-download it."
        ) from error
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise OnnxModelError(
            f"{label} is not {what}: it decodes to a model without a graph (no nodes and no outputs). "
            "It may be truncated, or it is another kind of file."
        )
    return model


def external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``model`` whose bytes live in an external file, wherever it sits."""
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Initializers and attribute tensors of the main graph, the function bodies and every subgraph."""
    node_lists = [function.node for function in model.functions]
    graphs = [model.graph]  # each graph's nodes join node_lists when its initializers are done
    while node_lists or graphs:
        for graph in graphs:
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield sparse.values
                yield sparse.indices
            node_lists.append(graph.node)
        graphs = []
        for nodes in node_lists:
            for node in nodes:
                for attribute in node.attribute:
                    if attribute.HasField("t"):
                        yield attribute.t
                    yield from attribute.tensors
                    if attribute.HasField("g"):
                        graphs.append(attribute.g)
                    graphs.extend(attribute.graphs)
        node_lists = []


def resolve_external_data(loaded: LoadedModel) -> None:
    """Read the bytes of every external tensor of ``loaded.proto`` from ``loaded.folder``, in place.

    The one place where a model's external data is opened: a path in the model names a file
    relative to the model's own folder.
    """
    tensors = list(external_tensors(loaded.proto))
    if not tensors:
        return
    if loaded.folder is None:
        raise OnnxModelError(
            f"{loaded.label} keeps {len(tensors)} tensor(s) in external data files, and a model given "
            "as bytes or a ModelProto has no folder to read them from; load it from its path instead."
        )
    for tensor in tensors:
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(loaded.folder))
        except (OSError, ValueError, onnx.checker.ValidationError) as error:  # onnx checks the location
            raise OnnxModelError(
                f"{loaded.label}: cannot load the external data of tensor {tensor.name!r}: {error}"
            ) from error


def check_model(loaded: LoadedModel) -> None:
    """``onnx.checker.check_model`` with its complaint as an OnnxModelError naming the model."""
    try:
        onnx.checker.check_model(loaded.proto)
    except onnx.checker.ValidationError as error:
        raise OnnxModelError(f"{loaded.label} does not pass onnx.checker: {error}") from error


__all__ = [
    "BYTES_LABEL",
    "PROTO_LABEL",
    "LoadedModel",
    "ModelSource",
    "check_model",
    "external_tensors",
    "load_model",
    "parse_model",
    "resolve_external_data",
]
