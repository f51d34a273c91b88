"""ONNX files audited as a hostile user writes them: every probe either converts to code that parses, holds the
model's text only inside string literals, and agrees with onnxruntime, or is refused with an OnnxModelError naming
what is wrong, before any code runs (docs/untrusted_input.md)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb

vi = helper.make_tensor_value_info
F = TensorProto.FLOAT
BAD = "pwn'\"\n\u2028"  # an unknown value that would also break out of a string literal or a line


def _model(nodes, inputs, outputs, inits=(), *, opsets=(("", 18),), ir_version: int = 8) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])  # fmt: skip
    model.ir_version = ir_version
    return model


def _onnxruntime_refuses(model: onnx.ModelProto) -> bool:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    try:
        onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - any refusal
        return True
    return False


# ------------------------------------------------------------------------------ attributes of a fixed vocabulary
def _depth_to_space(mode):
    return _model([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)],
                  [vi("x", F, [1, 8, 2, 2])], [vi("y", F, [1, 2, 4, 4])]), [np.arange(32, dtype=np.float32).reshape(1, 8, 2, 2)]  # fmt: skip


def _upsample(mode):
    return _model([helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode)], [vi("x", F, [1, 1, 2, 2])],
                  [vi("y", F, [1, 1, 4, 4])], [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")],
                  opsets=(("", 9),)), [np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)]  # fmt: skip


def _resize(**attrs):
    return _model([helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest", **attrs)], [vi("x", F, [1, 1, 2, 2])],
                  [vi("y", F, [1, 1, 4, 4])], [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")]), \
        [np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)]  # fmt: skip


def _scatter(op, reduction):
    indices = np.array([[0], [2]], np.int64) if op == "ScatterND" else np.array([0, 2], np.int64)
    return _model([helper.make_node(op, ["x", "i", "u"], ["y"], reduction=reduction)], [vi("x", F, [4])], [vi("y", F, [4])],
                  [numpy_helper.from_array(indices, "i"), numpy_helper.from_array(np.array([5, 7], np.float32), "u")]), \
        [np.arange(4, dtype=np.float32)]  # fmt: skip


def _cast(round_mode):
    """float32 -> float8_e8m0fnu (rounded as round_mode says) -> float32."""
    nodes = [helper.make_node("Cast", ["x"], ["e"], to=TensorProto.FLOAT8E8M0, round_mode=round_mode),
             helper.make_node("Cast", ["e"], ["y"], to=F)]  # fmt: skip
    return _model(nodes, [vi("x", F, [3])], [vi("y", F, [3])], opsets=(("", 24),), ir_version=11), \
        [np.array([0.1, 1.5, 3.0], np.float32)]  # fmt: skip


def _tfidf(mode):
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], mode=mode, min_gram_length=1, max_gram_length=1,
                            max_skip_count=0, ngram_counts=[0], ngram_indexes=[0, 1], pool_int64s=[2, 3])  # fmt: skip
    return _model([node], [vi("x", TensorProto.INT64, [4])], [vi("y", F, [2])]), [np.array([2, 3, 3, 5], np.int64)]


def _tree_ensemble(**attrs):
    """One split (x0 <= 0.5: leaf 1.0, else 2.0) as ai.onnx.ml TreeEnsemble (opset 5), its enums as integers."""
    fields = dict(nodes_splits=numpy_helper.from_array(np.array([0.5], np.float32)), nodes_featureids=[0],
                  nodes_modes=numpy_helper.from_array(np.array([0], np.uint8)), nodes_truenodeids=[0], nodes_trueleafs=[1],
                  nodes_falsenodeids=[1], nodes_falseleafs=[1], leaf_targetids=[0, 0],
                  leaf_weights=numpy_helper.from_array(np.array([1.0, 2.0], np.float32)), tree_roots=[0], n_targets=1,
                  aggregate_function=1, post_transform=0)  # fmt: skip
    fields.update(attrs)
    node = helper.make_node("TreeEnsemble", ["x"], ["y"], domain="ai.onnx.ml", **fields)
    return _model([node], [vi("x", F, [3, 2])], [vi("y", F, [3, 1])], opsets=(("", 21), ("ai.onnx.ml", 5)), ir_version=10), \
        [np.array([[0.1, 0], [0.9, 0], [0.5, 1]], np.float32)]  # fmt: skip


def _tree_regressor(**attrs):
    """The same split as the older TreeEnsembleRegressor (enums as strings)."""
    fields = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                  nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.5, 0, 0], nodes_truenodeids=[1, 0, 0],
                  nodes_falsenodeids=[2, 0, 0], target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0],
                  target_weights=[1.0, 2.0], n_targets=1)  # fmt: skip
    fields.update(attrs)
    node = helper.make_node("TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", **fields)
    return _model([node], [vi("x", F, [3, 2])], [vi("y", F, [3, 1])], opsets=(("", 17), ("ai.onnx.ml", 3))), \
        [np.array([[0.1, 0], [0.9, 0], [0.5, 1]], np.float32)]  # fmt: skip


# (what, the model with a good value, with a bad one, the refusal); each bad value was accepted (the code misread it
# as another mode, or a helper refused it only when the code ran) or failed with a bare KeyError/IndexError
VOCABULARIES = [
    ("DepthToSpace mode", lambda: _depth_to_space("CRD"), lambda: _depth_to_space(BAD), "attribute mode='pwn"),
    ("Upsample mode", lambda: _upsample("linear"), lambda: _upsample(BAD), "attribute mode='pwn"),
    ("Resize coordinate_transformation_mode", lambda: _resize(coordinate_transformation_mode="align_corners"),
     lambda: _resize(coordinate_transformation_mode=BAD), "attribute coordinate_transformation_mode='pwn"),
    ("Resize nearest_mode", lambda: _resize(nearest_mode="ceil"), lambda: _resize(nearest_mode=BAD),
     "attribute nearest_mode='pwn"),
    ("ScatterElements reduction", lambda: _scatter("ScatterElements", "add"), lambda: _scatter("ScatterElements", BAD),
     "attribute reduction='pwn"),
    ("ScatterND reduction", lambda: _scatter("ScatterND", "max"), lambda: _scatter("ScatterND", BAD),
     "attribute reduction='pwn"),
    ("Cast round_mode", lambda: _cast("down"), lambda: _cast(BAD), "attribute round_mode='pwn"),
    ("TfIdfVectorizer mode", lambda: _tfidf("TF"), lambda: _tfidf(BAD), "attribute mode='pwn"),
    ("TreeEnsemble post_transform", lambda: _tree_ensemble(post_transform=0), lambda: _tree_ensemble(post_transform=7),
     "attribute post_transform=7 is not one of 0, 1, 2, 3, 4"),
    ("TreeEnsemble aggregate_function", lambda: _tree_ensemble(aggregate_function=3),
     lambda: _tree_ensemble(aggregate_function=-1), "attribute aggregate_function=-1 is not one of 0, 1, 2, 3"),
    ("TreeEnsemble nodes_modes", lambda: _tree_ensemble(nodes_modes=numpy_helper.from_array(np.array([3], np.uint8))),
     lambda: _tree_ensemble(nodes_modes=numpy_helper.from_array(np.array([9], np.uint8))),
     "nodes_modes holds 9, which is not a node mode"),
    ("TreeEnsembleRegressor post_transform", lambda: _tree_regressor(post_transform="NONE"),
     lambda: _tree_regressor(post_transform=BAD), "attribute post_transform='pwn"),
    ("TreeEnsembleRegressor aggregate_function", lambda: _tree_regressor(aggregate_function="MAX"),
     lambda: _tree_regressor(aggregate_function=BAD), "attribute aggregate_function='pwn"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "good", "bad", "message"), VOCABULARIES, ids=[v[0] for v in VOCABULARIES])
def test_an_attribute_outside_its_vocabulary_is_refused_before_code_is_written(what, good, bad, message):
    model, inputs = good()
    forward, params = wb.to_jax(model)
    ours = forward(params, *inputs)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {i.name: value for i, value in zip(session.get_inputs(), inputs, strict=True)})
    np.testing.assert_allclose(np.asarray(ours, np.float32), theirs.astype(np.float32), rtol=1e-6)
    model, _ = bad()
    with pytest.raises(wb.OnnxModelError, match=r"<ModelProto>: node #0 \((ai\.onnx\.ml::)?\w+\): ") as caught:
        wb.to_jax_source(model)
    assert message in str(caught.value)
    if "reduction" not in what:  # onnxruntime takes an unknown Scatter reduction when the session is created
        assert _onnxruntime_refuses(model), what


# ------------------------------------------------------------------------------ names, doc strings and metadata
# text that would end a string literal, a line or a comment, run code, or pass for a Python keyword, a builtin or a
# name of the generated module's own (its imports, constants, functions and the scan blocks' arguments)
HOSTILE = "a'\"\\\n\r\u2028\u2029\x85\x0b\x0c\x1c#{x}%s__import__('os').system('pwn')"
CLASHING = ["forward", "_forward_body", "prepare", "params", "inputs", "carry", "weights", "jnp", "np", "lax", "jax",
            "math", "ONNX_OPSET", "ONNX_INPUT_NAMES", "def", "None", "print", "match", "_"]  # fmt: skip
NAMES = [HOSTILE, *CLASHING]


def _named(nodes, inputs, outputs, inits=(), *, opsets=(("", 18),), functions=()) -> onnx.ModelProto:
    """A model whose graph, doc strings and metadata are hostile too."""
    graph = helper.make_graph(nodes, HOSTILE, inputs, outputs, list(inits), doc_string=HOSTILE)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], functions=list(functions),
                              doc_string=HOSTILE, producer_name=HOSTILE, producer_version=HOSTILE, domain=HOSTILE)  # fmt: skip
    helper.set_model_props(model, {HOSTILE: HOSTILE, "forward": HOSTILE})
    model.ir_version = 8
    return model


def _chain(x: str, names: list[str], tag: str = "") -> tuple[list[onnx.NodeProto], str]:
    """Add then Relu per name, every value and node named after it (and ``tag``): ``x`` -> the last value."""
    nodes = []
    for name in names:
        nodes += [helper.make_node("Add", [x, "one"], [name + tag], name=name, doc_string=name),
                  helper.make_node("Relu", [name + tag], [name + tag + "'"], name=name + "\n")]  # fmt: skip
        x = name + tag + "'"
    return nodes, x


ONE = numpy_helper.from_array(np.float32(1), "one")
X = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)


def _plain():
    nodes, y = _chain(HOSTILE + "x", NAMES)
    return _named(nodes, [vi(HOSTILE + "x", F, [2, HOSTILE])], [vi(y, F, [2, HOSTILE])], [ONE]), [X]


def _branches():
    then, t = _chain(HOSTILE, NAMES[:6], "then")
    other, e = _chain("x", NAMES[6:12], "else")
    branch = [helper.make_graph(then, HOSTILE + "then", [], [vi(t, F, [2, 3])]),
              helper.make_graph(other, "forward", [], [vi(e, F, [2, 3])])]  # fmt: skip
    nodes = [helper.make_node("Identity", ["x"], [HOSTILE]), helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "one"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=branch[0], else_branch=branch[1], name=HOSTILE)]  # fmt: skip
    return _named(nodes, [vi("x", F, [2, 3])], [vi("y", F, [2, 3])], [ONE]), [X]


def _loop():
    body_nodes, out = _chain("carry", NAMES[:5])
    body = helper.make_graph([*body_nodes, helper.make_node("Identity", ["cond"], ["more"])], HOSTILE,
                             [vi(HOSTILE + "i", TensorProto.INT64, []), vi("cond", TensorProto.BOOL, []), vi("carry", F, [2, 3])],
                             [vi("more", TensorProto.BOOL, []), vi(out, F, [2, 3])])  # fmt: skip
    nodes = [helper.make_node("Loop", ["three", "", "x"], ["y"], body=body, name=HOSTILE)]
    return _named(nodes, [vi("x", F, [2, 3])], [vi("y", F, [2, 3])],
                  [ONE, numpy_helper.from_array(np.int64(3), "three")]), [X]  # fmt: skip


def _function():
    """A model-local function whose name, domain, values and attribute reference are hostile."""
    inner, out = _chain(HOSTILE, NAMES[:4], "in")
    scaled = helper.make_node("LeakyRelu", [out], ["forward"])
    scaled.attribute.append(helper.make_attribute_ref("alpha", onnx.AttributeProto.FLOAT))
    one = helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.float32(1)))
    fn = helper.make_function(HOSTILE, HOSTILE, [HOSTILE], ["forward"], [one, *inner, scaled], [helper.make_opsetid("", 18)],
                              attributes=["alpha"])  # fmt: skip
    nodes = [helper.make_node(HOSTILE, ["x"], ["y"], domain=HOSTILE, name=HOSTILE, alpha=0.25)]
    return _named(nodes, [vi("x", F, [2, 3])], [vi("y", F, [2, 3])], opsets=(("", 18), (HOSTILE, 1)), functions=[fn]), [X]


def _value_dependent():
    """NonZero: the code runs in jitted parts around a host step (segments.py), each part named after its nodes."""
    head, h = _chain("x", NAMES[:4])
    tail, y = _chain("count", NAMES[4:8])
    where = HOSTILE + "nonzero"
    nodes = [*head, helper.make_node("NonZero", [h], [where], name=where),
             helper.make_node("Shape", [where], ["shape"]), helper.make_node("Cast", ["shape"], ["count"], to=F), *tail]
    return _named(nodes, [vi("x", F, [2, 3])], [vi(y, F, [2])], [ONE]), [X]


def _int64():
    """64-bit inputs: forward wraps a body function and enables x64 around it."""
    nodes = [helper.make_node("Add", [HOSTILE, "_forward_body"], ["forward"], name=HOSTILE)]
    return _named(nodes, [vi(HOSTILE, TensorProto.INT64, [3]), vi("_forward_body", TensorProto.INT64, [3])],
                  [vi("forward", TensorProto.INT64, [3])]), [np.array([1, 2**40, -3], np.int64), np.array([5, 6, 7], np.int64)]


def _repeated():
    """Three equal blocks of 12 nodes: with scan_repeats, written once and run by lax.scan over per-block weights
    (repeats.py), the block function and its comments named after the first and last nodes."""
    nodes, inits, x = [], [ONE], "x"
    rng = np.random.default_rng(0)
    for block in range(3):
        for step in range(4):
            k = f"{block}.{step}"
            w, b, m, a, t = (f"{name}{k}" for name in (HOSTILE, "carry", "weights", "jnp", "forward"))
            nodes += [helper.make_node("MatMul", [x, w], [m], name=f"{HOSTILE}{k}"),
                      helper.make_node("Add", [m, b], [a], name=f"carry{k}"), helper.make_node("Tanh", [a], [t], name=f"def{k}")]
            inits += [numpy_helper.from_array(rng.standard_normal((3, 3)).astype(np.float32) * 0.5, w),
                      numpy_helper.from_array(np.full(3, 0.1 * block, np.float32), b)]  # fmt: skip
            x = t
    return _named(nodes, [vi("x", F, [2, 3])], [vi(x, F, [2, 3])], inits), [X]


def _helpers():
    """Values named after the runtime helpers the code calls (_resize, _pad...) and the module's constants."""
    nodes = [helper.make_node("Resize", ["_resize", "", "scales"], ["_pad"], mode="linear"),
             helper.make_node("Pad", ["_pad", "pads"], ["_cast"], mode="reflect"),
             helper.make_node("Cast", ["_cast"], ["_scatter_update"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["_scatter_update"], ["ONNX_OUTPUT_NAMES"], to=F)]  # fmt: skip
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]  # fmt: skip
    return _named(nodes, [vi("_resize", F, [1, 1, 2, 3])], [vi("ONNX_OUTPUT_NAMES", F, None)], inits), [X.reshape(1, 1, 2, 3)]


