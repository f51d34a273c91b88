"""Older forms of ONNX operators: handlers write the opset-18 form, nodes are emitted in the target opset's.

Handlers (and passes) build nodes in one form, the one of opset 18 (reduction axes and split sizes as
inputs, ``Shape`` with ``start``/``end``). When the export targets an older opset, :func:`emit`
writes the same computation in that opset's form instead, at the moment the node is created, so the
graph is valid at its opset throughout the pipeline (constant folding and shape inference evaluate
nodes by the model's opset):

- ``ReduceMax/Min/Prod/Mean/L1/L2/LogSum/LogSumExp/SumSquare`` before 18: the axes input (always a
  constant in our graphs) becomes the ``axes`` attribute (``ReduceSum`` takes it as an input since 13);
- ``Split`` before 18: no ``num_outputs`` attribute (the sizes input, or the number of outputs, says it);
- ``ScatterND``/``ScatterElements`` before 16: no ``reduction`` attribute (only ``"none"`` exists there;
  the handlers that need another reduction declare ``min_opset`` 16 or 18);
- ``Shape`` with ``start``/``end`` before 15: ``Shape`` then ``Slice``.

Operators that do not exist before some opset (Bitwise*, BitCast, LayerNormalization, Gelu) are not
rewritten here: the handlers and fusions that emit them declare or check the opset they need.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from workbench.errors import ConversionError

_REDUCE_AXES_AS_ATTRIBUTE = frozenset({
    "ReduceMax", "ReduceMin", "ReduceProd", "ReduceMean", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare",
})
ADAPTED_OPS = frozenset({*_REDUCE_AXES_AS_ATTRIBUTE, "Split", "ScatterND", "ScatterElements", "Shape"})


def _constant_ints(value: ir.Value, op_type: str) -> list[int]:
    tensor = value.const_value
    if tensor is None:
        producer = value.producer()
        if producer is not None and producer.op_type == "Constant":
            tensor = producer.attributes["value"].as_tensor()
    if tensor is None:
        raise ConversionError(
            f"{op_type} before opset 18 takes its axes as an attribute, but they are computed at run time here; "
            "export with opset >= 18"
        )
    return [int(a) for a in np.asarray(tensor.numpy()).reshape(-1)]


def needs_adapting(op_type: str, opset: int, domain: str) -> bool:
    return not domain and opset < 18 and op_type in ADAPTED_OPS


def adapt(op_type: str, inputs: list[ir.Value | None], attributes: dict[str, Any], opset: int) -> tuple[
        list[ir.Value | None], dict[str, Any]]:
    """The inputs and attributes of ``op_type`` in ``opset``'s form (the Shape case is :func:`shape_slice`)."""
    if op_type in _REDUCE_AXES_AS_ATTRIBUTE:
        attributes = {k: v for k, v in attributes.items() if k != "noop_with_empty_axes"}
        if len(inputs) > 1 and inputs[1] is not None:
            attributes["axes"] = _constant_ints(inputs[1], op_type)
        return inputs[:1], attributes
    if op_type == "Split":
        return inputs, {k: v for k, v in attributes.items() if k != "num_outputs"}
    if op_type in ("ScatterND", "ScatterElements") and opset < 16:
        reduction = attributes.get("reduction", "none")
        if reduction != "none":
            raise ConversionError(f"{op_type} with reduction={reduction!r} needs opset >= 16")
        return inputs, {k: v for k, v in attributes.items() if k != "reduction"}
    return inputs, attributes


def shape_slice(op_type: str, attributes: dict[str, Any], opset: int) -> tuple[int, int | None] | None:
    """(start, end) when a ``Shape`` node must be written as ``Shape`` + ``Slice`` at ``opset``, else None."""
    if op_type != "Shape" or opset >= 15 or ("start" not in attributes and "end" not in attributes):
        return None
    return int(attributes.get("start") or 0), attributes.get("end")
