"""Shape annotation and validation: every edge typed by ONNX's own (strict) shape inference, then the checker.

The model stays an onnx-ir model (its weights still the arrays the lowering was given): ONNX shape
inference and the checker run on a serialized copy without the large weights, and the types
inference finds are copied back onto the model's values. Nothing here copies a weight.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir

from workbench.errors import ConversionError
from workbench.onnx_io.shapes import guarded_inference

# initializers above this size are left out of the model that ONNX shape inference sees: it only
# needs their types, while copying megabytes of weights through it twice costs more than the inference
_SHAPE_INFERENCE_TENSOR_LIMIT = 4096


def infer_shapes(model: ir.Model) -> None:
    """Give every value of ``model`` the type and shape ONNX shape inference (strict, data propagation) finds,
    in place, and validate the model with the ONNX checker: an invalid model raises ConversionError.

    Large initializers are passed to the inference as typed graph inputs without data (and put back
    afterwards, in their original order), so no weight is serialized or copied.
    """
    inferred = _inferred_graph(model)
    _annotate(model.graph, inferred)


def _inferred_graph(model: ir.Model) -> onnx.GraphProto:
    graph = model.graph
    order = list(graph.initializers)
    large = [
        value
        for value in graph.initializers.values()
        if value.const_value is not None and value.const_value.nbytes > _SHAPE_INFERENCE_TENSOR_LIMIT
    ]
    tensors = {value.name: value.const_value for value in large}
    original_inputs = len(graph.inputs)
    for value in large:
        graph.initializers.pop(value.name)
        value.const_value = None
        graph.inputs.append(value)
    try:
        light = ir.serde.serialize_model(model)
    finally:
        del graph.inputs[original_inputs:]
        for value in large:
            value.const_value = tensors[value.name]
        values = {value.name: value for value in large}
        values.update((name, graph.initializers.pop(name)) for name in list(graph.initializers))
        for name in order:
            graph.register_initializer(values[name])
    try:
        # data propagation only where onnx would not spell out millions of elements (a (10**9,) input)
        proto = guarded_inference(light, strict_mode=True)
    except onnx.shape_inference.InferenceError as first_error:
        # ONNX's data propagation mistakes small 1-D float tensors for shape tensors in broadcasting ops
        # (jnp.outer of vectors of 3 and 4: "Invalid rank for Mul broadcasting: (3) vs (4)", onnx 1.23);
        # without it the inference is sound, only symbolic dims computed from shape arithmetic stay unnamed
        try:
            proto = onnx.shape_inference.infer_shapes(light, strict_mode=True, data_prop=False)
        except onnx.shape_inference.InferenceError as error:
            raise ConversionError(f"the exported graph failed ONNX shape inference: {error}") from first_error
    try:
        # with the strict inference above, this is onnx.checker.check_model(full_check=True), run on the
        # weight-less model (large weights are typed inputs here) so its cost does not grow with the weights
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise ConversionError(
            f"the exported graph is not valid ONNX ({error}); this is a bug in the workbench, please report it "
            "with the function you converted"
        ) from error
    return proto.graph


def _annotate(graph: ir.Graph, inferred: onnx.GraphProto) -> None:
    """Copy the types of ``inferred`` (the same graph, serialized and shape-inferred) onto ``graph``'s values.

    Node outputs take their ``value_info``, graph outputs their declared types; If/Loop/Scan bodies
    are matched node by node (serialization keeps the order) and annotated the same way.
    """
    produced = {value.name: value for node in graph for value in node.outputs if value.name}
    for info in inferred.value_info:
        value = produced.get(info.name)
        if value is not None:
            _set_type(value, info.type)
    for value, info in zip(graph.outputs, inferred.output, strict=True):
        _set_type(value, info.type)
    for node, node_proto in zip(graph, inferred.node, strict=True):
        bodies = {attribute.name: attribute for attribute in node_proto.attribute}
        for name, attribute in node.attributes.items():
            proto = bodies[name]
            if attribute.type == ir.AttributeType.GRAPH:
                _annotate(attribute.as_graph(), proto.g)
            elif attribute.type == ir.AttributeType.GRAPHS:
                for body, body_proto in zip(attribute.as_graphs(), proto.graphs, strict=True):
                    _annotate(body, body_proto)


def _set_type(value: ir.Value, type_proto: onnx.TypeProto) -> None:
    if not type_proto.HasField(type_proto.WhichOneof("value") or "tensor_type"):
        return  # inference found no type: keep what the lowering set
    value.type = ir.serde.deserialize_type_proto_for_type(type_proto)
    value.shape = ir.serde.deserialize_type_proto_for_shape(type_proto)
