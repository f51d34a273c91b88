"""Shape annotation and validation: every edge typed, then the ONNX checker.

The lowering types every value it binds to a jaxpr variable from that variable's abstract value
(``builder.set_type``), and the passes type the values they make; so the edges of a converted graph
are almost always typed before this step. When they all are, the few a handler left untyped (index
arithmetic inside one equation's decomposition) are typed by ONNX's inference of that one node, and
the model is only validated by the ONNX checker: the types are the ones ONNX's inference of the whole
graph would find (it keeps every complete type it is given; ``tests/jax_to_onnx/test_shape_annotation.py``
compares the two on the zoo and the benchmark set). Otherwise ONNX's own strict shape inference
(with data propagation) types the graph, as it always did. Tests check every export with
``onnx.checker.check_model(full_check=True)``, which also runs the strict inference.

The model stays an onnx-ir model (its weights still the arrays the lowering was given): ONNX shape
inference and the checker run on a serialized copy without the large weights (a view of the graph
that has them as typed inputs), and the types inference finds are copied back onto the model's
values. Nothing here copies a weight.
"""

from __future__ import annotations

import functools

import onnx
import onnx_ir as ir

from workbench.errors import ConversionError
from workbench.onnx_io.shapes import guarded_inference

# graph.meta key of the weight-less ModelProto the checker validated, when nothing was changed after the
# check (not when the whole-graph inference typed the model afterwards): see conversion.proto_from_checked
CHECKED_PROTO_KEY = "workbench.checked_proto"

# initializers above this size are left out of the model that ONNX shape inference sees: it only
# needs their types, while copying megabytes of weights through it twice costs more than the inference
_SHAPE_INFERENCE_TENSOR_LIMIT = 4096


def infer_shapes(model: ir.Model, *, whole_graph: bool = False) -> None:
    """Give every value of ``model`` its type and shape, in place, and validate the model with the ONNX
    checker: an invalid model raises ConversionError.

    When every edge of the main graph and of its If/Loop/Scan bodies is typed (the untyped outputs of
    plain nodes are typed by ONNX's inference of their node), only the checker runs; otherwise, or with
    ``whole_graph``, ONNX's strict shape inference (data propagation) types the whole graph first.
    Large initializers are passed to the checker and the inference as typed graph inputs without data,
    so no weight is serialized or copied. When only the checker ran, the model it validated is left in
    ``model.graph.meta[CHECKED_PROTO_KEY]`` (the lowering takes it from there, conversion.proto_from_checked).
    """
    model.graph.meta.pop(CHECKED_PROTO_KEY, None)
    if not whole_graph and _typed_node_by_node(model):
        light = _light_model(model)
        _check(light)
        # this is the pipeline's last step (a half precision runs it again after its rewrite): what it
        # serialized becomes the ModelProto (conversion.proto_from_checked), not serialized a second time
        model.graph.meta[CHECKED_PROTO_KEY] = light
        return
    inferred = _inferred_graph(model)
    _annotate(model.graph, inferred)


# ONNX's inference names the dimensions it cannot work out unk__0, unk__1...: a value with one is not
# typed (inferring the graph again can find the dimension, as the whole-graph inference with a half
# precision's casts does)
_UNKNOWN_DIM_PREFIX = "unk__"


def _complete(value: ir.Value) -> bool:
    """Whether ``value`` has a tensor type and a shape whose every dimension is a number or a name."""
    if not isinstance(value.type, ir.TensorType) or value.shape is None:
        return False
    return all(isinstance(dim, int) or _named(dim) for dim in value.shape)


def _named(dim: object) -> bool:
    return isinstance(dim, ir.SymbolicDim) and bool(dim.value) and not dim.value.startswith(_UNKNOWN_DIM_PREFIX)


def _bodies_typed(node: ir.Node) -> bool:
    """Whether every value produced inside the If/Loop/Scan bodies of ``node`` (nested ones too) is typed."""
    for attribute in node.attributes.values():
        if attribute.type == ir.AttributeType.GRAPH:
            bodies = [attribute.as_graph()]
        elif attribute.type == ir.AttributeType.GRAPHS:
            bodies = list(attribute.as_graphs())
        else:
            continue
        for body in bodies:
            if not all(_complete(value) for value in body.inputs):
                return False
            for inner in body:
                if not all(_complete(value) for value in inner.outputs) or not _bodies_typed(inner):
                    return False
    return True


