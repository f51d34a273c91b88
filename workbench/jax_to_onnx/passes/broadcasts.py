"""Broadcasts of symbolic size moved to where they cost nothing: masks of a symbolic batch or sequence.

With static shapes, masks and fills (a causal ``tril``, ``ones_like(logits)``, a ``-inf`` fill broadcast
to the scores) are constants the folder evaluates. With a symbolic batch or sequence, JAX broadcasts
them to the symbolic shape first (``Expand``), and every op after works on the full size at run time.
This pass moves each ``Expand`` below the elementwise ops that read it, which then compute on the small
constant (evaluated here when all their inputs are small constants), until the ``Expand`` reaches an
op that broadcasts anyway and drops out:

- ``f(Expand(v, s), w)`` → ``Expand(f(v, w), s)`` for an elementwise f (broadcasting is associative,
  so the result is the same element for element), when that adds no node;
- ``Unsqueeze(Expand(v, s), leading axes)`` → ``Expand(Unsqueeze(v), s)`` (``Expand`` broadcasts from
  the right, so the leading unit axes stay);
- ``Expand(x, s)`` whose output has x's own shape → x;
- ``And(x, true)``, ``Or(x, false)``, ``Mul(x, 1)``, ``Sub(x, 0)``, integer ``Add(x, 0)`` whose output
  has x's shape → x; ``Cast(Where(c, nonzero, 0), bool)`` → c; JAX's wrap of negative indices
  ``Where(i < 0, i + n, i)`` → i when i is a ``Range`` from 0 (positions ``jnp.arange(T)``).

Shapes are compared with their symbolic dims by name (:mod:`..dims`); nothing is re-associated and no
float result changes. Why hand-written: onnxscript's folder evaluates nodes whose inputs are all
constant, and none of these has constant inputs until the ``Expand`` moved away.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from workbench.jax_to_onnx.dims import broadcast_dims, dims_of
from workbench.jax_to_onnx.ir_values import constant_array, new_initializer
from workbench.jax_to_onnx.passes.attention_layout import annotate_shapes
from workbench.jax_to_onnx.passes.layout import _BROADCASTING, _UNARY
from workbench.jax_to_onnx.provenance import inherit

# results evaluated here at most this many elements (a mask of a few thousand positions)
_EVALUATE_LIMIT = 1 << 16
# rounds over the graph at most: each moves an Expand one or more ops down
_ROUNDS = 8

_EVALUATE: dict[str, Callable[..., np.ndarray]] = {
    "Not": np.logical_not, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
    "Equal": np.equal, "Greater": np.greater, "Less": np.less, "GreaterOrEqual": np.greater_equal,
    "LessOrEqual": np.less_equal, "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Neg": np.negative,
    "Where": np.where, "Max": np.maximum, "Min": np.minimum,
}


def simplify_broadcasts(graph: ir.Graph) -> int:
    """Apply the rewrites of the module docstring until none applies, in place; returns how many."""
    annotate_shapes(graph)  # the values inside handlers' decompositions, typed where their inputs are
    count = 0
    for _ in range(_ROUNDS):
        done = 0
        for node in list(graph):
            if node.graph is None or node.domain != "" or len(node.outputs) != 1:
                continue
            if _drop_identity(graph, node) or _sink_expand(graph, node):
                done += 1
        count += done
        if not done:
            break
    return count


def _bypass(graph: ir.Graph, node: ir.Node, value: ir.Value) -> bool:
    """Replace ``node``'s output by ``value`` and remove ``node``; True (False for a graph output)."""
    if node.outputs[0].is_graph_output():
        return False
    node.outputs[0].replace_all_uses_with(value)
    graph.remove(node, safe=True)
    return True


def _same_type(a: ir.Value, b: ir.Value) -> bool:
    dims = dims_of(a)
    return dims is not None and dims == dims_of(b) and a.dtype == b.dtype


