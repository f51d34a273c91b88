"""Every edge of an export is typed without ONNX's whole-graph inference, and typed as that inference types it.

The lowering types each value from its jaxpr variable's abstract value; the few values a handler leaves
untyped are typed by ONNX's inference of their one node (workbench/jax_to_onnx/passes/shapes.py). These
tests convert models whose graphs take that path (the whole-graph inference is made to fail if called),
then run the whole-graph strict inference on the result and check that it changes no type: the
shortcut gives the export ONNX's own inference would have given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnx_ir as ir
import pytest

import workbench as wb
from tests.support.benchmark_set import SET
from workbench.errors import ConversionError
from workbench.jax_to_onnx.passes import shapes
from workbench.zoo import ZOO


def _types(graph: ir.Graph) -> dict[str, tuple[object, object]]:
    """(type, shape) of every value of ``graph`` and of its If/Loop/Scan bodies, by name."""
    found = {value.name: (value.type, None if value.shape is None else tuple(value.shape)) for value in graph.inputs}
    for node in graph:
        for value in node.outputs:
            found[value.name] = (value.type, None if value.shape is None else tuple(value.shape))
        for attribute in node.attributes.values():
            if attribute.type == ir.AttributeType.GRAPH:
                found.update(_types(attribute.as_graph()))
            elif attribute.type == ir.AttributeType.GRAPHS:
                for body in attribute.as_graphs():
                    found.update(_types(body))
    return found


def _without_whole_graph_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(model: ir.Model) -> onnx.GraphProto:
        raise AssertionError("the whole-graph ONNX shape inference ran: some edge was left untyped")

    monkeypatch.setattr(shapes, "_inferred_graph", refuse)


def _assert_as_onnx_infers(conversion: wb.Conversion) -> None:
    model = conversion.ir_model
    before = _types(model.graph)
    assert all(shapes._complete(value) for node in model.graph for value in node.outputs)
    shapes.infer_shapes(model, whole_graph=True)
    after = _types(model.graph)
    changed = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    assert not changed, f"ONNX's whole-graph inference types these values differently: {changed}"
    onnx.checker.check_model(conversion.model, full_check=True)


ZOO_MODELS = ["nnx_gpt", "nnx_vit", "nnx_resnet", "nnx_gru", "nnx_lstm", "eqx_cnn", "linen_cnn"]


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_export_is_typed_as_onnx_infers(name, monkeypatch):
    built = ZOO[name]()
    _without_whole_graph_inference(monkeypatch)
    conversion = wb.convert(built.fn, built.inputs)
    monkeypatch.undo()
    _assert_as_onnx_infers(conversion)


@pytest.mark.slow
@pytest.mark.parametrize("symbolic", [False, True], ids=["static", "symbolic"])
@pytest.mark.parametrize("name", ["eqx_transformer", "nnx_gpt_mha", "haiku_resnet18"])
def test_benchmark_set_export_is_typed_as_onnx_infers(name, symbolic, monkeypatch):
    # the Equinox encoder's and the GPT's index arithmetic (embedding lookups, clamped gathers) is
    # typed by the inference of each node; Haiku's ResNet-18 is typed while lowering throughout
    model = SET[name]("test", symbolic=symbolic)
    if (name, symbolic) == ("eqx_transformer", True):
        # with a symbolic batch, the Equinox encoder's gather expands its index grid to a shape computed at
        # run time: the whole-graph inference types the Expand, as before (and leaves unk__ dims in it)
        conversion = wb.convert(model.fn, model.specs)
        assert any(dim.value.startswith("unk__") for node in conversion.ir_model.graph for value in node.outputs
                   for dim in value.shape if isinstance(dim, ir.SymbolicDim))
        onnx.checker.check_model(conversion.model, full_check=True)
        return
    _without_whole_graph_inference(monkeypatch)
    conversion = wb.convert(model.fn, model.specs)
    monkeypatch.undo()
    _assert_as_onnx_infers(conversion)


def test_untyped_helper_values_are_typed_by_their_node():
    # a clamped embedding lookup: the handler's Clip/Squeeze/Gather/Equal are left untyped by the lowering
    table = np.arange(40, dtype=np.float32).reshape(10, 4)

    def lookup(ids):
        return jnp.take(table, ids, axis=0) * 2.0

    conversion = wb.convert(lookup, [jax.ShapeDtypeStruct(("B", 3), jnp.int32)])
    _assert_as_onnx_infers(conversion)
    ids = np.array([[0, 9, 12], [3, -1, 2]], np.int32)
    (got,) = conversion.run(ids)
    np.testing.assert_array_equal(got, np.asarray(lookup(ids)))


def test_a_node_its_own_inference_cannot_type_leaves_it_to_the_whole_graph_inference(monkeypatch):
    # Reshape to a computed shape: alone, ONNX knows only its rank, so the whole-graph inference types it
    x = _input("x", (2, 3))
    shape = ir.Value(name="s", type=ir.TensorType(ir.DataType.INT64), shape=ir.Shape([2]))
    y = ir.Value(name="y")
    model = _model_with([ir.Node("", "Shape", [x], outputs=[shape]), ir.Node("", "Reshape", [x, shape], outputs=[y])], [x], [y])
    calls = []
    whole_graph = shapes._inferred_graph
    monkeypatch.setattr(shapes, "_inferred_graph", lambda model: calls.append(model) or whole_graph(model))
    shapes.infer_shapes(model)
    assert len(calls) == 1
    assert y.type == ir.TensorType(ir.DataType.FLOAT) and y.shape is not None and len(y.shape) == 2


def test_a_plain_node_is_typed_by_its_own_inference(monkeypatch):
    x = _input("x", (2, 3))
    y = ir.Value(name="y")
    model = _model_with([ir.Node("", "Relu", [x], outputs=[y])], [x], [y])
    _without_whole_graph_inference(monkeypatch)
    shapes.infer_shapes(model)
    assert y.type == ir.TensorType(ir.DataType.FLOAT) and tuple(y.shape) == (2, 3)


def test_an_invalid_graph_is_refused_on_the_typed_path():
    # every edge typed (no inference runs), but the node is not valid ONNX: the checker still refuses it
    x = _input("x", (2, 3))
    y = ir.Value(name="y", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2, 3]))
    node = ir.Node("", "Relu", [x], attributes=[ir.AttrInt64("no_such_attribute", 1)], outputs=[y])
    model = _model_with([node], [x], [y])
    with pytest.raises(ConversionError, match="not valid ONNX"):
        shapes.infer_shapes(model)


def _input(name: str, shape: tuple[int, ...]) -> ir.Value:
    return ir.Value(name=name, type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(list(shape)))


def _model_with(nodes: list[ir.Node], inputs: list[ir.Value], outputs: list[ir.Value]) -> ir.Model:
    graph = ir.Graph(inputs, outputs, nodes=nodes, opset_imports={"": 21}, name="g")
    return ir.Model(graph, ir_version=10)
