"""The checks an untrusted model passes before any code is generated from it.

:func:`check_model_rules` runs what ``onnx.checker.check_model`` checks (operator schemas, attribute
types, input counts, single assignment, tensor payloads, the IR version) and what it lets through
although onnxruntime refuses it or onnx's own helpers crash on it:

- opset imports newer than the installed onnx knows (the checker passes opset 99);
- element types that are not ONNX types (``data_type`` 999 ended in a bare ``KeyError``);
- declared shapes beyond :data:`~workbench.limits.MAX_TENSOR_BYTES` (a memory bomb, not a model);
- a value written by two nodes or a graph input listed twice, naming both places.

Like onnxruntime (and unlike the checker), a graph input or output may leave its shape out.
The rest of ``full_check``, strict shape inference, runs in the reader after function inlining
(:func:`workbench.onnx_io.shapes.infer_shapes` with ``strict=True``). Every failure is an
:class:`~workbench.errors.OnnxModelError` naming the model, the node or value, and the rule.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Iterator

import numpy as np
import onnx

from workbench.errors import OnnxModelError
from workbench.limits import MAX_TENSOR_BYTES
from workbench.onnx_io.describe import DEFAULT_DOMAINS, model_graphs, opset_text
from workbench.onnx_io.load import all_tensors
from workbench.onnx_io.shapes import label_unnamed_nodes, light_model

_ELEMENT_TYPES = frozenset(onnx.TensorProto.DataType.values())
_SUB_BYTE_BITS = {
    getattr(onnx.TensorProto, name): bits
    for name, bits in (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2))
    if hasattr(onnx.TensorProto, name)
}


# the private domain the checker's copy moves runtime-defined default-domain operators to (see below)
_RUNTIME_DOMAIN = "workbench.runtime_defined"


def check_model_rules(
    model: onnx.ModelProto,
    label: str,
    *,
    runtime_ops: Collection[str] = (),
    light: tuple[onnx.ModelProto, list[onnx.TensorProto]] | None = None,
    single_assignment_checked: bool = False,
) -> None:
    """Every check listed in the module docstring; ``model`` is not modified.

    ``runtime_ops``: default-domain operators onnxruntime defines although ONNX does not at the
    model's opset (its contrib ``LayerNormalization`` from version 1); the checker, which knows only
    ONNX's schemas, checks the rest of the model around them. ``light``: :func:`light_model`'s
    result when the caller has it (it is not modified). ``single_assignment_checked``: the caller ran
    :func:`check_single_assignment` on this model already (the reader does, before it sorts the nodes).
    """
    check_versions(model, label)
    check_types_and_sizes(model, label)
    if not single_assignment_checked:
        check_single_assignment(model, label)
    check_output_counts(model, label)
    if light is None:
        checked, set_aside = light_model(model)
    else:
        checked, set_aside = onnx.ModelProto(), light[1]
        checked.CopyFrom(light[0])  # light: no weights to copy
    for tensor in set_aside:  # the checker does not see these: check their payload as it would
        check_payload(tensor, label)
    _relax_graph_io(checked.graph)
    _set_runtime_ops_apart(checked, frozenset(runtime_ops))
    label_unnamed_nodes(checked)
    try:
        onnx.checker.check_model(checked)
    except onnx.checker.ValidationError as error:
        reason = str(error).strip().replace("\n\n==> Context:", " (context:").replace("\n", " ")
        if "(context:" in reason:
            reason += ")"
        raise OnnxModelError(f"{label} is not a valid ONNX model (onnx.checker, {opset_text(model)}): {reason}") from error
    except ValueError as error:  # onnx's C++ side could not read what Python wrote
        raise OnnxModelError(f"{label}: onnx.checker cannot read the model: {error}") from error


# ------------------------------------------------------------------------------ versions
def _newest_opsets() -> dict[str, int]:
    newest = {"": onnx.defs.onnx_opset_version(), "ai.onnx": onnx.defs.onnx_opset_version()}
    ml = max((entry[3] for entry in onnx.helper.VERSION_TABLE if entry[3] is not None), default=None)
    if ml is not None:
        newest["ai.onnx.ml"] = int(ml)
    return newest


def check_versions(model: onnx.ModelProto, label: str) -> None:
    """The IR version and the standard opset imports must be ones the installed onnx knows."""
    if model.ir_version > onnx.IR_VERSION:
        raise OnnxModelError(
            f"{label} has ir_version {model.ir_version}; the installed onnx {onnx.__version__} reads up to "
            f"{onnx.IR_VERSION}. Re-export the model for an older ONNX, or upgrade onnx."
        )
    newest = _newest_opsets()
    for entry in model.opset_import:
        known = newest.get(entry.domain)
        if known is not None and entry.version > known:
            domain = entry.domain or "ai.onnx"
            raise OnnxModelError(
                f"{label} imports opset {entry.version} of {domain!r}; the installed onnx {onnx.__version__} "
                f"defines up to {known}, so its operators' meaning is unknown. Re-export it for opset {known} or lower."
            )


# ------------------------------------------------------------------------------ types and sizes
def _typed_values(model: onnx.ModelProto) -> Iterator[tuple[onnx.ValueInfoProto, str]]:
    pending: list[tuple[onnx.GraphProto | onnx.FunctionProto, str]] = [(model.graph, f"graph {model.graph.name!r}")]
    pending += [(function, f"function {function.domain}::{function.name}") for function in model.functions]
    while pending:
        graph, where = pending.pop()
        if isinstance(graph, onnx.GraphProto):
            for kind, values in (("graph input", graph.input), ("graph output", graph.output), ("value_info", graph.value_info)):
                for value in values:
                    yield value, f"{kind} {value.name!r} of {where}"
        else:
            for value in graph.value_info:
                yield value, f"value_info {value.name!r} of {where}"
        for node in graph.node:
            for attribute in node.attribute:
                inner = [attribute.g] if attribute.HasField("g") else []
                for body in [*inner, *attribute.graphs]:
                    pending.append((body, f"{attribute.name!r} body of node {node.name or node.op_type!r} in {where}"))


def _tensor_types(value_type: onnx.TypeProto) -> Iterator[onnx.TypeProto.Tensor | onnx.TypeProto.SparseTensor]:
    """The tensor types inside a type (a sequence of maps of tensors has one at the bottom)."""
    pending = [value_type]
    while pending:
        current = pending.pop()
        kind = current.WhichOneof("value")
        if kind == "tensor_type":
            yield current.tensor_type
        elif kind == "sparse_tensor_type":
            yield current.sparse_tensor_type
        elif kind == "sequence_type":
            pending.append(current.sequence_type.elem_type)
        elif kind == "optional_type":
            pending.append(current.optional_type.elem_type)
        elif kind == "map_type":
            pending.append(current.map_type.value_type)


@functools.lru_cache(maxsize=None)
def _itemsize(data_type: int) -> int:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except (KeyError, TypeError, ValueError):  # strings, undefined: count one byte each
        return 1


def _bytes_of(elements: int, data_type: int) -> int:
    bits = _SUB_BYTE_BITS.get(data_type)
    if bits is not None:
        return math.ceil(elements * bits / 8)
    return elements * _itemsize(data_type)


def _budget_error(label: str, where: str, dims: list[int], data_type: int) -> OnnxModelError:
    size = _bytes_of(math.prod(dims), data_type)
    return OnnxModelError(
        f"{label}: {where} declares shape {dims}, {size:,} bytes; the limit is {MAX_TENSOR_BYTES:,} bytes "
        "(1 TiB, more than any machine holds). The model is broken or hostile."
    )


def check_output_counts(model: onnx.ModelProto, label: str) -> None:
    """A Split's ``num_outputs`` equals its number of outputs, in every graph: onnx's shape inference allocates
    ``num_outputs`` entries before it compares them (``num_outputs=2**40`` ended in std::bad_alloc)."""
    pending = [(model.graph, f"graph {model.graph.name!r}")]
    while pending:
        graph, where = pending.pop()
        for index, node in enumerate(graph.node):
            node_text = f"node {node.name!r} (Split)" if node.name else f"node #{index} (Split)"
            if node.op_type == "Split" and node.domain in DEFAULT_DOMAINS:
                count = next((a.i for a in node.attribute if a.name == "num_outputs"), len(node.output))
                if count != len(node.output):
                    raise OnnxModelError(
                        f"{label}: {node_text} in {where} has num_outputs={count} but {len(node.output)} output(s); "
                        "ONNX requires them equal."
                    )
            for attribute in node.attribute:
                inner = [attribute.g] if attribute.HasField("g") else []
                pending.extend((body, f"{attribute.name!r} body of node #{index} in {where}") for body in [*inner, *attribute.graphs])


def check_computed_sizes(model: onnx.ModelProto, label: str) -> None:
    """After shape inference: no value a node computes exceeds the size budget (``pads=[2**40, ...]`` on a
    MaxPool makes a legal model whose output nobody can hold: the generated code would try to allocate it)."""
    producers: dict[str, str] = {}
    for graph in model_graphs(model):
        for index, node in enumerate(graph.node):
            where = f"node {node.name!r} ({node.op_type})" if node.name else f"node #{index} ({node.op_type})"
            for output in node.output:
                producers.setdefault(output, where)
    for value, _ in _typed_values(model):
        for tensor_type in _tensor_types(value.type):
            fixed = [int(d.dim_value) for d in tensor_type.shape.dim if d.HasField("dim_value")]
            size = _bytes_of(math.prod(fixed), tensor_type.elem_type)
            if value.name in producers and size > MAX_TENSOR_BYTES:
                raise OnnxModelError(
                    f"{label}: {producers[value.name]} computes {value.name!r} of shape (at least) {fixed}, {size:,} bytes; "
                    f"the limit is {MAX_TENSOR_BYTES:,} bytes (1 TiB). Check the node's attributes (pads, sizes, "
                    "num_outputs...) and the shapes of its inputs."
                )


def check_types_and_sizes(model: onnx.ModelProto, label: str) -> None:
    """Every element type is an ONNX type, and no tensor or typed value declares more than the size budget.

    (One pass over the tensors and one over the typed values: both checks read the same fields.)
    """
    for placed in all_tensors(model):
        tensor = placed.tensor
        data_type, dims = tensor.data_type, tensor.dims
        if data_type not in _ELEMENT_TYPES or data_type == onnx.TensorProto.UNDEFINED:
            raise OnnxModelError(
                f"{label}: tensor {tensor.name!r} ({placed.where}) has data_type {data_type}, which is not "
                f"an ONNX element type (see onnx.TensorProto.DataType)."
            )
        if dims and min(dims) < 0:
            raise OnnxModelError(f"{label}: tensor {tensor.name!r} ({placed.where}) has a negative dimension {list(dims)}.")
        if _bytes_of(math.prod(dims), data_type) > MAX_TENSOR_BYTES:
            raise _budget_error(label, f"tensor {tensor.name!r} ({placed.where})", list(dims), data_type)
    for value, where in _typed_values(model):
        for tensor_type in _tensor_types(value.type):
            if tensor_type.elem_type not in _ELEMENT_TYPES:
                raise OnnxModelError(
                    f"{label}: {where} has elem_type {tensor_type.elem_type}, which is not an ONNX element type "
                    "(see onnx.TensorProto.DataType)."
                )
            if tensor_type.HasField("shape"):
                fixed = [int(d.dim_value) for d in tensor_type.shape.dim if d.HasField("dim_value")]
                if _bytes_of(math.prod(fixed), tensor_type.elem_type) > MAX_TENSOR_BYTES:
                    raise _budget_error(label, where, fixed, tensor_type.elem_type)


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """The bytes a tensor's shape and element type need (sub-byte types packed), as ``raw_data`` or external data."""
    return _bytes_of(math.prod(int(d) for d in tensor.dims), tensor.data_type)