PLACEMENTS = [_plain, _branches, _loop, _function, _value_dependent, _int64, _repeated, _helpers]


def _check_source(source: str) -> None:
    """The generated module parses; the model's text is only in string literals (and, sanitized, in identifiers and
    comments); its lines are split by newlines alone (line numbers in errors and tracebacks are the file's). The
    runtime helpers after HELPERS_MARKER are the workbench's own code, copied as they are."""
    import ast
    import io
    import tokenize

    from workbench.onnx_to_jax.generator import HELPERS_MARKER

    ast.parse(source)
    assert source.splitlines() == source.split("\n")[:-1], "a line separator other than \\n"
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NAME):
            assert token.string.isascii() and token.string.isprintable(), token
    tree = ast.parse(source.partition(HELPERS_MARKER)[0])
    code = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    code |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not code & {"system", "__import__", "os", "eval", "exec", "print"}, code
    imports = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    assert imports <= {"jax", "jax.numpy", "numpy", "lax"}, imports


@pytest.mark.parametrize("build", PLACEMENTS, ids=lambda f: f.__name__.strip("_"))
def test_hostile_names_stay_literals_and_the_code_agrees_with_onnxruntime(build):
    model, inputs = build()
    options = {"scan_repeats": build is _repeated}
    source = wb.to_jax_source(model, **options)
    _check_source(source)
    assert ("# written once" in source) == (build is _repeated)  # the repeated blocks' comment, over lax.scan
    assert ("VALUE_DEPENDENT_NODES = ()" in source) != (build is _value_dependent)
    if build in (_plain, _int64):  # the graph's input names are kept, as literals
        assert f"ONNX_INPUT_NAMES = ({HOSTILE + 'x' if build is _plain else HOSTILE!r}," in source
    forward, params = wb.to_jax(model, **options)
    ours = forward(params, *inputs)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {i.name: value for i, value in zip(session.get_inputs(), inputs, strict=True)})
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-5, atol=1e-6)


