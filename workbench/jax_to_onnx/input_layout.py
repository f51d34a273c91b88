"""``to_onnx(..., input_layout="NCHW")``: graph inputs that take channels-first data for a channels-last model.

Flax models take images as NHWC; ONNX users (and torch.onnx exports) mostly feed NCHW. With
``input_layout="NCHW"`` the exported graph input is the JAX input with its channel (last) axis moved
to position 1; a Transpose back to NHWC is placed right after the input, and the layout pass
(:mod:`workbench.jax_to_onnx.passes.layout`) then cancels it against the Transpose in front of the
first convolution, so a CNN exported this way has no Transpose at its input.

The option is a layout string (``"NCHW"``, ``"NCW"``, ``"NCDHW"``: ``N``, ``C``, then one letter per
spatial axis) applied to every input of that rank, or a sequence with one entry (a layout string or
``None``) per flattened graph input. Channels-last strings (``"NHWC"``) leave an input as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx_ir as ir

from workbench.errors import SpecError
from workbench.jax_to_onnx.builder import GraphBuilder, ir_shape

InputLayout = str | Sequence[str | None] | None


def _channels_first(layout: str, what: str) -> bool:
    """True for ``NC...`` layouts, False for ``N...C``; SpecError for anything else."""
    text = layout.upper() if isinstance(layout, str) else ""
    letters = text[1:-1] if text.endswith("C") else text[2:]
    valid = (
        len(text) >= 3 and text[0] == "N" and text.count("C") == 1 and (text[1] == "C" or text[-1] == "C")
        and letters.isalpha() and len(set(letters)) == len(letters) and "N" not in letters
    )
    if not valid:
        raise SpecError(
            f"{what}: expected a layout such as 'NCHW' (channels-first) or 'NHWC' (channels-last), got {layout!r}."
        )
    return text[1] == "C"


def input_permutations(option: InputLayout, avals: Sequence[Any]) -> list[list[int] | None]:
    """Per graph input: the permutation from the JAX (channels-last) input to the ONNX input, or None."""
    if option is None:
        return [None] * len(avals)
    if isinstance(option, str):
        rank = len(option)
        first = _channels_first(option, "input_layout")
        if not any(len(aval.shape) == rank for aval in avals):  # a layout that would silently apply to nothing
            raise SpecError(
                f"input_layout={option!r} applies to the inputs of rank {rank}, and no input has that rank (ranks "
                f"{[len(aval.shape) for aval in avals]}); give the layout of the images' rank ('NCHW' for 4-D "
                "inputs) or one entry per input."
            )
        return [_to_first(rank) if first and len(aval.shape) == rank else None for aval in avals]
    entries = list(option)
    if len(entries) != len(avals):
        raise SpecError(f"input_layout: expected one entry per graph input ({len(avals)}), got {len(entries)}.")
    perms: list[list[int] | None] = []
    for index, (entry, aval) in enumerate(zip(entries, avals, strict=True)):
        if entry is None:
            perms.append(None)
            continue
        what = f"input_layout[{index}]"
        first = _channels_first(entry, what)
        if len(entry) != len(aval.shape):
            raise SpecError(f"{what}: layout {entry!r} has rank {len(entry)} but the input has shape {aval.shape}.")
        perms.append(_to_first(len(entry)) if first else None)
    return perms


def _to_first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def relayout_inputs(
    builder: GraphBuilder, inputs: list[ir.Value], avals: Sequence[Any], perms: Sequence[list[int] | None]
) -> list[ir.Value]:
    """Replace each input with a permutation by a channels-first input feeding a Transpose back; returns the inputs.

    The new input takes the original's name; the Transpose goes first in the graph.
    """
    result: list[ir.Value] = []
    prologue: list[ir.Node] = []
    for value, aval, perm in zip(inputs, avals, perms, strict=True):
        if perm is None:
            result.append(value)
            continue
        name = value.name
        value.name = builder.state.fresh(f"{name}/channels_last")
        first = ir.Value(name=name, type=value.type, shape=ir_shape([aval.shape[a] for a in perm]))
        back = [int(i) for i in sorted(range(len(perm)), key=perm.__getitem__)]
        node = ir.Node("", "Transpose", [first], attributes=[ir.AttrInt64s("perm", back)], outputs=[value],
                       name=builder.state.fresh_node(f"{name}/to_channels_last"))
        prologue.append(node)
        result.append(first)
    builder.nodes[:0] = prologue
    return result
