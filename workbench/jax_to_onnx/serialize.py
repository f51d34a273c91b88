"""A graph serialised as onnx-ir serialises it, with the value types written once per distinct type.

onnx-ir's ``serialize_graph_into`` writes each ``ValueInfoProto`` field by field (type, then every
dimension of the shape: ~5 us a value). A converted graph has a few hundred typed values but only a few
dozen distinct (element type, shape) pairs, so here each pair's ``TypeProto`` is built once (by onnx-ir's
own ``serialize_type_into`` and ``serialize_shape_into``) and copied into every value that has it; the
nodes, tensors, functions and model fields are still onnx-ir's. The bytes are onnx-ir's
(tests/jax_to_onnx/test_serialize.py compares them on the zoo and the benchmark set).

A value with anything else to say (metadata, a doc string, dimension denotations, a type that is not a
plain tensor) and a graph with quantization annotations go through onnx-ir's own code.
"""

from __future__ import annotations

from typing import Any

import onnx
import onnx_ir as ir

__all__ = ["serialize_model"]

# onnx-ir keeps a value's quantization parameters in its meta under this key and writes them as a
# graph's quantization_annotation; such a graph is serialised by onnx-ir whole
_QUANTIZATION_KEY = "quant_parameter_tensor_names"
# from this IR version on, functions carry their own value_info (older models get it in the main graph)
_FUNCTION_VALUE_INFO_VERSION = 10


def serialize_model(model: ir.Model) -> onnx.ModelProto:
    """``ir.serde.serialize_model(model)``, byte for byte, with the main graph's value types cached."""
    graph = model.graph
    if model.ir_version < _FUNCTION_VALUE_INFO_VERSION or _has_quantization(graph):
        return ir.serde.serialize_model(model)
    shell = ir.Model(
        ir.GraphView([], [], nodes=[], opset_imports=graph.opset_imports),  # the graph is written below
        ir_version=model.ir_version,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        domain=model.domain,
        model_version=model.model_version,
        doc_string=model.doc_string,
        functions=list(model.functions.values()),
        metadata_props=model.metadata_props,
    )
    proto = ir.serde.serialize_model(shell)
    proto.graph.Clear()
    _serialize_graph_into(proto.graph, graph, model.ir_version)
    return proto


def _has_quantization(graph: Any) -> bool:
    values = [*graph.inputs, *graph.outputs, *graph.initializers.values()]
    values.extend(output for node in graph for output in node.outputs)
    return any(_QUANTIZATION_KEY in value.meta for value in values)


def _serialize_graph_into(proto: onnx.GraphProto, graph: Any, ir_version: int) -> None:
    """onnx-ir's ``serialize_graph_into`` of a graph without quantization annotations, types cached."""
    types: dict[tuple[Any, ...], onnx.TypeProto] = {}
    if graph.name:
        proto.name = graph.name
    if graph.doc_string:
        proto.doc_string = graph.doc_string
    for value in graph.inputs:
        _value_into(proto.input, value, types)
    input_names = {value.name for value in graph.inputs}
    initializers = graph.initializers
    for value in initializers.values():
        if _has_info(value) and value.name not in input_names:
            _value_into(proto.value_info, value, types)
        tensor = value.const_value
        if tensor is None:
            continue  # onnx-ir leaves such an initializer out too (and logs it)
        tensor.name = value.name
        ir.serde.serialize_tensor_into(proto.initializer.add(), from_=tensor)
    for node in graph:
        _node_into(proto.node, node, ir_version)
        for output in node.outputs:
            if not output.is_graph_output() and _has_info(output):
                _value_into(proto.value_info, output, types)
    for value in graph.outputs:
        _value_into(proto.output, value, types)
    if graph.metadata_props:
        for key in sorted(graph.metadata_props):
            proto.metadata_props.add(key=key, value=graph.metadata_props[key])


def _node_into(field: Any, node: ir.Node, ir_version: int) -> None:
    """Append ``node``'s ``NodeProto`` to the repeated ``field``: its plain fields in one call, as onnx-ir
    writes them (a field set only when not empty; inputs named, a missing one as ""; trailing unnamed
    outputs left out; metadata sorted by key), its attributes by onnx-ir."""
    attributes = node.attributes.values()
    if node.overload or node.device_configurations or any(attribute.is_ref() for attribute in attributes):
        ir.serde.serialize_node_into(field.add(), from_=node, model_ir_version=ir_version)
        return
    outputs = [value.name for value in node.outputs]
    while outputs and not outputs[-1]:
        outputs.pop()
    proto = field.add(
        op_type=node.op_type, input=["" if value is None else value.name for value in node.inputs], output=outputs
    )
    if node.domain:
        proto.domain = node.domain
    if node.name:
        proto.name = node.name
    if node.doc_string:
        proto.doc_string = node.doc_string
    metadata = node.metadata_props
    if metadata:
        entries = proto.metadata_props
        for key in sorted(metadata):
            entries.add(key=key, value=metadata[key])
    for attribute in attributes:
        ir.serde.serialize_attribute_into(proto.attribute.add(), from_=attribute)


def _has_info(value: ir.Value) -> bool:
    """Whether onnx-ir writes a ``value_info`` for ``value`` (something known about it, and a name)."""
    known = value.shape is not None or value.type is not None or value.metadata_props or value.doc_string
    return bool(known) and bool(value.name)


def _value_into(field: Any, value: ir.Value, types: dict[tuple[Any, ...], onnx.TypeProto]) -> None:
    """Append ``value``'s ``ValueInfoProto`` to the repeated ``field``, its type from ``types`` when plain."""
    value_type, shape = value.type, value.shape
    if (
        type(value_type) is not ir.TensorType
        or value_type.denotation
        or shape is None
        or value.metadata_props
        or value.doc_string
        or any(shape.get_denotation(axis) for axis in range(len(shape)))
    ):
        ir.serde.serialize_value_into(field.add(), value)
        return
    key = (value_type.dtype, *shape)
    type_proto = types.get(key)
    if type_proto is None:
        type_proto = onnx.TypeProto()
        ir.serde.serialize_type_into(type_proto, value_type)
        ir.serde.serialize_shape_into(type_proto, shape)
        types[key] = type_proto
    field.add(name=value.name, type=type_proto)
