"""Generated from the handler registry: every testcase of every handler, compared with onnxruntime.

A handler without a testcase, or whose testcases never produce its primitive, fails here.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax, concrete_inputs
from workbench.errors import UnsupportedPrimitiveError
from workbench.jax_to_onnx.api import DEFAULT_OPSET, MIN_OPSET
from workbench.jax_to_onnx.complex_numbers import touches_complex
from workbench.jax_to_onnx.lowering import iter_eqns
from workbench.jax_to_onnx.registry import REGISTRY
from workbench.jax_to_onnx.tracing import trace

HANDLERS = REGISTRY.all()
CASES = [
    pytest.param(info, case, id=f"{info.subject}::{case.name}")
    for info in HANDLERS
    for case in info.testcases
]
_seen_cases: set[int] = set()


@pytest.mark.parametrize("info", HANDLERS, ids=[h.subject for h in HANDLERS])
def test_handler_has_testcase_exercising_it(info):
    assert info.testcases, f"handler for {info.subject!r} ({info.module}) declares no testcase"
    found = False
    for case in info.testcases:
        traced = trace(case.fn, case.inputs, enable_double_precision=case.x64)
        if any(
            eqn.primitive.name == info.primitive and touches_complex(eqn) == info.complex_numbers
            for eqn in iter_eqns(traced.closed_jaxpr.jaxpr)
        ):
            found = True
            break
    assert found, f"no testcase of {info.subject!r} produces that primitive (on those operands) in its jaxpr"


@pytest.mark.parametrize("info, case", CASES)
def test_handler_case_matches_onnxruntime(info, case):
    if id(case) in _seen_cases:
        pytest.skip("testcase shared with another primitive of the same handler; already run")  # visible reason
    _seen_cases.add(id(case))
    model = wb.to_onnx(case.fn, case.inputs, enable_double_precision=case.x64)
    assert_graph_quality(model)
    for op in case.expect_ops:
        assert any(n.op_type == op for n in model.graph.node), f"expected an {op} node"
    args = concrete_inputs(case.inputs, int_high=case.int_high, sizes=case.symbolic_sizes)
    with jax.enable_x64(case.x64):
        assert_matches_jax(case.fn, model, args, rtol=case.rtol, atol=case.atol)
    if not case.x64:
        for output in model.graph.output:
            assert output.type.tensor_type.elem_type != 11 or any(
                np.asarray(a).dtype == np.float64 for a in args
            ), "float64 leaked into a float32 export"


def _lowest_opset(info) -> int:
    return max(MIN_OPSET, info.min_opset)


LOWEST_OPSET_CASES = [
    pytest.param(info, case, id=f"{info.primitive}::{case.name}@{_lowest_opset(info)}")
    for info in HANDLERS
    for case in info.testcases
    if _lowest_opset(info) < DEFAULT_OPSET
]
_seen_lowest: set[int] = set()


@pytest.mark.parametrize("info, case", LOWEST_OPSET_CASES)
def test_handler_case_at_its_lowest_opset(info, case):
    """Each testcase also exported at the lowest opset its handler declares (13 unless it needs more)."""
    if id(case) in _seen_lowest:
        pytest.skip("testcase shared with another primitive of the same handler; already run")  # visible reason
    _seen_lowest.add(id(case))
    opset = _lowest_opset(info)
    try:
        model = wb.to_onnx(case.fn, case.inputs, enable_double_precision=case.x64, opset=opset)
    except UnsupportedPrimitiveError as error:
        # the testcase also uses a primitive (or a dtype) that needs a newer opset: it must say so
        assert all(f"opset {opset}" in p.reason for p in error.primitives), str(error)
        return
    assert_graph_quality(model)
    (default_domain,) = [o for o in model.opset_import if o.domain == ""]
    assert default_domain.version == opset
    args = concrete_inputs(case.inputs, int_high=case.int_high, sizes=case.symbolic_sizes)
    with jax.enable_x64(case.x64):
        assert_matches_jax(case.fn, model, args, rtol=case.rtol, atol=case.atol)
