"""The Min/Max → Clip rules of ``workbench.compat.new_common_rules`` make the bounds as ``ir.Tensor``
directly (``_clip_rule_class``): the rewritten model must be onnxscript's own rule's, byte for byte, and
compute ``np.clip``."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnxscript import rewriter
from onnxscript.rewriter.rules import common

from workbench.compat import new_common_rules


def _model(inner: str, outer: str, inner_bounds: list[float], outer_bounds: list[float], dtype: np.dtype) -> ir.Model:
    """``outer(inner(x, *inner_bounds), *outer_bounds)`` with the bounds as scalar initializers."""
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.from_numpy(dtype)), shape=ir.Shape([2, 5]))
    initializers = []

    def constants(values: list[float], prefix: str) -> list[ir.Value]:
        made = []
        for index, number in enumerate(values):
            value = ir.Value(name=f"{prefix}{index}", const_value=ir.Tensor(np.array(number, dtype), name=f"{prefix}{index}"))
            value.type, value.shape = x.type, ir.Shape([])
            initializers.append(value)
            made.append(value)
        return made

    first = ir.Node("", inner, [x, *constants(inner_bounds, "a")], name="first")
    second = ir.Node("", outer, [first.outputs[0], *constants(outer_bounds, "b")], name="second")
    second.outputs[0].name = "y"
    second.outputs[0].type, second.outputs[0].shape = x.type, x.shape
    graph = ir.Graph([x], [second.outputs[0]], nodes=[first, second], initializers=initializers, opset_imports={"": 21})
    return ir.Model(graph, ir_version=10)


CASES = [
    ("Max", "Min", [0.0], [6.0], "max_min_to_clip", common.max_min_rule),  # relu6
    ("Max", "Min", [-1.5, 0.25], [6.0, 3.5], "max_min_to_clip", common.max_min_rule),
    ("Min", "Max", [6.0], [0.0], "min_max_to_clip", common.min_max_rule),
    ("Min", "Max", [4.0, 2.5], [-3.0, -0.5], "min_max_to_clip", common.min_max_rule),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(("inner", "outer", "inner_bounds", "outer_bounds", "ours", "theirs"), CASES)
def test_clip_rule_as_onnxscripts(inner, outer, inner_bounds, outer_bounds, ours, theirs, dtype) -> None:
    dtype = np.dtype(dtype)
    rewritten = rewriter.rewrite(_model(inner, outer, inner_bounds, outer_bounds, dtype), [getattr(new_common_rules(), ours)])
    expected = rewriter.rewrite(_model(inner, outer, inner_bounds, outer_bounds, dtype), [theirs])
    assert [node.op_type for node in rewritten.graph] == ["Clip"]
    assert ir.serde.serialize_model(rewritten).SerializeToString() == ir.serde.serialize_model(expected).SerializeToString()
    lower = max(inner_bounds) if inner == "Max" else max(outer_bounds)
    upper = min(outer_bounds) if outer == "Min" else min(inner_bounds)
    x = np.linspace(-8, 8, 10, dtype=dtype).reshape(2, 5)
    session = ort.InferenceSession(ir.serde.serialize_model(rewritten).SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    np.testing.assert_array_equal(y, np.clip(x, dtype.type(lower), dtype.type(upper)))
