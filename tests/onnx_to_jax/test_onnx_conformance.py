"""The ONNX node conformance suite, run through ``workbench.onnx_to_jax.backend.Backend``.

Cases are built in memory from ``onnx.backend.test.case.node`` (recent onnx
wheels do not ship the data files). Every case not listed in
``workbench/onnx_to_jax/expected_failures.py`` must pass; every listed case must
still fail (so the list stays honest). The pass count is measured against the
suite's own total. Cast elements whose expected value the spec decides rather than onnx's reference
(ml_dtypes) are compared as ``tests/support/conformance_spec_elements.py`` lists, which is checked against the suite.

Running every case takes minutes (1,884 cases, each generated, XLA-compiled and run: this file took 297 s
with ``-n 2`` on a lightly loaded 2-core machine, 13.5 minutes on a busy one), so the per-case test is opt-in: ``WORKBENCH_CONFORMANCE=1 pytest tests/onnx_to_jax/test_onnx_conformance.py -n 2``. The two
checks of the expected-failure list against the suite (pass-rate target, every pattern matches a case)
only build the cases and always run.
"""

from __future__ import annotations

import fnmatch
import functools
import os

import pytest

from tests.support.conformance_cases import collect_cases, run_case, spec_element_count
from tests.support.conformance_expected_failures import EXPECTED_FAILURES
from tests.support.conformance_spec_elements import SPEC_ELEMENTS

TARGET = 0.985
ENABLED = os.environ.get("WORKBENCH_CONFORMANCE") == "1"


@functools.lru_cache(maxsize=1)
def _cases():
    return {case.name: case for case in collect_cases()}


def expected_failure_reason(name: str) -> str | None:
    for pattern, reason in EXPECTED_FAILURES.items():
        if fnmatch.fnmatchcase(name, pattern):
            return reason
    return None


@pytest.mark.skipif(not ENABLED, reason="running all 1,884 cases takes minutes; set WORKBENCH_CONFORMANCE=1")
@pytest.mark.parametrize("name", sorted(_cases()) if ENABLED else ["(suite not collected)"])
def test_node_case(name):
    result = run_case(_cases()[name])
    reason = expected_failure_reason(name)
    if reason is None:
        assert result.passed, f"{name} failed: {result.reason}"
    else:
        assert not result.passed, (
            f"{name} passes but is listed as an expected failure ({reason!r}); "
            "remove it from workbench/onnx_to_jax/expected_failures.py"
        )


def test_pass_rate_meets_the_target():
    names = list(_cases())
    listed = [n for n in names if expected_failure_reason(n) is not None]
    passing = len(names) - len(listed)  # every unlisted case is checked to pass above
    assert len(names) > 1800, f"the onnx node suite shrank to {len(names)} cases"
    assert passing / len(names) >= TARGET, f"{passing}/{len(names)} = {passing / len(names):.1%} < {TARGET:.1%}"


def test_every_pattern_matches_a_case():
    names = list(_cases())
    unused = [p for p in EXPECTED_FAILURES if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    assert not unused, f"patterns matching no case (remove them): {unused}"


def test_spec_element_list_names_exactly_the_cases_that_have_such_elements():
    have = {name for name, case in _cases().items() if spec_element_count(case)}
    assert not have - set(SPEC_ELEMENTS), f"add to tests/support/conformance_spec_elements.py: {sorted(have - set(SPEC_ELEMENTS))}"
    assert not set(SPEC_ELEMENTS) - have, f"no such elements (remove them): {sorted(set(SPEC_ELEMENTS) - have)}"
