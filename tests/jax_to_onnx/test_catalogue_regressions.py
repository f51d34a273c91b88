"""Regressions found by running jax2onnx's testcase catalogue (tests/benchmarks/jax2onnx_catalogue.py).

What the handler registry's testcases cannot see: bit-exact results (the registry compares values, so
-0.0 == +0.0 there), and error messages.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax import lax

import workbench as wb
from tests.support.harness import run_onnx

_RNG = np.random.default_rng(7)
# every kind of float32 bit pattern: normals, subnormals, zeros, infinities and NaNs of both signs
_RANDOM_F32 = _RNG.integers(0, 2**32, 4000, dtype=np.uint64).astype(np.uint32).view(np.float32)


def _same_bits(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Elementwise: identical bit patterns, or both NaN (the NaN payload is not compared)."""
    width = {4: np.uint32, 8: np.uint64}[expected.dtype.itemsize]
    return (got.view(width) == expected.view(width)) | (np.isnan(got) & np.isnan(expected))


@pytest.mark.parametrize("exponent_bits, mantissa_bits", [(5, 10), (8, 7), (4, 3), (2, 1), (3, 0), (7, 23)])
def test_reduce_precision_is_bit_exact_with_jax(exponent_bits, mantissa_bits):
    def fn(x):
        return lax.reduce_precision(x, exponent_bits=exponent_bits, mantissa_bits=mantissa_bits)

    model = wb.to_onnx(fn, [jax.ShapeDtypeStruct(_RANDOM_F32.shape, np.float32)])
    (got,) = run_onnx(model, [_RANDOM_F32])
    expected = np.asarray(jax.jit(fn)(_RANDOM_F32))
    wrong = ~_same_bits(got, expected)
    assert not wrong.any(), f"{wrong.sum()} differ, e.g. {_RANDOM_F32[wrong][:3]} -> {got[wrong][:3]} vs {expected[wrong][:3]}"


def test_bitcast_to_float_keeps_negative_zero():
    bits = np.array([0x80000000, 0x00000000, 0x80000001, 0xFF800000], np.uint32)
    model = wb.to_onnx(lambda b: lax.bitcast_convert_type(b, np.float32), [bits])
    (got,) = run_onnx(model, [bits])
    assert np.array_equal(got.view(np.uint32), bits)
