"""Equations whose operands are all constants are computed by JAX while lowering, not exported.

A solver's step-size logic, a mask built from ``iota``, index arithmetic on literals: when every
operand of an equation is a constant of the graph, JAX itself evaluates the primitive and the
result becomes one constant. This gives JAX's exact values and keeps multi-node decompositions
(``nextafter``'s bit arithmetic, ``erf_inv``'s polynomials) of constant data out of the graph, where
onnxscript's constant folder would otherwise fold them node by node, at a cost that grows with the
square of the folded chain (a diffrax solve left about 10,000 such nodes, folded in ~50 s).

Not evaluated: equations that read a model weight (weights stay initializers named after their
module path, as the folding pass keeps them), that have effects, that involve PRNG keys or complex
values (exported as real pairs by their own handlers), whose
results have symbolic shapes or more than ``MAX_ELEMENTS`` elements (a large broadcast stays a small
``Expand`` instead of becoming a large initializer).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import onnx_ir as ir

from workbench.jax_to_onnx.complex_numbers import is_complex
from workbench.jax_to_onnx.keys import is_extended_dtype

MAX_ELEMENTS = 1 << 16
# primitives never evaluated here: control flow and calls are lowered (their bodies' constant parts
# are evaluated equation by equation), and the custom-call wrappers keep their own rules
_NEVER = frozenset({"cond", "while", "scan", "jit", "pjit", "custom_jvp_call", "custom_vjp_call", "remat2",
                    "shard_map", "pure_callback", "io_callback", "debug_callback"})


def _static_small(aval: Any) -> bool:
    shape = aval.shape
    if all(type(d) is int for d in shape):  # the common case, in ~1 us instead of the ~4.5 us below
        return math.prod(shape) <= MAX_ELEMENTS
    if not all(isinstance(d, (int, np.integer)) for d in shape):
        return False
    return math.prod(int(d) for d in shape) <= MAX_ELEMENTS  # (np.prod costs ~5 us a call, asked ~500 times)


def _excluded(aval: Any) -> bool:
    """PRNG keys, complex values (carried as real pairs, complex_numbers.py), symbolic or large shapes."""
    try:
        return _excluded_cached(aval)
    except TypeError:  # an aval that cannot be hashed: tested every time
        return _excluded_uncached(aval)


def _excluded_uncached(aval: Any) -> bool:
    if is_extended_dtype(aval.dtype) or is_complex(aval.dtype):
        return True
    return not _static_small(aval)


# an equation's avals repeat (Keras's BatchNorm constants: ~1,500 tests of a few dozen avals per conversion):
# the test is asked once per aval (~0.25 against ~1.7 us); avals are immutable, compared by shape and type
_excluded_cached = functools.lru_cache(maxsize=4096)(_excluded_uncached)


def evaluate(
    eqn: Any, inputs: Sequence[ir.Value | np.ndarray], weights: frozenset[str] | set[str], x64: bool
) -> list[np.ndarray] | None:
    """The equation's outputs as arrays when it can be computed now (see the module docstring), else None.

    An input is a constant value of the graph, or the array of one computed here before (the lowering
    passes those without making them initializers first: builder.PendingConstant).
    """
    if eqn.primitive.name in _NEVER or eqn.effects:
        return None
    if any(_excluded(v.aval) for v in (*eqn.invars, *eqn.outvars)):
        return None
    arrays = []
    for value in inputs:
        if isinstance(value, np.ndarray):  # a constant computed here before, not made an initializer yet
            arrays.append(value)
            continue
        tensor = value.const_value
        if tensor is None or value.name in weights:
            return None
        arrays.append(tensor.numpy())
    exact = _numpy_exact(eqn, arrays)
    if exact is not None:
        results = [exact]
    else:
        try:
            with jax.enable_x64(x64):
                compiled = _compiled(eqn.primitive, eqn.params)
                result = compiled(*arrays) if compiled is not None else eqn.primitive.bind(*arrays, **eqn.params)
        except Exception:  # noqa: BLE001 - not evaluable eagerly (a primitive without an impl): lowered instead
            return None
        results = result if eqn.primitive.multiple_results else [result]
    outputs = [np.asarray(r) for r in results]
    if any(o.dtype != np.dtype(v.aval.dtype) or o.shape != tuple(v.aval.shape) for o, v in zip(outputs, eqn.outvars, strict=True)):
        return None  # a dtype JAX canonicalised differently: keep the handler's exact typing
    return outputs


# Elementwise primitives computed by a ``jax.jit`` of the primitive alone, cached per (primitive, params): what
# JAX's eager ``bind`` does for them (its impl, ``dispatch.apply_primitive``, runs a cached ``jit`` of the one
# primitive), so the result is XLA's, bit for bit, without the eager dispatch's tracing machinery (~140 against
# ~260 us a call; Keras's MobileNetV2 has 52 ``rsqrt``s of its BatchNorm variances). The float ones XLA
# approximates (its rsqrt differs from 1/sqrt in a third of the float32 inputs) cannot go to NumPy.
_JITTED = frozenset({"rsqrt", "sqrt", "exp", "log", "tanh", "logistic", "erf"})


def _compiled(primitive: Any, params: Any) -> Any:
    """The cached ``jax.jit`` of ``primitive`` with ``params`` when it is one of ``_JITTED``, else None."""
    if primitive.name not in _JITTED:
        return None
    try:
        return _jitted(primitive, tuple(sorted(params.items())))
    except TypeError:  # an unhashable parameter: evaluated eagerly
        return None


@functools.lru_cache(maxsize=256)
def _jitted(primitive: Any, params: tuple[tuple[str, Any], ...]) -> Any:
    return jax.jit(functools.partial(primitive.bind, **dict(params)))


# Primitives whose result NumPy computes bit for bit as XLA does (data movement, integer comparisons
# and logic, conversions from integers): computed here, about 20x faster than an eager JAX dispatch,
# which made this module a third of the lowering of a transformer (109 broadcasts of literals in GPT-12).
_COMPARISONS = {"eq": np.equal, "ne": np.not_equal, "ge": np.greater_equal, "gt": np.greater,
                "le": np.less_equal, "lt": np.less, "and": np.bitwise_and, "or": np.bitwise_or}


def _numpy_exact(eqn: Any, arrays: list[np.ndarray]) -> np.ndarray | None:
    name, params = eqn.primitive.name, eqn.params
    out = eqn.outvars[0].aval
    if name == "broadcast_in_dim":
        (operand,) = arrays
        expanded = [1] * len(out.shape)
        for axis, size in zip(params["broadcast_dimensions"], operand.shape, strict=True):
            expanded[axis] = size
        return np.array(np.broadcast_to(operand.reshape(expanded), tuple(out.shape)))
    if name == "transpose":
        return np.ascontiguousarray(np.transpose(arrays[0], params["permutation"]))
    if name == "reshape" and params.get("dimensions") is None:
        # row-major, as lax.reshape without ``dimensions`` is (ViT's 123 bias reshapes: ~15 ms of eager dispatches)
        return np.array(arrays[0].reshape(tuple(out.shape)))
    if name == "iota":
        shape, dimension = tuple(out.shape), params["dimension"]
        line = np.arange(shape[dimension], dtype=out.dtype).reshape([-1 if a == dimension else 1 for a in range(len(shape))])
        return np.array(np.broadcast_to(line, shape))
    # floats are left to JAX: XLA's CPU code flushes subnormals to zero (1e-45 != 0 is False there),
    # and float -> int differs for NaN and out-of-range values
    if name in _COMPARISONS and len(arrays) == 2 and arrays[0].dtype == arrays[1].dtype and arrays[0].dtype.kind in "biu":
        return np.asarray(_COMPARISONS[name](arrays[0], arrays[1]))
    if name == "convert_element_type":
        source, target = arrays[0].dtype, np.dtype(out.dtype)
        if source.kind in "biu" and (target.kind == "f" or target.kind in "iu" and target.itemsize >= source.itemsize):
            return arrays[0].astype(target)
        # float -> bool (x != 0, NaN true) and float -> the same float (a weak-type change) are exact
        # unless a subnormal is present, which XLA's CPU code reads as zero
        if source.kind == "f" and (target == np.dtype(bool) or target == source) and not _has_subnormal(arrays[0]):
            return arrays[0].astype(target)
    if name in _ARITHMETIC and len(arrays) == _ARITHMETIC[name].nin:
        return _float32_arithmetic(_ARITHMETIC[name], arrays, out)
    return None


# IEEE 754's basic operations, correctly rounded by NumPy and by XLA's CPU code alike (Keras's BatchNorm
# computes ``gamma * rsqrt(var + eps)`` and ``beta - mean * ...`` on its constant statistics while lowering:
# 260 eager dispatches in MobileNetV2). Not ``rsqrt``/``sqrt``/``exp``...: XLA approximates those (its
# rsqrt differs from 1/sqrt in ~1/3 of the float32 inputs), and not ``max``/``min`` (NaN and ±0 rules).
_ARITHMETIC: dict[str, np.ufunc] = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
                                     "neg": np.negative}


def _float32_arithmetic(ufunc: np.ufunc, arrays: list[np.ndarray], out: Any) -> np.ndarray | None:
    """``ufunc`` of float32 ``arrays`` when NumPy's result is XLA's bit for bit, else None (left to JAX).

    XLA's CPU code flushes subnormal operands and results to zero (checked: ``1e-45 * 3`` is 0 there, 4e-45
    in NumPy), and NaN payloads may propagate differently: with neither among the operands or the result,
    both compute the correctly rounded IEEE result (a million random operands per op agreed bit for bit).
    """
    if np.dtype(out.dtype) != np.float32 or any(array.dtype != np.float32 for array in arrays):
        return None
    if any(_has_subnormal_or_nan(array) for array in arrays):
        return None
    with np.errstate(all="ignore"):  # inf and division by zero are computed as XLA does; NaN results are refused
        result = np.asarray(ufunc(*arrays))
    return None if _has_subnormal_or_nan(result) else result


@functools.lru_cache(maxsize=32)
def _tiny(dtype: np.dtype) -> Any:
    """The smallest normal magnitude of a float ``dtype`` (``np.finfo`` costs ~0.4 us a call)."""
    return np.finfo(dtype).tiny


def _has_subnormal(array: np.ndarray) -> bool:
    magnitude = np.abs(array)
    return bool(np.any((magnitude > 0) & (magnitude < _tiny(array.dtype))))


def _has_subnormal_or_nan(array: np.ndarray) -> bool:
    magnitude = np.abs(array)
    tiny = _tiny(array.dtype)
    # the common case in one reduction (~2 us instead of ~9 us): the smallest magnitude is normal, so no
    # element is subnormal, zero or NaN (np.minimum propagates NaN, and NaN >= tiny is False)
    if magnitude.size and np.minimum.reduce(magnitude, axis=None) >= tiny:
        return False
    # NaN fails ``magnitude >= tiny`` as subnormals do, and is not 0: one test catches both
    return bool(np.any(~(magnitude >= tiny) & (magnitude != 0)))
