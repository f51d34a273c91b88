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

import re
from pathlib import Path

import jax
import jax.numpy as jnp
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


# ------------------------------------------------------------------ parity / locate_divergence options
def _dense_model() -> onnx.ModelProto:
    """y = relu(x @ w) with a symbolic batch, as a torch export with dynamic axes declares it."""
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10 - 0.5
    return _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["y"], name="relu")],
                  [vi("x", TensorProto.FLOAT, ["batch", 3])], [vi("y", TensorProto.FLOAT, ["batch", 4])],
                  [numpy_helper.from_array(w, "w")])  # fmt: skip


BAD_OPTIONS = {  # each once reached NumPy (TypeError, MemoryError, 'negative dimensions') or was ignored
    "rtol_negative": ({"rtol": -1}, r"rtol: expected a finite number >= 0 \(or None for the default by dtype\), got -1"),
    "rtol_text": ({"rtol": "1e-3"}, r"rtol: expected a finite number >= 0 .*got '1e-3'"),
    "atol_nan": ({"atol": float("nan")}, r"atol: expected a finite number >= 0 .*got nan"),
    "seed_text": ({"seed": "x"}, r"seed: expected an int >= 0 \(the random inputs' seed\), got 'x'"),
    "seed_negative": ({"seed": -1}, r"seed: expected an int >= 0 .*got -1"),
    "sizes_list": ({"sizes": [2]}, r'sizes: expected a dict of symbolic dimension names to sizes, e\.g\. \{"batch": 8\}, got list'),
    "sizes_text": ({"sizes": "batch=2"}, r"sizes: expected a dict .*got str"),
    "size_text": ({"sizes": {"batch": "2"}}, r"sizes\['batch'\]: expected an int >= 0, got '2'"),
    "size_negative": ({"sizes": {"batch": -1}}, r"sizes\['batch'\]: expected an int >= 0, got -1"),
    "size_fraction": ({"sizes": {"batch": 2.5}}, r"sizes\['batch'\]: expected an int >= 0, got 2\.5"),
    "size_bool": ({"sizes": {"batch": True}}, r"sizes\['batch'\]: expected an int >= 0, got True"),
    "size_key_int": ({"sizes": {3: 2}}, r"sizes: keys are dimension names \(str\), got 3"),
}
SIZE_FAULTS = {  # the dimension names and sizes depend on the model
    "size_misspelled": ({"sizes": {"bacth": 2}}, r"sizes: \['bacth'\] not a symbolic dimension of {where}; its symbolic dimensions are \['batch'\]"),
    "size_12_tb": ({"sizes": {"batch": 10**12}}, r"the random input 'x' of shape \[1000000000000, 3\] would be 12,000,000,000,000 bytes, "
                                                 r"over the limit of 1,099,511,627,776; give smaller sizes"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS) + sorted(SIZE_FAULTS))
def test_parity_and_locate_options_are_checked_in_both_directions(case):
    options, message = BAD_OPTIONS.get(case) or SIZE_FAULTS[case]
    model = _dense_model()
    with pytest.raises(wb.SpecError, match=message.replace("{where}", r"model <ModelProto>'s inputs")):
        wb.locate_divergence(model, **options)  # ONNX -> JAX: the generated code against onnxruntime
    w = numpy_helper.to_array(model.graph.initializer[0])

    def dense(x):
        return jnp.maximum(x @ w, 0.0)

    conversion = wb.convert(dense, [("batch", 3)])
    for check in (wb.parity, wb.locate_divergence):  # JAX -> ONNX
        with pytest.raises(wb.SpecError, match=message.replace("{where}", r"dense's inputs")):
            check(conversion, **options)


def test_sizes_still_fix_the_symbolic_dimensions_they_name():
    report = wb.locate_divergence(_dense_model(), sizes={"batch": 5}, seed=3, rtol=1e-5, atol=0)
    assert [x.shape for x in report.inputs] == [(5, 3)] and report.first_divergent is None
    conversion = wb.convert(lambda x: jnp.tanh(x) * 2, [("B", 3)])
    parity = wb.parity(conversion, sizes={"B": 7}, samples=2)
    assert parity.ok and [x[0].shape for x in parity.inputs] == [(7, 3), (7, 3)]


