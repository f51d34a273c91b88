"""The options ``wb.parity`` and ``wb.locate_divergence`` share, checked where the user passes them.

Tolerances, the input generator's seed and ``sizes=`` (fixed sizes of symbolic dimensions) reach
NumPy deep inside a run, which answered a careless value with its own words (``SeedSequence expects
int``, ``negative dimensions are not allowed``, a ``MemoryError`` for 21.8 TiB) or not at all (a
negative tolerance, a misspelled dimension name). Each check here raises a :class:`~workbench.errors.SpecError`
naming the argument, what it got and what it takes.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from workbench.errors import SpecError
from workbench.limits import MAX_TENSOR_BYTES


def check_tolerance(name: str, value: Any, *, none_means: str | None = "the default by dtype") -> None:
    """``rtol`` / ``atol``: a finite number >= 0, or ``None`` where ``none_means`` says what it stands for."""
    if value is None and none_means is not None:
        return
    if value is None or isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        alternative = f" (or None for {none_means})" if none_means is not None else ""
        raise SpecError(f"{name}: expected a finite number >= 0{alternative}, got {value!r}.")


def check_seed(seed: Any) -> None:
    """The input generator's seed: an int >= 0 (NumPy's ``default_rng`` takes no other)."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise SpecError(f"seed: expected an int >= 0 (the random inputs' seed), got {seed!r}.")


def check_sizes(sizes: Any) -> None:
    """``sizes``: ``None`` or a mapping of dimension names to ints >= 0, e.g. ``{"batch": 8}``."""
    if sizes is None:
        return
    if not isinstance(sizes, Mapping):
        raise SpecError(f'sizes: expected a dict of symbolic dimension names to sizes, e.g. {{"batch": 8}}, got {type(sizes).__name__}.')
    for name, size in sizes.items():
        if not isinstance(name, str):
            raise SpecError(f"sizes: keys are dimension names (str), got {name!r}.")
        if isinstance(size, bool) or not isinstance(size, Integral) or size < 0:
            raise SpecError(f"sizes[{name!r}]: expected an int >= 0, got {size!r}.")


def check_options(*, rtol: Any, atol: Any, seed: Any, sizes: Any) -> None:
    """The checks above, for the keyword arguments ``wb.parity`` and ``wb.locate_divergence`` share."""
    check_tolerance("rtol", rtol)
    check_tolerance("atol", atol)
    check_seed(seed)
    check_sizes(sizes)


def refuse_sizes_beside_inputs(sizes: Mapping[str, int] | None) -> None:
    """``sizes`` given beside concrete inputs: they fix every dimension, so ``sizes`` would be ignored."""
    if sizes:
        raise SpecError(
            f"sizes={dict(sizes)!r}: sizes are for generated inputs, and the inputs given fix every dimension; "
            "leave sizes out, or pass inputs=None (or input specs) to generate inputs of those sizes."
        )


def check_size_names(sizes: Mapping[str, int] | None, known: Collection[str], where: str) -> None:
    """Every name in ``sizes`` is a symbolic dimension of ``where`` (a misspelled name was ignored)."""
    unknown = sorted(set(sizes or {}) - set(known))
    if unknown:
        named = f"its symbolic dimensions are {sorted(known)}" if known else "it has no symbolic dimension"
        raise SpecError(f"sizes: {unknown} not a symbolic dimension of {where}; {named}.")


def check_generated_bytes(shapes: Sequence[tuple[str, tuple[int, ...], np.dtype]], sizes: Mapping[str, int] | None) -> None:
    """Random inputs of these ``(name, shape, dtype)`` stay within :data:`~workbench.limits.MAX_TENSOR_BYTES` each."""
    for name, shape, dtype in shapes:
        total = math.prod(shape) * np.dtype(dtype).itemsize
        if total > MAX_TENSOR_BYTES:
            raise SpecError(
                f"sizes={dict(sizes or {})!r}: the random input {name!r} of shape {list(shape)} would be {total:,} bytes, "
                f"over the limit of {MAX_TENSOR_BYTES:,}; give smaller sizes."
            )


__all__ = [
    "check_generated_bytes", "check_options", "check_seed", "check_size_names", "check_sizes", "check_tolerance",
    "refuse_sizes_beside_inputs",
]  # fmt: skip
