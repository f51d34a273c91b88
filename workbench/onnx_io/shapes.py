"""ONNX shape inference, run one way for every layer (the reader, the viewer, ``workbench inspect``).

Float weights never decide a shape, so inference runs without their bytes: onnx serializes the
whole model to infer it, which was most of the ONNX -> JAX generation time for a 1,700-node CNN
with its weights. Integer initializers (shapes, axes) keep their values for data propagation.
"""

from __future__ import annotations

import onnx

from workbench.errors import OnnxModelError

_FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
)
_DETACH_MIN_BYTES = 4096


def infer_shapes(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """``onnx.shape_inference.infer_shapes`` (data propagation on) with the big float weights set aside.

    Returns a new model; ``model`` must be the caller's own (its large float initializers are
    detached while inference runs and put back after). Errors name ``label``.
    """
    detached: dict[int, bytes] = {}
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.data_type in _FLOAT_TYPES and len(tensor.raw_data) >= _DETACH_MIN_BYTES:
            detached[index] = tensor.raw_data
            tensor.ClearField("raw_data")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as error:
        raise OnnxModelError(f"{label}: ONNX shape inference rejected the model: {error}") from error
    finally:
        for index, data in detached.items():
            model.graph.initializer[index].raw_data = data
    for index, data in detached.items():
        # inference keeps the initializer list as it is, so the indices still apply
        restored = inferred.graph.initializer[index]
        if restored.name != model.graph.initializer[index].name:  # pragma: no cover - onnx contract
            raise AssertionError("shape inference reordered the initializers")
        restored.raw_data = data
    return inferred


def _has_type(value: onnx.ValueInfoProto) -> bool:
    if value.type.HasField("tensor_type"):
        return value.type.tensor_type.HasField("shape")
    return value.type.WhichOneof("value") is not None


def subgraphs(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    """``(attribute name, body)`` of every If/Loop/Scan body a node holds."""
    found = []
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            found.append((attribute.name, attribute.g))
        found.extend((f"{attribute.name}[{i}]", g) for i, g in enumerate(attribute.graphs))
    return found


def edges_without_shape(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> list[str]:
    """Names of node outputs, in the graph and in every If/Loop/Scan body below it, that carry no shape."""
    known = set(outer) | {value.name for value in [*graph.value_info, *graph.input, *graph.output] if _has_type(value)}
    known.update(init.name for init in graph.initializer)
    missing = [name for node in graph.node for name in node.output if name and name not in known]
    for node in graph.node:
        for _, body in subgraphs(node):
            missing += edges_without_shape(body, frozenset(known))
    return missing


def with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model itself if every edge has a shape, else a shape-inferred copy (the input is not modified)."""
    if not edges_without_shape(model.graph):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return infer_shapes(copy, f"ONNX graph {model.graph.name!r}")


__all__ = ["edges_without_shape", "infer_shapes", "subgraphs", "with_shapes"]