def check_payload(tensor: onnx.TensorProto, label: str) -> None:
    """A tensor's stored bytes must match its shape and type (what the checker checks of the tensors it sees)."""
    elements = math.prod(int(d) for d in tensor.dims)
    if tensor.HasField("raw_data"):
        expected = _bytes_of(elements, tensor.data_type)
        if len(tensor.raw_data) != expected:
            raise OnnxModelError(
                f"{label}: tensor {tensor.name!r} holds {len(tensor.raw_data):,} bytes of data, but its shape "
                f"{list(tensor.dims)} and type need {expected:,}."
            )


# ------------------------------------------------------------------------------ single assignment
def check_single_assignment(model: onnx.ModelProto, label: str) -> None:
    """Each value is defined once per graph: by one node, or as one graph input or initializer."""
    graphs: list[tuple[onnx.GraphProto, str]] = [(model.graph, f"graph {model.graph.name!r}")]
    while graphs:
        graph, where = graphs.pop()
        defined: dict[str, str] = {}
        for value in graph.input:
            if value.name in defined:
                raise OnnxModelError(
                    f"{label}: {where} lists the graph input {value.name!r} twice; each input must be listed once "
                    "(ONNX's single static assignment rule)."
                )
            defined[value.name] = "a graph input"
        for tensor in [*graph.initializer, *(sparse.values for sparse in graph.sparse_initializer)]:
            defined.setdefault(tensor.name, "an initializer")  # may also be listed as an input (its default value)
        for index, node in enumerate(graph.node):
            node_text = f"node {node.name!r} ({node.op_type})" if node.name else f"node #{index} ({node.op_type})"
            for output in node.output:
                if not output:
                    continue
                if output in defined:
                    raise OnnxModelError(
                        f"{label}: {node_text} in {where} writes the value {output!r}, which {defined[output]} "
                        "already defines; each value must have exactly one producer (ONNX's single static "
                        "assignment rule)."
                    )
                defined[output] = node_text
            for attribute in node.attribute:
                inner = [attribute.g] if attribute.HasField("g") else []
                graphs.extend((body, f"{attribute.name!r} body of {node_text} in {where}") for body in [*inner, *attribute.graphs])


