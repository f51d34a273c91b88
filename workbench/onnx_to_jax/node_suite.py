"""The ONNX node test suite (``onnx.backend.test.case.node``) run through the generated JAX code.

Recent onnx wheels no longer ship the suite's data files, so the cases are built in memory by
onnx itself (about 1,900 cases; building them takes tens of seconds, so it happens once per
process and only when asked). Each case is a one-node model with inputs and expected outputs;
a case passes when :class:`workbench.onnx_to_jax.backend.Backend` (generate JAX source, compile, run)
reproduces every expected output within the case's own tolerances.

Used by the conformance tests, the docs table generator and the coverage explorer.
"""

from __future__ import annotations

import functools
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one node case: passed, or the first line of why not."""

    name: str
    ops: tuple[str, ...]
    passed: bool
    reason: str  # empty when passed


@functools.lru_cache(maxsize=1)
def collect_cases() -> tuple[Any, ...]:
    """Every node case of the installed onnx (built once per process)."""
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference implementations warn on purpose (overflow, nan)
        with np.errstate(all="ignore"):
            return tuple(node_cases.collect_testcases(None))


@functools.lru_cache(maxsize=1)
def cases_by_op() -> dict[str, tuple[Any, ...]]:
    """Node cases grouped by the ONNX op types their model uses (a case may count for several ops)."""
    grouped: dict[str, list[Any]] = defaultdict(list)
    for case in collect_cases():
        for op in sorted({node.op_type for node in case.model.graph.node}):
            grouped[op].append(case)
    return {op: tuple(cases) for op, cases in grouped.items()}


def _compare(expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float) -> None:
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if expected.dtype == object:
        raise AssertionError("object (string) outputs are not comparable")
    if expected.shape != actual.shape:
        raise AssertionError(f"shape {actual.shape} != expected {expected.shape}")
    if expected.dtype != actual.dtype:
        raise AssertionError(f"dtype {actual.dtype} != expected {expected.dtype}")
    # bfloat16 / float8 / float4 (ml_dtypes) have kind "V": compare them as floats too, so NaN equals NaN
    small_float = expected.dtype.name.startswith(("bfloat", "float"))
    if expected.dtype.kind in "fc" or small_float:
        np.testing.assert_allclose(
            actual.astype(np.float64) if actual.dtype.kind != "c" else actual,
            expected.astype(np.float64) if expected.dtype.kind != "c" else expected,
            rtol=rtol, atol=atol, equal_nan=True,
        )
    elif expected.dtype.name in ("int4", "uint4", "int2", "uint2"):
        np.testing.assert_array_equal(actual.astype(np.int64), expected.astype(np.int64))
    else:
        np.testing.assert_array_equal(actual, expected)


def _as_array(value: Any) -> Any:
    import onnx
    from onnx import numpy_helper

    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return value


def run_case(case: Any) -> CaseResult:
    """Generate, compile and run one node case; every failure is returned with its reason."""
    from workbench.onnx_to_jax.backend import Backend

    ops = tuple(sorted({n.op_type for n in case.model.graph.node}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                rep = Backend.prepare(case.model)
                for inputs, expected in case.data_sets:
                    outputs = rep.run([_as_array(v) for v in inputs])
                    expected = [_as_array(v) for v in expected]
                    if len(outputs) != len(expected):
                        raise AssertionError(f"{len(outputs)} outputs, expected {len(expected)}")
                    for want, got in zip(expected, outputs, strict=True):
                        _compare(want, got, case.rtol, case.atol)
            except Exception as error:  # noqa: BLE001 - the result carries the reason; callers decide
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                return CaseResult(case.name, ops, False, f"{type(error).__name__}: {first[:200]}")
    return CaseResult(case.name, ops, True, "")


def run_cases(cases: Sequence[Any]) -> list[CaseResult]:
    return [run_case(case) for case in cases]


__all__ = ["CaseResult", "cases_by_op", "collect_cases", "run_case", "run_cases"]
