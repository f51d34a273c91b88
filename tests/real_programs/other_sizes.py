"""Arguments at other sizes of a real program's symbolic dimensions.

A file exported with a symbolic batch ``B`` or sequence length ``T`` is served at other sizes than the one it
was traced with; the catalogue's check runs it there too. For each symbol the built arguments give its built
size (a spec dim may also be an affine expression of one symbol, ``8*h``: the symbol's size is read back from
it, and the axis is resized to the expression's value); the sizes tried are the program's own (``Built.sizes``) or the generic pair 1 and the built size + 3.
Arguments at those sizes come from the program (``Built.resize``) or from the generic rule: every leaf whose
spec has a symbolic dimension is drawn afresh at the new shape like its built values (integers within the
built range, so token ids stay in the vocabulary; floats with the built mean and spread); every other leaf
(weights, keys, fixed-size inputs) is kept.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from tests.real_programs.catalogue import Built
from workbench.compat import affine_in_one_symbol, evaluate_dim
from workbench.specs import parse_input_specs


def symbol_sizes(built: Built) -> dict[str, int]:
    """Each symbol of ``built.specs`` with its size in ``built.args`` (the specs' dims must be plain names or
    affine in one symbol, ``8*h``)."""
    specs = parse_input_specs(built.specs).flat()
    leaves = jax.tree_util.tree_leaves(list(built.args))
    assert len(specs) == len(leaves), f"{len(specs)} specs vs {len(leaves)} argument arrays"
    sizes: dict[str, int] = {}
    for index, (spec, leaf) in enumerate(zip(specs, leaves, strict=True)):
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                continue
            affine = affine_in_one_symbol(dim)
            assert affine is not None, (
                f"argument {index} axis {axis}: symbolic dimension {dim!r} is not affine in one symbol; give the "
                "program a resize= that makes its arguments at other sizes")
            name, scale, offset = affine
            size, remainder = divmod(int(np.shape(leaf)[axis]) - offset, scale)
            assert remainder == 0, f"argument {index} axis {axis}: size {np.shape(leaf)[axis]} is not {dim}"
            assert sizes.setdefault(name, size) == size, f"symbol {name}: sizes {sizes[name]} and {size} in the built args"
    return sizes


def size_assignments(built: Built) -> list[dict[str, int]]:
    """The size assignments to check: the i-th takes every symbol's i-th size (1 and built + 3 unless given)."""
    built_sizes = symbol_sizes(built)
    unknown = set(built.sizes) - set(built_sizes)
    assert not unknown, f"sizes given for {sorted(unknown)}, which no spec names"
    choices = {name: tuple(built.sizes.get(name, (1, size + 3))) for name, size in built_sizes.items()}
    count = max((len(c) for c in choices.values()), default=0)
    return [{name: c[min(i, len(c) - 1)] for name, c in choices.items()} for i in range(count)]


def other_arguments(name: str, built: Built) -> Iterator[tuple[Mapping[str, int], Sequence[Any]]]:
    """For each size assignment of ``built``'s symbols, the arguments at those sizes (none without symbols)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for sizes in size_assignments(built):
        if built.resize is not None:
            yield sizes, built.resize(sizes, rng)
        else:
            yield sizes, generic_arguments(built, sizes, rng)


def generic_arguments(built: Built, sizes: Mapping[str, int], rng: np.random.Generator) -> list[Any]:
    """``built.args`` with every leaf of a symbolic spec drawn afresh at ``sizes`` like its built values."""
    specs = parse_input_specs(built.specs).flat()
    leaves, tree = jax.tree_util.tree_flatten(list(built.args))
    fresh = []
    for spec, leaf in zip(specs, leaves, strict=True):
        if all(isinstance(d, int) for d in spec.shape):
            fresh.append(leaf)
            continue
        shape = tuple(d if isinstance(d, int) else int(evaluate_dim(d, sizes)) for d in spec.shape)
        fresh.append(draw_like(np.asarray(leaf), shape, rng))
    return jax.tree_util.tree_unflatten(tree, fresh)


def draw_like(values: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random values of ``shape`` drawn like ``values``: integers in their range, floats with their mean and spread."""
    if values.dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if values.dtype.kind in "iu":
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        return rng.integers(low, high + 1, shape).astype(values.dtype)
    mean, spread = (float(values.mean()), float(values.std())) if values.size else (0.0, 1.0)
    return (mean + (spread or 1.0) * rng.standard_normal(shape)).astype(values.dtype)
