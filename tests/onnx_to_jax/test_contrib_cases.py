"""The built-in cases of the ops onnxruntime defines (workbench.onnx_to_jax.contrib_cases): every case
matches onnxruntime through the generated code, every registered com.microsoft op has one, and a case
whose numbers differ from onnxruntime's is reported as failing."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.onnx_to_jax import contrib_cases
from workbench.onnx_to_jax.registry import registered
from workbench.onnx_io.runtime_ops import RUNTIME_DOMAINS


def test_every_registered_runtime_domain_op_has_a_case():
    missing = [f"{domain}::{op}" for domain, op in registered()
               if domain in RUNTIME_DOMAINS and not contrib_cases.has_cases(domain, op)]
    assert not missing, f"registered without a case in contrib_cases: {missing}"
    assert set(contrib_cases.case_ops()) <= set(registered()), "a case for an op with no emitter"


@pytest.mark.parametrize("domain, op", contrib_cases.case_ops(), ids=lambda v: v or "ai.onnx")
def test_cases_match_onnxruntime(domain, op):
    cases = contrib_cases.cases(domain, op)
    assert cases and all(any(n.op_type == op and n.domain == domain for n in c.model.graph.node) for c in cases)
    failing = [(r.name, r.reason) for r in map(contrib_cases.run_case, cases) if not r.passed]
    assert not failing, failing


def test_cases_are_the_same_in_every_process():
    contrib_cases.cases.cache_clear()
    first = contrib_cases.cases("com.microsoft", "QGemm")
    contrib_cases.cases.cache_clear()
    again = contrib_cases.cases("com.microsoft", "QGemm")
    assert all(np.array_equal(a, b) for x, y in zip(first, again) for a, b in zip(x.inputs, y.inputs))


def test_a_case_differing_from_onnxruntime_fails_with_the_reason(monkeypatch):
    [case] = contrib_cases.cases("com.microsoft", "QLinearConcat")  # exact (atol 0): one step off is a failure
    real = contrib_cases.run_onnxruntime
    monkeypatch.setattr(contrib_cases, "run_onnxruntime", lambda model, inputs: [y + 1 for y in real(model, inputs)])
    result = contrib_cases.run_case(case)
    assert not result.passed and "AssertionError" in result.reason and result.ops == ("QLinearConcat",)
    [case] = contrib_cases.cases("com.microsoft", "FusedMatMul")
    monkeypatch.setattr(contrib_cases, "run_onnxruntime", lambda model, inputs: [y * 1.01 for y in real(model, inputs)])
    assert not contrib_cases.run_case(case).passed
