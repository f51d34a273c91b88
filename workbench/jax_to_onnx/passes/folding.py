"""Constant folding: subgraphs that depend only on constants or weights, and weights laid out for their consumer.

Weights keep their module-path names through layout changes (``conv1.kernel`` stored OIHW for the
Conv that reads it); arithmetic on weights alone (BatchNorm's ``scale * rsqrt(var + eps)``) is
evaluated at export time into an initializer named after the value it replaces (``bn1/mul``).
A folded tensor may not be much larger than what it replaces (:data:`FOLD_GROWTH_LIMIT`) and all
folding together adds at most :data:`FOLD_TOTAL_LIMIT` bytes, which keeps a model that fits in a
2 GB protobuf from outgrowing it through folding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir
from onnxscript import optimizer as onnxscript_optimizer

from workbench.jax_to_onnx.constant_pool import ConstantPool
from workbench.jax_to_onnx.ir_values import constant_array, own_array, transposed_copy

# onnxscript folds nodes whose inputs are all constants up to this many elements each (its default,
# 8192, leaves e.g. a causal mask broadcast over 8 heads of 64x64 in the graph)
FOLD_INPUT_LIMIT = 1 << 16
# a node reading weights is folded when its result is at most this many bytes larger than the inputs it
# frees (a weight read elsewhere too, e.g. a tied embedding, stays and its folded copy counts in full)
FOLD_GROWTH_LIMIT = 1 << 16
# and all such folds of one export add at most this many bytes
FOLD_TOTAL_LIMIT = 256 << 20


def fold_constants(model: ir.Model, weights: frozenset[str]) -> None:
    """Evaluate constant subgraphs (masks, iotas, index arithmetic, arithmetic on weights) with
    onnxscript's folder, in place.

    Layout ops on a weight are folded first by :func:`fold_weight_layouts` so the weight keeps its
    name; other nodes reading weights are folded within the size limits above. Equal folded
    constants (the same causal mask in every block) are then stored once.
    """
    fold_weight_layouts(model.graph, weights, any_consumer=True)
    added = 0

    def should_fold(node: ir.Node) -> bool | None:
        nonlocal added
        if not any(value is not None and value.name in weights for value in node.inputs):
            return None
        freed = {
            id(value): value.const_value.nbytes
            for value in node.inputs
            if value is not None and value.const_value is not None and len(value.uses()) == 1
        }
        growth = _output_bytes(node) - sum(freed.values())
        if growth > FOLD_GROWTH_LIMIT or added + max(growth, 0) > FOLD_TOTAL_LIMIT:
            return False
        added += max(growth, 0)
        return True

    fold_elementwise(model.graph, should_fold)
    onnxscript_optimizer.fold_constants(model, input_size_limit=FOLD_INPUT_LIMIT, should_fold=should_fold)
    _share_equal_constants(model.graph, weights)


# Elementwise ops whose NumPy ufunc is what ONNX's reference kernel calls (so the result is the same
# bits), for floating-point operands of one dtype; Div only for floats (ONNX truncates integers).
_UFUNCS: dict[str, np.ufunc] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Neg": np.negative,
    "Abs": np.absolute, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal, "Exp": np.exp, "Log": np.log,
    "Max": np.maximum, "Min": np.minimum,
}
# onnxscript's own bound on a folded output when no rule decides (its default)
_FOLD_OUTPUT_LIMIT = 512 * 512


def fold_elementwise(graph: ir.Graph, should_fold: Callable[[ir.Node], bool | None]) -> int:
    """Evaluate elementwise float arithmetic on constants with NumPy, in place; returns how many folded.

    What onnxscript's folder would fold (``should_fold`` decides, as it does there), evaluated without
    ONNX's reference implementation: its folder runs each node through ``onnx.reference`` (whose import is
    0.1-0.4 s of a fresh process, and which converts attributes and inputs per node). BatchNorm's
    ``scale * rsqrt(var + eps)`` on weights is the common case.
    """
    count = 0
    for node in list(graph):
        ufunc = _UFUNCS.get(node.op_type)
        if ufunc is None or node.domain != "" or len(node.outputs) != 1 or len(node.inputs) != ufunc.nin:
            continue
        arrays = [constant_array(value) for value in node.inputs]
        if any(array is None for array in arrays) or any(value.is_graph_input() for value in node.inputs):
            continue
        dtype = arrays[0].dtype
        if not np.issubdtype(dtype, np.floating) or any(array.dtype != dtype for array in arrays):
            continue
        decision = should_fold(node)
        if decision is False or (decision is None and not _within_default_limits(arrays)):
            continue
        result = np.asarray(ufunc(*arrays))
        if result.dtype != dtype:
            continue
        _replace_with_initializer(graph, node, result)
        count += 1
    return count


def _within_default_limits(arrays: list[np.ndarray]) -> bool:
    if any(array.size > FOLD_INPUT_LIMIT for array in arrays):
        return False
    return int(np.prod(np.broadcast_shapes(*(array.shape for array in arrays)))) <= _FOLD_OUTPUT_LIMIT


def _replace_with_initializer(graph: ir.Graph, node: ir.Node, array: np.ndarray) -> None:
    """``node``'s output becomes an initializer holding ``array`` (under the output's name); inputs left
    unused by it are dropped."""
    output = node.outputs[0]
    # what onnx-ir's replace_nodes_and_values(graph, node, [node], [], [output], [initializer]) does for
    # one node and no new ones, without its general bookkeeping: the initializer takes the output's type
    # and shape objects when it has them, then every use (graph outputs included), then the node goes
    initializer = ir.Value(
        name=output.name,
        type=output.type if output.type is not None else ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        shape=output.shape if output.shape is not None else ir.Shape(array.shape),
        const_value=ir.Tensor(array, name=output.name),
    )
    inputs = [value for value in node.inputs if value is not None]
    output.replace_all_uses_with(initializer, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    graph.register_initializer(initializer)
    for value in inputs:
        if value.is_initializer() and not value.uses() and not value.is_graph_output() and not value.is_graph_input():
            graph.initializers.pop(value.name)


def _output_bytes(node: ir.Node) -> int:
    """The bytes of a node's outputs as typed by the lowering; unknown shapes count as too large."""
    total = 0
    for output in node.outputs:
        if output.shape is None or not output.shape.is_static() or output.dtype is None:
            return FOLD_TOTAL_LIMIT + 1
        total += int(np.prod([int(d) for d in output.shape], dtype=np.int64)) * output.dtype.itemsize
    return total


