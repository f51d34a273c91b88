"""One summary of an ONNX model: its inputs, outputs, nodes with the type of every edge, and counts.

:func:`summarize` computes it once; the viewer's static table and stable text
(:meth:`ModelSummary.text`), ``%%to_onnx``'s header and ``workbench inspect``
(:meth:`ModelSummary.to_json`) all read the same object. Run
:func:`workbench.onnx_io.shapes.with_shapes` first for a type on every edge.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import onnx

from workbench.onnx_io.describe import (
    DEFAULT_DOMAINS,
    ValueDescription,
    default_opset,
    describe_tensor,
    describe_value,
    opset_imports,
)
from workbench.onnx_io.shapes import subgraphs


@dataclass(frozen=True)
class Edge:
    """One value a node reads or writes, with its type when the model states one."""

    name: str
    value: ValueDescription | None
    is_parameter: bool = False

    @property
    def type(self) -> str:
        """``float32[B×30]``, or ``?`` when the model gives the value no type."""
        return "?" if self.value is None else self.value.text()


@dataclass(frozen=True)
class NodeRow:
    """One node; ``graph`` names the subgraph it sits in (``""`` = the top level)."""

    index: int
    op_type: str
    domain: str
    name: str
    inputs: tuple[Edge, ...]
    outputs: tuple[Edge, ...]
    graph: str = ""

    @property
    def op(self) -> str:
        """The op as tables show it: ``Gemm``, or ``com.example::Frobnicate`` outside the default domain."""
        return self.op_type if self.domain in DEFAULT_DOMAINS else f"{self.domain}::{self.op_type}"


@dataclass(frozen=True)
class ModelSummary:
    """Counts and tables describing a model, computed once by :func:`summarize`."""

    graph_name: str
    inputs: tuple[Edge, ...]
    outputs: tuple[Edge, ...]
    nodes: tuple[NodeRow, ...]  # the top-level graph
    parameter_count: int
    parameter_bytes: int
    parameter_tensors: int
    op_counts: tuple[tuple[str, int], ...]  # by ``NodeRow.op``, most frequent first
    opset: int | None
    opsets: dict[str, int]
    ir_version: int
    producer: str
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

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (``workbench inspect --format json``): ONNX's own type names, dims as ints/names/null."""
        return {
            "ir_version": self.ir_version,
            "producer": self.producer,
            "opsets": dict(self.opsets),
            "inputs": [_value_json(e) for e in self.inputs],
            "outputs": [_value_json(e) for e in self.outputs],
            "op_histogram": dict(Counter(row.op_type for row in self.nodes).most_common()),
            "parameters": {"count": self.parameter_count, "bytes": self.parameter_bytes, "tensors": self.parameter_tensors},
            "nodes": [
                {
                    "name": row.name,
                    "op_type": row.op_type,
                    "domain": row.domain,
                    "inputs": [{"name": e.name, "shape": _shape_json(e)} for e in row.inputs],
                    "outputs": [{"name": e.name, "shape": _shape_json(e), "dtype": _dtype_json(e)} for e in row.outputs],
                }
                for row in self.nodes
            ],
        }


def _shape_json(edge: Edge) -> list[int | str | None] | None:
    return None if edge.value is None or edge.value.shape is None else list(edge.value.shape)


def _dtype_json(edge: Edge) -> str | None:
    return None if edge.value is None or not edge.value.is_tensor else edge.value.type_name


def _value_json(edge: Edge) -> dict[str, Any]:
    value = edge.value
    if value is None or not value.is_tensor:
        return {"name": edge.name, "type": f"{value.kind}_type" if value and value.kind else None}
    return {"name": edge.name, "dtype": value.type_name, "shape": _shape_json(edge)}


def _graph_values(graph: onnx.GraphProto, outer: dict[str, ValueDescription]) -> dict[str, ValueDescription]:
    """Every value a graph can read, described: its own, and (for a body) those of the graphs around it."""
    values = dict(outer)
    values.update({v.name: describe_value(v) for v in [*graph.input, *graph.value_info, *graph.output]})
    values.update({init.name: describe_tensor(init) for init in graph.initializer})
    return values


def _edge(name: str, values: dict[str, ValueDescription], parameters: frozenset[str]) -> Edge:
    return Edge(name, values.get(name), is_parameter=name in parameters)


def _rows(
    graph: onnx.GraphProto, label: str, values: dict[str, ValueDescription], parameters: frozenset[str]
) -> tuple[list[NodeRow], list[NodeRow]]:
    """(rows of this graph's nodes, rows of every node nested below it, labelled by subgraph)."""
    own: list[NodeRow] = []
    nested: list[NodeRow] = []
    for index, node in enumerate(graph.node):
        own.append(NodeRow(
            index=index,
            op_type=node.op_type,
            domain=node.domain,
            name=node.name,
            inputs=tuple(_edge(name, values, parameters) for name in node.input if name),
            outputs=tuple(_edge(name, values, parameters) for name in node.output if name),
            graph=label,
        ))  # fmt: skip
        for attribute_name, body in subgraphs(node):
            where = f"{label + ' › ' if label else ''}{node.name or node.op_type}.{attribute_name}"
            body_rows, deeper = _rows(body, where, _graph_values(body, values), parameters)
            nested += body_rows + deeper
    return own, nested


def _itemsize(tensor: onnx.TensorProto) -> int:
    dtype = describe_tensor(tensor).dtype
    return 0 if dtype is None else dtype.itemsize


def summarize(model: onnx.ModelProto) -> ModelSummary:
    """Tabulate ``model``: its top-level nodes, and the nodes of every If/Loop/Scan body with their types.

    Call :func:`with_shapes` first for shapes on every edge.
    """
    graph = model.graph
    parameters = frozenset(init.name for init in graph.initializer)
    values = _graph_values(graph, {})
    nodes, subgraph_nodes = _rows(graph, "", values, parameters)
    op_counts = Counter(row.op for row in nodes)
    counts = [math.prod(init.dims) for init in graph.initializer]
    return ModelSummary(
        graph_name=graph.name,
        inputs=tuple(_edge(value.name, values, parameters) for value in graph.input if value.name not in parameters),
        outputs=tuple(_edge(value.name, values, parameters) for value in graph.output),
        nodes=tuple(nodes),
        parameter_count=int(sum(counts)),
        parameter_bytes=int(sum(count * _itemsize(init) for count, init in zip(counts, graph.initializer, strict=True))),
        parameter_tensors=len(graph.initializer),
        op_counts=tuple(sorted(op_counts.items(), key=lambda item: (-item[1], item[0]))),
        opset=default_opset(model),
        opsets=opset_imports(model),
        ir_version=int(model.ir_version),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        subgraph_nodes=tuple(subgraph_nodes),
    )


__all__ = ["Edge", "ModelSummary", "NodeRow", "summarize"]
