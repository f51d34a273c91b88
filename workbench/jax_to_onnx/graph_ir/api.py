"""The Graph IR door: ``export_graph_ir`` (JAX → document), ``graph_ir_to_onnx`` (document → ONNX), files, JSON.

The promise: ``graph_ir_to_onnx(export_graph_ir(fn, inputs))`` serializes to the same bytes as
``to_onnx(fn, inputs)``; both go through the same handlers (:func:`workbench.jax_to_onnx.program.build_model`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import onnx

from workbench.errors import GraphIRError
from workbench.version import __version__
from workbench.jax_to_onnx.program import _names, _resolve_opset, build_model, program_of, write_model_to
from workbench.jax_to_onnx.precision import Precision
from workbench.jax_to_onnx.graph_ir.decode import ExternalReader, decode_program
from workbench.jax_to_onnx.graph_ir.encode import FORMAT, encode_program
from workbench.jax_to_onnx.graph_ir.schema import validate_graph_ir
from workbench.jax_to_onnx.graph_ir.storage import (
    DEFAULT_EXTERNAL_THRESHOLD,
    document_to_text,
    external_reader,
    save_document,
)
from workbench.jax_to_onnx.graph_ir.values import encode_array
from workbench.onnx_io.write import DEFAULT_TENSOR_THRESHOLD
from workbench.jax_to_onnx.tracing import Traced, trace

GraphIRSource = dict[str, Any] | str | bytes | os.PathLike[str]


def export_graph_ir(
    fn: Any,
    inputs: Sequence[Any],
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    enable_double_precision: bool = False,
) -> dict[str, Any]:
    """Trace ``fn`` as ``wb.to_onnx`` does and return its Graph IR (a JSON-safe dict, schema-valid).

    Arguments are those of ``wb.to_onnx``. The document holds the inputs/outputs with dtypes and
    symbolic shapes, every equation with its primitive, parameters, source line and nested graphs,
    and the weights by name (inline; ``save_graph_ir(..., external_weights=True)`` moves them to a
    ``.safetensors`` file). It validates against ``graph_ir_schema()`` (format ``workbench_graph_ir_v1``).

    Raises:
        GraphIRError: listing every equation parameter that has no data form.
        SpecError / TraceError: as ``wb.to_onnx``.
    """
    traced = trace(fn, inputs, enable_double_precision=enable_double_precision)
    return graph_ir_of_traced(
        traced, input_names=input_names, output_names=output_names, enable_double_precision=enable_double_precision
    )


def graph_ir_of_traced(
    traced: Traced,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    enable_double_precision: bool = False,
) -> dict[str, Any]:
    """The Graph IR of an already traced callable (``Conversion.to_graph_ir`` uses it)."""
    program = program_of(
        traced, input_names=input_names, output_names=output_names, enable_double_precision=enable_double_precision
    )

    document = encode_program(
        program.closed_jaxpr,
        weights=program.weights,
        weight_names=program.weight_names,
        input_names=program.input_names,
        output_names=program.output_names,
        name=program.name,
        kind=traced.callable.kind,
        symbols=traced.specs.symbols,
        enable_double_precision=enable_double_precision,
        producer={"workbench": __version__, "jax": jax.__version__},
    )
    validate_graph_ir(document)
    return document


def export_graph_ir_json(
    fn: Any,
    inputs: Sequence[Any],
    *,
    path: str | os.PathLike[str] | None = None,
    external_weights: bool = False,
    indent: int | None = 1,
    **kwargs: Any,
) -> str:
    """``export_graph_ir`` as JSON text; with ``path`` also written there (see :func:`save_graph_ir`)."""
    document = export_graph_ir(fn, inputs, **kwargs)
    if path is not None:
        save_graph_ir(document, path, external_weights=external_weights)
    return document_to_text(document, indent=indent)


def save_graph_ir(
    ir: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    external_weights: bool = False,
    threshold: int = DEFAULT_EXTERNAL_THRESHOLD,
) -> Path:
    """Write a Graph IR to ``path`` atomically; with ``external_weights`` tensors of at least
    ``threshold`` bytes go to ``<stem>.<16 hex digits of its SHA-256>.safetensors`` beside it, referenced by
    name (a save killed at any point leaves the old JSON and its weights as they were)."""
    validate_graph_ir(ir)
    return save_document(ir, path, external_weights=external_weights, threshold=threshold)


def load_graph_ir(source: GraphIRSource, *, resolve_weights: bool = True) -> dict[str, Any]:
    """Read and validate a Graph IR from a path, JSON text/bytes or a dict.

    With ``resolve_weights`` (and a path), tensors stored in a ``.safetensors`` file beside the JSON
    are read into the returned document, so it stands alone.
    """
    document, folder = _read(source)
    validate_graph_ir(document)
    if resolve_weights and folder is not None:
        reader = external_reader(folder)
        for name, entry in document["tensors"].items():
            if "external" in entry["data"]:
                from workbench.jax_to_onnx.graph_ir.values import decode_array

                array = decode_array(entry, f"tensors[{name!r}]", external=reader)
                document["tensors"][name] = encode_array(array)
    return document


def graph_ir_to_onnx(
    ir: GraphIRSource,
    *,
    path: str | os.PathLike[str] | None = None,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    external_data_threshold: int | None = DEFAULT_TENSOR_THRESHOLD,
    input_layout: Any = None,
    precision: str | Precision = "float32",
    keep_io_types: bool = True,
    runtime: str | None = None,
) -> onnx.ModelProto:
    """Convert a Graph IR (dict, JSON text/bytes, or a .json path) to ONNX with the same handlers as ``to_onnx``.

    The document is validated against the schema, then rebuilt into a jaxpr by fixed tables
    (primitives, parameter types, dtypes); nothing in it is executed. ``path``, ``opset`` and
    ``external_data_threshold``, ``input_layout``, ``precision``, ``keep_io_types`` and ``runtime`` are those of ``wb.to_onnx``;
    ``input_names``/``output_names`` replace the document's names.

    Raises:
        GraphIRError: the document is not valid Graph IR (every schema violation is listed).
        UnsupportedPrimitiveError: listing every primitive without a handler, with the document's lines.
    """
    target_opset = _resolve_opset(opset)
    chosen = Precision.of(precision, keep_io_types, runtime)
    document, folder = _read(ir)
    validate_graph_ir(document)
    reader: ExternalReader | None = external_reader(folder) if folder is not None else None
    program = decode_program(document, external=reader)
    if input_names is not None or output_names is not None:
        from dataclasses import replace

        program = replace(
            program,
            input_names=_names(input_names, program.input_names, "input_names"),
            output_names=_names(output_names, program.output_names, "output_names"),
        )
    built = build_model(program, opset=target_opset, input_layout=input_layout, precision=chosen)
    if path is not None:
        write_model_to(built.ir_model, path, external_data_threshold)
    return built.model


def to_json(value: dict[str, Any] | onnx.ModelProto, *, indent: int | None = 1, weights: bool = False) -> str:
    """A JSON debug payload: of a Graph IR (validated, strict JSON), or of an ONNX model.

    For an ONNX model the payload is protobuf's JSON mapping (field names as in onnx.proto); unless
    ``weights`` is set, the data of every tensor is replaced by ``{"sha256", "bytes"}`` so the
    payload stays small and a diff still shows which weights changed.
    """
    if isinstance(value, onnx.ModelProto):
        from google.protobuf import json_format

        payload = json_format.MessageToDict(value, preserving_proto_field_name=True)
        if not weights:
            _summarize_tensors(payload)
        return json.dumps(payload, indent=indent, allow_nan=False) + "\n"
    if isinstance(value, dict):
        validate_graph_ir(value)
        return document_to_text(value, indent=indent)
    raise GraphIRError(f"to_json: expected a Graph IR dict or an onnx.ModelProto, got {type(value).__name__}.")


_TENSOR_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


def _summarize_tensors(node: Any) -> None:
    """Replace tensor data in a MessageToDict payload by its digest (in place, recursively)."""
    if isinstance(node, list):
        for item in node:
            _summarize_tensors(item)
        return
    if not isinstance(node, dict):
        return
    if "data_type" in node and any(key in node for key in _TENSOR_DATA_FIELDS):
        data = json.dumps({k: node.pop(k) for k in _TENSOR_DATA_FIELDS if k in node}, sort_keys=True).encode()
        node["data_summary"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    for child in node.values():
        _summarize_tensors(child)


def _read(source: GraphIRSource) -> tuple[dict[str, Any], Path | None]:
    """The document and, when it came from a file, its folder (for external tensors)."""
    if isinstance(source, dict):
        return source, None
    if isinstance(source, (bytes, bytearray)):
        return _parse(_utf8(bytes(source), "the given bytes"), "the given bytes"), None
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return _parse(source, "the given text"), None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise GraphIRError(f"Graph IR file {path} is a folder; give the path of the .json file wb.save_graph_ir wrote.")
        if not path.is_file():
            raise GraphIRError(f"Graph IR file {path} does not exist (expected a .json file written by wb.save_graph_ir).")
        return _parse(_utf8(path.read_bytes(), str(path)), str(path)), path.parent
    raise GraphIRError(
        f"expected a Graph IR as a dict, JSON text or bytes, or a path to a .json file; got {type(source).__name__}."
    )


def _utf8(data: bytes, where: str) -> str:
    """``data`` as text; a Graph IR is UTF-8 JSON (an .onnx or .safetensors file given by mistake is not)."""
    try:
        return data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as error:
        raise GraphIRError(
            f"{where} is not a Graph IR: it is not UTF-8 text ({error.reason} at byte {error.start}), so not JSON; "
            "give the .json file wb.save_graph_ir wrote (an .onnx model converts with wb.to_jax, not here)."
        ) from error


def _parse(text: str, where: str) -> dict[str, Any]:
    def refuse_constant(name: str) -> Any:
        raise GraphIRError(f"{where}: {name} is not JSON; the Graph IR writes non-finite numbers as 'nan'/'inf'.")

    try:
        document = json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        raise GraphIRError(f"{where} is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise GraphIRError(f"{where}: a Graph IR is a JSON object with format {FORMAT!r}, got {type(document).__name__}.")
    return document
