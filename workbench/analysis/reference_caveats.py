"""Where onnxruntime, the reference of the ONNX -> JAX locator, is itself off the exact result.

The divergence locator (:mod:`workbench.analysis.locate_generated`) takes onnxruntime's values as the
truth. For a few kernels that is known not to hold on some CPUs; when such a node is a root cause, the
report says so beside it, so a user does not chase a converter bug that is not there.

Hand-written because it is knowledge about onnxruntime's CPU kernels that no library exposes:

- u8 x s8 integer matmuls (MatMulInteger, MatMulIntegerToFloat, DynamicQuantizeMatMul, QLinearMatMul):
  on x86 CPUs without VNNI, onnxruntime's kernel adds products in int16 pairs (``vpmaddubsw``), which
  saturate once ``2 * 255 * |w|`` passes 32,767, i.e. for int8 weights beyond +-64. onnxruntime's
  quantizer avoids it with ``reduce_range=True`` (7-bit weights). The generated JAX computes the exact
  integer product. Seen: 11.05 from onnxruntime where the exact value is 16.33 (AMD EPYC, 2026-12-05).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from workbench.onnx_io.tensors import tensor_array

# op type -> index of the int8 weight input, for the ops whose CPU kernel is the u8 x s8 matmul
U8_S8_MATMULS = {"MatMulInteger": 1, "MatMulIntegerToFloat": 1, "DynamicQuantizeMatMul": 1, "QLinearMatMul": 3}
# the largest |int8 weight| whose pair of products with uint8 activations stays within int16
SAFE_WEIGHT = 64


def reference_caveat(node: onnx.NodeProto, constants: Mapping[str, onnx.TensorProto], label: str) -> str | None:
    """Why onnxruntime's value of ``node`` may be off the exact result, or None when nothing is known.
    ``constants``: the graph's constant tensors by name (``onnx_io.tensors.constant_tensors``), of which
    only the node's weight is decoded; ``label``: the model, for a tensor that cannot be decoded."""
    position = U8_S8_MATMULS.get(node.op_type)
    if position is None or len(node.input) <= position:
        return None
    tensor = constants.get(node.input[position])
    if tensor is None or tensor.data_type != onnx.TensorProto.INT8:
        return None
    weight = tensor_array(tensor, label)
    if weight.size == 0:
        return None
    largest = int(np.abs(weight.astype(np.int32)).max())
    if largest <= SAFE_WEIGHT:
        return None
    return (
        f"{node.op_type} {node.name or node.output[0]!r}: its int8 weights reach {largest} (beyond +-{SAFE_WEIGHT}); "
        "on x86 CPUs without VNNI onnxruntime's u8 x s8 kernel adds products in int16 pairs that saturate, so "
        "onnxruntime itself can be off the exact product, which the generated JAX computes. Quantize with "
        "reduce_range=True (7-bit weights) to compare on such a CPU."
    )


__all__ = ["SAFE_WEIGHT", "U8_S8_MATMULS", "reference_caveat"]
