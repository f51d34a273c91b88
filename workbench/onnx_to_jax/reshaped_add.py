"""An Add between a Reshape and the Reshape back: ``reshape(reshape(a, s) + m, shape(a))`` as ``a + reshape(m, ...)``.

Swin's shifted-window attention adds its region mask to the attention scores through a 5-D view::

    r = Reshape(scores, (1, windows, heads, n, n))   # scores: (windows, heads, n, n)
    s = Add(r, mask)                                 # mask: (1, windows, 1, n, n)
    y = Reshape(s, (-1, heads, n, n))                # back to the scores' shape

XLA CPU compiles the softmax that follows for the shape it reads its operand through, so the shifted
blocks' softmax kernels differed from the unshifted blocks' of the same stage only by that 5-D
bitcast (Swin-T: 6 of its 142 distinct kernels, docs/onnx_to_jax_corpus.md). Written as one Add at
the scores' own shape, ``y = scores + reshape(broadcast_to(mask, (1, windows, heads, n, n)), shape)``,
the same pairs of numbers are added (the same values, bit for bit) and the stages share their softmax
kernels. :func:`find_reshaped_adds` finds the three nodes before the graph is emitted (the first
Reshape and the Add read by nothing else), and the Reshape emitter asks :func:`reshaped_add_plan`
whether the shapes allow the rewrite; when it takes it, the generator drops the first Reshape's and
the Add's code, which nothing reads any more.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from workbench.onnx_io.describe import value_uses

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class ReshapedAdd:
    """``Reshape(Add(Reshape(source), other) or Add(other, Reshape(source)))``: the values it reads."""

    source: str  # the value reshaped first
    reshaped: str  # the first Reshape's output
    summed: str  # the Add's output
    other: str  # the Add's other operand
    other_first: bool  # Add(other, reshaped) rather than Add(reshaped, other)


def find_reshaped_adds(nodes: list[onnx.NodeProto], graph_outputs: list[str]) -> dict[str, ReshapedAdd]:
    """{the final Reshape's output: the chain} for every Reshape -> Add -> Reshape chain of ``nodes``
    (one graph, in topological order) whose intermediate values nothing else reads."""
    table = value_uses(nodes, graph_outputs)
    uses, producer = table.reads, table.producer
    found = {}
    for node in nodes:
        if not _is(node, "Reshape") or not node.output or not node.output[0]:
            continue
        add = producer.get(node.input[0])
        if add is None or not _is(add, "Add") or len(add.input) != 2 or uses[add.output[0]] != 1:
            continue
        for position in (0, 1):
            first = producer.get(add.input[position])
            other = add.input[1 - position]
            if first is not None and _is(first, "Reshape") and uses[first.output[0]] == 1 and other != first.output[0]:
                found[node.output[0]] = ReshapedAdd(first.input[0], first.output[0], add.output[0], other, position == 1)
                break
    return found


def _is(node: onnx.NodeProto, op_type: str) -> bool:
    return node.op_type == op_type and node.domain in ("", "ai.onnx")


def reshaped_add_plan(target: tuple[int, ...], source: Shape | None, reshaped: Shape | None,
                      summed: Shape | None, other: Shape | None) -> tuple[int, ...] | None:
    """The shape to broadcast the other operand to before reshaping it to ``target``, or None.

    ``target``: the final Reshape's dims; ``source``, ``reshaped``, ``summed``, ``other``: the known
    shapes of the first Reshape's input and output, the Add's output and its other operand. The
    rewrite holds when the final Reshape restores the source's shape exactly and the Add does not
    broadcast the reshaped value itself (its output has the reshaped shape).
    """
    if source is None or reshaped is None or summed is None or other is None:
        return None
    if any(d is None for d in (*source, *reshaped, *summed)):
        return None
    if tuple(source) != tuple(target) or tuple(summed) != tuple(reshaped) or len(other) > len(reshaped):
        return None
    for have, want in zip(reversed(other), reversed(reshaped)):
        if have not in (1, want):
            return None  # unknown or not broadcastable: leave the chain as it is
    return tuple(int(d) for d in reshaped)
