"""The handler-testcase catalogue and the zoo as parameters for the two other doors (Graph IR, StableHLO).

Generated from the handler registry (every testcase of every handler, each testcase once even when
several primitives share it), so handlers other engineers add are covered without editing a list.
The expected failures of each door are in one visible list each, with their reason
(``tests/support/door_expected_failures.py``); an entry whose case starts passing fails the suite.
"""

from __future__ import annotations

from typing import Any

import jax
import pytest

from tests.support.door_expected_failures import GRAPH_IR_EXPECTED_FAILURES, STABLEHLO_EXPECTED_FAILURES
from workbench import zoo
from workbench.jax_to_onnx.registry import REGISTRY, Testcase


def catalogue() -> list[Testcase]:
    """Every handler testcase once, in registry order."""
    seen: set[int] = set()
    cases = []
    for info in REGISTRY.all():
        for case in info.testcases:
            if id(case) not in seen:
                seen.add(id(case))
                cases.append(case)
    return cases


def case_params(expected_failures: dict[str, str]) -> list[Any]:
    """One pytest param per testcase, strict xfail (with its reason) for the listed ones."""
    params = []
    for case in catalogue():
        marks = []
        if case.name in expected_failures:
            marks.append(pytest.mark.xfail(strict=True, reason=expected_failures[case.name]))
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def zoo_params(expected_failures: dict[str, str]) -> list[Any]:
    params = []
    for name in zoo.ZOO:
        marks = []
        if f"zoo:{name}" in expected_failures:
            marks.append(pytest.mark.xfail(strict=True, reason=expected_failures[f"zoo:{name}"]))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def unknown_entries(expected_failures: dict[str, str]) -> set[str]:
    """Listed names that are no testcase or zoo model (a renamed testcase leaves a stale entry)."""
    known = {case.name for case in catalogue()} | {f"zoo:{name}" for name in zoo.ZOO}
    return set(expected_failures) - known


def export(case: Testcase) -> jax.export.Exported:
    """``jax.export`` of a testcase with its specs (symbolic dims included), as a user would export it."""
    from workbench.specs import parse_input_specs

    specs = parse_input_specs(case.inputs)
    with jax.enable_x64(case.x64):
        return jax.export.export(jax.jit(case.fn))(*specs.args)


__all__ = [
    "GRAPH_IR_EXPECTED_FAILURES", "STABLEHLO_EXPECTED_FAILURES", "case_params", "catalogue", "export", "unknown_entries",
    "zoo_params",
]
