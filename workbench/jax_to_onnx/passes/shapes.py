"""Shape annotation and validation: ``value_info`` on every edge from ONNX's own (strict) shape inference, then the checker."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from workbench.errors import ConversionError

# initializers above this size are left out of the model that ONNX shape inference sees: it only
# needs their types, while copying megabytes of weights through it twice costs more than the inference
_SHAPE_INFERENCE_TENSOR_LIMIT = 4096


def infer_shapes(model: ir.Model) -> onnx.ModelProto:
    """Serialize ``model`` with ``value_info`` filled in by ONNX shape inference (strict, with data propagation),
    and validate it with the ONNX checker: an invalid model is never returned.

    Large initializers are passed to the inference as typed graph inputs without data and put back
    (in their original order) afterwards, so the weights are serialized once and never copied.
    """
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
            graph.register_initializer(value)
    try:
        proto = onnx.shape_inference.infer_shapes(light, strict_mode=True, data_prop=True)
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
    del proto.graph.input[original_inputs:]
    small = {tensor.name: onnx.TensorProto.FromString(tensor.SerializeToString()) for tensor in proto.graph.initializer}
    del proto.graph.initializer[:]
    for name in order:
        if name in small:
            proto.graph.initializer.add().CopyFrom(small[name])
        else:  # written straight into the model proto: no copy of the weights
            ir.serde.serialize_tensor_into(proto.graph.initializer.add(), tensors[name])
    return proto