def test_hostile_names_survive_save_jax_and_its_loader(tmp_path):
    from tests.support.saved_jax import load_saved

    model, inputs = _plain()
    folder = wb.save_jax(model, tmp_path / "saved")
    _check_source((folder / "model_jax.py").read_text(encoding="utf-8"))
    forward, params = load_saved(folder, "hostile_saved_load")
    assert set(params) == {"one"}
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(np.asarray(forward(params, *inputs)), session.run(None, {HOSTILE + "x": inputs[0]})[0], rtol=1e-6)


# ------------------------------------------------------------------------------ structure
def _recursive(first: str) -> onnx.ModelProto:
    """A model calling the model-local function ``first`` (its functions are added by :func:`_with_functions`)."""
    return _model([helper.make_node(first, ["x"], ["y"], domain="local")], [vi("x", F, [2])], [vi("y", F, [2])],
                  opsets=(("", 18), ("local", 1)))


STRUCTURES = [
    ("a function calling itself", lambda: _with_functions(_recursive("Self"), [("Self", "Self")]),
     r"Cycle detected in model-local function references: local::Self -> local::Self"),
    ("two functions calling each other", lambda: _with_functions(_recursive("A"), [("A", "B"), ("B", "A")]),
     r"Cycle detected in model-local function references: local::\w -> local::\w -> local::\w"),
    ("an input without a type", lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [onnx.ValueInfoProto(name="x")],
                                               [vi("y", F, [2])]), r"graph input 'x' is a None; only tensors"),
    ("an input of element type 0", lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", 0, [2])], [vi("y", F, [2])]),
     r"graph input 'x'.* has elem_type 0, which is not an ONNX element type|Element type of input 0 unknown"),
    ("an unknown domain with a hostile name", lambda: _model([helper.make_node("Foo", ["x"], ["y"], domain=HOSTILE)],
                                                             [vi("x", F, [2])], [vi("y", F, [2])], opsets=(("", 18), (HOSTILE, 1))),
     r"1 node\(s\) use operator domain\(s\) .*, which have no JAX emitters"),
    ("opset 10**9", lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])],
                                   opsets=(("", 10**9),)), r"imports opset 1000000000 of 'ai.onnx'"),
    ("a node reading its own output", lambda: _model([helper.make_node("Add", ["x", "y"], ["y"])], [vi("x", F, [2])],
                                                     [vi("y", F, [2])]), r"the graph has a cycle through node #0 \(Add\)"),
]  # fmt: skip


