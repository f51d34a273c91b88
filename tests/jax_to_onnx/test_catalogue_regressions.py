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


# JAX on CPU refuses subset_by_index; its meaning (the eigen/singular triplets at those sorted positions,
# what the TPU kernel returns) is the full decomposition sliced, which is the reference here.
_SYMMETRIC = np.array([[4.0, 1.0, -2.0, 0.5], [1.0, 3.0, 0.0, 1.5], [-2.0, 0.0, -1.0, 2.0], [0.5, 1.5, 2.0, 5.0]],
                      np.float32)


@pytest.mark.parametrize("start, end", [(1, 2), (0, 3), (2, 4)])
def test_eigh_subset_by_index_is_the_slice_of_all_eigenpairs(start, end):
    def subset(a):
        return lax.linalg.eigh(a, subset_by_index=(start, end))

    model = wb.to_onnx(subset, [_SYMMETRIC])
    vectors, values = run_onnx(model, [_SYMMETRIC])
    all_values, all_vectors = np.linalg.eigh(_SYMMETRIC.astype(np.float64))
    np.testing.assert_allclose(values, all_values[start:end], rtol=1e-5, atol=1e-5)
    expected = all_vectors[:, start:end]
    signs = np.sign(np.sum(vectors * expected, axis=0))  # eigenvectors are defined up to sign
    np.testing.assert_allclose(vectors * signs, expected, rtol=1e-4, atol=1e-5)


def test_eigh_of_catalogue_two_by_two_top_eigenvalue():
    a = np.array([[5.0, 0.0], [1.0, 2.0]], np.float32)  # not symmetric: lax.linalg.eigh symmetrizes it first
    model = wb.to_onnx(lambda x: lax.linalg.eigh(x, lower=True, subset_by_index=(1, 2))[1], [a])
    (values,) = run_onnx(model, [a])
    full = np.asarray(lax.linalg.eigh(a, lower=True)[1])
    np.testing.assert_allclose(values, full[1:], rtol=1e-6)


@pytest.mark.parametrize("compute_uv", [True, False])
def test_svd_subset_by_index_is_the_slice_of_all_triplets(compute_uv):
    a = _RNG.standard_normal((5, 3)).astype(np.float32)

    def subset(x):
        return lax.linalg.svd(x, full_matrices=False, compute_uv=compute_uv, subset_by_index=(1, 3))

    model = wb.to_onnx(subset, [a])
    got = run_onnx(model, [a])
    u, s, vh = np.linalg.svd(a.astype(np.float64), full_matrices=False)
    got_s = got[1] if compute_uv else got[0]  # lax.linalg.svd returns (u, s, vh), or s alone
    np.testing.assert_allclose(got_s, s[1:3], rtol=1e-5)
    if compute_uv:
        got_u, got_vh = got[0], got[2]
        signs = np.sign(np.sum(got_u * u[:, 1:3], axis=0))
        np.testing.assert_allclose(got_u * signs, u[:, 1:3], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got_vh * signs[:, None], vh[1:3], rtol=1e-4, atol=1e-5)


def test_subset_by_index_out_of_range_is_refused_clearly():
    with pytest.raises(wb.WorkbenchError, match=r"subset_by_index=\(2, 5\)"):
        wb.to_onnx(lambda x: lax.linalg.eigh(x, subset_by_index=(2, 5)), [_SYMMETRIC])


# ----------------------------------------------------------------------------- modules that read weights concretely
def test_module_reading_an_array_with_numpy_traces_and_keeps_the_other_names():
    """Like jax2onnx's DINOv3 example: a buffer read with np.asarray works under jax.jit (the module is closed
    over); lifting it into a traced parameter must not break that."""
    import equinox as eqx
    import jax.numpy as jnp

    class RotaryScale(eqx.Module):
        weight: jax.Array
        periods: jax.Array

        def __call__(self, x):
            periods = np.asarray(self.periods, dtype=np.float32)  # a concrete value, as a NumPy array
            angles = np.outer(np.arange(x.shape[-1], dtype=np.float32), 1.0 / periods).sum(axis=1)
            return (x @ self.weight) * jnp.cos(jnp.asarray(angles))

    module = RotaryScale(weight=jnp.asarray(_RNG.standard_normal((4, 4)), jnp.float32),
                         periods=jnp.asarray([2.0, 5.0, 11.0], jnp.float32))
    x = _RNG.standard_normal((3, 4)).astype(np.float32)
    model = wb.to_onnx(module, [("B", 4)])
    (got,) = run_onnx(model, [x])
    np.testing.assert_allclose(got, np.asarray(module(x)), rtol=1e-5, atol=1e-6)
    assert "weight" in {t.name for t in model.graph.initializer}  # the weights it does not read stay named


def test_partial_bound_flag_read_by_python_if_stays_a_constant():
    """jax2onnx's eqx_dropout_dynamic_inference: ``inference`` bound as a NumPy bool, read by ``if``."""
    import functools

    import equinox as eqx

    dropout = eqx.nn.Dropout(p=0.5)

    def fn(x, inference, key=None):
        return dropout(x, key=key, inference=inference) * 2.0

    x = _RNG.standard_normal((8,)).astype(np.float32)
    model = wb.to_onnx(functools.partial(fn, inference=np.array(True)), [(8,)])
    (got,) = run_onnx(model, [x])
    np.testing.assert_allclose(got, x * 2.0, rtol=1e-6)


def test_input_needed_as_a_concrete_value_is_named_with_the_remedy():
    import jax.numpy as jnp

    def count_up(stop):
        return jnp.arange(stop) * 2.0

    with pytest.raises(wb.WorkbenchError) as caught:
        wb.to_onnx(count_up, [()])
    message = str(caught.value)
    assert "needs the value of input 0 ('stop', float32[])" in message
    assert "functools.partial" in message and "close over it" in message
    assert "flat_pure" not in message  # the tracer's internal wrapper is not the user's function


def test_data_dependent_shape_is_reported_as_needing_a_concrete_value():
    import jax.numpy as jnp

    with pytest.raises(wb.WorkbenchError, match=r"needs the value of input 0 \('x', float32\[3, 4\]\) as a concrete"):
        wb.to_onnx(lambda x: jnp.compress(x[:, 0] > 0, x, axis=0), [(3, 4)])