BAD_FEEDS = {  # the inputs of wb.locate_divergence(onnx_model, inputs=...): raw JAX TypeErrors before
    "text": (["hello"], r"inputs: 'x' must be an array of numbers \(the model's input 'x'\), got str"),
    "none": ([None], r"inputs: 'x' must be an array of numbers .*got NoneType"),
    "one_array": (np.ones((2, 3), np.float32), r"inputs: expected a list of arrays, one per graph input \['x'\], got ndarray; "
                                                r"pass inputs=\[\.\.\.\] in that order"),
    "dict": ({"x": np.ones((2, 3), np.float32)}, r"inputs: expected a list of arrays, one per graph input \['x'\], got dict"),
    "two": ([np.ones((2, 3), np.float32)] * 2, r"inputs: model <ModelProto> takes 1 inputs \['x'\], got 2"),
}


@pytest.mark.parametrize("case", sorted(BAD_FEEDS))
def test_locating_an_onnx_model_checks_the_given_inputs(case):
    inputs, message = BAD_FEEDS[case]
    with pytest.raises(wb.SpecError, match=message):
        wb.locate_divergence(_dense_model(), inputs=inputs)


def test_parity_given_an_onnx_model_alone_says_what_goes_where():
    with pytest.raises(wb.SpecError, match=r"fn: got an ONNX model \(ModelProto\) where the JAX function goes; compare a "
                                           r"function with its model as \(fn, model, inputs\), or the JAX code generated "
                                           r"from an ONNX model with wb\.locate_divergence\(model\)"):  # fmt: skip
        wb.parity(_dense_model())


