"""The ONNX node test suite (``onnx.backend.test.case.node``) run through the generated JAX code.

Recent onnx wheels no longer ship the suite's data files, so the cases are built in memory by
onnx itself (about 1,900 cases; building them takes tens of seconds, so it happens once per
process and only when asked). Each case is a one-node model with inputs and expected outputs;
a case passes when :class:`workbench.onnx_to_jax.backend.Backend` (generate JAX source, compile, run)
reproduces every expected output within the case's own tolerances.

The expected outputs come from onnx's reference implementation, which casts with numpy and
ml_dtypes. Where the ONNX spec leaves a Cast result undefined (float -> integer out of range) or
defines it otherwise than ml_dtypes computes it (NaN -> float4e2m1 is 6), that element's expected
value depends on the installed ml_dtypes (0.5 and 0.6 wrap -9.0 -> int4 to 7, 0.7 gives 0), so
:func:`cast_spec_elements` replaces it with the spec's value or, where the spec has none, the
documented result of the generated code (truncate, saturate, NaN -> 0; docs/codegen.md "Cast").

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
def cases_by_op() -> dict[tuple[str, str], tuple[Any, ...]]:
    """Node cases grouped by the (domain, op type) of the nodes their model uses (a case may count for
    several ops). The domain is the registry's spelling: "" for the ONNX domain (also written "ai.onnx"),
    "ai.onnx.ml", "ai.onnx.preview.training"...; an op of another domain with the same name (onnxruntime's
    com.microsoft::Attention beside ONNX's Attention) never sees these cases."""
    grouped: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for case in collect_cases():
        keys = {("" if node.domain == "ai.onnx" else node.domain, node.op_type) for node in case.model.graph.node}
        for key in sorted(keys):
            grouped[key].append(case)
    return {key: tuple(cases) for key, cases in grouped.items()}


def compare_output(expected: Any, actual: Any, rtol: float, atol: float) -> None:
    """Raise AssertionError unless ``actual`` has ``expected``'s shape, dtype and values (floats within rtol/atol)."""
    if expected is None or isinstance(expected, list):  # an optional, a sequence
        if expected is None or actual is None:
            if not (expected is None and actual is None):
                raise AssertionError(f"optional: got {type(actual).__name__}, expected {type(expected).__name__}")
            return
        if not isinstance(actual, list) or len(actual) != len(expected):
            raise AssertionError(f"sequence of {len(expected)} expected, got {type(actual).__name__}")
        for want, got in zip(expected, actual):
            compare_output(want, got, rtol, atol)
        return
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if expected.dtype == object:  # strings: the same shape and the same text
        if actual.shape != expected.shape:
            raise AssertionError(f"shape {actual.shape} != expected {expected.shape}")
        decode = np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v), otypes=[object])
        np.testing.assert_array_equal(decode(actual) if actual.size else actual, decode(expected) if expected.size else expected)
        return
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


@dataclass(frozen=True)
class SpecElements:
    """The elements of one Cast output whose expected value comes from the spec, not from the reference."""

    mask: np.ndarray  # True where the value below replaces the reference's
    values: np.ndarray  # the spec's result there (the target dtype, same shape)
    why: str


def cast_spec_elements(x: np.ndarray, target: np.dtype) -> SpecElements | None:
    """For ``Cast(x, to=target)``: the elements the reference cannot decide, with the value they must have.

    * float -> integer (int2 ... int64): the spec leaves NaN, +-inf and values whose truncation does not
      fit undefined; the generated code documents truncate, saturate to the type's range, NaN -> 0.
    * float -> float4e2m1: the spec (docs/technical/float4.md) maps NaN to 6; ml_dtypes gives +-0.
    None when no element is concerned.
    """
    import ml_dtypes

    x = np.asarray(x)
    if not _is_float(x.dtype):
        return None
    wide = x.astype(np.float64)  # exact for every float type up to float64
    if _is_integer(target):
        info = ml_dtypes.iinfo(target)
        whole = np.trunc(wide)
        # min and max + 1 are 0 or powers of two, exact in float64
        below, above = whole < float(info.min), whole >= float(info.max) + 1.0
        nan = np.isnan(wide)
        mask = below | above | nan
        values = np.where(nan, 0, np.where(below, info.min, info.max)).astype(target)
        why = f"float -> {target.name} out of range or NaN: undefined by the spec; saturate, NaN -> 0 (documented)"
    elif target == ml_dtypes.float4_e2m1fn:
        mask = np.isnan(wide)
        values = np.full(x.shape, 6.0).astype(target)
        why = "NaN -> float4e2m1: the spec says 6 (ml_dtypes gives +-0)"
    else:
        return None
    return SpecElements(mask, values, why) if mask.any() else None


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype.name.startswith(("bfloat16", "float8", "float4"))


def _is_integer(dtype: np.dtype) -> bool:
    return dtype.kind in "iu" or dtype.name in ("int4", "uint4", "int2", "uint2")


def _is_cast_case(case: Any) -> bool:
    ops = {node.op_type for node in case.model.graph.node}
    return bool(ops) and ops <= {"Cast", "CastLike"} and len(case.model.graph.output) == 1


def _spec_elements_of(case: Any, inputs: list[Any], expected: list[Any]) -> SpecElements | None:
    if not _is_cast_case(case):
        return None
    return cast_spec_elements(np.asarray(inputs[0]), np.asarray(expected[0]).dtype)


def spec_element_count(case: Any) -> int:
    """How many expected elements of ``case`` (all data sets) are decided by the spec, not the reference."""
    if not _is_cast_case(case):
        return 0
    count = 0
    for inputs, expected in case.data_sets:
        found = cast_spec_elements(np.asarray(_as_array(inputs[0])), np.asarray(_as_array(expected[0])).dtype)
        count += 0 if found is None else int(found.mask.sum())
    return count


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
                    spec = _spec_elements_of(case, [_as_array(v) for v in inputs], expected)
                    if spec is not None:
                        got = np.asarray(outputs[0])
                        compare_output(np.asarray(expected[0])[~spec.mask], got[~spec.mask], case.rtol, case.atol)
                        try:
                            compare_output(spec.values[spec.mask], got[spec.mask], 0.0, 0.0)
                        except AssertionError as error:
                            raise AssertionError(f"{spec.why}: {error}".replace("\n", " ")) from error
                        continue
                    for want, got in zip(expected, outputs, strict=True):
                        compare_output(want, got, case.rtol, case.atol)
            except Exception as error:  # noqa: BLE001 - the result carries the reason; callers decide
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                return CaseResult(case.name, ops, False, f"{type(error).__name__}: {first[:200]}")
    return CaseResult(case.name, ops, True, "")


def run_cases(cases: Sequence[Any]) -> list[CaseResult]:
    return [run_case(case) for case in cases]


__all__ = [
    "CaseResult", "SpecElements", "cases_by_op", "cast_spec_elements", "compare_output", "collect_cases", "run_case", "run_cases",
    "spec_element_count",
]
