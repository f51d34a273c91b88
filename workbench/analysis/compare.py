"""Comparing an onnxruntime array with its JAX counterpart: errors, tolerances, verdict.

Tolerances default by dtype (a float16 model cannot be held to float32 accuracy; integers and
booleans must match exactly). An element matches when ``|onnx - jax| <= atol + rtol * |jax|``
(NumPy's ``allclose`` rule); NaN matches NaN at the same place, infinities must be equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx

# dtype name → (rtol, atol); chosen for single runs of typical layers, not bit-exactness
_DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-9),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
}
_FLOAT8_TOLERANCES = (1.25e-1, 1e-1)


def default_tolerances(dtype: np.dtype) -> tuple[float, float]:
    """(rtol, atol) for comparing values of ``dtype``; (0, 0) for integers and booleans."""
    dtype = np.dtype(dtype)
    if dtype.name in _DEFAULT_TOLERANCES:
        return _DEFAULT_TOLERANCES[dtype.name]
    if dtype.name.startswith("float8"):
        return _FLOAT8_TOLERANCES
    if np.issubdtype(dtype, np.complexfloating):
        return _DEFAULT_TOLERANCES["float64" if dtype.itemsize == 16 else "float32"]
    return (0.0, 0.0)


def is_real_float(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is a real floating-point type: NumPy's, or ml_dtypes' bfloat16 and float8 (kind 'V')."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype.name == "bfloat16" or dtype.name.startswith("float8")


def held_tolerances(dtype: np.dtype, floor: tuple[float, float], scale: float = math.inf) -> tuple[float, float]:
    """(rtol, atol) for values of ``dtype`` in a model computing to ``floor`` (``compute_tolerances``).

    A real float value is held at least to the floor: a bfloat16 network's bfloat16 outputs as loosely as
    its float32 ones. The floor's atol stands for values of magnitude 1 and above; for a value whose largest
    magnitude ``scale`` is below 1 it shrinks with it (never below the dtype's own atol): 5e-2 absolute passed
    any error on outputs of magnitude 1e-2, a bfloat16 model with a negated weight among them. Integers and
    booleans must match exactly whatever the floor.
    """
    rtol, atol = default_tolerances(dtype)
    if is_real_float(dtype):
        rtol, atol = max(rtol, floor[0]), max(atol, floor[1] * min(1.0, scale))
    return rtol, atol


_HALF_TYPES = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}
# a network computed in half precision rounds at every layer: its float32 outputs are held to these
# (a few roundings of the half type at the outputs' scale), not to one rounding
_COMPUTE_TOLERANCES: dict[str, tuple[float, float]] = {"float16": (1e-2, 1e-2), "bfloat16": (5e-2, 5e-2)}


def compute_tolerances(model: onnx.ModelProto) -> tuple[float, float]:
    """The tolerances of the least precise float type ``model`` computes in: (0, 0) for float32 and above.

    A half-precision export (``precision="float16"``) usually keeps float32 inputs and outputs, so
    its outputs' dtype does not say how precise they are: its weights and value types do.
    """
    half = _half_types(model)
    if not half:
        return (0.0, 0.0)
    return max((_COMPUTE_TOLERANCES[name] for name in half), key=lambda pair: pair[0])


def rounding_tolerances(model: onnx.ModelProto) -> tuple[float, float]:
    """One rounding of the least precise float type ``model`` computes in: (0, 0) for float32 and above.

    What the divergence locator holds every float value of a node to at least: a float32 value computed
    from a bfloat16 one (its Cast, a LayerNorm widening it) is no more exact than that value. Looser
    (``compute_tolerances``) would hide real faults: a bfloat16 block whose Dense kernel was scaled by
    1.05 failed parity while every node stayed within 5e-2 of its values' largest magnitude.
    """
    half = _half_types(model)
    if not half:
        return (0.0, 0.0)
    return max((_DEFAULT_TOLERANCES[name] for name in half), key=lambda pair: pair[0])


def _half_types(model: onnx.ModelProto) -> list[str]:
    """The half-precision float types of ``model``'s weights and typed values ("float16", "bfloat16")."""
    graph = model.graph
    types = {tensor.data_type for tensor in graph.initializer}
    types |= {info.type.tensor_type.elem_type for info in graph.value_info if info.type.HasField("tensor_type")}
    return [_HALF_TYPES[t] for t in types if t in _HALF_TYPES]


@dataclass(frozen=True)
class Comparison:
    """How far one ONNX array is from the JAX array it should equal."""

    max_abs_error: float
    max_rel_error: float  # over elements whose reference is larger than atol: where rtol decides
    mismatch_fraction: float
    rtol: float
    atol: float
    problem: str = ""  # "shape", "dtype" or "" when the arrays are comparable

    @property
    def ok(self) -> bool:
        return not self.problem and self.mismatch_fraction == 0.0


def compare_arrays(onnx_value: np.ndarray, jax_value: np.ndarray, rtol: float, atol: float) -> Comparison:
    """Errors of ``onnx_value`` against ``jax_value`` (the reference)."""
    got, want = np.asarray(onnx_value), np.asarray(jax_value)
    if got.shape != want.shape:
        return Comparison(math.inf, math.inf, 1.0, rtol, atol, problem="shape")
    if got.dtype != want.dtype:
        problem = "dtype"
    else:
        problem = ""
    if got.size == 0:
        return Comparison(0.0, 0.0, 0.0, rtol, atol, problem)
    if want.dtype == np.dtype(bool) or got.dtype == np.dtype(bool):
        mismatched = got.astype(bool) != want.astype(bool)
        fraction = float(mismatched.mean())
        return Comparison(float(mismatched.any()), float(mismatched.any()), fraction, rtol, atol, problem)
    got64 = got.astype(np.complex128 if np.iscomplexobj(got) else np.float64)
    want64 = want.astype(np.complex128 if np.iscomplexobj(want) else np.float64)
    both_nan = np.isnan(got64) & np.isnan(want64)
    same_inf = np.isinf(want64) & (got64 == want64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got64 - want64)
        diff = np.where(both_nan | same_inf, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        scale = np.abs(want64)
        # below atol an element is judged by its absolute error: |jax| = 0 made 'max rel 1.76e+305'
        rel = np.where((diff == 0) | (scale <= atol), 0.0, diff / np.maximum(scale, np.finfo(np.float64).tiny))
        mismatched = diff > atol + rtol * np.where(np.isinf(scale), 0.0, scale)
    return Comparison(float(diff.max()), float(rel.max()), float(mismatched.mean()), rtol, atol, problem)


def finite_max_abs(array: np.ndarray) -> float:
    """The largest finite magnitude in ``array`` (0 for an empty or boolean array): the scale of a value."""
    array = np.asarray(array)
    if array.size == 0 or array.dtype == np.dtype(bool):
        return 0.0
    magnitude = np.abs(array.astype(np.complex128 if np.iscomplexobj(array) else np.float64))
    finite = magnitude[np.isfinite(magnitude)]
    return float(finite.max()) if finite.size else 0.0


@dataclass
class NodeVerdict:
    """The worst comparison among one graph node's outputs, as the divergence locators report it.

    Each output is held to ``atol + rtol * scale``, where the scale is the reference value's largest
    finite magnitude: an intermediate deep in a network is judged against its own size, not the
    model outputs'. ``rtol``/``atol`` of ``None`` take the reference dtype's defaults, raised for a float
    to one rounding of the precision the model computes in (a float32 Cast of a bfloat16 value is as
    exact as that value, not as a float32 computation).
    """

    compared: bool = False
    ok: bool = True
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    tolerance: float = math.nan

    def add(
        self, tested: np.ndarray, reference: np.ndarray, rtol: float | None, atol: float | None,
        floor: tuple[float, float] = (0.0, 0.0),
    ) -> bool:
        """Compare one output; returns whether it is within its tolerance.

        ``floor``: the model's ``rounding_tolerances``; a real float output's defaults are raised to it.
        """
        default_rtol, default_atol = held_tolerances(np.asarray(reference).dtype, floor)
        tolerance = (default_atol if atol is None else atol) + (default_rtol if rtol is None else rtol) * finite_max_abs(
            reference
        )
        comparison = compare_arrays(tested, reference, 0.0, tolerance)
        self.compared = True
        self.ok = self.ok and comparison.ok
        if math.isnan(self.tolerance) or comparison.max_abs_error >= self.max_abs_error:
            self.tolerance = tolerance
        self.max_abs_error = max(self.max_abs_error, comparison.max_abs_error)
        self.max_rel_error = max(self.max_rel_error, comparison.max_rel_error)
        return comparison.ok

    @property
    def abs_error(self) -> float:
        """The worst absolute error, NaN when no output of the node was compared."""
        return self.max_abs_error if self.compared else math.nan

    @property
    def rel_error(self) -> float:
        """The worst relative error, NaN when no output of the node was compared."""
        return self.max_rel_error if self.compared else math.nan


__all__ = [
    "Comparison", "NodeVerdict", "compare_arrays", "compute_tolerances", "default_tolerances", "finite_max_abs",
    "held_tolerances", "is_real_float", "rounding_tolerances",
]  # fmt: skip
