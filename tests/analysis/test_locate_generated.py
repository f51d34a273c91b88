"""The divergence locator for ONNX -> JAX names the first node whose generated value drifts from onnxruntime.

A small convolutional model (Conv, Relu, Conv, Relu, MatMul, Softmax) built with onnx.helper: the
untouched generated code matches onnxruntime at every node; tampering with one weight in the params,
or with one emitter's output, is found at exactly the node it affects, and not earlier.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.onnx_to_jax import registry


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
        "w2": rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3,
        "shape": np.array([1, -1], np.int64),
        "w3": rng.standard_normal((4 * 8 * 8, 5)).astype(np.float32) * 0.1,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Reshape", ["r2", "shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "w3"], ["logits"], name="dense"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_untouched_generated_code_matches_at_every_node():
    model = _model()
    report = wb.locate_divergence(model, wb.to_jax(model))
    assert report.ok, report
    assert report.first_divergent is None
    assert [n.node for n in report.nodes if n.compared] == ["conv1", "relu1", "conv2", "relu2", "flatten", "dense",
                                                             "softmax"]
    assert report.changed_initializers == []
    assert max(n.max_abs_error for n in report.nodes) < 1e-5


def test_a_changed_weight_is_found_at_the_node_reading_it():
    model = _model()
    forward, params = wb.to_jax(model)
    params = dict(params)
    w2 = np.array(params["w2"])
    w2[1, 2, 1, 1] += 0.5
    params["w2"] = w2
    report = wb.locate_divergence(model, (forward, params))
    assert report.first_divergent is not None and report.first_divergent.node == "conv2", report
    assert report.changed_initializers == ["w2"]
    assert [n.ok for n in report.nodes[:2]] == [True, True]  # conv1 and relu1 still agree


def _make_relu_leaky(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the Relu emitter (opset 17) by a wrong one for the test: it lets 1% of negative values through."""
    honest = registry.resolve("", "Relu", 17)
    table = registry._EMITTERS[("", "Relu")]

    def leaky(ctx):
        return f"jnp.where({ctx.x(0)} > 0, {ctx.x(0)}, 0.01 * {ctx.x(0)})"

    monkeypatch.setitem(table, honest.since, registry.EmitterSpec(honest.domain, honest.op_type, honest.since, leaky))


def test_a_tampered_emitter_is_found_at_its_first_node(monkeypatch):
    model = _model()
    _make_relu_leaky(monkeypatch)
    report = wb.locate_divergence(model)
    assert report.first_divergent is not None and report.first_divergent.node == "relu1", report
    assert report.first_divergent.op_type == "Relu"
    assert "first divergent node 'relu1'" in report.summary()
    assert report.summary().startswith("Divergence locator: the generated JAX vs the ONNX model (in memory), ")


def test_bad_generated_argument_is_a_clear_error():
    with pytest.raises(wb.SpecError, match="generated: expected the params dict"):
        wb.locate_divergence(_model(), 3)
    with pytest.raises(wb.SpecError, match="not initializers"):
        wb.locate_divergence(_model(), {"nope": np.zeros(1, np.float32)})
    with pytest.raises(wb.SpecError, match=r"takes 1 inputs \['x'\], got 2"):
        wb.locate_divergence(_model(), None, [np.zeros((1, 3, 8, 8), np.float32)] * 2)


# ---- where onnxruntime itself is off: u8 x s8 integer matmuls with full-range weights (reference_caveats.py)
def _quantized_matmul(weight: np.ndarray) -> onnx.ModelProto:
    """x (float) -> DynamicQuantizeMatMul with int8 ``weight`` (onnxruntime's com.microsoft op)."""
    k, n = weight.shape
    node = helper.make_node("DynamicQuantizeMatMul", ["x", "w", "w_scale", "w_zero"], ["y"], name="qmatmul",
                            domain="com.microsoft")
    graph = helper.make_graph(
        [node], "quantized_matmul", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n])],
        initializer=[numpy_helper.from_array(weight, "w"),
                     numpy_helper.from_array(np.full(n, 0.01, np.float32), "w_scale"),
                     numpy_helper.from_array(np.zeros(n, np.int8), "w_zero")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                             ir_version=8)


def test_reference_caveat_names_full_range_int8_weights_only():
    from workbench.analysis.reference_caveats import SAFE_WEIGHT, reference_caveat
    from workbench.onnx_io.tensors import constant_tensors

    full = _quantized_matmul(np.full((8, 3), 127, np.int8))
    caveat = reference_caveat(full.graph.node[0], constant_tensors(full.graph), "full")
    assert caveat is not None and "'qmatmul'" in caveat and "reach 127" in caveat and "reduce_range" in caveat
    seven_bit = _quantized_matmul(np.full((8, 3), -SAFE_WEIGHT, np.int8))
    assert reference_caveat(seven_bit.graph.node[0], constant_tensors(seven_bit.graph), "seven_bit") is None
    # weights from a Constant node count as well; a float MatMul has no caveat
    constant = helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(np.full((2, 2), -100, np.int8)))
    matmul = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
    graph = helper.make_graph([constant, matmul], "g", [], [])
    assert "reach 100" in reference_caveat(matmul, constant_tensors(graph), "g")
    ones = {"w": numpy_helper.from_array(np.ones((2, 2), np.int8), "w")}
    assert reference_caveat(helper.make_node("MatMul", ["a", "w"], ["y"]), ones, "g") is None


