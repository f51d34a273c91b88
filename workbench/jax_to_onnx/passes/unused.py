"""Dead-node removal with the op schemas looked up once per process, not once per node per pass.

onnx-ir's ``RemoveUnusedNodesPass`` asks ``onnx.defs.get_schema`` for every node it keeps (~9 us a
call, so 6 ms of a GPT-12 conversion over the two times the pipeline runs it) to find the optional
outputs nobody reads. :func:`remove_unused_nodes` does the same removals and renames (the tests check the
two agree on every export) with the answer of that look-up kept per (domain, op type, opset):

- a node none of whose outputs is used or a graph output goes, walking the graph from the end, so a
  chain of dead nodes goes in one walk (a node without outputs goes too);
- a kept node loses its trailing ``None`` inputs and, for a standard op whose schema has optional
  outputs (no variadic one), the name of every unused optional output that is no graph output; then
  its trailing unnamed outputs. A BatchNormalization in a known inference mode (from opset 14) loses
  its ``training_mode`` attribute before that; graph attributes are walked the same way;
- initializers that are unused, no graph input and no graph output go; then each function's body.

A use by a node that is in no graph any more does not count: the nodes of an If or Loop body stay attached to
the outer values they read when a pass (constant folding, this sweep) removes the If or Loop. Such uses are
dropped first (:func:`_forget_detached_uses`), and the sweep detaches a removed node's bodies itself;
before, an initializer read only by a dead branch stayed in the model (onnxruntime warned "Removing
initializer ... It is not used by any node": interpax's splines, tests/real_programs/augment_interp_programs.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import onnx_ir as ir


@dataclass(frozen=True)
class _OutputSchema:
    """What the dead-output step needs of one op's schema."""

    found: bool  # a schema exists for the op at that opset
    training_mode: bool  # the schema has a ``training_mode`` attribute (BatchNormalization from opset 14)
    optional: tuple[bool, ...] | None  # each formal output optional?; None with a variadic one or none optional


_SCHEMAS: dict[tuple[str, str, int], _OutputSchema] = {}


def remove_unused_nodes(model: ir.Model) -> int:
    """Remove dead nodes and unused initializers from ``model`` (and its functions), in place; returns
    how many went."""
    graph = model.graph
    _forget_detached_uses(graph)
    count = _sweep(graph, graph.opset_imports.get("", None))
    protected = {*graph.inputs, *graph.outputs}
    for value in list(graph.initializers.values()):
        if not value.uses() and value not in protected:
            del graph.initializers[value.name]
            count += 1
    for function in model.functions.values():
        _forget_detached_uses(function)
        count += _sweep(function, function.opset_imports.get("", None))
    return count


def _nodes_within(graph: ir.Graph | ir.Function, found: set[ir.Node]) -> set[ir.Node]:
    """``found`` with every node of ``graph`` and of its nodes' bodies, recursively."""
    for node in graph:
        found.add(node)
        for subgraph in _bodies(node):
            _nodes_within(subgraph, found)
    return found


def _bodies(node: ir.Node) -> list[ir.Graph]:
    """The graphs ``node`` holds in attributes (an If's branches, a Loop's or Scan's body)."""
    bodies: list[ir.Graph] = []
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            bodies.append(attr.as_graph())
        elif attr.type == ir.AttributeType.GRAPHS:
            bodies.extend(attr.as_graphs())
    return bodies


def _forget_detached_uses(graph: ir.Graph | ir.Function) -> None:
    """Disconnect, from the values of ``graph`` (inputs, initializers, node outputs, at any depth), the inputs
    of nodes that are in no graph under ``graph`` any more (the body of a removed If or Loop)."""
    live = _nodes_within(graph, set())
    values: list[ir.Value] = [*graph.inputs]
    if isinstance(graph, ir.Graph):
        values.extend(graph.initializers.values())
    for node in live:
        values.extend(node.outputs)
    for value in values:
        for user, index in list(value.uses()):
            if user not in live:
                user.replace_input_with(index, None)


def _detach_bodies(node: ir.Node) -> None:
    """Disconnect every node of ``node``'s bodies from the values it reads (the node is being removed)."""
    for subgraph in _bodies(node):
        for inner in _nodes_within(subgraph, set()):
            for index in range(len(inner.inputs)):
                inner.replace_input_with(index, None)


def _sweep(graph: ir.Graph | ir.Function, opset: int | None) -> int:
    outputs = frozenset(graph.outputs)
    count = 0
    for node in reversed(graph):
        if all(output not in outputs and not output.uses() for output in node.outputs):
            _detach_bodies(node)
            graph.remove(node, safe=True)
            count += 1
            continue
        _drop_trailing_none_inputs(node)
        if opset is not None:
            _drop_unused_optional_outputs(node, outputs, opset)
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                count += _sweep(attr.as_graph(), opset)
            elif attr.type == ir.AttributeType.GRAPHS:
                for subgraph in attr.as_graphs():
                    count += _sweep(subgraph, opset)
    return count


def _drop_trailing_none_inputs(node: ir.Node) -> None:
    inputs = node.inputs
    kept = len(inputs)
    while kept and inputs[kept - 1] is None:
        kept -= 1
    node.resize_inputs(kept)


def _drop_unused_optional_outputs(node: ir.Node, graph_outputs: frozenset[ir.Value], opset: int) -> None:
    if node.domain not in ("", "onnx.ai"):
        return
    schema = _output_schema(node.domain, node.op_type, opset)
    if not schema.found:
        return
    if node.op_type == "BatchNormalization":
        # the number of outputs chooses training or inference before opset 14; from it, only a
        # known inference mode lets the statistics' outputs go
        if not schema.training_mode:
            return
        mode = node.attributes.get("training_mode")
        if mode is not None and (mode.is_ref() or mode.type != ir.AttributeType.INT or mode.as_int() != 0):
            return
        node.attributes.pop("training_mode", None)
    if schema.optional is None:
        return
    outputs = node.outputs
    for output, optional in zip(outputs, schema.optional):
        if optional and output not in graph_outputs and not output.uses():
            output.name = ""
    kept = len(outputs)
    while kept and not outputs[kept - 1].name:
        kept -= 1
    node.resize_outputs(kept)


def _output_schema(domain: str, op_type: str, opset: int) -> _OutputSchema:
    key = (domain, op_type, opset)
    known = _SCHEMAS.get(key)
    if known is not None:
        return known
    try:
        schema = onnx.defs.get_schema(op_type, opset, domain=domain)
    except onnx.defs.SchemaError:
        known = _OutputSchema(found=False, training_mode=False, optional=None)
    else:
        options = [formal.option for formal in schema.outputs]
        flags = tuple(option == onnx.defs.OpSchema.FormalParameterOption.Optional for option in options)
        variadic = onnx.defs.OpSchema.FormalParameterOption.Variadic in options
        known = _OutputSchema(True, "training_mode" in schema.attributes, None if variadic or not any(flags) else flags)
    _SCHEMAS[key] = known
    return known
