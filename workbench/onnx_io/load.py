"""Loading an ONNX model from a path, serialized bytes or a ``ModelProto``, with its external data.

ONNX files are untrusted input: they are parsed (protobuf), checked for the obvious ways a file
is not a model (not a regular file, empty, undecodable, no graph, subgraphs nested deeper than
protobuf decodes), and never executed. Every failure is an :class:`~workbench.errors.OnnxModelError`
naming the file; a source of the wrong type is a :class:`~workbench.errors.ModelSourceError`.

External data (weights kept in side files) is read in exactly one place,
:func:`resolve_external_data`, for every tensor of the model (initializers, Constant values and
other attribute tensors, sparse tensors, in every subgraph and function), relative to the folder of
the model file with onnx's containment rules: a relative path, inside that folder, no ``..``, no
symbolic link, a regular file. A model given as bytes or a ModelProto has no folder: its external
references are refused unless the caller names one (``base_dir``). Nothing else opens a file a
model names; :func:`workbench.onnx_io.tensors.tensor_array` refuses a tensor whose data was not loaded.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from workbench.errors import ModelSourceError, OnnxModelError
from workbench.limits import MAX_MODEL_FILE_BYTES, MAX_SUBGRAPH_DEPTH
from workbench.onnx_io.describe import default_opset

ModelSource = onnx.ModelProto | str | os.PathLike[str] | bytes | bytearray

PROTO_LABEL = "<ModelProto>"
BYTES_LABEL = "<bytes>"


@dataclass(frozen=True)
class LoadedModel:
    """A parsed model, how messages name it, and the folder its external data is read from.

    ``label`` is the path as given, ``"<bytes>"`` or ``"<ModelProto>"``. ``folder`` is the
    folder of the model file, or the ``base_dir`` given with bytes or a ModelProto (else ``None``).
    """

    proto: onnx.ModelProto
    label: str
    folder: Path | None = None

    @property
    def opset(self) -> int | None:
        """The default-domain (``ai.onnx``) opset the model imports, ``None`` if it imports none."""
        return default_opset(self.proto)


def load_model(
    source: ModelSource,
    *,
    copy: bool = False,
    external_data: bool = True,
    base_dir: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load ``source``: a path to an .onnx file, its serialized bytes or an ``onnx.ModelProto``.

    A ModelProto is used as it is (``copy=True`` for a private copy the caller may modify; a copy
    is also made when its external data is read); a file or bytes are parsed into a new one.
    With ``external_data``, the external tensors are read from the model file's folder, or for
    bytes and ModelProtos from ``base_dir`` (without it such a model is refused). Without
    ``external_data`` the references stay unread (for callers that never decode those tensors).
    """
    folder = None if base_dir is None else _base_folder(base_dir)
    if isinstance(source, onnx.ModelProto):
        check_nesting(source, PROTO_LABEL)
        needs_copy = copy or (external_data and any(True for _ in external_tensors(source)))
        proto = source
        if needs_copy:
            proto = onnx.ModelProto()
            proto.CopyFrom(source)
        loaded = LoadedModel(proto, PROTO_LABEL, folder)
    elif isinstance(source, (bytes, bytearray)):
        loaded = LoadedModel(parse_model(bytes(source), BYTES_LABEL), BYTES_LABEL, folder)
    elif isinstance(source, (str, os.PathLike)):
        if base_dir is not None:
            raise ModelSourceError("base_dir is for a model given as bytes or a ModelProto; a file's folder is its own.")
        label = os.fspath(source)
        path = Path(source)
        loaded = LoadedModel(parse_model(_read_file(path, label), label, what="an ONNX file"), label, path.parent)
    else:
        raise ModelSourceError(
            "model: expected an onnx.ModelProto, a path to an .onnx file or its serialized bytes, "
            f"got {type(source).__name__}."
        )
    if external_data:
        resolve_external_data(loaded)
    return loaded