def _typed_node_by_node(model: ir.Model) -> bool:
    """Type the untyped outputs of the main graph's plain nodes by ONNX's inference of each node; True when
    every edge then has a complete type (nothing is changed when some cannot be typed this way)."""
    graph = model.graph
    if not all(_complete(value) for value in graph.inputs):
        return False
    untyped = []
    for node in graph:
        if not all(_complete(value) for value in node.outputs):
            if node.domain not in ("", "ai.onnx") or node.attributes and not _bodies_typed(node):
                return False
            untyped.append(node)
        elif not _bodies_typed(node):
            return False
    if not untyped:
        return True
    opset = model.opset_imports.get("", None)
    if opset is None:
        return False
    found: dict[ir.Value, onnx.TypeProto] = {}
    for node in untyped:  # in graph order: a node's inputs are typed before it is inferred
        types = _node_output_types(node, opset, found)
        if types is None:
            return False
        found.update(types)
    for value, type_proto in found.items():
        _set_type(value, type_proto)
    return True


def _node_output_types(
    node: ir.Node, opset: int, found: dict[ir.Value, onnx.TypeProto]
) -> dict[ir.Value, onnx.TypeProto] | None:
    """ONNX's inference of ``node`` alone (its small constant inputs given as data, as the whole-graph
    inference has them), or None when it fails or leaves an output without a complete type."""
    input_types: dict[str, onnx.TypeProto] = {}
    input_data: dict[str, onnx.TensorProto] = {}
    for value in node.inputs:
        if value is None:
            continue
        if value in found:
            input_types[value.name] = found[value]
        elif _complete(value):
            input_types[value.name] = _type_proto(value)
        else:
            return None
        tensor = value.const_value
        if tensor is not None and tensor.nbytes <= _SHAPE_INFERENCE_TENSOR_LIMIT:
            input_data[value.name] = ir.serde.serialize_tensor(tensor)
    try:
        schema = _schema(node.op_type, opset, node.domain)
        node_proto = ir.serde.serialize_node(node)
        inferred = onnx.shape_inference.infer_node_outputs(schema, node_proto, input_types, input_data)
    except (onnx.defs.SchemaError, onnx.shape_inference.InferenceError, RuntimeError, ValueError, KeyError):
        return None  # the whole-graph inference reports it with its own message
    types: dict[ir.Value, onnx.TypeProto] = {}
    for value in node.outputs:
        if _complete(value):
            continue
        type_proto = inferred.get(value.name)
        if type_proto is None or not _complete_proto(type_proto):
            return None
        types[value] = type_proto
    return types


def _type_proto(value: ir.Value) -> onnx.TypeProto:
    proto = onnx.ValueInfoProto()
    ir.serde.serialize_value_into(proto, value)
    return proto.type


def _complete_proto(type_proto: onnx.TypeProto) -> bool:
    if type_proto.WhichOneof("value") != "tensor_type" or not type_proto.tensor_type.HasField("shape"):
        return False
    return all(
        dim.HasField("dim_value") or (dim.dim_param and not dim.dim_param.startswith(_UNKNOWN_DIM_PREFIX))
        for dim in type_proto.tensor_type.shape.dim
    )


@functools.lru_cache(maxsize=512)
def _schema(op_type: str, opset: int, domain: str) -> onnx.defs.OpSchema:
    return onnx.defs.get_schema(op_type, opset, "" if domain == "ai.onnx" else domain)


def _light_model(model: ir.Model) -> onnx.ModelProto:
    """``model`` serialized with its large initializers as typed graph inputs without data (no weight
    copied): a view of the graph with them moved, the graph itself untouched."""
    graph = model.graph
    small, large = [], []
    for value in graph.initializers.values():
        tensor = value.const_value
        (large if tensor is not None and tensor.nbytes > _SHAPE_INFERENCE_TENSOR_LIMIT else small).append(value)
    view = ir.GraphView(
        [*graph.inputs, *large],
        graph.outputs,
        nodes=graph,
        initializers=small,
        doc_string=graph.doc_string,
        opset_imports=graph.opset_imports,
        name=graph.name,
        metadata_props=graph.metadata_props,
    )
    light = ir.Model(
        view,  # type: ignore[arg-type]  # serialized like a graph (onnx-ir's GraphProtocol)
        ir_version=model.ir_version,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        domain=model.domain,
        model_version=model.model_version,
        doc_string=model.doc_string,
        functions=list(model.functions.values()),
        metadata_props=model.metadata_props,
    )
    return ir.serde.serialize_model(light)


def _check(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise ConversionError(
            f"the exported graph is not valid ONNX ({error}); this is a bug in the workbench, please report it "
            "with the function you converted"
        ) from error


def _inferred_graph(model: ir.Model) -> onnx.GraphProto:
    light = _light_model(model)
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
    # with the strict inference above, this is onnx.checker.check_model(full_check=True), run on the
    # weight-less model (large weights are typed inputs here) so its cost does not grow with the weights
    _check(proto)
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