def _uniform(value: ir.Value | None) -> float | bool | None:
    """The one value every element of a constant holds, or None."""
    array = constant_array(value)
    if array is None or array.size == 0:
        return None
    first = array.reshape(-1)[0]
    return first.item() if (array == first).all() else None


def _drop_identity(graph: ir.Graph, node: ir.Node) -> bool:
    """The identities of the module docstring."""
    op, out = node.op_type, node.outputs[0]
    if op == "Expand":
        return _same_type(node.inputs[0], out) and _bypass(graph, node, node.inputs[0])
    if op == "Cast" and node.attributes.get_int("to", 0) == ir.DataType.BOOL:
        where = node.inputs[0].producer()
        if where is None or where.op_type != "Where" or where.domain != "":
            return False
        condition, yes, no = where.inputs
        if _uniform(no) in (0, False) and _uniform(yes) not in (None, 0, False) and _same_type(condition, out):
            return _bypass(graph, node, condition)
        return False
    if op == "Where" and len(node.inputs) == 3:
        # JAX's wrap of negative indices, ``where(i < 0, i + n, i)``, on indices that are never negative
        less = node.inputs[0].producer() if node.inputs[0] is not None else None
        bound = _uniform(less.inputs[1]) if less is not None and less.op_type == "Less" else None
        if (less is not None and less.domain == "" and bound is not None and bound <= 0
                and less.inputs[0] is node.inputs[2]
                and _nonnegative(node.inputs[2]) and _same_type(node.inputs[2], out)):
            return _bypass(graph, node, node.inputs[2])
        return False
    if len(node.inputs) != 2:
        return False
    neutral = {"And": True, "Or": False, "Mul": 1, "Sub": 0}.get(op)
    if op == "Add" and out.dtype is not None and not out.dtype.is_floating_point():
        neutral = 0  # x + 0.0 is not x for x = -0.0
    if neutral is None:
        return False
    sides = [(0, 1)] if op == "Sub" else [(0, 1), (1, 0)]
    for keep, drop in sides:
        value = _uniform(node.inputs[drop])
        if value is not None and value == neutral:
            if _same_type(node.inputs[keep], out):
                return _bypass(graph, node, node.inputs[keep])
    return False


def _nonnegative(value: ir.Value | None) -> bool:
    """Whether every element of ``value`` is >= 0 by construction: a constant, or ``Range`` from a
    non-negative start by a non-negative step (``jnp.arange``), through reshapes, broadcasts and
    integer casts."""
    array = constant_array(value)
    if array is not None:
        return array.size > 0 and bool((array >= 0).all())
    producer = value.producer() if value is not None else None
    if producer is None or producer.domain != "":
        return False
    if producer.op_type == "Range":
        start, delta = constant_array(producer.inputs[0]), constant_array(producer.inputs[2])
        return start is not None and delta is not None and bool((start >= 0).all() and (delta >= 0).all())
    if producer.op_type in ("Unsqueeze", "Squeeze", "Reshape", "Expand", "Identity") or (
        producer.op_type == "Cast" and value.dtype is not None and value.dtype.is_integer()
    ):
        return _nonnegative(producer.inputs[0])
    return False