def _base_folder(base_dir: str | os.PathLike[str]) -> Path:
    if not isinstance(base_dir, (str, os.PathLike)):
        raise ModelSourceError(f"base_dir: expected a folder path, got {type(base_dir).__name__}.")
    folder = Path(base_dir)
    if not folder.is_dir():
        raise ModelSourceError(f"base_dir {os.fspath(base_dir)!r} is not a folder; give the folder of the model's external data.")
    return folder


def _read_file(path: Path, label: str) -> bytes:
    """The bytes of a regular file; a FIFO, device or folder is refused before it is read (it could block)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as error:
        raise OnnxModelError(f"ONNX file {label} not found: it does not exist or is not a file; check the path.") from error
    except OSError as error:
        raise OnnxModelError(f"cannot read the ONNX file {label} ({error.strerror}).") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe, socket or device)"
            raise OnnxModelError(f"ONNX file {label} not found: it is {kind}; give the path of an .onnx file.")
        if info.st_size > MAX_MODEL_FILE_BYTES:
            raise OnnxModelError(
                f"{label} is {info.st_size:,} bytes, more than protobuf can decode (2 GiB); a model that large "
                "keeps its weights in external data files."
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as error:
        raise OnnxModelError(f"cannot read the ONNX file {label} ({error.strerror}).") from error
    finally:
        os.close(fd)


def parse_model(data: bytes, label: str, *, what: str = "a serialized ONNX model") -> onnx.ModelProto:
    """Decode ``data`` into a ModelProto; ``label`` and ``what`` name it in the errors."""
    if not data:
        raise OnnxModelError(f"{label} is empty (0 bytes); expected {what}.")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        if "depth" in str(error).lower():
            raise OnnxModelError(
                f"{label} nests its messages deeper than protobuf decodes (100 levels: about "
                f"{MAX_SUBGRAPH_DEPTH} levels of If/Loop/Scan bodies); onnx and onnxruntime cannot load it either."
            ) from error
        raise OnnxModelError(
            f"{label} is not {what}: protobuf decoding failed ({error}). "
            "It may be truncated or corrupt; re-export or re-download it."
        ) from error
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise OnnxModelError(
            f"{label} is not {what}: it decodes to a model without a graph (no nodes and no outputs). "
            "It may be truncated, or it is another kind of file."
        )
    check_nesting(model, label)
    return model


def check_nesting(model: onnx.ModelProto, label: str) -> None:
    """Refuse subgraphs (If/Loop/Scan bodies) nested deeper than onnx's C++ code can decode them, and names
    that are not UTF-8 text.

    onnx serializes the model for its checker, shape inference and inliner, and protobuf's C++
    decoder stops at 100 message levels: a model built in memory with deeper nesting would fail
    there with a bare ValueError. A name field holding bytes that are not UTF-8 (a corrupt file:
    protobuf's Python decoder hands those over as ``bytes``, not ``str``) is refused here, naming
    where it is, before anything compares or sorts names.
    """
    model_text = [value for field, value in model.ListFields() if field.type == field.TYPE_STRING]
    _check_names(("opset_import domain", [o.domain for o in model.opset_import]), ("text field", model_text),
                 ("metadata", [t for p in model.metadata_props for t in (p.key, p.value)]), label=label, path="the model")  # fmt: skip
    pending = [(graph, 0, "") for graph in _top_graphs(model)]
    while pending:
        graph, depth, path = pending.pop()
        if depth > MAX_SUBGRAPH_DEPTH:
            raise OnnxModelError(
                f"{label}: subgraphs are nested {depth} levels deep (at {path}); protobuf, onnx and onnxruntime "
                f"decode at most {MAX_SUBGRAPH_DEPTH} levels of If/Loop/Scan bodies."
            )
        _check_graph_names(graph, label, path)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    bodies = [attribute.g]
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    bodies = list(attribute.graphs)
                else:
                    continue
                step = f"{node.name or node.op_type}.{attribute.name}"
                pending.extend((body, depth + 1, f"{path}/{step}" if path else step) for body in bodies)


def _check_graph_names(graph: onnx.GraphProto | onnx.FunctionProto, label: str, path: str) -> None:
    """Every name of ``graph`` (its own, its values', its nodes' and their attributes') is text."""
    where = f"graph {graph.name!r}" + (f" (at {path})" if path else "")
    if isinstance(graph, onnx.GraphProto):
        values = [v.name for v in (*graph.input, *graph.output, *graph.value_info)]
        _check_names(("graph name", [graph.name]), ("doc_string", [graph.doc_string]), ("value name", values),
                     ("initializer name", [t.name for t in graph.initializer]), label=label, path=where)  # fmt: skip
    else:
        _check_names(("function name", [graph.name, graph.domain]), ("value name", [*graph.input, *graph.output]),
                     label=label, path=where)  # fmt: skip
    for index, node in enumerate(graph.node):
        texts = [node.name, node.op_type, node.domain, *node.input, *node.output]
        if bytes in map(type, texts) or any(type(a.name) is bytes for a in node.attribute):  # fast path: all text
            _check_names(
                ("node name", [node.name]), ("op_type", [node.op_type]), ("domain", [node.domain]),
                ("input", list(node.input)), ("output", list(node.output)),
                ("attribute name", [a.name for a in node.attribute]),
                label=label, path=f"node #{index} of {where}",
            )  # fmt: skip


def _check_names(*fields: tuple[str, list[str | bytes]], label: str, path: str) -> None:
    for field, names in fields:
        for name in names:
            if isinstance(name, bytes):
                raise OnnxModelError(
                    f"{label}: the {field} {name!r} of {path} is not UTF-8 text; the file is corrupt (re-export or "
                    "re-download it)."
                )


def _top_graphs(model: onnx.ModelProto) -> list[onnx.GraphProto | onnx.FunctionProto]:
    return [model.graph, *model.functions]


# ------------------------------------------------------------------------------ tensors
@dataclass(frozen=True)
class PlacedTensor:
    """A tensor of the model and where it sits; :attr:`where` says it as messages do (``initializer of graph 'main'``)."""

    tensor: onnx.TensorProto
    container: str  # "graph 'main'", "'then_branch' body of node 'if0' in graph 'main'", "function local::F"
    node: onnx.NodeProto | None = None  # the node whose attribute holds it (None: an initializer)
    node_index: int = 0
    attribute: str = ""
    sparse: bool = False

    @property
    def where(self) -> str:
        if self.node is None:
            return f"{'sparse ' if self.sparse else ''}initializer of {self.container}"
        return f"attribute {self.attribute!r} of {_node_text(self.node, self.node_index)} in {self.container}"


def _node_text(node: onnx.NodeProto, index: int) -> str:
    return f"{f'node {node.name!r}' if node.name else f'node #{index}'} ({node.op_type})"


_TENSOR_ATTRIBUTES = frozenset({
    onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS, onnx.AttributeProto.SPARSE_TENSOR,
    onnx.AttributeProto.SPARSE_TENSORS, onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
})  # fmt: skip


def all_tensors(model: onnx.ModelProto) -> Iterator[PlacedTensor]:
    """Every tensor of ``model``: initializers, sparse tensors and attribute tensors, in every graph and function."""
    pending: list[tuple[onnx.GraphProto | onnx.FunctionProto, str]] = [(model.graph, f"graph {model.graph.name!r}")]
    pending += [(function, f"function {function.domain}::{function.name}") for function in model.functions]
    while pending:
        graph, where = pending.pop()
        if isinstance(graph, onnx.GraphProto):
            for tensor in graph.initializer:
                yield PlacedTensor(tensor, where)
            for sparse in graph.sparse_initializer:
                yield PlacedTensor(sparse.values, where, sparse=True)
                yield PlacedTensor(sparse.indices, where, sparse=True)
        for index, node in enumerate(graph.node):
            for attribute in node.attribute:
                if attribute.type not in _TENSOR_ATTRIBUTES:  # most attributes are ints, floats, strings
                    continue
                placed = functools.partial(PlacedTensor, container=where, node=node, node_index=index, attribute=attribute.name)
                if attribute.HasField("t"):
                    yield placed(attribute.t)
                for tensor in attribute.tensors:
                    yield placed(tensor)
                sparse_tensors = [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []
                for sparse in [*sparse_tensors, *attribute.sparse_tensors]:
                    yield placed(sparse.values)
                    yield placed(sparse.indices)
                inner = [attribute.g] if attribute.HasField("g") else []
                for body in [*inner, *attribute.graphs]:
                    pending.append((body, f"{attribute.name!r} body of {_node_text(node, index)} in {where}"))


def external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``model`` whose bytes live in an external file, wherever it sits."""
    for placed in all_tensors(model):
        if placed.tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield placed.tensor


def external_location(tensor: onnx.TensorProto) -> str:
    """The file an external tensor names (its ``location`` entry), ``""`` when it names none."""
    return next((entry.value for entry in tensor.external_data if entry.key == "location"), "")


def check_location_text(tensor: onnx.TensorProto, label: str) -> str:
    """The tensor's external ``location``, refused when it holds a NUL character: onnx's opener stops reading the
    name there (``w.bin\\x00x`` opened ``w.bin``), so the file read would not be the one the model names."""
    location = external_location(tensor)
    if "\x00" in location:
        raise OnnxModelError(
            f"{label}: tensor {tensor.name!r} names its external data file {location!r}, which holds a NUL "
            "character (no file name can); the model is corrupt or hostile."
        )
    return location


def resolve_external_data(loaded: LoadedModel) -> None:
    """Read the bytes of every external tensor of ``loaded.proto`` from ``loaded.folder``, in place.

    The one place where a model's external data is opened, with onnx's own containment check
    (the location is relative, inside the folder, no ``..``, not a symbolic link, a regular file).
    """
    placed = [p for p in all_tensors(loaded.proto) if p.tensor.data_location == onnx.TensorProto.EXTERNAL]
    if not placed:
        return
    if loaded.folder is None:
        first = placed[0]
        raise OnnxModelError(
            f"{loaded.label} keeps {len(placed)} tensor(s) in external data files (first: tensor "
            f"{first.tensor.name!r}, {first.where}, in {external_location(first.tensor)!r}), and a model given "
            "as bytes or a ModelProto has no folder to read them from; load it from its path instead, "
            "or pass base_dir=<the folder of its data files>."
        )
    for item in placed:
        tensor = item.tensor
        check_location_text(tensor, loaded.label)
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(loaded.folder))
        except (OSError, ValueError, onnx.checker.ValidationError) as error:  # onnx checks the location
            raise OnnxModelError(
                f"{loaded.label}: cannot load the external data of tensor {tensor.name!r} ({item.where}) from "
                f"{external_location(tensor)!r}: {str(error).rstrip('.')}. External data must be a regular file inside the "
                "model's folder, named by a relative path."
            ) from error
        tensor.ClearField("data_location")  # as if it had been stored inline
        del tensor.external_data[:]


def check_model(loaded: LoadedModel) -> None:
    """``onnx.checker.check_model`` with its complaint as an OnnxModelError naming the model."""
    try:
        onnx.checker.check_model(loaded.proto)
    except (onnx.checker.ValidationError, ValueError) as error:
        raise OnnxModelError(f"{loaded.label} does not pass onnx.checker: {error}") from error


__all__ = [
    "BYTES_LABEL",
    "PROTO_LABEL",
    "LoadedModel",
    "ModelSource",
    "PlacedTensor",
    "all_tensors",
    "check_model",
    "check_nesting",
    "external_location",
    "external_tensors",
    "load_model",
    "parse_model",
    "resolve_external_data",
]
