"""Untrusted text in a model (names, doc strings, attributes, metadata) never becomes code."""

from __future__ import annotations

import ast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import workbench as wb

EVIL = [
    "__import__('os').system('echo pwned')",
    "x\nimport os\nos.system('echo pwned')",
    "'); __import__('os').system('echo pwned'); ('",
    '"""; __import__("os").system("echo pwned"); """',
    "lambda: exec('1')",
    "class",
    "params",
    "jnp",
    "1abc",
    "",
]


def _evil_model() -> onnx.ModelProto:
    names = [f"{e}#{i}" for i, e in enumerate(EVIL)]
    inp, w, mid, eq_out, out = names[0], names[1], names[2], names[3], names[4]
    nodes = [
        helper.make_node("Add", [inp, w], [mid], name=EVIL[2], doc_string=EVIL[3]),
        helper.make_node("Einsum", [mid], [eq_out], equation="ij->ji", name=EVIL[1]),
        helper.make_node("Pad", [eq_out, "pads"], [out], mode="constant", name=EVIL[0]),
    ]
    graph = helper.make_graph(
        nodes, EVIL[0],
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [4, 4])],
        [numpy_helper.from_array(np.ones((2, 2), np.float32), w),
         numpy_helper.from_array(np.array([1, 1, 1, 1], np.int64), "pads")],
        doc_string=EVIL[1],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], doc_string=EVIL[0],
                              producer_name=EVIL[2])
    helper.set_model_props(model, {EVIL[0]: EVIL[1]})
    model.ir_version = 8
    return model


def _code_strings(tree: ast.AST) -> set[str]:
    """Every identifier and attribute name used as code (not inside string literals)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.arg)):
            found.add(getattr(node, "name", None) or node.arg)
    return found


def test_untrusted_names_only_appear_as_identifiers_or_string_literals():
    source = wb.to_jax_source(_evil_model())
    tree = ast.parse(source)
    code_names = _code_strings(tree)
    for forbidden in ("system", "__import__", "exec", "os", "eval", "lambda"):
        assert forbidden not in code_names, forbidden
    # no import other than ours
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert {a.name for n in imports for a in n.names} <= {"jax", "jax.numpy", "numpy", "lax"}
    # every call goes to a known function: jnp/jax/lax/np attributes or one of our helpers
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id.startswith("_") or node.func.id in {
                "tuple", "int", "range", "len", "list", "zip", "max", "min", "float", "bool", "slice",
                "enumerate", "ValueError", "NotImplementedError", "sorted", "isinstance", "complex",
            }, node.func.id
    # the evil text survives only inside string constants
    constants = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert any("__import__('os')" in c for c in constants)


def test_untrusted_model_still_runs_correctly():
    forward, params = wb.to_jax(_evil_model())
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    y = np.asarray(forward(params, x))
    np.testing.assert_allclose(y, np.pad((x + 1).T, 1))


def test_generated_identifiers_are_valid_and_unique():
    from workbench.onnx_to_jax.names import NameScope

    scope = NameScope({"jnp"})
    names = [scope.assign(text) for text in EVIL + EVIL]
    assert len(set(names)) == len(names)
    for name in names:
        assert name.isidentifier()
        import keyword

        assert not keyword.iskeyword(name) and name != "jnp"
