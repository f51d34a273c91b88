"""The ONNX node conformance cases, built in memory from ``onnx.backend.test.case.node``.

Shared by tests/test_onnx_conformance.py and the docs table generator
(tests/benchmarks/conformance_table.py).
"""

from __future__ import annotations

import time
import traceback
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass
class CaseResult:
    name: str
    ops: tuple[str, ...]
    passed: bool
    reason: str  # empty when passed


def collect_cases():
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            return node_cases.collect_testcases(None)


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


def _as_array(value):
    import onnx
    from onnx import numpy_helper

    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return value


def run_case(case) -> CaseResult:
    from workbench.onnx_backend import Backend

    ops = tuple(sorted({n.op_type for n in case.model.graph.node}))
    try:
        rep = Backend.prepare(case.model)
        for inputs, expected in case.data_sets:
            inputs = [_as_array(v) for v in inputs]
            expected = [_as_array(v) for v in expected]
            outputs = rep.run(inputs)
            if len(outputs) != len(expected):
                raise AssertionError(f"{len(outputs)} outputs, expected {len(expected)}")
            for want, got in zip(expected, outputs):
                _compare(want, got, case.rtol, case.atol)
    except Exception as e:  # noqa: BLE001 - every failure is recorded with its reason
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return CaseResult(case.name, ops, False, f"{type(e).__name__}: {first[:200]}")
    return CaseResult(case.name, ops, True, "")


def run_all(cases=None, verbose: bool = False) -> list[CaseResult]:
    cases = collect_cases() if cases is None else cases
    results = []
    start = time.perf_counter()
    for case in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                results.append(run_case(case))
        if verbose and not results[-1].passed:
            print(results[-1].name, results[-1].reason)
    if verbose:
        print(f"{sum(r.passed for r in results)}/{len(results)} in {time.perf_counter() - start:.1f}s")
    return results


__all__ = ["CaseResult", "collect_cases", "run_all", "run_case", "traceback"]
