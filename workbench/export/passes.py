"""Graph clean-up after lowering, delegated to onnx-ir's passes, then shape annotation.

- unused nodes, initializers and functions are removed (onnx-ir passes);
- common subexpressions (repeated Shape/Gather of the same dim, equal constants) are merged;
- ONNX shape inference fills ``value_info`` for the few intermediate values whose type the
  lowering did not set itself (values inside handler decompositions), so every edge shows a shape.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from workbench.errors import ConversionError


def run_passes(model: ir.Model, *, optimize: bool = True) -> onnx.ModelProto:
    passes: list[ir.passes.PassBase] = [common_passes.RemoveUnusedNodesPass()]
    if optimize:
        passes.append(common_passes.CommonSubexpressionEliminationPass())
    passes += [
        common_passes.RemoveUnusedNodesPass(),
        common_passes.RemoveUnusedFunctionsPass(),
        common_passes.RemoveUnusedOpsetsPass(),
    ]
    manager = ir.passes.PassManager(passes)
    manager(model)
    proto = ir.serde.serialize_model(model)
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as error:
        raise ConversionError(f"the exported graph failed ONNX shape inference: {error}") from error