def _with_functions(model: onnx.ModelProto, functions: list[tuple[str, str]]) -> onnx.ModelProto:
    for name, callee in functions:
        model.functions.append(helper.make_function(
            "local", name, ["a"], ["o"], [helper.make_node(callee, ["a"], ["o"], domain="local")],
            [helper.make_opsetid("", 18), helper.make_opsetid("local", 1)]))  # fmt: skip
    return model


@pytest.mark.parametrize(("what", "build", "message"), STRUCTURES, ids=[s[0] for s in STRUCTURES])
def test_malformed_structures_are_refused_naming_what(what, build, message):
    with pytest.raises(wb.OnnxModelError, match=message):
        wb.to_jax_source(build())


# ------------------------------------------------------------------------------ the model's text in HTML
def test_node_names_reach_the_divergence_report_and_figure_as_text_not_markup():
    """Was: the locator's HTML table (pandas' Styler, which escapes only when asked) put a node named
    '<img src=x onerror=...>' into the notebook as an element; plotly reads tags in its texts too."""
    import json

    from workbench.analysis.divergence import divergence_figure
    from workbench.analysis.locate_generated import locate_generated_divergence

    evil = "<img src=x onerror=alert(1)>"
    model = _model([helper.make_node("Relu", ["x"], [evil], name=evil), helper.make_node("Neg", [evil], ["y"], name=evil + "2")],
                   [vi("x", F, [3])], [vi("y", F, [3])])  # fmt: skip
    report = locate_generated_divergence(model)
    assert [n.node for n in report.nodes] == [evil, evil + "2"] and report.ok
    page = report._repr_html_()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    figure = json.dumps(json.loads(divergence_figure(report).to_json()))
    assert "<img" not in figure and "&lt;img" in figure
