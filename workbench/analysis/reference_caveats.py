"""Where onnxruntime, the reference of the ONNX -> JAX locator, is itself off the exact result.

The divergence locator (:mod:`workbench.analysis.locate_generated`) takes onnxruntime's values as the
truth. For a few kernels that is known not to hold on some CPUs; when such a node is a root cause, the
report says so beside it, so a user does not chase a converter bug that is not there.

Hand-written because it is knowledge about onnxruntime's CPU kernels that no library exposes:

- u8 x s8 integer matmuls and the ops built on them: on x86 CPUs without VNNI, onnxruntime's kernel adds
  products in int16 pairs (``vpmaddubsw``), which saturate once ``2 * 255 * |w|`` passes 32,767, i.e. for
  int8 weights beyond +-64. onnxruntime's quantizer avoids it with ``reduce_range=True`` (7-bit weights).
  The generated JAX computes the exact integer product.

Measured on this project's machine (AMD EPYC, AVX2, no VNNI; onnxruntime 1.31.1, 2026-12-06), uint8
activations all 255 against int8 weights of 127/126, onnxruntime against the exact int64 product:
MatMulInteger, MatMulIntegerToFloat, QLinearMatMul, QGemm, DynamicQuantizeMatMul, QLinearConv and
QAttention's projections are all 49% low (MatMulInteger 1.017e6 off on 2.07e6); with weights of 64/63 all
are exact. Not listed, because exact there with full-range weights: ConvInteger (uint8 or int8 input,
1x1 and 3x3 kernels on 3 to 64 channels), and every op with int8 activations (s8 x s8).
``tests/analysis/test_reference_caveats.py`` measures each again on the machine it runs on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from workbench.onnx_io.tensors import tensor_array


@dataclass(frozen=True)
class IntegerMatmul:
    """Where an op's operands are: its int8 weight, its activation and the activation's zero point (which
    has the activation's type); ``activation`` None when the op quantizes float activations to uint8
    itself (DynamicQuantizeMatMul)."""

    weight: int
    activation: int | None
    activation_zero_point: int | None


# op type -> operands, for the ops whose onnxruntime CPU kernel is the u8 x s8 matmul that saturates
U8_S8_MATMULS = {
    "MatMulInteger": IntegerMatmul(weight=1, activation=0, activation_zero_point=2),
    "MatMulIntegerToFloat": IntegerMatmul(weight=1, activation=0, activation_zero_point=4),
    "DynamicQuantizeMatMul": IntegerMatmul(weight=1, activation=None, activation_zero_point=None),
    "QLinearMatMul": IntegerMatmul(weight=3, activation=0, activation_zero_point=2),
    "QGemm": IntegerMatmul(weight=3, activation=0, activation_zero_point=2),
    "QLinearConv": IntegerMatmul(weight=3, activation=0, activation_zero_point=2),
    "QAttention": IntegerMatmul(weight=1, activation=0, activation_zero_point=6),
}
# the largest |int8 weight| whose pair of products with uint8 activations stays within int16
SAFE_WEIGHT = 64


def _activation_is_int8(node: onnx.NodeProto, operands: IntegerMatmul, constants: Mapping[str, onnx.TensorProto],
                        dtypes: Mapping[str, np.dtype]) -> bool:
    """True when the activation is known to be int8 (s8 x s8: exact): from its zero point's type or from
    ``dtypes``. Unknown counts as uint8, the case that saturates."""
    if operands.activation is None:
        return False
    for position in (operands.activation_zero_point, operands.activation):
        if position is None or len(node.input) <= position or not node.input[position]:
            continue
        name = node.input[position]
        if name in constants:
            return constants[name].data_type == onnx.TensorProto.INT8
        if name in dtypes:
            return np.dtype(dtypes[name]) == np.int8
    return False


def reference_caveat(node: onnx.NodeProto, constants: Mapping[str, onnx.TensorProto], label: str,
                     dtypes: Mapping[str, np.dtype] | None = None) -> str | None:
    """Why onnxruntime's value of ``node`` may be off the exact result, or None when nothing is known.
    ``constants``: the graph's constant tensors by name (``onnx_io.tensors.constant_tensors``), of which
    only the node's weight is decoded; ``label``: the model, for a tensor that cannot be decoded;
    ``dtypes``: the types of values computed at run time (an int8 activation rules the caveat out)."""
    operands = U8_S8_MATMULS.get(node.op_type)
    if operands is None or len(node.input) <= operands.weight:
        return None
    tensor = constants.get(node.input[operands.weight])
    if tensor is None or tensor.data_type != onnx.TensorProto.INT8:
        return None
    if _activation_is_int8(node, operands, constants, dtypes or {}):
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


__all__ = ["SAFE_WEIGHT", "U8_S8_MATMULS", "IntegerMatmul", "reference_caveat"]
