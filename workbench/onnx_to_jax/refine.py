"""Output shapes that ONNX's whole-model shape inference left open, learned node by node while generating.

Whole-model inference propagates values only through a few ops (Shape, Gather, Concat, Slice...):
a Swin window attention pads by ``(7 - W % 7) % 7`` computed through Div and Mod, so the Pad's
output shape stays unknown to it, and so does every shape computed from that one. The generator
folds such arithmetic to literals anyway (``GraphEmitter._try_fold``), so by the time it reaches the
Pad it knows the pads. :func:`refine_output_types` then asks ONNX's inference of that one node
(``onnx.shape_inference.infer_node_outputs``, with the known input values) for its output shapes.

Without this, each later Shape of such a value is only known while ``jax.jit`` traces, and the
shape arithmetic on it runs as eager JAX ops during tracing, each one compiled by XLA on its own:
133 small compilations, 19 of the 37 s of Swin-T's first ``jax.jit`` call (docs/codegen.md).
"""

from __future__ import annotations

import numpy as np
import onnx

from workbench.onnx_io.describe import ValueDescription, describe_type

# values larger than this are not handed to node inference as data (shapes, pads, axes are small)
_MAX_DATA_ELEMENTS = 64


def _fully_static(found: ValueDescription | None) -> bool:
    return found is not None and found.shape is not None and all(isinstance(d, int) for d in found.shape)


def _describe_static(name: str, value: np.ndarray) -> ValueDescription | None:
    try:
        elem_type = onnx.helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
    except (KeyError, TypeError, ValueError):  # object arrays (strings) and dtypes onnx cannot name
        return None
    return ValueDescription(name, "tensor", int(elem_type), tuple(int(d) for d in np.shape(value)))


def _type_proto(found: ValueDescription) -> onnx.TypeProto:
    shape = None if found.shape is None else [d if isinstance(d, (int, str)) else None for d in found.shape]
    return onnx.helper.make_tensor_type_proto(found.elem_type, shape)


def refine_output_types(
    node: onnx.NodeProto,
    types: dict[str, ValueDescription],
    static: dict[str, np.ndarray],
    opset_imports: list[onnx.OperatorSetIdProto],
    ir_version: int,
    opset: int,
) -> None:
    """Record in ``types`` the fixed output shapes ONNX's inference of ``node`` alone gives.

    Only default-domain nodes whose every input is a tensor of known type, and only outputs whose
    shape is not fully fixed yet; an output gets the inferred type only when its shape is fully
    fixed (a refinement never replaces what the model or whole-model inference said with less).
    """
    if node.domain not in ("", "ai.onnx"):
        return
    open_outputs = [name for name in node.output if name and not _fully_static(types.get(name))]
    if not open_outputs:
        return
    inputs = [name for name in node.input if name]
    # a value folded at generation time has the shape of its array, whatever inference said
    described = [_describe_static(name, static[name]) if name in static else types.get(name) for name in inputs]
    if any(found is None or not found.is_tensor or found.elem_type == 0 for found in described):
        return
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return
    input_types = {name: _type_proto(found) for name, found in zip(inputs, described) if found is not None}
    input_data = {
        name: onnx.numpy_helper.from_array(np.asarray(static[name]), name)
        for name in inputs
        if name in static and np.asarray(static[name]).size <= _MAX_DATA_ELEMENTS and np.asarray(static[name]).dtype != object
    }
    try:
        inferred = onnx.shape_inference.infer_node_outputs(
            schema, node, input_types, input_data, opset_imports=opset_imports, ir_version=ir_version
        )
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError, ValueError,
            KeyError):
        # node inference cannot say more than whole-model inference did: the shape stays open and
        # the generated code keeps computing it while it runs (as it did before this module). An If
        # whose two branches give one name two types (Optimum's merged decoders: ``Cast_3_output_0``
        # is bool in one branch and float in the other) passes whole-model inference but fails
        # ONNX's node-alone inference with a ValidationError ("B has inconsistent type")
        return
    for name in open_outputs:
        if name in inferred:
            found = describe_type(name, inferred[name])
            if found.is_tensor and _fully_static(found):
                types[name] = found
