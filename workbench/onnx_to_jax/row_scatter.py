"""jax2onnx's bounds-checked window scatter: the rows NonZero picks, computed for every row, the others dropped.

For a scatter whose updates are windows (``lax.scatter`` with update window dims, ``x.at[i, :, j].add(u)``),
jax2onnx picks the rows in range as in masked_scatter.py but then builds the element indices from them::

    rows = Squeeze(Transpose(NonZero(keep), perm=[1, 0]), axes=[1])          # [K]
    count = Shape(rows)                                                      # [K]: shape arithmetic
    base = Gather(i, rows, axis=0)                                           # [K, depth]
    u = Gather(Reshape(updates, [K, W]), rows, axis=0)                       # [K, W]
    idx = Reshape(Expand(Reshape(Concat(zeros([K, 1]), base[:, 1:2], ...), [K, 1, r]), [K, W, r])
                  + window_offsets, [K * W, r])
    y = ScatterND(x, idx, Reshape(u, [K * W]))

``K`` reaches the shapes of every value after the NonZero. Computed for all ``N`` rows instead (the NonZero
as ``arange(N)``, so ``count`` and every shape fold to constants), each value holds its rows one after the
other, each row computed as the K-row graph computes it, when every node between the NonZero and the
ScatterND keeps rows apart. The ScatterND then scatters every row's block of indices and updates in order
with the blocks of the rows ``keep`` leaves out moved out of range and dropped: the same updates to the same
places in the same order, ``y`` at static shapes. :func:`find_row_scatters` checks on the graph that the
nodes keep rows apart (the ops allowed, the axes they work on, the row count only shaping values, nothing
else reading the chain's values) and :func:`check_row_shapes` on the folded shapes (each row value leads
with a multiple of ``N``: whole leading entries per row; Expand and Add do not broadcast across rows); a
chain that fails the second check is generated as before (``RowScatterRefused``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx

from workbench.errors import WorkbenchError
from workbench.onnx_to_jax.masked_scatter import is_op, row_gather, row_selection, squeeze_axes
from workbench.onnx_io.describe import value_uses

# ops of shape arithmetic on the row count: their outputs are counts too
_COUNT_OPS = frozenset({"Gather", "Squeeze", "Unsqueeze", "Concat", "Mul", "Add", "Sub", "Cast", "Identity",
                        "ReduceProd"})
# ops that move row values without mixing rows (with the checks of _row_step and check_row_shapes)
_ROW_OPS = frozenset({"Gather", "Concat", "Reshape", "Expand", "Unsqueeze", "Squeeze", "Cast", "Identity", "Add"})


class RowScatterRefused(WorkbenchError):
    """A window-scatter chain whose folded shapes do not keep rows apart: generate the module without it."""

    def __init__(self, nonzero: str):
        super().__init__(f"the window scatter after {nonzero!r} does not keep its rows apart")
        self.nonzero = nonzero


@dataclass(frozen=True)
class RowScatter:
    """One chain: the NonZero to run as ``arange(N)``, the nodes whose folded shapes the generator checks
    and the ScatterND that drops the blocks of the rows ``keep`` leaves out."""

    output: str  # the ScatterND's output
    keep: str  # the 1-D boolean mask NonZero reads
    nonzero: str  # NonZero's output
    row_values: frozenset[str]  # the values computed from the rows' Gathers
    row_nodes: tuple[onnx.NodeProto, ...]  # the nodes reading row values, the ScatterND last


def find_row_scatters(nodes: list[onnx.NodeProto], graph_outputs: list[str],
                      initializers: dict[str, np.ndarray]) -> dict[str, RowScatter]:
    """{the NonZero's output and the ScatterND's output: the chain} for every
    window-scatter chain of ``nodes`` (one graph, topological order) that passes the graph checks."""
    table = value_uses(nodes, graph_outputs)
    uses, producer, readers = table.reads, table.producer, table.readers
    found: dict[str, RowScatter] = {}
    for position, node in enumerate(nodes):
        if not is_op(node, "NonZero") or not node.output or not node.output[0]:
            continue
        rows = row_selection(node, readers, uses, producer, initializers)
        chain = None if rows is None else _follow(node, rows, nodes[position + 1:], readers, uses, initializers)
        if chain is not None:
            found.update((name, chain) for name in (chain.nonzero, chain.output))
    return found


def _follow(nonzero: onnx.NodeProto, rows: str, after: list[onnx.NodeProto], readers: dict[str, list],
            uses: Counter[str], initializers: dict[str, np.ndarray]) -> RowScatter | None:
    """The chain from ``rows`` (NonZero -> Transpose -> Squeeze's output) to one ScatterND, or None."""
    origin: dict[str, str] = {}  # row value -> the Gather(., rows) output it is computed from
    counts: set[str] = set()
    for reader in readers.get(rows, []):
        if is_op(reader, "Shape") and list(reader.input) == [rows] and not reader.attribute:
            counts.add(reader.output[0])
        elif row_gather(reader) and reader.input[1] == rows and reader.input[0] != rows:
            origin[reader.output[0]] = reader.output[0]
        else:
            return None
    starts = set(origin)
    scatter, row_nodes = None, []
    for node in after:
        if node.output and node.output[0] in starts:
            continue
        row_in = [n for n in node.input if n in origin]
        count_in = [k for k, n in enumerate(node.input) if n in counts]
        if not row_in and not count_in:
            continue
        if not row_in:
            if is_op(node, "ConstantOfShape") or (is_op(node, "Reshape") or is_op(node, "Expand")) and count_in == [1]:
                continue  # a count shapes a value: uniform (ConstantOfShape) or checked by its reader
            if node.domain not in ("", "ai.onnx") or node.op_type not in _COUNT_OPS:
                return None
            if node.op_type == "Gather" and count_in != [0]:
                return None  # a count picking elements of another value: not shape arithmetic
            counts.update(o for o in node.output if o)
            continue
        if count_in and not ((is_op(node, "Reshape") or is_op(node, "Expand")) and count_in == [1]):
            return None
        if is_op(node, "ScatterND"):
            if scatter is not None or len(node.input) != 3 or node.input[0] in origin or not (
                    node.input[1] in origin and node.input[2] in origin):
                return None
            scatter = node
            row_nodes.append(node)
            continue
        sources = {origin[n] for n in row_in}
        if len(sources) != 1 or not _row_step(node, origin, initializers):
            return None
        origin.update((o, sources.pop()) for o in node.output if o)
        row_nodes.append(node)
    if scatter is None:
        return None
    tracked = set(origin) | counts | {rows}
    if any(uses[name] != len(readers.get(name, [])) for name in tracked):
        return None  # a graph output or a subgraph reads a value of the chain
    return RowScatter(scatter.output[0], nonzero.input[0], nonzero.output[0], frozenset(origin), tuple(row_nodes))


def _row_step(node: onnx.NodeProto, origin: dict[str, str], initializers: dict[str, np.ndarray]) -> bool:
    """Whether ``node`` reads its row value where it cannot mix rows (before the shapes are known)."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in _ROW_OPS or len(node.output) != 1:
        return False
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    if node.op_type == "Gather":
        return node.input[0] in origin and node.input[1] not in origin and axis >= 1
    if node.op_type == "Concat":
        return axis >= 1
    if node.op_type in ("Reshape", "Expand", "Unsqueeze", "Squeeze"):
        if any(n in origin for n in node.input[1:]):
            return False
        if node.op_type in ("Unsqueeze", "Squeeze"):
            axes = squeeze_axes(node, {}, initializers)
            return bool(axes) and all(a >= 1 for a in axes)
        return True
    if node.op_type == "Add":
        return sum(n in origin for n in node.input) == 1
    return True  # Cast, Identity


def check_row_shapes(chain: RowScatter, rows: int, shape_of: Callable[[str], tuple[int | None, ...] | None]) -> bool:
    """The generator's check once shapes are folded: every row value leads with a multiple of ``rows`` (each
    row whole leading entries), an Expand does not broadcast the leading axis and the value an Add brings
    in is the same for every row (it leads with 1 or has a lower rank). ``shape_of(name)``: the known shape."""
    for node in chain.row_nodes[:-1]:
        out = shape_of(node.output[0])
        if out is None or not out or out[0] is None or out[0] % rows:
            return False
        if is_op(node, "Expand"):
            given = shape_of(node.input[0])
            if given is None or len(given) != len(out) or given[0] != out[0]:
                return False
        if is_op(node, "Add"):
            row_value, other = node.input if node.input[0] in chain.row_values else reversed(node.input)
            given, other_shape = shape_of(row_value), shape_of(other)
            if given is None or other_shape is None or len(given) != len(out) or len(other_shape) > len(out):
                return False
            if len(other_shape) == len(out) and other_shape[0] != 1:
                return False
    return True
