"""Types for the values of an onnx-ir model that states none, from ONNX shape inference.

A model written with onnx.helper or onnxscript often gives no ``value_info``: its inner values have no
type. What reads types node by node (the CPU kernel probes, the widening for onnxruntime's CPU
provider, a load error's description of a node) needs them; :func:`infer_missing_types` fills them in.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir

from workbench.onnx_io.describe import model_graphs
from workbench.onnx_io.shapes import guarded_inference
from workbench.onnx_io.weights import skeleton


def infer_missing_types(model: ir.Model) -> None:
    """Give each node output of the main graph and its If/Loop/Scan bodies that carries no type (a model made
    with onnx.helper or onnxscript states few) the type and shape ONNX shape inference finds, in place: the
    kernel probes and the widening read every value's type. Inference runs on the graph without its large
    weights' bytes; values it cannot type stay untyped (onnxruntime's refusal then names their node)."""
    untyped = [v for node in model.graph.all_nodes() for v in node.outputs if v.type is None and v.name]
    if not untyped:
        return
    try:
        inferred = guarded_inference(skeleton(model), strict_mode=False)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError, ValueError):
        return  # onnx's own refusal of the model: the session that loads it says more
    found = {info.name: info for graph in model_graphs(inferred) for info in (*graph.value_info, *graph.output)}
    for value in untyped:
        info = found.get(value.name)
        if info is not None and info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            typed = ir.serde.deserialize_value_info_proto(info, None)
            value.type, value.shape = typed.type, typed.shape


__all__ = ["infer_missing_types"]
