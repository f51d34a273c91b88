"""Biases reshaped to ``(1, ..., 1, N)`` before a broadcasting Add/Mul/Sub: when the reshape can go.

Flax's Dense and LayerNorm reshape their 1-D bias and scale to the output rank before adding or
multiplying; ONNX broadcasts numpy-style, so the 1-D tensor can be used as it is. The check lives
here, shared by the lowering (which skips the reshape as it emits the Add, the common case) and the
``*ReshapedBias`` rewrite rules of :mod:`workbench.jax_to_onnx.passes` (which catch the rest).
"""

from __future__ import annotations

import onnx_ir as ir

BIAS_BROADCAST_OPS = frozenset({"Add", "Mul", "Sub"})


def bias_reshape_problem(x: ir.Value, bias: ir.Value, shape: ir.Value | None) -> str | None:
    """Why ``Op(x, Reshape(bias, shape))`` cannot use ``bias`` itself, or None when it can."""
    tensor = None if shape is None else ir.convenience.get_const_tensor(shape)
    if tensor is None or bias.shape is None or not bias.shape.is_static():
        return "the bias shape is unknown or the reshape target is not constant"
    target = [int(d) for d in tensor.numpy().reshape(-1)]
    dims = [int(d) for d in bias.shape]
    if len(target) < len(dims) or target != [1] * (len(target) - len(dims)) + dims:
        return "reshape target is not (1, ..., 1, *bias.shape)"
    if x.shape is None or len(x.shape) < len(target):
        return "the other operand must have at least the reshaped rank"
    return None


def droppable_bias(x: ir.Value, operand: ir.Value) -> ir.Value | None:
    """``bias`` when ``operand`` is ``Reshape(bias, (1, ..., 1, *bias.shape))`` and ``x`` has at least
    that rank, else None."""
    producer = operand.producer()
    if (
        producer is None
        or producer.op_type != "Reshape"
        or producer.domain != ""
        or len(producer.inputs) != 2
        or producer.attributes.get_int("allowzero", 0)
        or producer.inputs[0] is None
    ):
        return None
    bias = producer.inputs[0]
    return None if bias_reshape_problem(x, bias, producer.inputs[1]) else bias


def without_bias_reshape(x: ir.Value, operand: ir.Value) -> ir.Value:
    """The bias itself when ``operand`` is a droppable bias reshape (:func:`droppable_bias`), else
    ``operand`` (the rewriter would make the same change at ~100x the cost)."""
    bias = droppable_bias(x, operand)
    return operand if bias is None else bias
