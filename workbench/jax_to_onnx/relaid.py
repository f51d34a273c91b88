"""Values held in another layout while lowering: a convolution's result kept channels-first.

ONNX's ``Conv`` and ``MaxPool`` compute channels-first (NCHW) where Flax, Haiku and Keras hold feature maps
channels-last (NHWC). Lowered one equation at a time, each convolution block read its input through a
Transpose to NCHW and gave its result back through one to NHWC; the channel-layout pass
(:mod:`.passes.layout`) then moved those Transposes through the residual adds, relus and pools until each
met the next convolution's and both cancelled (a ResNet's 45 lowered nodes held 18 such Transposes). Here the
lowering keeps the channels-first value instead: a block or an equation whose result is a Transpose of the
value it computed binds the jaxpr variable to a :class:`Relaid` record, and

- a convolution block reads its input in the layout it needs (:meth:`Reader.laid`): the held value itself
  when its layout is that one, else one Transpose;
- an equation that computes the same thing in any layout (element-wise on operands of one shape, a pooling
  window: :data:`EQUIVARIANT`) and an element-wise block (``Relu``) compute on the held values, their result
  held in the same layout; a mean over some axes reduces the held value's axes (:func:`reduced_perm`);
- anything else reads the jaxpr's layout, made on its first read as one ``Transpose`` after the held value
  (what the layout pass would have left there).

So the graph after lowering is the one the layout pass made of the Transposes, and it finds nothing to move
where every reader keeps the layout. The held value is recorded as the jaxpr variable in another layout
(``passes.layout.RELAID_KEY``), as the pass records the values it moves a Transpose off, for the divergence
locator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import onnx_ir as ir

# primitives whose lowering, given every operand transposed by one permutation (and its per-axis parameters
# permuted alike), is the lowering of the equation transposed by it: element-wise ones (when every operand has
# the result's shape or is a scalar literal) and the pooling windows, whose per-axis parameters are listed
ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "max", "min", "pow", "neg", "abs", "sign", "exp", "log", "log1p", "expm1", "tanh",
    "logistic", "sqrt", "rsqrt", "square", "integer_pow", "floor", "ceil", "round", "sin", "cos", "erf",
})
WINDOW_PARAMETERS: dict[str, tuple[str, ...]] = {
    name: ("window_dimensions", "window_strides", "padding", "base_dilation", "window_dilation")
    for name in ("reduce_window_max", "reduce_window_min", "reduce_window_sum")
}
EQUIVARIANT = ELEMENTWISE | frozenset(WINDOW_PARAMETERS)


@dataclass(slots=True, eq=False)
class Relaid:
    """A jaxpr variable's value held in another layout: ``Transpose(value, perm)`` is the variable's value.

    ``name`` is the name the variable's value takes when it is made (reserved when the record is bound);
    ``restored`` that value once made (:func:`..lowering._read`).
    """

    value: ir.Value
    perm: tuple[int, ...]
    name: str = ""
    restored: ir.Value | None = None


class Reader(Protocol):
    """How a block reads the ONNX values of the jaxpr atoms defined outside it."""

    def __call__(self, atom: Any) -> ir.Value:
        """The atom's value in the jaxpr's layout."""

    def held(self, atom: Any) -> tuple[ir.Value, tuple[int, ...]]:
        """The value as held and the permutation that gives the atom's value (the identity when not relaid)."""

    def constant(self, atom: Any) -> np.ndarray | None:
        """The atom's array when it is a constant of the graph (a weight not made an initializer, which this does
        not make one), else None."""

    def laid(self, atom: Any, perm: Sequence[int]) -> ir.Value:
        """``Transpose(atom, perm)``: the held value when that is its layout, else one Transpose node."""


def is_identity(perm: Sequence[int]) -> bool:
    return all(axis == index for index, axis in enumerate(perm))


def inverse(perm: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(range(len(perm)), key=perm.__getitem__))


def composed(held: Sequence[int], perm: Sequence[int]) -> tuple[int, ...]:
    """The permutation of the held value that gives ``Transpose(Transpose(value, held), perm)``."""
    return tuple(held[axis] for axis in perm)


def held_shape(shape: Sequence[Any], perm: Sequence[int]) -> tuple[Any, ...]:
    """The shape of the value held in layout ``perm`` of a variable of ``shape`` (per-axis lists alike)."""
    return tuple(shape[axis] for axis in inverse(perm))


def reduced_perm(perm: Sequence[int], axes: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the held value's axes to reduce, the permutation of the reduced result) for a reduction without kept
    dims over the variable's ``axes``: the result keeps the other axes in the held order."""
    rank = len(perm)
    held_axes = tuple(sorted(perm[axis] for axis in axes))
    kept_held = [axis for axis in range(rank) if axis not in held_axes]
    kept_var = [perm[axis] for axis in range(rank) if axis not in axes]
    return held_axes, tuple(kept_held.index(axis) for axis in kept_var)


__all__ = ["ELEMENTWISE", "EQUIVARIANT", "WINDOW_PARAMETERS", "Reader", "Relaid", "composed", "held_shape",
           "inverse", "is_identity", "reduced_perm"]
