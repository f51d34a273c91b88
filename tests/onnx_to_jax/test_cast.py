"""ONNX Cast in the generated JAX code, element by element against the specification's own tables.

The expected values are written out from the Cast operator doc and docs/technical/float4.md (not
computed with ml_dtypes, whose results for the spec's undefined cases change between versions), plus
the documented result where the spec leaves it undefined: float -> integer out of range truncates,
saturates, NaN -> 0. ``cast_spec_elements`` (what the conformance runner compares by the spec) is
checked here too.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from workbench.onnx_to_jax.node_suite import cast_spec_elements
from workbench.onnx_to_jax.backend import Backend

NAN, INF = float("nan"), float("inf")


def _cast(x: np.ndarray, to: int, **attributes) -> np.ndarray:
    source = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=to, **attributes)], "cast",
        [helper.make_tensor_value_info("x", source, list(x.shape))],
        [helper.make_tensor_value_info("y", to, list(x.shape))],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    onnx.checker.check_model(model)
    (y,) = Backend.prepare(model).run([x])
    y = np.asarray(y)
    assert y.dtype == helper.tensor_dtype_to_np_dtype(to)
    return y


def _float32(values) -> np.ndarray:
    return np.array(values, np.float32)


def _as_float(y: np.ndarray) -> list[float]:
    return y.astype(np.float64).tolist()


def _same(got: list[float], want: list[float]) -> bool:
    """Equal element by element, NaN equal to NaN and the sign of zero counted."""
    return all(
        (np.isnan(a) and np.isnan(b)) or (a == b and np.signbit(a) == np.signbit(b)) for a, b in zip(got, want, strict=True)
    )


# ---- defined by the spec ----------------------------------------------------------------------
def test_integer_to_integer_keeps_the_low_bits():
    # the spec's own example: 200 (int16) -> -56 (int8)
    assert _cast(np.array([200, -200, 127, 32767], np.int16), TensorProto.INT8).tolist() == [-56, 56, 127, -1]
    assert _cast(np.array([7, 8, -9, 300], np.int32), TensorProto.INT4).astype(np.int64).tolist() == [7, -8, 7, -4]
    assert _cast(np.array([-1, 4, 5], np.int32), TensorProto.UINT2).astype(np.int64).tolist() == [3, 0, 1]


def test_out_of_range_to_float_is_infinity():
    got = _cast(_float32([1e5, -1e5, 65504.0]), TensorProto.FLOAT16)
    assert _as_float(got) == [INF, -INF, 65504.0]
    assert _as_float(_cast(np.array([100000, -70000], np.int32), TensorProto.FLOAT16)) == [INF, -INF]


def test_bool_both_ways():
    assert _cast(_float32([0.0, -0.0, NAN, 0.5, -INF]), TensorProto.BOOL).tolist() == [False, False, True, True, True]
    assert _cast(np.array([0, 3, -1], np.int32), TensorProto.BOOL).tolist() == [False, True, True]
    assert _as_float(_cast(np.array([True, False]), TensorProto.FLOAT)) == [1.0, 0.0]
    assert _cast(np.array([True, False]), TensorProto.INT8).tolist() == [1, 0]


X8 = [0.0, -0.0, NAN, INF, -INF, 1e6, -1e6]


@pytest.mark.parametrize(
    ("to", "want"),
    [
        (TensorProto.FLOAT8E4M3FN, [0.0, -0.0, NAN, 448.0, -448.0, 448.0, -448.0]),
        (TensorProto.FLOAT8E4M3FNUZ, [0.0, 0.0, NAN, 240.0, -240.0, 240.0, -240.0]),
        (TensorProto.FLOAT8E5M2, [0.0, -0.0, NAN, 57344.0, -57344.0, 57344.0, -57344.0]),
        (TensorProto.FLOAT8E5M2FNUZ, [0.0, 0.0, NAN, 57344.0, -57344.0, 57344.0, -57344.0]),
    ],
    ids=["e4m3fn", "e4m3fnuz", "e5m2", "e5m2fnuz"],
)
def test_float8_saturate_table(to: int, want: list[float]):
    got = _as_float(_cast(_float32(X8), to))
    assert _same(got, want), got
    ints = _as_float(_cast(np.array([100000, -100000], np.int32), to))  # the table applies to integers too
    assert ints == [want[3], want[4]]


@pytest.mark.parametrize(
    ("to", "want"),
    [
        (TensorProto.FLOAT8E4M3FN, [0.0, -0.0, NAN, NAN, NAN, NAN, NAN]),
        (TensorProto.FLOAT8E4M3FNUZ, [0.0, 0.0, NAN, NAN, NAN, NAN, NAN]),
        (TensorProto.FLOAT8E5M2, [0.0, -0.0, NAN, INF, -INF, INF, -INF]),
        (TensorProto.FLOAT8E5M2FNUZ, [0.0, 0.0, NAN, NAN, NAN, NAN, NAN]),
    ],
    ids=["e4m3fn", "e4m3fnuz", "e5m2", "e5m2fnuz"],
)
def test_float8_no_saturate_table(to: int, want: list[float]):
    got = _as_float(_cast(_float32(X8), to, saturate=0))
    assert _same(got, want), got


def test_float4_table():
    # float4.md: round to nearest even, beyond +-6 and +-inf -> +-6, NaN -> 6, +-0 kept
    got = _as_float(_cast(_float32([NAN, INF, -INF, 7.0, -1e6, 5.0, 0.3, -0.0, 1.25]), TensorProto.FLOAT4E2M1))
    assert _same(got, [6.0, 6.0, -6.0, 6.0, -6.0, 4.0, 0.5, -0.0, 1.0]), got


# ---- undefined by the spec: the documented result ----------------------------------------------
def test_float_to_integer_out_of_range_saturates_and_nan_is_zero():
    x = _float32([-9.0, 8.0, NAN, INF, -INF, 7.9, -8.9, -0.5])
    assert _cast(x, TensorProto.INT4).astype(np.int64).tolist() == [-8, 7, 0, 7, -8, 7, -8, 0]
    assert _cast(x, TensorProto.UINT2).astype(np.int64).tolist() == [0, 3, 0, 3, 0, 3, 0, 0]
    assert _cast(_float32([300.0, -1.5, NAN, 255.9]), TensorProto.UINT8).tolist() == [255, 0, 0, 255]
    assert _cast(_float32([3e9, -3e9, NAN, 2147483520.0]), TensorProto.INT32).tolist() == [
        2147483647, -2147483648, 0, 2147483520,
    ]  # fmt: skip
    assert _cast(np.array([1e19, -1e19, 2.0**62], np.float64), TensorProto.INT64).tolist() == [
        2**63 - 1, -(2**63), 2**62,
    ]  # fmt: skip
    assert _cast(np.array([-9.0, 1e30], ml_dtypes.bfloat16), TensorProto.INT8).tolist() == [-9, 127]


def test_spec_elements_for_the_conformance_runner():
    found = cast_spec_elements(_float32([-9.0, 0.0, 7.0, 8.0, NAN]), np.dtype(ml_dtypes.int4))
    assert found is not None
    assert found.mask.tolist() == [True, False, False, True, True]
    assert found.values[found.mask].astype(np.int64).tolist() == [-8, 7, 0]
    nan4 = cast_spec_elements(_float32([NAN, 1.0]), np.dtype(ml_dtypes.float4_e2m1fn))
    assert nan4 is not None and nan4.mask.tolist() == [True, False] and float(nan4.values[0]) == 6.0
    # the int64 bounds are exact: 2**63 does not fit, -2**63 does
    bounds = cast_spec_elements(np.array([2.0**63, -(2.0**63)], np.float64), np.dtype(np.int64))
    assert bounds is not None and bounds.mask.tolist() == [True, False]
    assert cast_spec_elements(_float32([1.0, -3.0]), np.dtype(np.int8)) is None
    assert cast_spec_elements(np.array([300], np.int32), np.dtype(np.int8)) is None  # defined: wraps
