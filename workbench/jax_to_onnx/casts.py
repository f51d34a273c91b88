"""Casts added to one graph by a rewrite that changes some values' types (:mod:`.precision`, :mod:`.cpu_widening`).

One ``Cast`` per value and target type, however many nodes read it, placed right after the value's
producer (at the top of the graph for a graph input or an initializer), with a fresh name made from the
value's and the type's (``h.float32``, ``h.bfloat16``).
"""

from __future__ import annotations

import onnx_ir as ir

from workbench.onnx_io.cpu_kernels import type_name


class CastInserter:
    """The casts added to ``graph``: :meth:`cast` makes one per (value, type) and reuses it."""

    def __init__(self, graph: ir.Graph, names: set[str] | None = None) -> None:
        """``names``: the names taken (shared with other inserters; default: ``graph``'s own)."""
        self.graph = graph
        self.casts: dict[tuple[int, ir.DataType], ir.Value] = {}
        self.names = names if names is not None else {v.name for v in graph.inputs} | set(graph.initializers) | {
            o.name for n in graph.all_nodes() for o in n.outputs
        }

    def cast(self, value: ir.Value, to: ir.DataType) -> ir.Value:
        """``value`` cast to ``to`` (the same Cast for every reader)."""
        key = (id(value), to)
        if key not in self.casts:
            name = self.fresh(f"{value.name}.{type_name(to)}")
            node = ir.node("Cast", [value], attributes={"to": to}, name=name)
            cast_value = node.outputs[0]
            cast_value.name = name
            cast_value.type = ir.TensorType(to)
            cast_value.shape = value.shape
            self.insert(value, node)
            self.casts[key] = cast_value
        return self.casts[key]

    def cast_output(self, value: ir.Value, to: ir.DataType) -> ir.Value:
        """A graph output cast to ``to`` under the name the output had; ``value`` itself is renamed."""
        name = value.name
        value.name = self.fresh(f"{name}.{type_name(value.type.dtype if isinstance(value.type, ir.TensorType) else None)}")
        cast_value = self.cast(value, to)
        cast_value.name = name
        return cast_value

    def insert(self, value: ir.Value, node: ir.Node) -> None:
        producer = value.producer()
        if producer is not None and producer.graph is self.graph:
            self.graph.insert_after(producer, node)
        elif len(self.graph):
            self.graph.insert_before(next(iter(self.graph)), node)
        else:
            self.graph.append(node)

    def fresh(self, base: str) -> str:
        """``base``, or ``base_2``, ``base_3``... whichever no value of the graph has."""
        name, count = base, 1
        while name in self.names:
            count += 1
            name = f"{base}_{count}"
        self.names.add(name)
        return name


__all__ = ["CastInserter"]