def _sink_expand(graph: ir.Graph, node: ir.Node) -> bool:
    """``f(Expand(v, s), ...)`` → ``Expand(f(v, ...), s)`` (or ``f(v, ...)`` when that has the output's shape)."""
    op = node.op_type
    if op not in _UNARY and op not in _BROADCASTING and op != "Unsqueeze":
        return False
    operands = node.inputs[:1] if op in ("Unsqueeze", "Cast", "Clip") or op in _UNARY else node.inputs
    expands = [value.producer() for value in operands if value is not None and _is_expand(value.producer())]
    if not expands or len({id(expand.inputs[1]) for expand in expands}) != 1:
        return False
    shape = expands[0].inputs[1]
    out = node.outputs[0]
    if op == "Unsqueeze" and not _leading_axes(node):
        return False
    inputs = [value.producer().inputs[0] if value is not None and value in operands and _is_expand(value.producer())
              else value for value in node.inputs]
    dims, out_dims = _output_dims(node, inputs), dims_of(out) or _output_dims(node, node.inputs)
    if dims is None or out_dims is None:
        return False
    needs_expand = dims != out_dims
    if needs_expand and any(len(expand.outputs[0].uses()) != 1 for expand in expands):
        return False  # an Expand read elsewhere too stays, and a new one would add a node
    result = _evaluated(graph, node, inputs, dims)
    if result is None and not needs_expand:  # the same node reads the unexpanded values
        for index, value in enumerate(inputs):
            if value is not node.inputs[index]:
                node.replace_input_with(index, value)
        _remove_unused(graph, expands)
        return True
    if out.is_graph_output():
        return False
    new_nodes: list[ir.Node] = []
    if result is None:
        moved = ir.Node("", op, inputs, attributes=list(node.attributes.values()), name=f"{node.name}/unexpanded")
        result = moved.outputs[0]
        result.type, result.shape, result.name = out.type, ir.Shape(dims), f"{out.name}/unexpanded"
        new_nodes.append(moved)
    if needs_expand:
        expand = ir.Node("", "Expand", [result, shape], name=f"{node.name}/expand")
        expand.outputs[0].type, expand.outputs[0].shape = out.type, ir.Shape(out_dims)
        new_nodes.append(expand)
        result = expand.outputs[0]
    if new_nodes:
        graph.insert_before(node, new_nodes)
        inherit(new_nodes, node)
    name = out.name
    _bypass(graph, node, result)
    result.name = name if result.producer() is not None else result.name
    _remove_unused(graph, expands)
    return True


def _remove_unused(graph: ir.Graph, nodes: list[ir.Node]) -> None:
    for node in {id(node): node for node in nodes}.values():
        if node.graph is not None and not node.outputs[0].uses() and not node.outputs[0].is_graph_output():
            graph.remove(node, safe=True)


def _is_expand(node: ir.Node | None) -> bool:
    return node is not None and node.op_type == "Expand" and node.domain == ""


def _leading_axes(node: ir.Node) -> bool:
    axes = constant_array(node.inputs[1]) if len(node.inputs) == 2 else None
    return axes is not None and sorted(int(a) for a in axes.reshape(-1)) == list(range(axes.size))


def _output_dims(node: ir.Node, inputs: list[ir.Value | None]) -> list | None:
    shapes = [dims_of(value) for value in inputs if value is not None]
    if not shapes or any(shape is None for shape in shapes):
        return None
    if node.op_type == "Unsqueeze":
        return [1] * constant_array(inputs[1]).size + shapes[0]
    if node.op_type in _UNARY:
        return shapes[0]
    return broadcast_dims(*shapes)


def _evaluated(graph: ir.Graph, node: ir.Node, inputs: list[ir.Value | None], dims: list) -> ir.Value | None:
    """``node``'s op on ``inputs`` evaluated with NumPy into an initializer, when all are small constants."""
    arrays = [constant_array(value) for value in inputs]
    if any(array is None for array in arrays) or any(isinstance(d, str) for d in dims):
        return None
    if int(np.prod(dims, dtype=np.int64)) > _EVALUATE_LIMIT:
        return None
    op, out = node.op_type, node.outputs[0]
    if op == "Unsqueeze":
        result = arrays[0].reshape(dims)
    elif op == "Cast":
        result = arrays[0].astype(out.dtype.numpy())
    elif op in _EVALUATE:
        result = np.asarray(_EVALUATE[op](*arrays))
    else:
        return None
    if out.dtype is None or result.dtype != out.dtype.numpy() or list(result.shape) != dims:
        return None
    return new_initializer(graph, result, f"{out.name}/folded")
