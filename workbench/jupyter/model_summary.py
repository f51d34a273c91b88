"""Read an ONNX model for display: load it, make sure every edge has a shape, tabulate its nodes.

This is the data behind the viewer's static fallback and text summary, kept
free of any Jupyter import so it can be tested and used as plain data.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

from workbench.errors import OnnxModelError

ModelSource = onnx.ModelProto | str | os.PathLike[str] | bytes

_ELEMENT_NAMES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64"}


def load_model(source: ModelSource) -> onnx.ModelProto:
    """A ModelProto from a ModelProto, serialized bytes or an .onnx file path (read, never executed)."""
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, bytes):
        try:
            return onnx.load_model_from_string(source)
        except Exception as error:  # protobuf's DecodeError and friends
            raise OnnxModelError(f"The given bytes are not a serialized ONNX model: {error}") from error
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise OnnxModelError(f"ONNX file {str(path)!r} does not exist (or is not a file).")
        try:
            return onnx.load(str(path))
        except Exception as error:
            raise OnnxModelError(f"Cannot read {str(path)!r} as an ONNX model: {error}") from error
    raise TypeError(
        f"Expected an onnx.ModelProto, a path to an .onnx file or serialized bytes, got {type(source).__name__}."
    )


def _has_shape(value: onnx.ValueInfoProto) -> bool:
    if value.type.HasField("tensor_type"):
        return value.type.tensor_type.HasField("shape")
    return value.type.WhichOneof("value") is not None


def edges_without_shape(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> list[str]:
    """Names of node outputs, in the graph and in every If/Loop/Scan body below it, that carry no shape."""
    known = set(outer) | {
        value.name
        for value in [*graph.value_info, *graph.input, *graph.output]
        if _has_shape(value)
    }
    known.update(init.name for init in graph.initializer)
    missing = [name for node in graph.node for name in node.output if name and name not in known]
    for node in graph.node:
        for _, body in _subgraphs(node):
            missing += edges_without_shape(body, frozenset(known))
    return missing


def with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model itself if every edge has a shape, else a shape-inferred copy (the input is not modified)."""
    if not edges_without_shape(model.graph):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        return onnx.shape_inference.infer_shapes(copy, strict_mode=False, data_prop=True)
    except Exception as error:  # onnx raises InferenceError/ValidationError with its own messages
        raise OnnxModelError(f"ONNX shape inference failed on graph {model.graph.name!r}: {error}") from error


def type_text(value: onnx.ValueInfoProto) -> str:
    """``float32[B×30]`` for a tensor, ``?`` when nothing is known."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return kind.replace("_type", "") if kind else "?"
    tensor = value.type.tensor_type
    element = _ELEMENT_NAMES.get(tensor.elem_type) or onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
    if not tensor.HasField("shape"):
        return element
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return f"{element}[{'×'.join(dims)}]"


def initializer_text(tensor: onnx.TensorProto) -> str:
    element = _ELEMENT_NAMES.get(tensor.data_type) or onnx.TensorProto.DataType.Name(tensor.data_type).lower()
    return f"{element}[{'×'.join(str(d) for d in tensor.dims)}]"


@dataclass(frozen=True)
class Edge:
    """One value a node reads or writes."""

    name: str
    type: str
    is_parameter: bool = False


@dataclass(frozen=True)
class NodeRow:
    """One node, as the static table shows it; ``graph`` names the subgraph it sits in ("" = top level)."""

    index: int
    op: str
    name: str
    inputs: tuple[Edge, ...]
    outputs: tuple[Edge, ...]
    graph: str = ""


@dataclass(frozen=True)
class ModelSummary:
    """Counts and tables describing a model, computed once."""

    graph_name: str
    inputs: tuple[Edge, ...]
    outputs: tuple[Edge, ...]
    nodes: tuple[NodeRow, ...]  # the top-level graph
    parameter_count: int
    op_counts: tuple[tuple[str, int], ...]
    opset: int | None
    subgraph_nodes: tuple[NodeRow, ...] = ()  # nodes inside If/Loop/Scan bodies, labelled by their subgraph

    def text(self) -> str:
        """A stable plain-text summary (no addresses, ports, paths or timings), e.g. for nbval."""
        ops = ", ".join(f"{op} ×{count}" for op, count in self.op_counts)
        lines = [
            f"ONNX graph {self.graph_name!r}: {len(self.nodes)} nodes ({ops}), "
            f"{self.parameter_count:,} parameters, opset {self.opset}",
            "  inputs:  " + ", ".join(f"{e.name}: {e.type}" for e in self.inputs),
            "  outputs: " + ", ".join(f"{e.name}: {e.type}" for e in self.outputs),
        ]
        return "\n".join(lines)


def _subgraphs(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    found = []
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            found.append((attribute.name, attribute.g))
        found.extend((f"{attribute.name}[{i}]", g) for i, g in enumerate(attribute.graphs))
    return found


def _node_op(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def graph_value_types(graph: onnx.GraphProto, outer: dict[str, str] | None = None) -> dict[str, str]:
    """Type text of every value a graph can read: its own, and (for a body) those of the graphs around it."""
    types = dict(outer or {})
    types.update({v.name: type_text(v) for v in [*graph.input, *graph.value_info, *graph.output]})
    types.update({init.name: initializer_text(init) for init in graph.initializer})
    return types


def _edge(name: str, types: dict[str, str], parameters: dict[str, str]) -> Edge:
    if name in parameters:
        return Edge(name, parameters[name], is_parameter=True)
    return Edge(name, types.get(name, "?"))


def _rows(
    graph: onnx.GraphProto, label: str, types: dict[str, str], parameters: dict[str, str]
) -> tuple[list[NodeRow], list[NodeRow]]:
    """(rows of this graph's nodes, rows of every node nested below it, labelled by subgraph)."""
    own: list[NodeRow] = []
    nested: list[NodeRow] = []
    for index, node in enumerate(graph.node):
        own.append(NodeRow(
            index=index,
            op=_node_op(node),
            name=node.name,
            inputs=tuple(_edge(name, types, parameters) for name in node.input if name),
            outputs=tuple(_edge(name, types, parameters) for name in node.output if name),
            graph=label,
        ))
        for attribute_name, body in _subgraphs(node):
            where = f"{label + ' › ' if label else ''}{node.name or node.op_type}.{attribute_name}"
            body_rows, deeper = _rows(body, where, graph_value_types(body, types), parameters)
            nested += body_rows + deeper
    return own, nested


def summarize(model: onnx.ModelProto) -> ModelSummary:
    """Tabulate ``model``: its top-level nodes, and the nodes of every If/Loop/Scan body with their shapes.

    Call :func:`with_shapes` first for shapes on every edge.
    """
    graph = model.graph
    parameters = {init.name: initializer_text(init) for init in graph.initializer}
    types = graph_value_types(graph, {})
    nodes, subgraph_nodes = _rows(graph, "", types, parameters)
    op_counts = Counter(row.op for row in nodes)
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)
    return ModelSummary(
        graph_name=graph.name,
        inputs=tuple(_edge(value.name, types, parameters) for value in graph.input if value.name not in parameters),
        outputs=tuple(_edge(value.name, types, parameters) for value in graph.output),
        nodes=tuple(nodes),
        parameter_count=sum(math.prod(init.dims) for init in graph.initializer),
        op_counts=tuple(sorted(op_counts.items(), key=lambda item: (-item[1], item[0]))),
        opset=opset,
        subgraph_nodes=tuple(subgraph_nodes),
    )