# ------------------------------------------------------------------------------ the checker
def _set_runtime_ops_apart(model: onnx.ModelProto, runtime_ops: frozenset[str]) -> None:
    """Move the default-domain nodes of ``runtime_ops`` that ONNX has no schema for to a private domain."""
    if not runtime_ops:
        return
    opset = next((int(e.version) for e in model.opset_import if e.domain in ("", "ai.onnx")), 1)
    moved = False
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            if node.domain in ("", "ai.onnx") and node.op_type in runtime_ops and not onnx.defs.has(node.op_type, opset):
                node.domain = _RUNTIME_DOMAIN
                moved = True
            for attribute in node.attribute:
                pending.extend([attribute.g] if attribute.HasField("g") else [])
                pending.extend(attribute.graphs)
    if moved:
        model.opset_import.add(domain=_RUNTIME_DOMAIN, version=1)


def _relax_graph_io(graph: onnx.GraphProto) -> None:
    """Give the main graph's inputs and outputs the shape (and type) fields the checker insists on.

    onnxruntime runs a model whose inputs or outputs leave their shape out (or outputs their
    type); the checker refuses it. The copy the checker sees gets empty placeholders; strict
    shape inference later runs on the real types.
    """
    for is_output, values in ((False, graph.input), (True, graph.output)):
        for value in values:
            kind = value.type.WhichOneof("value")
            if kind is None and is_output:
                value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
                kind = "tensor_type"
            if kind == "tensor_type":
                tensor_type = value.type.tensor_type
                if not tensor_type.HasField("shape"):
                    tensor_type.shape.SetInParent()
                if tensor_type.elem_type == onnx.TensorProto.UNDEFINED and is_output:
                    tensor_type.elem_type = onnx.TensorProto.FLOAT


__all__ = [
    "check_model_rules",
    "check_payload",
    "check_single_assignment",
    "check_types_and_sizes",
    "check_versions",
]
