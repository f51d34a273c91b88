"""A scatter of the rows a mask selects, ``ScatterND(x, Gather(i, rows), Gather(u, rows))``, at static shapes.

jax2onnx writes a scatter whose out-of-range indices JAX would drop (``x.at[i].add(u, mode="drop")``,
``lax.scatter*`` with FILL_OR_DROP) as a bounds check and a selection of the rows that pass it::

    keep = And(GreaterOrEqual(i[:, 0], 0), LessOrEqual(i[:, 0], dim - 1))  # [N] (per indexed axis)
    rows = Squeeze(Transpose(NonZero(keep), perm=[1, 0]), axes=[1])       # [K]: the rows kept
    y = ScatterND(x, Gather(i, rows, axis=0), Gather(u, rows, axis=0), reduction=...)

The number of rows kept, K, depends on the values, so the NonZero cannot run under ``jax.jit``; the
result ``y`` has ``x``'s shape whatever K is. Scattering every row in order, with the rows ``keep``
leaves out moved out of range and dropped (``mode="drop"``), writes the same updates to the same places
in the same order: ``y`` for every input, at static shapes. :func:`find_masked_scatters` finds such
chains before a graph is emitted (the NonZero, Transpose, Squeeze and the two Gathers read by nothing
else); the generator then writes no code for those nodes and the ScatterND emitter writes the masked
scatter (emitters/index.py, ``_masked_scatter_nd``), unless the mask is known at generation time (then
the chain folds to constants as before).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.onnx_io.describe import value_uses


@dataclass(frozen=True)
class MaskedScatter:
    """One chain: the values the ScatterND reads in its masked form, and the values it makes dead."""

    output: str  # the ScatterND's output
    keep: str  # the 1-D boolean mask NonZero reads
    indices: str  # the value whose rows the first Gather picks (the ScatterND's indices)
    updates: str  # the value whose rows the second Gather picks (the ScatterND's updates)
    nonzero: str  # NonZero's output: the first node of the chain
    skipped: frozenset[str]  # outputs of NonZero, Transpose, Squeeze and the two Gathers

    @property
    def first(self) -> str:
        """The output of the chain's first node (NonZero), where the generator decides the chain's form."""
        return self.nonzero

    @property
    def reads(self) -> str:
        """The value the first node reads: known at generation time, the chain folds to constants instead."""
        return self.keep


def find_masked_scatters(nodes: list[onnx.NodeProto], graph_outputs: list[str],
                         initializers: dict[str, np.ndarray]) -> dict[str, MaskedScatter]:
    """{a value of the chain or the ScatterND's output: its chain} for every masked-scatter chain of
    ``nodes`` (one graph, in topological order) whose intermediate values nothing else reads.
    ``initializers``: the graph's constant values (the Squeeze's axes)."""
    table = value_uses(nodes, graph_outputs)
    uses, producer = table.reads, table.producer
    found: dict[str, MaskedScatter] = {}
    for node in nodes:
        chain = _chain(node, producer, uses, initializers)
        if chain is not None:
            found.update((name, chain) for name in (*chain.skipped, chain.output))
    return found


def _chain(scatter: onnx.NodeProto, producer: dict[str, onnx.NodeProto], uses: Counter[str],
           initializers: dict[str, np.ndarray]) -> MaskedScatter | None:
    if not is_op(scatter, "ScatterND") or len(scatter.input) != 3 or not scatter.output or not scatter.output[0]:
        return None
    pick_indices, pick_updates = (producer.get(name) for name in scatter.input[1:])
    if not (row_gather(pick_indices) and row_gather(pick_updates)):
        return None
    rows = pick_indices.input[1]
    if pick_updates.input[1] != rows or pick_indices is pick_updates:
        return None
    squeeze = producer.get(rows)
    if squeeze is None or not is_op(squeeze, "Squeeze") or list(squeeze_axes(squeeze, producer, initializers)) != [1]:
        return None
    transpose = producer.get(squeeze.input[0])
    if transpose is None or not is_op(transpose, "Transpose") or _ints(transpose, "perm") != [1, 0]:
        return None
    nonzero = producer.get(transpose.input[0])
    if nonzero is None or not is_op(nonzero, "NonZero"):
        return None
    once = (nonzero.output[0], transpose.output[0], pick_indices.output[0], pick_updates.output[0])
    if any(uses[name] != 1 for name in once) or uses[rows] != 2:
        return None
    skipped = frozenset((*once, rows))
    return MaskedScatter(scatter.output[0], nonzero.input[0], pick_indices.input[0], pick_updates.input[0],
                         nonzero.output[0], skipped)


def row_selection(nonzero: onnx.NodeProto, readers: dict[str, list[onnx.NodeProto]], uses: Counter[str],
                  producer: dict[str, onnx.NodeProto], initializers: dict[str, np.ndarray]) -> str | None:
    """The rows ``Squeeze(Transpose(NonZero(keep), perm=[1, 0]), axes=[1])`` when ``nonzero`` starts that
    chain and nothing else reads its first two values; None otherwise."""
    found = readers.get(nonzero.output[0], [])
    if len(found) != 1 or uses[nonzero.output[0]] != 1:
        return None
    transpose = found[0]
    if not is_op(transpose, "Transpose") or _ints(transpose, "perm") != [1, 0] or uses[transpose.output[0]] != 1:
        return None
    found = readers.get(transpose.output[0], [])
    if len(found) != 1 or not is_op(found[0], "Squeeze") or found[0].input[0] != transpose.output[0]:
        return None
    squeeze = found[0]
    if squeeze_axes(squeeze, producer, initializers) != [1] or not squeeze.output or not squeeze.output[0]:
        return None
    return squeeze.output[0]


def row_gather(node: onnx.NodeProto | None) -> bool:
    """Whether ``node`` is a Gather of rows (axis 0) with one output."""
    if node is None or not is_op(node, "Gather") or len(node.input) != 2 or len(node.output) != 1:
        return False
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    return axis == 0


def squeeze_axes(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto],
                  initializers: dict[str, np.ndarray]) -> list[int]:
    """A Squeeze's axes when known before emission (attribute, initializer or Constant node), else []."""
    if len(node.input) < 2 or not node.input[1]:
        return _ints(node, "axes")
    name = node.input[1]
    if name in initializers:
        return [int(a) for a in np.asarray(initializers[name]).reshape(-1)]
    constant = producer.get(name)
    if constant is not None and is_op(constant, "Constant"):
        value = next((a.t for a in constant.attribute if a.name == "value"), None)
        if value is not None:
            return [int(a) for a in numpy_helper.to_array(value).reshape(-1)]
    return []


def _ints(node: onnx.NodeProto, name: str) -> list[int]:
    """A node's ints attribute ``name``, [] when absent."""
    return next((list(a.ints) for a in node.attribute if a.name == name), [])


def is_op(node: onnx.NodeProto, op_type: str) -> bool:
    """Whether ``node`` is the ONNX-domain op ``op_type``."""
    return node.op_type == op_type and node.domain in ("", "ai.onnx")