def test_a_saturating_onnxruntime_kernel_is_reported_as_the_reference_s_caveat():
    """Every activation quantizes to 255 and every weight is 127: each int16 pair of products is 64,770.
    The generated JAX gives the exact product on any CPU; where onnxruntime's kernel saturates (x86 without
    VNNI), the locator names the node and says why the reference is off; where it does not, nothing diverges
    and there is no caveat."""
    model = _quantized_matmul(np.full((8, 3), 127, np.int8))
    x = np.ones((2, 8), np.float32)
    exact = np.full((2, 3), 8 * 255 * 127 * (1 / 255) * 0.01, np.float32)  # scale of x: max 1 over 255 steps
    forward, params = wb.to_jax(model)
    np.testing.assert_allclose(np.asarray(forward(params, x)), exact, rtol=1e-6)
    report = wb.locate_divergence(model, None, [x])
    if report.ok:
        assert report.caveats == []
    else:
        assert report.first_divergent is not None and report.first_divergent.node == "qmatmul"
        assert len(report.caveats) == 1 and "saturate" in report.caveats[0]
        assert "note: DynamicQuantizeMatMul 'qmatmul'" in repr(report)
        assert "Note: DynamicQuantizeMatMul" in report._repr_html_()


def _symbolic_batch(batch: str | None = "batch") -> onnx.ModelProto:
    """x [batch, 4] -> tanh(x @ W) [batch, 3], as torch.onnx exports with dynamic_axes (None: an unnamed dim)."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), "w")
    dims = [batch, 4] if batch else [None, 4]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Tanh", ["h"], ["y"], name="act")],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3] if batch else [None, 3])], [w])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_symbolic_batch_gets_random_inputs_of_size_2_or_as_sizes_says():
    """Was: ValueError 'input x has symbolic or unknown dimensions; pass the inputs' for every torch export with
    dynamic axes; sizes= was accepted by wb.locate_divergence and not passed on."""
    model = _symbolic_batch()
    report = wb.locate_divergence(model)
    assert report.ok and report.first_divergent is None, report
    assert [x.shape for x in report.inputs] == [(2, 4)]
    assert [n.node for n in report.nodes if n.compared] == ["mm", "act"] and max(n.max_abs_error for n in report.nodes) < 1e-6
    wider = wb.locate_divergence(model, sizes={"batch": 5}, seed=1)
    assert wider.ok and [x.shape for x in wider.inputs] == [(5, 4)]
    with pytest.raises(wb.SpecError, match=r"input 'x' .* has an unnamed dynamic dimension in the model; pass inputs=\[\.\.\.\]"):
        wb.locate_divergence(_symbolic_batch(None))
    given = wb.locate_divergence(_symbolic_batch(None), inputs=[np.ones((3, 4), np.float32)])
    assert given.ok and given.inputs[0].shape == (3, 4)


def test_the_generated_code_runs_as_one_compiled_program(count_compilations):
    """Was: op by op (14 XLA programs here and a dispatch per operation; ResNet-18 at batch 2: ~9 CPU s in the JAX
    run alone); now one jitted program returns every value compared (ResNet-18: ~3 CPU s, compile included).
    A tampered weight is still found at the node reading it."""
    model = _model()
    forward, params = wb.to_jax(model)
    params = dict(params)
    params["w2"] = np.array(params["w2"]) * 1.5
    report, compiles = count_compilations(lambda: wb.locate_divergence(model, (forward, params)))
    assert compiles == 1
    assert report.first_divergent is not None and report.first_divergent.node == "conv2", report
    assert [n.ok for n in report.nodes[:2]] == [True, True]


def _nonzero_model() -> onnx.ModelProto:
    """x > 0.5 -> NonZero -> Transpose, then Relu(x): the torch export of ``torch.nonzero(x > 0.5)`` plus a node
    after the data-dependent one (its output shape depends on the values of x)."""
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    nodes = [helper.make_node("Greater", ["x", "half"], ["mask"], name="greater"),
             helper.make_node("NonZero", ["mask"], ["where"], name="nonzero"),
             helper.make_node("Transpose", ["where"], ["idx"], name="transpose", perm=[1, 0]),
             helper.make_node("Relu", ["x"], ["r"], name="relu")]  # fmt: skip
    graph = helper.make_graph(nodes, "nonzero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])],
                              [helper.make_tensor_value_info("idx", TensorProto.INT64, [None, 2]),
                               helper.make_tensor_value_info("r", TensorProto.FLOAT, [4, 5])], [half])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_value_dependent_model_runs_its_forward_as_written(monkeypatch):
    """NonZero's output shape depends on the values: the exposed model cannot be one jitted program, so its forward
    runs directly (jitted parts between host steps); every node is compared, and a wrong Relu is still found."""
    model = _nonzero_model()
    report = wb.locate_divergence(model)
    assert report.ok and [n.node for n in report.nodes if n.compared] == ["greater", "nonzero", "transpose", "relu"]
    _make_relu_leaky(monkeypatch)
    broken = wb.locate_divergence(model)
    assert broken.first_divergent is not None and broken.first_divergent.node == "relu", broken
    assert [n.ok for n in broken.nodes[:3]] == [True, True, True]
