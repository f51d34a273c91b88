"""Constant equations computed with NumPy while lowering give exactly what JAX's own evaluation gives.

``constant_eval`` computes data movement, comparisons, logic and conversions of constants with
NumPy (an eager JAX dispatch per equation was a third of a transformer's lowering); every such
case is checked here bit for bit against ``primitive.bind`` on the same operands, and float
operands (subnormals, NaN, infinities) are shown to stay with JAX.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from workbench.jax_to_onnx.constant_eval import _numpy_exact

_SPECIAL = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -2.5, 3e38, 1e-45], np.float32)


def _eqns(fn, *args):
    return jax.make_jaxpr(fn)(*args).jaxpr.eqns


CASES = {
    "broadcast_in_dim": (lambda x: lax.broadcast_in_dim(x, (2, 3, 4), (1,)), [np.arange(3, dtype=np.float32)]),
    "broadcast_scalar": (lambda x: lax.broadcast_in_dim(x, (5, 1, 2), ()), [np.float32(-0.0)]),
    "transpose": (lambda x: lax.transpose(x, (2, 0, 1)), [np.arange(24, dtype=np.int32).reshape(2, 3, 4)]),
    "iota": (lambda: lax.broadcasted_iota(jnp.int32, (3, 5), 1), []),
    "iota_float": (lambda: lax.broadcasted_iota(jnp.float32, (4, 2), 0), []),
    "lt_int": (lambda a, b: a < b, [np.arange(6, dtype=np.int32), np.full(6, 3, np.int32)]),
    "eq_bool": (lambda a, b: a == b, [np.array([True, False]), np.array([True, True])]),
    "and_bool": (lambda a, b: a & b, [np.array([True, False, True]), np.array([True, True, False])]),
    "or_int": (lambda a, b: a | b, [np.array([1, 2, 4], np.int32), np.array([3, 0, 4], np.int32)]),
    "bool_to_float": (lambda x: x.astype(jnp.float32), [np.array([True, False])]),
    "int_to_float_rounds": (lambda x: x.astype(jnp.float32), [np.array([16777217, -16777219, 2**31 - 1], np.int32)]),
    "int8_to_int32": (lambda x: x.astype(jnp.int32), [np.array([-128, 127, 0], np.int8)]),
    "uint8_to_int32": (lambda x: x.astype(jnp.int32), [np.array([255, 0], np.uint8)]),
    "reshape": (lambda x: lax.reshape(x, (2, 1, 6)), [np.arange(12, dtype=np.float32).reshape(3, 4)]),
    # floats without subnormals: NaN and infinities are true, -0.0 false, as in XLA
    "normal_float_to_bool": (lambda x: x.astype(bool), [_SPECIAL[:-1]]),
    "float_weak_type": (lambda x: lax.convert_element_type_p.bind(x, new_dtype=np.dtype(np.float32), weak_type=True,
                                                                   sharding=None), [_SPECIAL[:-1]]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_evaluation_matches_jax_bit_for_bit(case):
    fn, args = CASES[case]
    (eqn,) = [e for e in _eqns(fn, *args) if e.primitive.name != "pjit"]
    arrays = [np.asarray(a) for a in args]
    ours = _numpy_exact(eqn, arrays)
    assert ours is not None, f"{case}: expected the NumPy path to take {eqn.primitive.name}"
    theirs = np.asarray(eqn.primitive.bind(*arrays, **eqn.params))
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert ours.tobytes() == theirs.tobytes(), (case, ours, theirs)


@pytest.mark.parametrize("fn", [lambda x: x.astype(jnp.int32), lambda x: x.astype(bool), lambda x: x >= 0.0,
                                lambda x: x.astype(jnp.float16)], ids=["to_int", "to_bool", "ge", "to_float16"])
def test_float_operands_are_left_to_jax(fn):
    """XLA flushes subnormals (1e-45 is 0 for it) and converts NaN/out-of-range floats to ints its own way."""
    eqns = [e for e in _eqns(fn, _SPECIAL) if e.primitive.name != "pjit"]
    assert all(_numpy_exact(eqn, [_SPECIAL] + [np.float32(0)] * (len(eqn.invars) - 1)) is None for eqn in eqns)


def _normal_floats(count: int, seed: int) -> np.ndarray:
    """Random float32 of both signs spread over e^-40..e^40, so products and quotients stay normal numbers."""
    rng = np.random.default_rng(seed)
    return (rng.choice([-1.0, 1.0], count) * rng.uniform(1, 2, count) * np.exp(rng.uniform(-40, 40, count))).astype(np.float32)


_ARITHMETIC = {
    "add": (lambda a, b: a + b, 2),
    "sub": (lambda a, b: a - b, 2),
    "mul": (lambda a, b: a * b, 2),
    "div": (lambda a, b: a / b, 2),
    "neg": (lambda a: -a, 1),
}


@pytest.mark.parametrize("case", sorted(_ARITHMETIC))
def test_float32_arithmetic_matches_jax_bit_for_bit(case):
    """Keras's BatchNorm arithmetic on constant statistics: NumPy gives XLA's correctly rounded result."""
    fn, arity = _ARITHMETIC[case]
    arrays = [_normal_floats(1 << 16, seed) for seed in range(arity)]
    arrays[0][:4] = [np.inf, -np.inf, 0.0, -0.0]  # infinities and signed zeros are computed as XLA does
    if case == "div":
        arrays[1][:4] = [2.0, 3.0, 5.0, 7.0]
    (eqn,) = [e for e in _eqns(fn, *arrays) if e.primitive.name != "pjit"]
    ours = _numpy_exact(eqn, arrays)
    assert ours is not None, f"{case}: normal operands and results should take the NumPy path"
    theirs = np.asarray(eqn.primitive.bind(*arrays, **eqn.params))
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert ours.tobytes() == theirs.tobytes()


def test_scalar_literal_operand_broadcasts_as_in_jax():
    x = _normal_floats(24, 3).reshape(2, 3, 4)
    (eqn,) = [e for e in _eqns(lambda a: a * 0.5, x) if e.primitive.name != "pjit"]
    ours = _numpy_exact(eqn, [x, np.asarray(eqn.invars[1].val, np.float32)])
    assert ours is not None and ours.tobytes() == np.asarray(jnp.asarray(x) * 0.5).tobytes()


@pytest.mark.parametrize("operand", [np.float32(1e-45), np.float32(np.nan)], ids=["subnormal", "nan"])
def test_float32_arithmetic_with_subnormals_or_nan_is_left_to_jax(operand):
    """XLA flushes subnormal operands and results to zero (``1e-45 * 3`` is 0 there) and may spell NaN differently."""
    x = np.array([1.5, operand, 3.0], np.float32)
    (eqn,) = [e for e in _eqns(lambda a, b: a * b, x, x) if e.primitive.name != "pjit"]
    assert _numpy_exact(eqn, [x, x]) is None
    tiny = np.array([1.2e-38, 1.0], np.float32)  # normal operands whose product is subnormal
    assert _numpy_exact(eqn, [tiny, np.array([0.5, 1.0], np.float32)]) is None


def test_rsqrt_and_other_dtypes_are_left_to_jax():
    """XLA approximates rsqrt (it differs from 1/sqrt in about a third of float32 inputs); float16 and int stay too."""
    x = np.array([2.0, 3.0], np.float32)
    (rsqrt,) = [e for e in _eqns(lax.rsqrt, x) if e.primitive.name != "pjit"]
    assert _numpy_exact(rsqrt, [x]) is None
    half = x.astype(np.float16)
    (add_half,) = [e for e in _eqns(lambda a: a + a, half) if e.primitive.name != "pjit"]
    assert _numpy_exact(add_half, [half, half]) is None
    ints = np.array([2**31 - 1, 5], np.int32)
    (add_int,) = [e for e in _eqns(lambda a: a + a, ints) if e.primitive.name != "pjit"]
    assert _numpy_exact(add_int, [ints, ints]) is None


@pytest.mark.parametrize("fn", [lax.rsqrt, lax.sqrt, lax.exp, lax.log, lax.tanh, lax.logistic, lax.erf],
                         ids=["rsqrt", "sqrt", "exp", "log", "tanh", "logistic", "erf"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_jitted_primitives_give_the_eager_dispatch_bit_for_bit(fn, dtype):
    """The cached ``jax.jit`` of one primitive (constant_eval._compiled) computes what its eager ``bind`` does."""
    from workbench.jax_to_onnx.constant_eval import _compiled

    rng = np.random.default_rng(0)
    x = np.concatenate([_SPECIAL, rng.standard_normal(4096) * np.exp(rng.uniform(-30, 30, 4096))]).astype(dtype)
    (eqn,) = [e for e in _eqns(fn, x) if e.primitive.name != "pjit"]
    compiled = _compiled(eqn.primitive, eqn.params)
    assert compiled is not None, eqn.primitive.name
    ours, theirs = np.asarray(compiled(x)), np.asarray(eqn.primitive.bind(x, **eqn.params))
    assert ours.dtype == theirs.dtype == dtype and ours.tobytes() == theirs.tobytes()
    assert _compiled(eqn.primitive, eqn.params) is compiled  # compiled once per primitive and parameters
