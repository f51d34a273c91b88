"""Bad input on the surfaces added since issue 16's sweep: one clean error naming the fault and the remedy.

Each case was swept as a careless or hostile user would call it (fault51): ``wb.for_onnxruntime_cpu``
on broken models, the analysis options of ``wb.parity`` / ``wb.locate_divergence`` (``sizes=``,
tolerances, seeds, the inputs of an ONNX model), ``wb.Precision``, ``wb.jit_forward``, the Graph IR
door, ``wb.export_web_harness`` and the command line. A case listed here either raised a raw error
(``SerdeError``, ``TypeError``, ``KeyError``, ``MemoryError``...) or silently did something else
before its fix; the tests assert the error's class and that its message names the thing at fault
and what to do.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.hardening.test_bad_models import INVALID
from tests.support.harness import run_onnx

vi = helper.make_tensor_value_info


def _model(nodes, inputs, outputs, inits=(), *, opsets=(("", 17),)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets])
    model.ir_version = 8
    return model


X2 = vi("x", TensorProto.FLOAT, [2])
Y2 = vi("y", TensorProto.FLOAT, [2])


def _if_with_a_broken_branch() -> onnx.ModelProto:
    then = helper.make_graph([helper.make_node("Relu", ["nosuch"], ["t"])], "then", [], [vi("t", TensorProto.FLOAT, [2])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e", TensorProto.FLOAT, [2])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="branch")
    return _model([node], [vi("c", TensorProto.BOOL, []), X2], [Y2])


# a model onnx-ir would take apart: each once came back "widened" (or as onnx-ir's SerdeError)
BROKEN_FOR_CPU = {
    "cycle": (
        _model([helper.make_node("Relu", ["b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2"),
                helper.make_node("Add", ["x", "a"], ["y"], name="n3")], [X2], [Y2]),  # fmt: skip
        r"the graph has a cycle through node 'n\d' \(Relu\); ONNX graphs must be acyclic \(use Loop for iteration\)",
    ),
    "missing_weight": (
        _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [vi("x", TensorProto.FLOAT, [2, 3])],
               [vi("y", TensorProto.FLOAT, [2, 4])]),  # fmt: skip
        r"node 'mm' \(MatMul\) reads the value 'w', which no node, graph input or initializer defines",
    ),
    "broken_if_branch": (_if_with_a_broken_branch(), r"node 'branch' \(If\) reads the value 'nosuch', which no node"),
    "no_default_opset": (
        _model([helper.make_node("Relu", ["x"], ["y"])], [X2], [Y2], opsets=()),
        r"is not a valid ONNX model \(onnx.checker, the model imports no ai.onnx opset\)",
    ),
    **{f"reader_{case}": INVALID[case] for case in sorted(INVALID) if case != "softmax_axis_99"},
}


@pytest.mark.parametrize("case", sorted(BROKEN_FOR_CPU))
def test_for_onnxruntime_cpu_refuses_a_broken_model_naming_the_fault(case, tmp_path):
    model, message = BROKEN_FOR_CPU[case]
    before = model.SerializeToString()
    with pytest.raises(wb.OnnxModelError, match=r"<ModelProto>.*" + message):
        wb.for_onnxruntime_cpu(model)
    assert model.SerializeToString() == before
    path = tmp_path / "broken.onnx"
    path.write_bytes(before)
    with pytest.raises(wb.OnnxModelError, match=r"broken\.onnx.*" + message):
        wb.for_onnxruntime_cpu(str(path))


def test_for_onnxruntime_cpu_takes_nodes_in_any_order_without_stated_types():
    """The checks refuse what is broken, not what onnxruntime accepts: nodes out of order, intermediate values
    without value_info (a hand-made or foreign model). The latter once came back unwidened: the kernel probe of
    a bfloat16 MatMul writing an untyped value failed for another reason and counted as a kernel found."""
    k = np.array([[1, 2], [3, -4], [5, 6]], ml_dtypes.bfloat16)
    bf16 = TensorProto.BFLOAT16
    nodes = [helper.make_node("Cast", ["x"], ["xb"], to=bf16, name="narrow"), helper.make_node("MatMul", ["xb", "k"], ["h"], name="dot"),
             helper.make_node("Neg", ["h"], ["n"], name="neg"), helper.make_node("Cast", ["n"], ["y"], to=TensorProto.FLOAT, name="wide")]  # fmt: skip
    unsorted = _model(nodes[::-1], [vi("x", TensorProto.FLOAT, [2, 3])], [vi("y", TensorProto.FLOAT, [2, 2])],
                      [numpy_helper.from_array(k, "k")])  # fmt: skip
    before = unsorted.SerializeToString()
    widened = wb.for_onnxruntime_cpu(unsorted)
    assert unsorted.SerializeToString() == before  # sorted and typed on a copy
    x = np.array([[0.5, -1.25, 2], [3, 0.75, -4]], np.float32)  # exact in bfloat16, and so are the products
    (got,) = run_onnx(widened, [x])
    np.testing.assert_array_equal(got, -(x @ k.astype(np.float32)))
    custom = _model([helper.make_node("Frob", ["x"], ["y"], domain="com.example")], [X2], [Y2],
                    opsets=(("", 17), ("com.example", 1)))  # fmt: skip
    assert [node.domain for node in wb.for_onnxruntime_cpu(custom).graph.node] == ["com.example"]
