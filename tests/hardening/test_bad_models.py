"""Hostile and invalid ONNX models: one clean OnnxModelError naming the fault, before any code is generated.

Each case here once produced code, hung, exhausted memory or died with a raw error (KeyError,
ValueError from onnx's C++ side, protobuf's parse error, std::bad_alloc): now each is refused
with a message that names the model, the node or value, and the rule. Memory bombs run in a
child process under an address-space limit, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.onnx_to_jax.fold_budget import BOUNDED_OPS, output_elements
from workbench.onnx_to_jax.generator import FOLDABLE

vi = helper.make_tensor_value_info


def _model(nodes, inputs, outputs, inits=(), *, opset: int = 17, ir_version: int = 8) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


X = vi("x", TensorProto.FLOAT, [2, 3])
Y = vi("y", TensorProto.FLOAT, [2, 3])


def _float_perm() -> onnx.ModelProto:
    node = helper.make_node("Transpose", ["x"], ["y"], name="flip")
    node.attribute.append(helper.make_attribute("perm", [1.0, 0.0]))
    return _model([node], [X], [vi("y", TensorProto.FLOAT, [3, 2])])


def _data_type_999() -> onnx.ModelProto:
    model = _model([helper.make_node("Add", ["x", "w"], ["y"])], [X], [Y],
                   [numpy_helper.from_array(np.ones((2, 3), np.float32), "w")])  # fmt: skip
    model.graph.initializer[0].data_type = 999
    return model


INVALID = {
    "two_nodes_write_one_value": (
        _model([helper.make_node("Relu", ["x"], ["y"], name="first"), helper.make_node("Neg", ["x"], ["y"], name="second")], [X], [Y]),
        r"node 'second' \(Neg\) in graph 'g' writes the value 'y', which node 'first' \(Relu\) already defines; "
        r"each value must have exactly one producer",
    ),
    "input_listed_twice": (
        _model([helper.make_node("Relu", ["x"], ["y"])], [X, X], [Y]),
        r"graph 'g' lists the graph input 'x' twice",
    ),
    "relu_with_three_inputs": (
        _model([helper.make_node("Relu", ["x", "x", "x"], ["y"], name="r")], [X], [Y]),
        r"not a valid ONNX model \(onnx\.checker, ai\.onnx opset 17\): Node\(r\) with schema\(::Relu:14\) has input size 3 not in range \[min=1, max=1\]",
    ),
    "float_perm": (_float_perm(), r"onnx\.checker, ai\.onnx opset 17\): Mismatched attribute type in 'flip : perm'\. Expected: 'INTS', actual: 'FLOATS'"),
    "softmax_axis_99": (
        _model([helper.make_node("Softmax", ["x"], ["y"], axis=99)], [X], [Y]),
        r"ONNX shape inference \(ai\.onnx opset 17\) rejected the model: .*op_type:Softmax, node name: #0.*'axis' must be in \[-2 , 1\]\. Its actual value is: 99",
    ),
    "opset_99": (
        _model([helper.make_node("Relu", ["x"], ["y"])], [X], [Y], opset=99),
        r"imports opset 99 of 'ai\.onnx'; the installed onnx .* defines up to \d+",
    ),
    "ir_version_99": (
        _model([helper.make_node("Relu", ["x"], ["y"])], [X], [Y], ir_version=99),
        r"has ir_version 99; the installed onnx .* reads up to \d+",
    ),
    "data_type_999": (_data_type_999(), r"tensor 'w' \(initializer of graph 'g'\) has data_type 999, which is not an ONNX element type"),
    "elem_type_999": (
        _model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", 999, [3])], [Y]),
        r"graph input 'x' of graph 'g' has elem_type 999, which is not an ONNX element type",
    ),
    "small_weight_of_the_wrong_size": (  # checked by onnx.checker
        _model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x", TensorProto.FLOAT, [64, 64])], [vi("y", TensorProto.FLOAT, [64, 64])],
               [onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[64, 64], raw_data=b"\0" * 100)]),
        r"onnx\.checker, ai\.onnx opset 17\): TensorProto \(tensor name: w\) raw_data size \(100 bytes\) is too small .*\(16384 bytes required\)",
    ),
    "large_weight_of_the_wrong_size": (  # set aside from what the checker sees (its bytes): checked by the workbench
        _model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x", TensorProto.FLOAT, [64, 64])], [vi("y", TensorProto.FLOAT, [64, 64])],
               [onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[64, 64], raw_data=b"\0" * 8000)]),
        r"tensor 'w' holds 8,000 bytes of data, but its shape \[64, 64\] and type need 16,384",
    ),
    "declared_input_of_4_tb": (
        _model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", TensorProto.FLOAT, [10**12])], [vi("y", TensorProto.FLOAT, [10**12])]),
        r"graph input 'x' of graph 'g' declares shape \[1000000000000\], 4,000,000,000,000 bytes; the limit is 1,099,511,627,776",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(INVALID))
@pytest.mark.parametrize("form", ["proto", "file"])
def test_invalid_models_are_refused_before_code_is_generated(tmp_path, case, form):
    model, message = INVALID[case]
    source = model
    if form == "file":
        source = tmp_path / "bad.onnx"
        source.write_bytes(model.SerializeToString())
    label = r"<ModelProto>" if form == "proto" else r".*bad\.onnx"
    with pytest.raises(wb.OnnxModelError, match=rf"^{label}.*{message}"):
        wb.to_jax_source(source)


def test_onnxruntime_refuses_the_invalid_models_too():
    """The same models, for the record: what we refuse, onnxruntime refuses (or the checker does)."""
    import onnxruntime

    for case, (model, _) in INVALID.items():
        if case == "declared_input_of_4_tb":
            continue  # a valid model nobody can run: the workbench's own size budget
        with pytest.raises(Exception):  # noqa: B017 - onnxruntime's exception types vary by case
            onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            onnx.checker.check_model(model, full_check=True)


def test_a_valid_model_still_passes_every_check():
    model = _model([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Neg", ["h"], ["y"])], [X], [Y])
    forward, params = wb.to_jax(model)
    x = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(forward(params, x)), -np.maximum(x, 0))


def test_unsorted_nodes_are_accepted_as_onnxruntime_does():
    model = _model([helper.make_node("Neg", ["h"], ["y"]), helper.make_node("Relu", ["x"], ["h"])], [X], [Y])
    forward, params = wb.to_jax(model)
    x = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(forward(params, x)), -np.maximum(x, 0))


# ------------------------------------------------------------------------------ files that are not models
def test_a_fifo_as_model_path_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    with pytest.raises(wb.OnnxModelError, match=r"model\.onnx not found: it is not a regular file \(a pipe, socket or device\)"):
        wb.to_jax_source(fifo)
    with pytest.raises(wb.OnnxModelError, match=r"not found: it is a folder"):
        wb.to_jax_source(tmp_path)
    with pytest.raises(wb.OnnxModelError, match=r"not a regular file"):
        wb.to_jax_source("/dev/zero")


def _nested_ifs(depth: int) -> onnx.ModelProto:
    """``depth`` If nodes, each in the then-branch of the one above (built in memory: no parse limit applies)."""
    model = onnx.ModelProto(ir_version=8)
    model.opset_import.add(domain="", version=17)
    graph = model.graph
    graph.name = "main"
    graph.input.extend([vi("c", TensorProto.BOOL, []), vi("x", TensorProto.FLOAT, [1])])
    graph.output.append(vi("o", TensorProto.FLOAT, [1]))
    leaf = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "leaf", [], [vi("o", TensorProto.FLOAT, [1])])
    for level in range(depth):
        node = graph.node.add(op_type="If", input=["c"], output=["o"], name=f"if{level}")
        node.attribute.add(name="else_branch", type=onnx.AttributeProto.GRAPH).g.CopyFrom(leaf)
        then = node.attribute.add(name="then_branch", type=onnx.AttributeProto.GRAPH)
        graph = then.g
        graph.name = f"level{level}"
        graph.output.append(vi("o", TensorProto.FLOAT, [1]))
    graph.node.append(helper.make_node("Identity", ["x"], ["o"]))
    return model


def test_nesting_deeper_than_protobuf_decodes_is_refused_cleanly():
    x = np.array([3.0], np.float32)
    forward, params = wb.to_jax(_nested_ifs(31))  # the deepest that onnx and onnxruntime can read
    np.testing.assert_array_equal(np.asarray(forward(params, np.array(True), x)), x)
    for depth in (32, 200):
        model = _nested_ifs(depth)
        with pytest.raises(wb.OnnxModelError, match=r"<ModelProto>: subgraphs are nested 32 levels deep \(at if0\.then_branch/.*\); "
                                                     r"protobuf, onnx and onnxruntime decode at most 31 levels"):  # fmt: skip
            wb.to_jax_source(model)
        with pytest.raises(wb.OnnxModelError, match=r"<bytes> nests its messages deeper than protobuf decodes"):
            wb.to_jax_source(model.SerializeToString())


# ------------------------------------------------------------------------------ memory bombs
def test_every_foldable_op_has_a_size_bound():
    assert FOLDABLE - {"Shape", "Size"} <= BOUNDED_OPS


@pytest.mark.parametrize(
    ("op_type", "inputs", "elements"),
    [
        ("Expand", [np.array(1), np.array([20000, 20000])], 400_000_000),
        ("Range", [np.array(0.0), np.array(4e8), np.array(1.0)], 400_000_000),
        ("Range", [np.array(10), np.array(0), np.array(-3)], 4),
        ("ConstantOfShape", [np.array([1000, 1000, 1000])], 10**9),
        ("Tile", [np.ones((64, 64)), np.array([1000, 1000])], 64 * 64 * 10**6),
        ("Where", [np.ones((4096, 1, 1), bool), np.ones((1, 4096, 1)), np.ones((1, 1, 4096))], 4096**3),
        ("Concat", [np.ones(4096)] * 1000, 4096 * 1000),
        ("Gather", [np.ones((64, 64)), np.zeros((4096,), np.int64)], 4096 * 64 * 64),
        ("OneHot", [np.arange(10), np.array(10**8), np.array([0.0, 1.0])], 10**9),
        ("Relu", [np.ones(10)], 10),
    ],
)
def test_fold_sizes_are_bounded_before_evaluating(op_type, inputs, elements):
    assert output_elements(op_type, inputs) >= elements


def test_expand_and_range_bombs_become_code_not_gigabytes():
    expand = _model([helper.make_node("Expand", ["one", "shape"], ["y"], name="bomb")], [], [vi("y", TensorProto.INT64, None)],
                    [numpy_helper.from_array(np.array(1, np.int64), "one"),
                     numpy_helper.from_array(np.array([20000, 20000], np.int64), "shape")])  # fmt: skip
    ranged = _model([helper.make_node("Range", ["a", "b", "c"], ["y"], name="bomb")], [], [vi("y", TensorProto.FLOAT, None)],
                    [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("a", 0), ("b", 4e8), ("c", 1))])  # fmt: skip
    assert len(expand.SerializeToString()) < 160 and len(ranged.SerializeToString()) < 160
    for model, call in ((expand, "_expand("), (ranged, "_range(")):
        result = _in_child(_GENERATE, model)
        assert "peak_mb" in result, result
        peak = float(result.split("peak_mb=")[1].split()[0])
        assert peak < 100, f"generation allocated {peak:.0f} MB"
        assert call in result  # the node is code that runs when the model runs, not a folded literal


# A child process with a 3 GiB address-space limit: a regression raises MemoryError there instead of
# exhausting the machine. It imports only the ONNX -> JAX code generator (no JAX runtime).
_GENERATE = """
import resource, sys, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import onnx
from workbench.onnx_to_jax.api import generate
model = onnx.ModelProto.FromString(open(sys.argv[1], "rb").read())
tracemalloc.start()
source, _ = generate(model)
print("peak_mb=%.1f" % (tracemalloc.get_traced_memory()[1] / 2**20))
print([line for line in source.splitlines() if "y =" in line][0])
"""

_INFER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import onnx
from workbench.onnx_io.shapes import infer_shapes
model = onnx.ModelProto.FromString(open(sys.argv[1], "rb").read())
inferred = infer_shapes(model, "m")
print("inferred", [v.name for v in inferred.graph.value_info])
"""


