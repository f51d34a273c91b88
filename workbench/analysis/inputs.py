"""Sample inputs for parity checks: random data that respects each input's dtype and meaning.

- symbolic dimensions get a different size per sample (2, 3, 5, ...), never only 1, so a
  model that silently hard-codes a batch size is caught;
- integer inputs that end up as indices of a ``gather`` / ``dynamic_slice`` (an embedding
  lookup, a table read) stay inside the indexed axis; this is found by following the integer
  input through the jaxpr (casts, reshapes, the negative-index fix-up ``jnp.take`` adds)
  down to the equation that indexes with it;
- other integers are small non-negative values, booleans are fair coins, floats are standard normal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.extend import core as jex_core

from workbench.compat import evaluate_dim
from workbench.errors import SpecError

# sizes a symbolic dimension takes in successive samples (offset per symbol so two symbols differ)
SYMBOL_SIZES: tuple[int, ...] = (2, 3, 5, 4, 7, 6)
DEFAULT_INT_HIGH = 5

# primitives through which an integer keeps meaning "an index into the same table"
_INDEX_PRESERVING = frozenset({
    "convert_element_type", "reshape", "broadcast_in_dim", "squeeze", "expand_dims", "transpose",
    "select_n", "add", "sub", "clamp", "concatenate", "slice", "copy", "rem", "max", "min",
})
_CALL_PRIMITIVES = {"jit": "jaxpr", "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "remat2": "jaxpr"}


@dataclass(frozen=True)
class InputPlan:
    """How to fill one flat input: its dtype, its shape (ints and symbol names) and its value range."""

    name: str
    dtype: np.dtype
    shape: tuple[Any, ...]
    int_high: int | None = None  # exclusive upper bound for integer inputs; None when not an index

    def describe(self) -> str:
        bound = f", ints in [0, {self.int_high})" if self.int_high is not None else ""
        return f"{self.name}: {self.dtype}{list(self.shape)}{bound}"


def _dims(shape: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(int(d) if isinstance(d, (int, np.integer)) else d for d in shape)


def index_bounds(closed_jaxpr: Any, first_user_input: int) -> dict[int, int]:
    """For each flat user input (by position) that is used as an index, the exclusive bound of its values."""
    jaxpr = closed_jaxpr.jaxpr
    derived: dict[Any, set[int]] = {}
    for position, var in enumerate(jaxpr.invars[first_user_input:]):
        if np.issubdtype(np.dtype(var.aval.dtype), np.integer):
            derived[var] = {position}
    bounds: dict[int, int] = {}
    _propagate(jaxpr, derived, bounds)
    return bounds


def _sources(derived: dict[Any, set[int]], atoms: Sequence[Any]) -> set[int]:
    found: set[int] = set()
    for atom in atoms:
        if not isinstance(atom, jex_core.Literal):
            found |= derived.get(atom, set())
    return found


def _tighten(bounds: dict[int, int], sources: set[int], bound: Any) -> None:
    if not isinstance(bound, (int, np.integer)) or bound <= 0:
        return  # a symbolic table size: no static bound to respect
    for source in sources:
        bounds[source] = min(bounds.get(source, int(bound)), int(bound))


def _propagate(jaxpr: Any, derived: dict[Any, set[int]], bounds: dict[int, int]) -> None:
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name in _CALL_PRIMITIVES:
            inner = eqn.params[_CALL_PRIMITIVES[name]]
            inner_jaxpr = inner.jaxpr if isinstance(inner, jex_core.ClosedJaxpr) else inner
            for outer, inner_var in zip(eqn.invars, inner_jaxpr.invars, strict=False):
                sources = _sources(derived, [outer])
                if sources:
                    derived[inner_var] = sources
            _propagate(inner_jaxpr, derived, bounds)
            for outer, inner_out in zip(eqn.outvars, inner_jaxpr.outvars, strict=True):
                sources = _sources(derived, [inner_out])
                if sources:
                    derived[outer] = sources
            continue
        if name == "gather":
            operand_shape = eqn.invars[0].aval.shape
            axes = eqn.params["dimension_numbers"].start_index_map
            sizes = eqn.params["slice_sizes"]
            sources = _sources(derived, eqn.invars[1:2])
            for axis in axes:
                dim, size = operand_shape[axis], sizes[axis]
                # a symbolic slice size (``mask[:T, :T]`` of a fixed table) gives no static bound
                if isinstance(dim, (int, np.integer)) and isinstance(size, (int, np.integer)):
                    _tighten(bounds, sources, int(dim) - int(size) + 1)
            continue
        if name == "dynamic_slice":
            operand_shape = eqn.invars[0].aval.shape
            for axis, index in enumerate(eqn.invars[1:]):
                dim, size = operand_shape[axis], eqn.params["slice_sizes"][axis]
                if isinstance(dim, (int, np.integer)) and isinstance(size, (int, np.integer)):
                    _tighten(bounds, _sources(derived, [index]), int(dim) - int(size) + 1)
            continue
        if name in _INDEX_PRESERVING:
            sources = _sources(derived, eqn.invars)
            if sources:
                for out in eqn.outvars:
                    derived[out] = sources


def plan_inputs(traced: Any, input_names: Sequence[str]) -> list[InputPlan]:
    """One :class:`InputPlan` per flat user input of a traced function."""
    flat_specs = traced.specs.flat()
    if len(flat_specs) != len(input_names):
        raise SpecError(f"{len(input_names)} input names for {len(flat_specs)} inputs")
    bounds = index_bounds(traced.closed_jaxpr, traced.num_params)
    plans = []
    for position, (name, spec) in enumerate(zip(input_names, flat_specs, strict=True)):
        dtype = np.dtype(spec.dtype)
        high = bounds.get(position)
        if high is None and (np.issubdtype(dtype, np.integer)):
            high = DEFAULT_INT_HIGH
        plans.append(InputPlan(name, dtype, _dims(spec.shape), high))
    return plans


def symbol_sizes(plans: Sequence[InputPlan], sample: int, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """Concrete sizes of every symbol for one sample; ``overrides`` fixes some (or all) of them."""
    overrides = dict(overrides or {})
    sizes: dict[str, int] = {}
    for plan in plans:
        for dim in plan.shape:
            if isinstance(dim, int):
                continue
            for symbol in sorted(dim.get_vars()):
                if symbol not in sizes:
                    default = SYMBOL_SIZES[(sample + len(sizes)) % len(SYMBOL_SIZES)]
                    sizes[symbol] = int(overrides.get(symbol, default))
    return sizes


def concrete_shape(shape: Sequence[Any], sizes: Mapping[str, int]) -> tuple[int, ...]:
    """Evaluate a shape whose dims may be JAX symbolic expressions (``B``, ``2*T``)."""
    return tuple(int(d) if isinstance(d, int) else int(evaluate_dim(d, sizes)) for d in shape)


def make_sample(plans: Sequence[InputPlan], sizes: Mapping[str, int], rng: np.random.Generator) -> list[np.ndarray]:
    """Random arrays for every flat input, following its plan."""
    arrays = []
    for plan in plans:
        shape = concrete_shape(plan.shape, sizes)
        if plan.dtype == np.dtype(bool):
            arrays.append(rng.integers(0, 2, shape).astype(bool))
        elif np.issubdtype(plan.dtype, np.integer):
            high = plan.int_high if plan.int_high is not None else DEFAULT_INT_HIGH
            arrays.append(rng.integers(0, max(high, 1), shape).astype(plan.dtype))
        elif np.issubdtype(plan.dtype, np.floating) or plan.dtype.kind == "V":  # bfloat16 is kind "V"
            arrays.append(rng.standard_normal(shape).astype(plan.dtype))
        elif np.issubdtype(plan.dtype, np.complexfloating):
            arrays.append((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(plan.dtype))
        else:
            raise SpecError(f"input {plan.name!r}: cannot generate random data of dtype {plan.dtype}; pass inputs=.")
    return arrays


def unflatten_args(traced: Any, flat: Sequence[Any]) -> list[Any]:
    """Flat input arrays back into the positional-argument pytrees the function takes."""
    treedef = jax.tree_util.tree_structure(list(traced.specs.args))
    return jax.tree_util.tree_unflatten(treedef, list(flat))


__all__ = [
    "InputPlan",
    "concrete_shape",
    "index_bounds",
    "make_sample",
    "plan_inputs",
    "symbol_sizes",
    "unflatten_args",
]
