"""One name per value across a graph and its nested subgraphs (ONNX's single static assignment).

onnx-ir names a value that a rewrite creates without a name from a counter kept per graph: the first
such value is ``val_0`` in the main graph and ``val_0`` again in each Loop or If body. ONNX wants every
name defined once across nested scopes (a body sees the enclosing graph's values by name), so the checker
refuses a Loop whose body redefines a name the main graph defined before it, and a reader could take
the body's value for the outer one. :func:`unique_value_names` renames the repeats once the passes are done.
"""

from __future__ import annotations

import onnx_ir as ir


def unique_value_names(graph: ir.Graph | ir.Function) -> int:
    """Suffix repeated value names (``val_0`` → ``val_0_1``) in place, in graph order (subgraphs too);
    returns how many values were renamed.

    The graph's own inputs, outputs and initializers keep their names (they are the model's interface
    and its weights); a value defined later under a name already taken is the one renamed.
    """
    interface = [*graph.inputs, *graph.outputs]
    if isinstance(graph, ir.Graph):
        interface += graph.initializers.values()
    seen: set[str] = {value.name for value in interface if value.name}
    done: set[ir.Value] = set(interface)
    counts: dict[str, int] = {}
    renamed = 0

    def claim(value: ir.Value | None) -> None:
        nonlocal renamed
        if value is None or value in done:
            return
        done.add(value)
        name = value.name
        if not name:
            return
        if name in seen:
            base = name
            while name in seen:
                counts[base] = counts.get(base, 0) + 1
                name = f"{base}_{counts[base]}"
            value.name = name
            renamed += 1
        seen.add(name)

    def enter(subgraph: ir.Graph | ir.Function) -> None:  # a body's inputs before its nodes' outputs
        if isinstance(subgraph, ir.Graph):
            for value in (*subgraph.inputs, *subgraph.initializers.values()):
                claim(value)

    for node in ir.traversal.RecursiveGraphIterator(graph, enter_graph=enter):
        for value in node.outputs:
            claim(value)
    return renamed