def _share_equal_constants(graph: ir.Graph, weights: frozenset[str]) -> None:
    """Point every use of an anonymous initializer at the first one with the same dtype, shape and bytes.

    Compared through a :class:`ConstantPool`: a model's closed-over weights (Equinox, Haiku) share
    shapes but not bytes, and are never read whole.
    """
    pool: ConstantPool[ir.Value] = ConstantPool()
    for value in list(graph.initializers.values()):
        tensor = value.const_value
        if tensor is None or value.name in weights or value.is_graph_input() or value.is_graph_output():
            continue
        first = pool.find_or_add(tensor.numpy(), value)
        if first is not value:
            value.replace_all_uses_with(first)


_LAYOUT_OPS = ("Reshape", "Transpose", "Unsqueeze", "Squeeze")


def fold_weight_layouts(graph: ir.Graph, weights: frozenset[str], *, any_consumer: bool = False) -> int:
    """``Op(x, Reshape/Transpose/Unsqueeze/Squeeze(W))`` with W a weight used only there → ``Op(x, W')``, in place.

    W' is stored under W's own name (so weights stay named after their module path) in the layout
    its consumer wants (a Conv kernel HWIO as OIHW, an attention kernel (256, 8, 32) as (256, 256)).
    Without ``any_consumer`` only MatMul weights and Add biases are laid out (what the attention
    rules leave); with it, Transposes of anonymous initializers (a Haiku or Equinox model's closed-over
    kernels) are folded too, with one NumPy copy (onnxscript's folder ran them through onnx.reference and
    left strided views that every later pass and the serialiser walked). Returns how many folded.
    """
    count = 0
    for node in list(graph):
        if node.op_type not in _LAYOUT_OPS or node.domain != "" or node.graph is None:
            continue
        weight, output = node.inputs[0], node.outputs[0]
        if weight is None or weight.const_value is None or len(weight.uses()) != 1 or weight.is_graph_input():
            continue
        if weight.name not in weights and not (any_consumer and node.op_type == "Transpose" and weight.is_initializer()):
            continue  # (closed-over kernels are anonymous initializers: transposed here with NumPy, not by the folder)
        if output.is_graph_output() or not (any_consumer or all(_takes_weight_layout(use) for use in output.uses())):
            continue
        source = weight.const_value.numpy()
        array = _laid_out(node, source)
        if array is None:
            continue
        array = np.ascontiguousarray(array)
        if np.may_share_memory(array, source):  # a Reshape/Squeeze view of the same bytes: still the caller's
            weight.const_value = ir.Tensor(array, name=weight.name)
        else:
            own_array(weight, array)  # a copy made here (a kernel laid out OIHW): later passes may scale it in place
        weight.shape = ir.Shape(array.shape)
        output.replace_all_uses_with(weight)
        graph.remove(node, safe=True)
        count += 1
    return count


def _laid_out(node: ir.Node, array: np.ndarray) -> np.ndarray | None:
    """What a layout node makes of ``array``, or None when its other inputs are not constant."""
    if node.op_type == "Transpose":
        perm = node.attributes.get("perm")
        return transposed_copy(array, None if perm is None else list(perm.as_ints()))
    operand = constant_array(node.inputs[1]) if len(node.inputs) > 1 else None
    if node.op_type == "Squeeze" and len(node.inputs) == 1:
        return np.squeeze(array)
    if operand is None:
        return None
    if node.op_type == "Reshape":
        if 0 in operand or node.attributes.get_int("allowzero", 0):
            return None
        return array.reshape([int(d) for d in operand])
    axes = sorted(int(a) for a in operand.reshape(-1))
    if node.op_type == "Squeeze":
        return np.squeeze(array, axis=tuple(a % array.ndim for a in axes))
    rank = array.ndim + len(axes)
    return np.expand_dims(array, axis=tuple(a % rank for a in axes))


def _takes_weight_layout(use: ir.Usage) -> bool:
    """Whether a use of a re-laid-out weight can read the weight stored in that layout instead."""
    return (use.node.op_type == "MatMul" and use.idx == 1) or use.node.op_type == "Add"