def _in_child(code: str, model: onnx.ModelProto, tmp: Path | None = None) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.onnx"
        path.write_bytes(model.SerializeToString())
        result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=600,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    return result.stdout + result.stderr


def test_shape_inference_on_a_long_1d_input_does_not_spell_it_out():
    """onnx's data propagation made 10**8 dimension entries (7 GB) for Mul(x[10**8], 2); now it is skipped."""
    model = _model([helper.make_node("Mul", ["x", "two"], ["h"]), helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)],
                   [vi("x", TensorProto.FLOAT, [10**8])], [vi("y", TensorProto.FLOAT, [10**8])],
                   [numpy_helper.from_array(np.array(2, np.float32), "two")])  # fmt: skip
    result = _in_child(_INFER, model)
    assert "inferred ['h']" in result, result


def test_schema_defaults_are_assumed_where_onnx_function_inference_misses_them():
    """MeanVarianceNormalization leaving ``axes`` at its default: onnx's full_check refuses it (its
    function-body inference misses the default), onnxruntime runs it; so does the workbench."""
    model = _model([helper.make_node("MeanVarianceNormalization", ["x"], ["y"])],
                   [vi("x", TensorProto.FLOAT, [3, 3, 3, 1])], [vi("y", TensorProto.FLOAT, [3, 3, 3, 1])], opset=13)  # fmt: skip
    with pytest.raises(onnx.shape_inference.InferenceError, match="Constant"):
        onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(0).standard_normal((3, 3, 3, 1)).astype(np.float32)
    forward, params = wb.to_jax(model)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    expected = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True))
    np.testing.assert_allclose(np.asarray(forward(params, x)), expected, rtol=1e-4, atol=1e-5)
    assert not model.graph.node[0].attribute  # the caller's model is not modified
