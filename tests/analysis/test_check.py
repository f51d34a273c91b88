"""wb.check: per-primitive compatibility report, locations, suggestions and handler stubs."""

from __future__ import annotations

import ast
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jex_core

import workbench as wb
from workbench.jax_to_onnx.registry import REGISTRY

# A primitive no handler will ever exist for: keeps the unsupported-path tests stable as handlers are added.
unknown_p = jex_core.Primitive("wb_test_unknown_op")
unknown_p.def_impl(lambda x, *, scale: x * scale)
unknown_p.def_abstract_eval(lambda x, *, scale: jax.core.ShapedArray(x.shape, x.dtype))


def _line_of(fn, marker: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if marker in line)


def supported_fn(x):
    y = jnp.tanh(x) + x * 2.0  # line-add
    return jnp.sum(y, axis=-1)


def unsupported_fn(x):
    a = unknown_p.bind(x, scale=2.0)  # first-use
    b = unknown_p.bind(jnp.sin(x), scale=3.0)  # second-use
    return a + b


def test_supported_function_counts_and_handler_ops():
    report = wb.check(supported_fn, [("B", 4)])
    assert report.supported and report.unsupported == []
    by_name = {p.name: p for p in report.primitives}
    assert {"tanh", "add", "mul", "reduce_sum"} <= set(by_name)
    assert by_name["add"].count == 1 and by_name["mul"].count == 1
    assert by_name["tanh"].onnx_ops == REGISTRY.get("tanh").onnx_ops == ("Tanh",)
    line = _line_of(supported_fn, "line-add")
    assert [(loc.line, loc.function) for loc in by_name["add"].locations] == [(line, "supported_fn")]
    assert by_name["add"].locations[0].file == __file__
    frame = report.to_pandas()
    assert len(frame) == len(report.primitives) and set(frame["primitive"]) == set(by_name)
    assert frame.set_index("primitive").loc["tanh", "onnx_ops"] == "Tanh"
    assert "all" in repr(report) and "convert to ONNX" in repr(report)
    assert "<table" in report._repr_html_()


def test_unsupported_primitive_is_reported_not_raised():
    report = wb.check(unsupported_fn, [("B", 4)])
    assert not report.supported
    assert [p.name for p in report.unsupported] == ["wb_test_unknown_op"]
    usage = report["wb_test_unknown_op"]
    assert usage.count == 2
    lines = sorted(loc.line for loc in usage.locations)
    assert lines == [_line_of(unsupported_fn, "first-use"), _line_of(unsupported_fn, "second-use")]
    assert ".stub('wb_test_unknown_op') on this report" in usage.suggestion
    assert "report.stub" not in usage.suggestion  # no variable the user may not have
    report.name_stub_call("_onnx.stub")
    assert "write a handler: _onnx.stub('wb_test_unknown_op') prints one" in usage.suggestion
    text = repr(report)
    assert "NO  wb_test_unknown_op" in text and "test_check.py" in text
    # the converter refuses the same function, naming the same primitive
    with pytest.raises(wb.UnsupportedPrimitiveError, match="wb_test_unknown_op"):
        wb.to_onnx(unsupported_fn, [("B", 4)])


def test_primitive_inside_nested_jit_is_counted_with_its_call_site():
    inner = jax.jit(lambda x: unknown_p.bind(x, scale=1.0))

    def fn(x):
        return inner(x) + inner(x * 2)  # nested-call

    report = wb.check(fn, [(3,)])
    usage = report["wb_test_unknown_op"]
    assert usage.count == 2
    assert report["jit"].supported and report["jit"].count == 2
    assert all(loc.file == __file__ for loc in usage.locations)


def test_known_alternative_is_suggested():
    from workbench.analysis.report import suggest

    assert "pass the random numbers as an input" in suggest("rng_bit_generator")
    assert suggest("wb_no_such_primitive").startswith("write a handler")


def test_stub_is_valid_python_that_registers_a_handler():
    report = wb.check(unsupported_fn, [("B", 4)])
    source = report.stub("wb_test_unknown_op")
    tree = ast.parse(source)
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "_wb_test_unknown_op" in functions
    assert "scale: Any" in source  # the primitive's own parameter, keyword-only
    namespace: dict = {"__name__": "wb_stub_under_test"}
    try:
        exec(compile(source, "<stub>", "exec"), namespace)  # our own generated text, not untrusted input
        info = REGISTRY.get("wb_test_unknown_op")
        assert info is not None and info.module == "wb_stub_under_test"
        (case,) = info.testcases
        assert [tuple(str(d) for d in spec.shape) for spec in case.inputs] == [("B", "4")]
        assert np.dtype(case.inputs[0].dtype) == np.float32
        with pytest.raises(NotImplementedError):
            case.fn(np.zeros((2, 4), np.float32))
    finally:
        REGISTRY.unregister("wb_test_unknown_op")
    assert REGISTRY.get("wb_test_unknown_op") is None


def test_unknown_name_in_report_lookup_says_what_exists():
    report = wb.check(supported_fn, [(2, 4)])
    with pytest.raises(KeyError, match="tanh"):
        report.stub("cumsum")


def test_check_on_bad_spec_raises_spec_error():
    with pytest.raises(wb.SpecError):
        wb.check(supported_fn, [("B", 4.5)])


def test_a_summary_names_the_first_unsupported_primitives_in_natural_order_and_counts_the_rest():
    """Twenty unsupported primitives of one count each: the summary names twelve, numbered names in numeric
    order (op_2 before op_10), and says how many more the table lists; the report keeps all twenty."""
    primitives = []
    for number in range(20):
        primitive = jex_core.Primitive(f"wb_test_lib_op_{number}")
        primitive.def_impl(lambda x: x)
        primitive.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))
        primitives.append(primitive)

    def many(x):
        for primitive in reversed(primitives):
            x = primitive.bind(x)
        return x

    report = wb.check(many, [(4,)])
    assert [p.name for p in report.unsupported] == [f"wb_test_lib_op_{n}" for n in range(20)]
    summary = report.summary()
    assert summary.endswith(", ".join(f"wb_test_lib_op_{n}" for n in range(12)) +
                            " and 8 more (the table lists them all)"), summary
    assert "20 of 20 primitives" in summary
