"""Strided phases concatenated back together: Concat of ``x[:, o1::s1, o2::s2]`` slices as one transpose.

Swin's patch merging (and YOLOv5's Focus layer, space-to-depth written by hand) is exported as Slice
nodes with steps, one chain per phase of a 2x2 grid, and a Concat of the phases along the channels::

    x0 = x[:, 0::2, 0::2]; x1 = x[:, 1::2, 0::2]; x2 = x[:, 0::2, 1::2]; x3 = x[:, 1::2, 1::2]
    y = concat([x0, x1, x2, x3], axis=-1)

Written so, XLA CPU compiles a kernel per strided slice (their offsets differ, so it cannot share
them) and copies them into the concatenation. When the phases cover the grid exactly once, ``y`` is
a reshape of ``x`` that splits each strided axis into (positions, phase), a transpose that moves the
phase axes in front of the concatenation axis, and a reshape back: one copy. The generator notes
every Slice whose static starts, ends and steps select one phase of its input (:func:`phase_of_slice`,
chains of them too), and the Concat emitter asks :func:`phase_concat_plan` whether its inputs are
such a grid in an order a transpose gives.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.helpers import runtime_helper

# ONNX Slice ends at or past this mean "to the end" (exporters write INT64_MAX)
_TO_THE_END = 2**62


@dataclass(frozen=True)
class Phase:
    """A value that is ``source`` sliced ``start::step`` along each of ``axes`` (and whole elsewhere)."""

    source: str
    axes: tuple[int, ...]  # ascending
    steps: tuple[int, ...]
    starts: tuple[int, ...]


def _slice_phase(starts, ends, axes, steps, shape) -> dict[int, tuple[int, int]] | None:
    """{axis: (start, step)} when the slice takes one phase along each sliced axis, else None."""
    if shape is None:
        return None
    rank = len(shape)
    steps = [1] * len(starts) if steps is None else list(steps)
    axes = list(range(len(starts))) if axes is None else list(axes)
    phases: dict[int, tuple[int, int]] = {}
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if not -rank <= axis < rank:
            return None
        axis %= rank
        dim = shape[axis]
        if dim is None or step < 1 or axis in phases:
            return None
        start = start + dim if start < 0 else start
        if end < _TO_THE_END and (end + dim if end < 0 else end) < dim:
            return None  # stops before the end: not a whole phase
        if step == 1:
            if start != 0:
                return None
            continue  # the whole axis
        if not 0 <= start < step or dim % step:
            return None
        phases[axis] = (start, step)
    return phases


def phase_of_slice(source: str, parent: Phase | None, starts, ends, axes, steps,
                   shape: tuple[int | None, ...] | None) -> Phase | None:
    """The phase a Slice of ``source`` (static ``starts``... on an input of ``shape``) takes, if it is one.

    ``parent``: the phase ``source`` itself is (a chain of Slices), or None. The result names the
    first unsliced value; each axis may be strided once along the chain.
    """
    phases = _slice_phase(starts, ends, axes, steps, shape)
    if not phases:
        return None
    if parent is not None:
        if set(parent.axes) & set(phases):
            return None
        phases.update(zip(parent.axes, zip(parent.starts, parent.steps)))
        source = parent.source
    ordered = sorted(phases)
    return Phase(source, tuple(ordered), tuple(phases[a][1] for a in ordered), tuple(phases[a][0] for a in ordered))


Plan = tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # source, axes, steps, order


def phase_concat_plan(parts: list[Phase | None], axis: int, rank: int) -> Plan | None:
    """``(source, axes, steps, order)`` when concatenating ``parts`` along ``axis`` is one transpose.

    That is when every part is a phase of the same source along the same axes (not ``axis``), each
    phase appears once, and their order is the row-major order of the phase offsets over the axes
    taken in ``order`` (the slowest first).
    """
    if not parts or any(p is None for p in parts):
        return None
    first = parts[0]
    if not -rank <= axis < rank:
        return None
    axis %= rank
    if axis in first.axes:
        return None
    if any((p.source, p.axes, p.steps) != (first.source, first.axes, first.steps) for p in parts):
        return None
    if len(parts) != int(np.prod(first.steps)) or len(parts) < 2:
        return None
    offsets = [dict(zip(p.axes, p.starts)) for p in parts]
    step_of = dict(zip(first.axes, first.steps))
    for order in itertools.permutations(first.axes):
        grid = [dict(zip(order, combo)) for combo in itertools.product(*(range(step_of[a]) for a in order))]
        if grid == offsets:
            return first.source, first.axes, first.steps, order
    return None


@runtime_helper
def _phase_concat(x, axes, steps, order, axis):
    """``concat([x[phase] for phase in grid(order)], axis)`` for the phases ``x[..., o::s, ...]`` along ``axes``."""
    split, names = [], []
    for j, dim in enumerate(x.shape):
        if j in axes:
            step = steps[axes.index(j)]
            split += [dim // step, step]
            names += [("at", j), ("phase", j)]
        else:
            split.append(dim)
            names.append(("at", j))
    target = []
    for j in range(x.ndim):
        if j == axis:
            target += [("phase", a) for a in order]
        target.append(("at", j))
    grid = int(np.prod(steps))
    out = [dim // steps[axes.index(j)] if j in axes else dim * (grid if j == axis else 1)
           for j, dim in enumerate(x.shape)]
    return jnp.reshape(jnp.transpose(jnp.reshape(x, split), [names.index(t) for t in target]), out)
