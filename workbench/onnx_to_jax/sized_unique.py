"""``jnp.unique(x, size=n, fill_value=f)`` as jax2onnx writes it: Unique, then its values padded or cut to ``n``.

::

    u = Unique(x, sorted=1)                       # [K]: K depends on the values
    v = Cast(u)                                   # (when the values were widened for Unique)
    c = Expand(Shape(u), [n])                     # [n] copies of K
    s = Where(Less(i, c), i, c)                   # i = Range(0, n): position j, or K past the end
    y = Gather(Concat(v, [f]), s)                 # [n]: the j-th unique value, or the fill value

``y`` has the static shape [n]; only ``u`` does not. :func:`find_sized_uniques` finds the chain (its
values read by nothing else) and the generator writes no code for it but the Gather, which computes the
same values from the unique values padded to the input's length (``jnp.unique`` with a static ``size``)
and their count (emitters/index.py, ``_sized_unique``); a source known at generation time folds as before.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import onnx

from workbench.onnx_to_jax.masked_scatter import is_op
from workbench.onnx_io.describe import value_uses


@dataclass(frozen=True)
class SizedUnique:
    """One chain: what the Gather reads in its static form, and the values it makes dead."""

    output: str  # the Gather's output
    source: str  # the Unique's input
    positions: str  # the positions asked for (the Range)
    fill: str  # the value past the unique ones
    to: int | None  # the Cast's target type after Unique, if any
    unique: str  # Unique's first output: the first node of the chain
    skipped: frozenset[str]  # the outputs of every node of the chain but the Gather

    @property
    def first(self) -> str:
        """The output of the chain's first node (Unique), where the generator decides the chain's form."""
        return self.unique

    @property
    def reads(self) -> str:
        """The value the first node reads: known at generation time, the chain folds to constants instead."""
        return self.source


def find_sized_uniques(nodes: list[onnx.NodeProto], graph_outputs: list[str]) -> dict[str, SizedUnique]:
    """{a value of the chain or the Gather's output: its chain} for every sized-unique chain of ``nodes``
    (one graph, in topological order) whose intermediate values nothing else reads."""
    table = value_uses(nodes, graph_outputs)
    uses, producer = table.reads, table.producer
    found: dict[str, SizedUnique] = {}
    for node in nodes:
        chain = _chain(node, producer, uses)
        if chain is not None:
            found.update((name, chain) for name in (*chain.skipped, chain.output))
    return found


def _chain(gather: onnx.NodeProto, producer: dict[str, onnx.NodeProto], uses: Counter[str]) -> SizedUnique | None:
    if not is_op(gather, "Gather") or len(gather.input) != 2 or _axis(gather) != 0 or not gather.output[0]:
        return None
    concat, where = producer.get(gather.input[0]), producer.get(gather.input[1])
    if concat is None or where is None or not is_op(concat, "Concat") or len(concat.input) != 2 or _axis(concat) != 0:
        return None
    if not is_op(where, "Where") or len(where.input) != 3:
        return None
    less, expand = producer.get(where.input[0]), producer.get(where.input[2])
    if less is None or expand is None or not is_op(less, "Less") or not is_op(expand, "Expand"):
        return None
    if list(less.input) != [where.input[1], where.input[2]]:
        return None
    shape = producer.get(expand.input[0])
    if shape is None or not is_op(shape, "Shape") or shape.attribute:
        return None
    view = concat.input[0]
    cast = producer.get(view)
    to = None
    if cast is not None and is_op(cast, "Cast"):
        to = next((a.i for a in cast.attribute if a.name == "to"), None)
        values = cast.input[0]
    else:
        cast, values = None, view
    unique = producer.get(values)
    if unique is None or not is_op(unique, "Unique") or unique.output[0] != values or not _sorted_flat(unique):
        return None
    if shape.input[0] not in (values, view) or any(o and uses[o] for o in unique.output[1:]):
        return None
    counts = {values: 1 + (shape.input[0] == values), concat.output[0]: 1, where.output[0]: 1,
              less.output[0]: 1, expand.output[0]: 2, shape.output[0]: 1}
    if cast is not None:
        counts[view] = 1 + (shape.input[0] == view)
    if any(uses[name] != count for name, count in counts.items()):
        return None
    return SizedUnique(gather.output[0], unique.input[0], where.input[1], concat.input[1], to, values,
                       frozenset(counts))


def _sorted_flat(node: onnx.NodeProto) -> bool:
    """Whether a Unique sorts its values (``sorted``, default 1) over the flattened input (no ``axis``)."""
    attributes = {a.name: a for a in node.attribute}
    return "axis" not in attributes and (attributes["sorted"].i if "sorted" in attributes else 1) == 1


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)
