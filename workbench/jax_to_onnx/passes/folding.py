"""Constant folding: subgraphs that depend only on constants, and weights laid out for their consumer."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx_ir as ir
from onnxscript import optimizer as onnxscript_optimizer

from workbench.jax_to_onnx.ir_values import constant_array

# onnxscript folds nodes whose inputs are all constants up to this many elements each (its default,
# 8192, leaves e.g. a causal mask broadcast over 8 heads of 64x64 in the graph)
FOLD_INPUT_LIMIT = 1 << 16


def fold_constants(model: ir.Model, weights: frozenset[str]) -> None:
    """Evaluate constant subgraphs (masks, iotas, index arithmetic) with onnxscript's folder, in place.

    Nodes reading a weight are left alone: folding ``Reshape(bias)`` would replace the initializer
    named after the module path by an anonymous copy. Equal folded constants (the same causal mask
    in every block) are then stored once.
    """

    def should_fold(node: ir.Node) -> bool | None:
        if any(value is not None and value.name in weights for value in node.inputs):
            return False
        return None

    onnxscript_optimizer.fold_constants(model, input_size_limit=FOLD_INPUT_LIMIT, should_fold=should_fold)
    _share_equal_constants(model.graph, weights)


def _share_equal_constants(graph: ir.Graph, weights: frozenset[str]) -> None:
    """Point every use of an anonymous initializer at the first one with the same dtype, shape and bytes."""
    seen: dict[tuple[ir.DataType, tuple[int, ...], bytes], ir.Value] = {}
    for value in list(graph.initializers.values()):
        tensor = value.const_value
        if tensor is None or value.name in weights or value.is_graph_input() or value.is_graph_output():
            continue
        key = (tensor.dtype, tuple(tensor.shape), hashlib.sha256(tensor.tobytes()).digest())
        first = seen.setdefault(key, value)
        if first is not value:
            value.replace_all_uses_with(first)


def fold_weight_layouts(graph: ir.Graph, weights: frozenset[str]) -> int:
    """``MatMul(x, Reshape/Transpose(W))`` with W a weight used only there → ``MatMul(x, W')``, in place;
    likewise a bias ``Add(y, Reshape(b))`` (attention's per-head bias (8, 32) added as (256,)).

    W' is stored under W's own name (so weights stay named after their module path) in the layout
    the MatMul wants (e.g. an attention kernel (256, 8, 32) as (256, 256)). Returns how many folded.
    """
    count = 0
    for node in list(graph):
        if node.op_type not in ("Reshape", "Transpose") or node.domain != "" or node.graph is None:
            continue
        weight, output = node.inputs[0], node.outputs[0]
        if weight is None or weight.name not in weights or weight.const_value is None or len(weight.uses()) != 1:
            continue
        if output.is_graph_output() or not all(_takes_weight_layout(use) for use in output.uses()):
            continue
        array = weight.const_value.numpy()
        if node.op_type == "Transpose":
            perm = node.attributes.get("perm")
            array = np.transpose(array, None if perm is None else list(perm.as_ints()))
        else:
            target = constant_array(node.inputs[1])
            if target is None or 0 in target or node.attributes.get_int("allowzero", 0):
                continue
            array = array.reshape([int(d) for d in target])
        weight.const_value = ir.Tensor(np.ascontiguousarray(array), name=weight.name)
        weight.shape = ir.Shape(array.shape)
        output.replace_all_uses_with(weight)
        graph.remove(node, safe=True)
        count += 1
    return count


def _takes_weight_layout(use: ir.Usage) -> bool:
    """Whether a use of a re-laid-out weight can read the weight stored in that layout instead."""
    return (use.node.op_type == "MatMul" and use.idx == 1) or use.node.op_type == "Add"
