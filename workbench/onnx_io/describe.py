"""What an ONNX value is: one decoder of ``ValueInfoProto`` / ``TensorProto`` types for every layer.

:func:`describe_value` turns a graph input, output or ``value_info`` entry into a
:class:`ValueDescription` (kind, element type, shape with ints, dimension names or ``None`` for
an unknown dimension); :func:`describe_tensor` does the same for an initializer. Everything that
shows or checks a type (the generator, parity's input check, the CLI, the web harness, the
viewer) reads it from here and only formats it its own way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

Dim = int | str | None  # a fixed size, a symbolic dimension's name, or unknown
DEFAULT_DOMAINS = ("", "ai.onnx")  # the two spellings of the default operator set's domain

# The viewer and the summaries write the two common float types the way NumPy names them.
_ELEMENT_TEXT = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64"}
# Element types without a NumPy dtype that means anything to a caller.
_NO_DTYPE = frozenset({onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING})


@dataclass(frozen=True)
class ValueDescription:
    """The type of one named value: kind, element type and shape, as the model states them.

    ``kind`` is ``"tensor"``, ``"sequence"``, ``"map"``, ``"optional"`` or ``"sparse_tensor"``
    (``None`` when the model gives no type). ``elem_type`` is the ``TensorProto.DataType`` of a
    tensor (0 otherwise). ``shape`` is ``None`` when the rank is unknown; each dimension is an
    int, the name of a symbolic dimension, or ``None`` when it is unknown and unnamed.
    """

    name: str
    kind: str | None
    elem_type: int = onnx.TensorProto.UNDEFINED
    shape: tuple[Dim, ...] | None = None

    @property
    def is_tensor(self) -> bool:
        return self.kind == "tensor"

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def dtype(self) -> np.dtype | None:
        """The NumPy dtype of the elements; ``None`` for strings, non-tensors and unknown types."""
        if not self.is_tensor or self.elem_type in _NO_DTYPE:
            return None
        try:
            return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type))
        except (KeyError, TypeError, ValueError):  # an element type this onnx/NumPy cannot map
            return None

    @property
    def type_name(self) -> str:
        """ONNX's own lower-case name of the element type (``"float"``, ``"int64"``), or the kind."""
        if not self.is_tensor:
            return self.kind or "?"
        try:
            return onnx.TensorProto.DataType.Name(self.elem_type).lower()
        except ValueError:  # a number the installed onnx does not know
            return f"elem_type {self.elem_type}"

    def text(self) -> str:
        """``float32[B×30]`` for a tensor, the element type alone when the rank is unknown, ``?`` for no type."""
        if not self.is_tensor:
            return self.kind or "?"
        element = _ELEMENT_TEXT.get(self.elem_type) or self.type_name
        if self.shape is None:
            return element
        return f"{element}[{'×'.join('?' if d is None else str(d) for d in self.shape)}]"


def _dims(shape: onnx.TensorShapeProto) -> tuple[Dim, ...]:
    return tuple(
        int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim
    )


def describe_type(name: str, value_type: onnx.TypeProto) -> ValueDescription:
    """The description of a value named ``name`` with the type ``value_type``."""
    kind = value_type.WhichOneof("value")
    if kind == "tensor_type":
        tensor = value_type.tensor_type
        shape = _dims(tensor.shape) if tensor.HasField("shape") else None
        return ValueDescription(name, "tensor", int(tensor.elem_type), shape)
    if kind == "sparse_tensor_type":
        sparse = value_type.sparse_tensor_type
        shape = _dims(sparse.shape) if sparse.HasField("shape") else None
        return ValueDescription(name, "sparse_tensor", int(sparse.elem_type), shape)
    return ValueDescription(name, kind.removesuffix("_type") if kind else None)


def describe_value(value: onnx.ValueInfoProto) -> ValueDescription:
    """The description of a graph input, output or ``value_info`` entry."""
    return describe_type(value.name, value.type)


def describe_tensor(tensor: onnx.TensorProto) -> ValueDescription:
    """The description of an initializer (or a constant): always a tensor of fixed shape."""
    return ValueDescription(tensor.name, "tensor", int(tensor.data_type), tuple(int(d) for d in tensor.dims))


def real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (old exporters list the weights as inputs too)."""
    initializers = {t.name for t in graph.initializer}
    return [value for value in graph.input if value.name not in initializers]


def describe_inputs(graph: onnx.GraphProto) -> list[ValueDescription]:
    """The graph's real inputs (initializers excluded), in order."""
    return [describe_value(value) for value in real_inputs(graph)]


def describe_outputs(graph: onnx.GraphProto) -> list[ValueDescription]:
    return [describe_value(value) for value in graph.output]


def opset_imports(model: onnx.ModelProto) -> dict[str, int]:
    """Domain -> version of every operator set the model imports; the default domain is ``"ai.onnx"``."""
    return {(entry.domain or "ai.onnx"): int(entry.version) for entry in model.opset_import}


def default_opset(model: onnx.ModelProto) -> int | None:
    """The version of the default (``ai.onnx``) operator set, ``None`` when the model imports none."""
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    return None


@dataclass(frozen=True)
class ValueUses:
    """Who reads and who makes each value of one graph (the pattern finders' table)."""

    reads: Counter[str]  # how many times each value is read: by nodes, by their subgraphs, as a graph output
    producer: dict[str, onnx.NodeProto]  # the node that makes each value
    readers: dict[str, list[onnx.NodeProto]]  # the nodes that read each value as an input, each once, in order


def value_uses(nodes: Sequence[onnx.NodeProto], graph_outputs: Sequence[str]) -> ValueUses:
    """The :class:`ValueUses` of one graph's ``nodes`` and its output names."""
    reads: Counter[str] = Counter(graph_outputs)
    producer: dict[str, onnx.NodeProto] = {}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        reads.update(n for n in node.input if n)
        reads.update(subgraph_free_names(node))
        producer.update((o, node) for o in node.output if o)
        for name in dict.fromkeys(n for n in node.input if n):
            readers.setdefault(name, []).append(node)
    return ValueUses(reads, producer, readers)


def subgraph_free_names(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names a node's subgraphs read (they count as inputs of the node for ordering)."""
    used: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
            for sub in graph.node:
                used.update(n for n in sub.input if n and n not in defined)
                used.update(n for n in subgraph_free_names(sub) if n not in defined)
                defined.update(sub.output)
            used.update(o.name for o in graph.output if o.name not in defined)
    return used


def model_graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """The model's main graph and every subgraph (If/Loop/Scan bodies, at any depth)."""
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    pending.append(attribute.g)
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    pending.extend(attribute.graphs)


def opset_text(model: onnx.ModelProto) -> str:
    """``ai.onnx opset 17``: the version the checker and shape inference hold the nodes to (or that there is none)."""
    version = default_opset(model)
    return "the model imports no ai.onnx opset" if version is None else f"ai.onnx opset {version}"


__all__ = [
    "DEFAULT_DOMAINS",
    "Dim",
    "ValueDescription",
    "default_opset",
    "describe_inputs",
    "describe_outputs",
    "describe_tensor",
    "describe_type",
    "describe_value",
    "model_graphs",
    "opset_imports",
    "opset_text",
    "real_inputs",
    "subgraph_free_names",
    "value_uses",
    "ValueUses",
]