# ------------------------------------------------------------------ precision=
BAD_PRECISIONS = {  # each was taken silently: a str's letters as op names, a typo keeping nothing float32
    "ops_as_one_string": (lambda: wb.Precision("float16", float32_ops="Softmax"),
                          r"float32_ops: expected a set of ONNX operator names such as \{'Softmax', 'LayerNormalization'\}, got 'Softmax'"),
    "ops_misspelled": (lambda: wb.Precision("float16", float32_ops={"Sotfmax", "ReduceMean"}),
                       r"float32_ops: \['Sotfmax'\] are not ONNX operators \(onnx\.defs, the ai\.onnx domain\); give operator names "
                       r"as ONNX writes them"),
    "ops_unhashable": (lambda: wb.Precision("float16", float32_ops=[["Softmax"]]), r"float32_ops: expected a set of ONNX operator names"),
    "keep_io_types_beside_a_precision": (
        lambda: wb.to_onnx(jnp.tanh, [(2, 3)], precision=wb.Precision("float16"), keep_io_types=False),
        r"keep_io_types=False given beside a wb\.Precision\('float16'\) whose keep_io_types is True; set it in the Precision: "
        r"wb\.Precision\('float16', keep_io_types=False\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PRECISIONS))
def test_precision_options_are_checked(case):
    call, message = BAD_PRECISIONS[case]
    with pytest.raises(wb.SpecError, match=message):
        call()


def test_float32_ops_given_as_a_list_keep_those_ops_float32():
    model = wb.to_onnx(lambda x: jax.nn.softmax(x * 3.0), [(2, 5)], precision=wb.Precision("float16", float32_ops=["Softmax"]))
    softmax = next(node for node in model.graph.node if node.op_type == "Softmax")
    types = {value.name: value.type.tensor_type.elem_type for value in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    assert types[softmax.input[0]] == TensorProto.FLOAT
    x = np.linspace(-2, 2, 10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_allclose(run_onnx(model, [x])[0], jax.nn.softmax(x.astype(np.float16).astype(np.float32) * 3.0), atol=2e-3)


# ------------------------------------------------------------------ the Graph IR door
_W = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)


def _ir_document() -> dict:
    """A dot_general then tanh, as wb.export_graph_ir writes them (the weight a constant)."""
    return wb.export_graph_ir(lambda x: jnp.tanh(x @ _W), [(2, 3)])


def _edit(change):
    def edited() -> dict:
        document = _ir_document()
        change(document)
        return document

    return edited


def _eqn(document: dict, primitive: str) -> dict:
    return next(eqn for eqn in document["graph"]["eqns"] if eqn["primitive"] == primitive)


EDITED_IR = {  # a bare KeyError from a fusion recogniser, or a silent conversion to a model onnxruntime refuses
    "params_removed": (
        _edit(lambda d: _eqn(d, "dot_general").update(params={})),
        r"graph\.eqns\[0\]\(dot_general\): JAX's shape rule for 'dot_general' refuses the equation's inputs \['float32\[2,3\]', "
        r"'float32\[3,4\]'\] and params \[\] \(TypeError: .*missing 4 required keyword-only arguments.*\)\. JAX does not write "
        r"this equation: export the function again with wb\.export_graph_ir instead of editing the document",
    ),
    "param_of_another_primitive": (
        _edit(lambda d: _eqn(d, "dot_general").update(params={"accuracy": None})),
        r"JAX's shape rule for 'dot_general' refuses .*unexpected keyword argument 'accuracy'",
    ),
    "input_shape_edited": (
        _edit(lambda d: d["graph"]["invars"][0].update(shape=[2, 7])),
        r"graph\.eqns\[0\]\(dot_general\): JAX's shape rule for 'dot_general' refuses the equation's inputs "
        r"\['float32\[2,7\]', 'float32\[3,4\]'\].*contracting dimensions",
    ),
    "output_shape_edited": (
        _edit(lambda d: _eqn(d, "tanh")["outputs"][0].update(shape=[4, 2])),
        r"graph\.eqns\[1\]\(tanh\): the document declares outputs \['float32\[4,2\]'\], but 'tanh' of inputs \['float32\[2,4\]'\] "
        r"gives \['float32\[2,4\]'\]; export the function again",
    ),
}


@pytest.mark.parametrize("case", sorted(EDITED_IR))
def test_an_edited_graph_ir_equation_is_refused_naming_it(case):
    make, message = EDITED_IR[case]
    with pytest.raises(wb.GraphIRError, match=message):
        wb.graph_ir_to_onnx(make())


def test_an_unedited_graph_ir_still_converts_with_parity():
    model = wb.graph_ir_to_onnx(_ir_document())
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(run_onnx(model, [x])[0], np.tanh(x @ _W), rtol=1e-6, atol=1e-6)


def test_a_graph_ir_path_to_a_folder_or_a_binary_file_is_named(tmp_path):
    with pytest.raises(wb.GraphIRError, match=r"Graph IR file .*models is a folder; give the path of the \.json file wb\.save_graph_ir wrote"):
        (tmp_path / "models").mkdir()
        wb.load_graph_ir(tmp_path / "models")
    model = tmp_path / "m.onnx"
    model.write_bytes(_dense_model().SerializeToString())  # its float weights are not UTF-8
    for source, where in ((model, r".*m\.onnx"), (model.read_bytes(), "the given bytes")):
        with pytest.raises(wb.GraphIRError, match=where + r" is not a Graph IR: it is not UTF-8 text \(.* at byte \d+\), so not JSON; "
                                                         r"give the \.json file wb\.save_graph_ir wrote"):  # fmt: skip
            wb.graph_ir_to_onnx(source)


# ------------------------------------------------------------------ web packaging
def _web_cases(tmp_path: Path) -> dict:
    model = _dense_model()
    note = tmp_path / "notes.txt"  # written by the test
    x = np.ones((2, 3), np.float32)
    return {  # each was a raw FileExistsError / TypeError / AttributeError, or was taken (a negative tolerance)
        "out_dir_is_a_file": (lambda: wb.export_web_harness(model, note),
                              r"out_dir: .*notes\.txt is a file; give a folder for the harness \(it is created if missing\)"),
        "out_dir_int": (lambda: wb.export_web_harness(model, 42), r"out_dir: expected a folder path \(str or os\.PathLike\), got int"),
        "inputs_list": (lambda: wb.export_web_harness(model, tmp_path / "a", inputs=[x]),
                        r"inputs: expected a dict of the model's input names to arrays \(or None for generated ones\), got list"),
        "generate_text": (lambda: wb.export_web_harness(model, tmp_path / "b", generate="greedy"),
                          r"generate: expected a workbench\.web\.harness\.GreedyGeneration or None, got 'greedy'"),
        "threshold_text": (lambda: wb.export_web_harness(model, tmp_path / "c", external_data_threshold="big"),
                           r"external_data_threshold: expected an int >= 0 \(bytes\), got 'big'"),
        "atol_negative": (lambda: wb.export_web_harness(model, tmp_path / "d", atol=-1),
                          r"atol: expected a finite number >= 0, got -1"),
        "rtol_text": (lambda: wb.export_web_harness(model, tmp_path / "e", rtol="x"), r"rtol: expected a finite number >= 0, got 'x'"),
        "seed_text": (lambda: wb.export_web_harness(model, tmp_path / "f", seed="x"), r"seed: expected an int >= 0"),
        "smoke_out_dir_int": (lambda: wb.smoke_test_web_harness(42), r"out_dir: expected a harness folder \(str or os\.PathLike\), got int"),
        "smoke_one_folder_as_the_list": (lambda: wb.smoke_test_web_harnesses(str(tmp_path)),
                                         r"out_dirs: expected a list of harness folders, got str; for one folder call "
                                         r"smoke_test_web_harness\(out_dir\)"),
        "smoke_timeout_negative": (lambda: wb.smoke_test_web_harness(tmp_path, timeout=-1),
                                   r"timeout: expected a number of seconds > 0, got -1"),
    }


WEB_CASES = sorted(_web_cases(Path("/nonexistent")))


@pytest.mark.parametrize("case", WEB_CASES)
def test_web_packaging_arguments_are_checked_before_anything_is_written(tmp_path, case):
    (tmp_path / "notes.txt").write_text("not a folder")
    call, message = _web_cases(tmp_path)[case]
    with pytest.raises(wb.SpecError, match=message):
        call()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "not a folder"


# ------------------------------------------------------------------ wb.jit_forward
JIT_CASES = {  # (forward, params, an input) -> the call; raw AttributeError / TypeErrors from Python and JAX before
    "params_list": (lambda forward, params, x: wb.jit_forward(forward, [params]),
                    r"params: expected the dict of weights wb\.to_jax returned \(name -> array\) or None, got list"),
    "jit_option_misspelled": (lambda forward, params, x: wb.jit_forward(forward, params, static_argnum=0),
                              r"jit_forward: jax\.jit refuses the keyword arguments \['static_argnum'\]: .*unexpected keyword "
                              r"argument 'static_argnum'\. Pass jax\.jit's own \(static_argnums, donate_argnums\.\.\.\) or none"),
    "jit_option_wrong_type": (lambda forward, params, x: wb.jit_forward(forward, params, donate_argnums="x"),
                              r"jit_forward: jax\.jit refuses the keyword arguments \['donate_argnums'\]"),
    "input_text": (lambda forward, params, x: wb.jit_forward(forward, params)("hi"),
                   r"the jitted model's positional argument \[0\] is a str \('hi'\), not an array; call it with the model's "
                   r"inputs as NumPy or JAX arrays"),
    "two_inputs_for_one": (lambda forward, params, x: wb.jit_forward(forward, params)(x, x),
                           r"the jitted model is called as fn\(x\); it got 2 positional argument\(s\) \(too many positional arguments\)"),
    "params_left_out": (lambda forward, params, x: wb.jit_forward(forward)(x),
                        r"the jitted model is called as fn\(params, x\); it got 1 positional argument\(s\) "
                        r"\(missing a required argument: 'x'\)"),
}


@pytest.fixture(scope="module")
def dense_jax():
    return wb.to_jax(_dense_model())


@pytest.mark.parametrize("case", sorted(JIT_CASES))
def test_jit_forward_arguments_and_calls_are_named(case, dense_jax):
    call, message = JIT_CASES[case]
    forward, params = dense_jax
    with pytest.raises(wb.SpecError, match=message):
        call(forward, params, np.ones((2, 3), np.float32))


def test_jit_forward_still_runs_both_ways(dense_jax):
    forward, params = dense_jax
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    (expected,) = run_onnx(_dense_model(), [x])
    np.testing.assert_allclose(np.asarray(wb.jit_forward(forward, params)(x)), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(wb.jit_forward(forward)(params, x=x)), expected, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ the command line
CLI_CASES = {  # argv (with {tmp}) -> exit status and the stderr line; each exported, a traceback or a bare message before
    "dtype_left_empty": (["export", "jax.numpy:tanh", "-i", "2,3:", "-o", "{tmp}/m.onnx"], 1,
                         r"input spec '2,3:': no dtype after ':'; write one \(2,64:int32\) or leave the ':' out for float32"),
    "dtype_object": (["export", "jax.numpy:tanh", "-i", "2,3:object", "-o", "{tmp}/m.onnx"], 1,
                     r"input spec '2,3:object': object is not a dtype JAX arrays hold; use e\.g\. float32, int32, bool or bfloat16"),
    "dtype_float128": (["export", "jax.numpy:tanh", "-i", "2,3:float128", "-o", "{tmp}/m.onnx"], 1,
                       r"input spec '2,3:float128': float128 is not a dtype JAX arrays hold"),
    "web_export_into_a_file": (["web", "export", "{tmp}/model.onnx", "-o", "{tmp}/notes.txt"], 1,
                               r"error: out_dir: .*notes\.txt is a file; give a folder for the harness"),
    "ir_validate_an_onnx_file": (["ir", "validate", "{tmp}/model.onnx"], 1,
                                 r"model\.onnx is not a Graph IR: it is not UTF-8 text .* give the \.json file wb\.save_graph_ir wrote"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_the_command_line_names_the_fault(case, tmp_path, capsys):
    from workbench.cli import main

    onnx.save(_dense_model(), tmp_path / "model.onnx")
    (tmp_path / "notes.txt").write_text("not a folder")
    argv, status, message = CLI_CASES[case]
    assert main([arg.replace("{tmp}", str(tmp_path)) for arg in argv]) == status
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "notes.txt"]


def test_conversion_save_names_a_path_that_is_not_one(tmp_path):
    conversion = wb.convert(jnp.tanh, [(2, 3)])
    with pytest.raises(wb.SpecError, match=r"path: expected a file path \(str or os\.PathLike\), got int"):
        conversion.save(42)  # a bare TypeError from pathlib before
    written = conversion.save(tmp_path / "m.onnx")
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(run_onnx(onnx.load(written.model), [x])[0], np.tanh(x), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ ONNX -> JAX options
ONNX_TO_JAX_OPTIONS = {  # an AssertionError from the generator's own parse check, AttributeError, TypeError, or taken
    "function_name_keyword": (lambda m, tmp: wb.to_jax_source(m, function_name="class"),
                              r"function_name must be a plain identifier, not a Python keyword or one of \[.*'prepare'.*\], got 'class'"),
    "function_name_int": (lambda m, tmp: wb.to_jax_source(m, function_name=42), r"function_name must be a plain identifier.*got 42"),
    "function_name_prepare": (lambda m, tmp: wb.to_jax_source(m, function_name="prepare"), r"function_name must be .*got 'prepare'"),
    "prepared_text": (lambda m, tmp: wb.to_jax(m, prepared="no"), r"prepared: expected True or False, got 'no'"),
    "scan_repeats_text": (lambda m, tmp: wb.to_jax(m, scan_repeats="yes"), r"scan_repeats: expected True or False, got 'yes'"),
    "save_jax_out_dir_int": (lambda m, tmp: wb.save_jax(m, 42), r"out_dir: expected a folder path \(str or os\.PathLike\), got int"),
}


@pytest.mark.parametrize("case", sorted(ONNX_TO_JAX_OPTIONS))
def test_onnx_to_jax_options_are_checked(case, tmp_path):
    call, message = ONNX_TO_JAX_OPTIONS[case]
    with pytest.raises(wb.SpecError, match=message):
        call(_dense_model(), tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ JAX -> ONNX flags, names and the Graph IR writer
JAX_TO_ONNX_OPTIONS = {  # each was taken silently (a string read as True, a name's letters as names) or raised TypeError
    "double_precision_text": (lambda tmp: wb.to_onnx(jnp.tanh, [(2, 3)], enable_double_precision="yes"),
                              r"enable_double_precision: expected True or False, got 'yes'"),
    "optimize_text": (lambda tmp: wb.convert(jnp.tanh, [(2, 3)], optimize="no"), r"optimize: expected True or False, got 'no'"),
    "input_names_string": (lambda tmp: wb.to_onnx(jnp.tanh, [(2, 3)], input_names="x"),
                           r"input_names: expected a list of names such as \['x'\], got the string 'x'"),
    "fn_a_string_not_a_file": (lambda tmp: wb.to_onnx("models:encoder", [(2, 3)]),
                               r"fn: 'models:encoder' is not a file, and a string is read as the path of a serialized "
                               r"jax\.export\.Exported; give the function itself \(wb\.to_onnx\(fn, inputs\)\)"),
    "ir_path_int": (lambda tmp: wb.save_graph_ir(wb.export_graph_ir(jnp.tanh, [(2,)]), 42),
                    r"path: expected a file path such as model\.json \(str or os\.PathLike\), got int"),
    "ir_external_weights_text": (lambda tmp: wb.save_graph_ir(wb.export_graph_ir(jnp.tanh, [(2,)]), tmp / "g.json", external_weights="no"),
                                 r"external_weights: expected True or False, got 'no'"),
    "ir_threshold_negative": (lambda tmp: wb.save_graph_ir(wb.export_graph_ir(jnp.tanh, [(2,)]), tmp / "g.json", external_weights=True,
                                                           threshold=-1), r"threshold: expected an int >= 0 \(bytes\), got -1"),
}


@pytest.mark.parametrize("case", sorted(JAX_TO_ONNX_OPTIONS))
def test_jax_to_onnx_flags_names_and_graph_ir_writer_options_are_checked(case, tmp_path):
    call, message = JAX_TO_ONNX_OPTIONS[case]
    with pytest.raises(wb.SpecError, match=message):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ %%to_onnx output paths
MAGIC_PATHS = {  # a traceback (WriteError, GraphIRError) or 'f was not converted: WorkbenchError' before
    "ir_into_a_folder": ("--ir {tmp}", r"--ir .*: cannot write the Graph IR to .*: it is a directory; give a file path such as model\.json"),
    "ir_through_a_file": ("--ir {tmp}/notes.txt/g.json", r"--ir .*: cannot write the Graph IR to .*notes\.txt: .*notes\.txt is a file, not a folder"),
    "out_into_a_folder": ("--out {tmp}", r"cannot write the ONNX model to .*: it is a directory; give a file path"),
    "to_jax_into_a_folder": ("--to-jax {tmp}", r"--to-jax .*: cannot write .*: Is a directory\. The previous files were kept"),
}


@pytest.mark.parametrize("case", sorted(MAGIC_PATHS))
def test_the_magic_names_an_output_path_it_cannot_write(case, tmp_path):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    option, message = MAGIC_PATHS[case]
    (tmp_path / "notes.txt").write_text("not a folder")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "workbench")
    try:
        with capture_output() as captured:
            execution = shell.run_cell(f"%%to_onnx -i 2,3 --no-view {option.format(tmp=tmp_path)}\n"
                                       "import jax.numpy as jnp\ndef f(x):\n    return jnp.tanh(x)\n")  # fmt: skip
    finally:
        shell.run_line_magic("unload_ext", "workbench")
        for name in ("f", "jnp", "_onnx"):
            shell.user_ns.pop(name, None)
    error = execution.error_in_exec
    assert isinstance(error, UsageError) and re.search(message, str(error)), (error, captured.stdout)
    assert "[Errno" not in str(error) and "Traceback" not in captured.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_input_layout_of_no_input_rank_is_named():
    """input_layout='NCDHW' (5-D) on a model of 4-D images applied to nothing, silently."""
    with pytest.raises(wb.SpecError, match=r"input_layout='NCDHW' applies to the inputs of rank 5, and no input has that rank "
                                           r"\(ranks \[4\]\); give the layout of the images' rank \('NCHW' for 4-D inputs\)"):  # fmt: skip
        wb.to_onnx(jnp.tanh, [(1, 8, 8, 3)], input_layout="NCDHW")
    model = wb.to_onnx(jnp.tanh, [(1, 8, 8, 3)], input_layout="NCHW")
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 8, 8]
    x = np.linspace(-2, 2, 192, dtype=np.float32).reshape(1, 8, 8, 3)
    np.testing.assert_allclose(run_onnx(model, [np.ascontiguousarray(x.transpose(0, 3, 1, 2))])[0], np.tanh(x), rtol=1e-6, atol=1e-6)
