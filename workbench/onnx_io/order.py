"""Node order and the structural rules of an ONNX graph: every value read is defined, no cycle.

:func:`topological_indices` orders a graph's nodes so every value is defined before it is read
(ONNX wants that order; onnxruntime, and so the workbench, accept any order and sort); a value no
node, graph input or initializer defines and a cycle are :class:`~workbench.errors.OnnxModelError`
naming the node. Used by the ONNX -> JAX reader and by ``wb.for_onnxruntime_cpu``, which rewrites
a model it must not take apart when broken.
"""

from __future__ import annotations

import onnx

from workbench.errors import OnnxModelError
from workbench.onnx_io.describe import subgraph_free_names


def describe_node(node: onnx.NodeProto, index: int) -> str:
    """How a node is named in error messages: its name (repr-escaped) or its position, and its op."""
    domain = f"{node.domain}::" if node.domain else ""
    name = repr(node.name) if node.name else f"#{index}"
    return f"node {name} ({domain}{node.op_type})"


def topological_order(
    graph: onnx.GraphProto, label: str, outer_names: frozenset[str] = frozenset()
) -> list[onnx.NodeProto]:
    """The graph's nodes ordered so every value is defined before use."""
    return [graph.node[i] for i in topological_indices(graph, label, outer_names)]


def topological_indices(
    graph: onnx.GraphProto, label: str, outer_names: frozenset[str] = frozenset()
) -> list[int]:
    """Order the nodes so every value is defined before use; report cycles and undefined inputs."""
    available = set(outer_names) | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    available |= {t.name for t in graph.sparse_initializer} | {""}
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for out in node.output:
            if out:
                producer[out] = index
    needs = []
    for index, node in enumerate(graph.node):
        names = set(node.input) | subgraph_free_names(node)
        for name in sorted(names):
            if name not in available and name not in producer:
                raise OnnxModelError(
                    f"{label}: {describe_node(node, index)} reads the value {name!r}, which no node, "
                    "graph input or initializer defines. The model is incomplete or was edited by hand."
                )
        needs.append({producer[n] for n in names if n not in available and n in producer})
    order: list[int] = []
    state = [0] * len(graph.node)  # 0 new, 1 on stack, 2 done
    for start in range(len(graph.node)):
        if state[start]:
            continue
        stack = [(start, iter(sorted(needs[start])))]
        state[start] = 1
        while stack:
            index, pending = stack[-1]
            nxt = next(pending, None)
            if nxt is None:
                state[index] = 2
                order.append(index)
                stack.pop()
            elif state[nxt] == 1:
                node = graph.node[nxt]
                raise OnnxModelError(
                    f"{label}: the graph has a cycle through {describe_node(node, nxt)}; "
                    "ONNX graphs must be acyclic (use Loop for iteration)."
                )
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(needs[nxt]))))
    for out in graph.output:
        if out.name not in available and out.name not in producer:
            raise OnnxModelError(
                f"{label}: graph output {out.name!r} is not produced by any node or input."
            )
    return order


def sort_in_place(graph: onnx.GraphProto, label: str, outer_names: frozenset[str] = frozenset()) -> None:
    """Order the nodes of ``graph`` and of every subgraph below it topologically, in place."""
    order = topological_indices(graph, label, outer_names)
    if order != list(range(len(graph.node))):
        ordered = [graph.node[i] for i in order]
        del graph.node[:]  # the removed messages stay alive in ``ordered``
        graph.node.extend(ordered)
    holders = [node for node in graph.node if any(a.type in _GRAPH_ATTRIBUTES for a in node.attribute)]
    if not holders:
        return
    visible = set(outer_names) | {v.name for v in graph.input} | {t.name for t in graph.initializer}
    visible |= {t.values.name for t in graph.sparse_initializer}
    visible |= {name for node in graph.node for name in node.output}
    for node in holders:
        for attribute in node.attribute:
            for body in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                sort_in_place(body, label, frozenset(visible))


_GRAPH_ATTRIBUTES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


__all__ = ["describe_node", "sort_in_place", "topological_indices", "topological_order"]
