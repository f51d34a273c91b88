"""Chains of Reshape/Unsqueeze/Squeeze/Flatten that give back the shape they started from are dropped.

``jax.vmap`` of per-example code leaves such round trips around every batched primitive: an
Equinox ``Conv2d`` on one image adds a unit batch axis and removes it again, so under ``vmap``
the graph reads ``Unsqueeze(x, 1) → Reshape(B, C, H, W) → Conv → Reshape(B, 1, O, H, W) →
Squeeze(1)``. Those ops only re-read the same elements in the same (row-major) order, so a chain
of them whose last output has its first input's shape, dim for dim, is the identity; removing it
lets the channel-layout pass see the Conv next to the Transposes around it.

Dims are compared as the lowering typed them: equal integers, or the same symbolic name (``B``).

Why hand-written: onnxscript's rules merge two adjacent reshapes (Reshape∘Reshape,
Unsqueeze∘Unsqueeze) but do not drop a mixed chain that undoes itself.
"""

from __future__ import annotations

import onnx_ir as ir

_RESHAPES = frozenset({"Reshape", "Unsqueeze", "Squeeze", "Flatten"})


def _is_reshape(node: ir.Node | None) -> bool:
    return node is not None and node.domain == "" and node.op_type in _RESHAPES


def same_shape(a: ir.Value, b: ir.Value) -> bool:
    """Whether both shapes are known and equal dim for dim (ints, or symbolic dims of one name)."""
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape) or a.dtype != b.dtype:
        return False
    for x, y in zip(a.shape, b.shape, strict=True):
        if isinstance(x, int) or isinstance(y, int):
            if x != y:
                return False
        elif x.value is None or x.value != y.value:
            return False
    return True


def drop_no_op_reshape_chains(graph: ir.Graph) -> int:
    """Remove every chain of reshaping ops that ends in the shape it started from, in place; returns how many."""
    count = 0
    for node in list(graph):
        if node.graph is None or not _is_reshape(node) or node.outputs[0].is_graph_output():
            continue
        output = node.outputs[0]
        start = node.inputs[0]
        while start is not None:
            if same_shape(start, output):
                output.replace_all_uses_with(start)
                _remove_unused_chain(graph, node)
                count += 1
                break
            producer = start.producer()
            start = producer.inputs[0] if _is_reshape(producer) else None
    return count


def _remove_unused_chain(graph: ir.Graph, last: ir.Node) -> None:
    """Remove ``last`` and the reshaping ops before it that nothing else reads any more."""
    node: ir.Node | None = last
    while _is_reshape(node) and not node.outputs[0].uses() and not node.outputs[0].is_graph_output():
        source = node.inputs[0]
        graph.remove(node, safe=True)
        node = None if source is None else source.producer()
