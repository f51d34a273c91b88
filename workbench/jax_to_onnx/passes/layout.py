"""Channel layout: move the Transposes that convolutions and pooling put around themselves out of the network.

JAX convolutions and pooling in Flax run channels-last (NHWC) while ONNX ``Conv``/``MaxPool`` want
channels-first (NCHW), so each of them is lowered between a Transpose to NCHW and one back. This
pass *sinks* every such Transpose towards the outputs, through the ops that do not care about the
layout (elementwise ops, residual adds of two values in the same layout, ``Concat``, ``Pad``,
reductions, ``Softmax``, ``Shape`` reading one dim), until it meets the Transpose in front of the next convolution and both
cancel. What is left is one Transpose after each graph input and, when an output is a feature map,
one before it. A flattening ``Reshape`` into a ``MatMul``/``Gemm`` with a constant weight (a CNN's
dense head) takes the Transpose into the weight's rows instead. Constants met on the way are stored
in the new layout; nothing is re-associated, so the numbers are exactly those of the original graph.

Only Transposes that move the channel axis (``(0, r-1, 1, ..., r-2)`` and its inverse) are sunk:
other permutations belong to attention and are left to :mod:`.attention_layout`.

Why hand-written: onnxscript's rules only merge adjacent Transpose pairs; onnxruntime's own transpose
optimizer runs inside each session, so the saved graph (what the user sees in Netron) keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from workbench.jax_to_onnx.ir_values import constant_array, new_initializer
from workbench.jax_to_onnx.provenance import inherit

# ``ir.Value.meta`` key (not serialized): (name of the lowered value, perm) for a value in another layout,
# where ``Transpose(value, perm)`` equals what the lowered value held; the divergence locator reads it
RELAID_KEY = "workbench.relaid"

# element-wise ops with one tensor input (the others, if any, are attributes or scalar constants)
_UNARY = frozenset({
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Cast", "Ceil", "Celu", "Cos", "Cosh", "Elu", "Erf",
    "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity", "IsInf", "IsNaN", "LeakyRelu", "Log", "Mish",
    "Neg", "Not", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign",
    "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Clip",
})
# element-wise ops whose inputs all broadcast together
_BROADCASTING = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod", "PRelu", "Where", "Equal", "Less",
    "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
})
_REDUCTIONS = frozenset({
    "ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare",
})


def channel_perms(rank: int) -> tuple[list[int], list[int]]:
    """(channels-last → channels-first, channels-first → channels-last) permutations of a rank."""
    to_first = [0, rank - 1, *range(1, rank - 1)]
    return to_first, _inverse(to_first)


def _inverse(perm: Sequence[int]) -> list[int]:
    # what ``np.argsort(perm)`` gives for distinct entries, without the array round trip (~0.4 against
    # ~2.9 us; asked ~400 times per Keras MobileNetV2 conversion, twice for each step a Transpose sinks)
    return sorted(range(len(perm)), key=perm.__getitem__)


def _perm(node: ir.Node) -> list[int] | None:
    attr = node.attributes.get("perm")
    if attr is None:
        return None
    return list(attr.as_ints())


def _is_channel_transpose(node: ir.Node) -> bool:
    perm = _perm(node)
    if node.op_type != "Transpose" or node.domain != "" or perm is None or len(perm) < 3:
        return False
    return perm in channel_perms(len(perm))


def sink_channel_transposes(graph: ir.Graph) -> int:
    """Sink channel Transposes through layout-agnostic ops until they cancel, in place; returns how many moved."""
    moved = 0
    work = [node for node in graph if _is_channel_transpose(node)]
    while work:
        node = work.pop(0)
        if node.graph is None or not node.outputs[0].uses() and not node.outputs[0].is_graph_output():
            continue
        created = _sink(graph, node)
        if created is None:
            continue
        moved += 1
        work.extend(created)
    drop_identities(graph)
    return moved


def _sink(graph: ir.Graph, transpose: ir.Node) -> list[ir.Node] | None:
    """Move ``transpose`` below all its consumers when each of them allows it; returns the new Transposes."""
    perm = _perm(transpose)
    source, output = transpose.inputs[0], transpose.outputs[0]
    if perm is None or source is None or output.is_graph_output():
        return None
    uses = list(output.uses())
    if not uses or not all(_can_sink_through(use.node, perm, output) for use in uses):
        return None
    if RELAID_KEY not in source.meta and RELAID_KEY not in output.meta and source.producer() is not None:
        source.meta[RELAID_KEY] = (output.name, list(perm))  # for the divergence locator, as below
    created: list[ir.Node] = []
    for consumer in {id(use.node): use.node for use in uses}.values():
        created.extend(_rewrite_consumer(graph, consumer, perm, output, source))
    if not output.uses():
        graph.remove(transpose, safe=True)
    return [node for node in created if node.op_type == "Transpose"]


# ------------------------------------------------------------------------------ which consumers
def _can_sink_through(node: ir.Node, perm: list[int], transposed: ir.Value) -> bool:
    if node.domain != "":
        return False
    op = node.op_type
    rank = len(perm)
    if op == "Transpose":
        return True
    if op in _UNARY:
        return all(value is transposed or _is_scalar_constant(value) for value in node.inputs[:1]) and all(
            value is None or _is_scalar_constant(value) for value in node.inputs[1:]
        )
    if op in _BROADCASTING or op == "Concat":
        return all(_other_operand_ok(value, perm, transposed, rank) for value in node.inputs) and len(node.outputs) == 1
    if op in _REDUCTIONS:
        axes = _reduce_axes(node, rank)
        return node.inputs[0] is transposed and axes is not None
    if op in ("Softmax", "LogSoftmax"):
        return True
    if op == "Pad":
        return (
            node.inputs[0] is transposed
            and constant_array(node.inputs[1]) is not None
            and (len(node.inputs) < 3 or node.inputs[2] is None or _is_scalar_constant(node.inputs[2]))
            and (len(node.inputs) < 4 or node.inputs[3] is None)
        )
    if op == "Reshape":
        return _flatten_into_weight(node, perm) is not None
    if op == "Shape":  # one dim's size (a batch size read for a broadcast): the same dim of the source
        return _single_dim(node, rank) is not None
    return False


def _single_dim(shape_node: ir.Node, rank: int) -> int | None:
    """The one dim a ``Shape(x, start, end)`` node reads, or None when it reads several."""
    start = shape_node.attributes.get_int("start", 0)
    end = shape_node.attributes.get_int("end", rank)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    return start if 0 <= start < rank and end == start + 1 else None


def _other_operand_ok(value: ir.Value | None, perm: list[int], transposed: ir.Value, rank: int) -> bool:
    if value is None or value is transposed:
        return True
    if _is_same_transpose(value, perm):
        return True
    array = constant_array(value)
    return array is not None and array.ndim <= rank


def _is_same_transpose(value: ir.Value, perm: list[int]) -> bool:
    producer = value.producer()
    return producer is not None and producer.op_type == "Transpose" and producer.domain == "" and _perm(producer) == perm


def _is_scalar_constant(value: ir.Value | None) -> bool:
    array = constant_array(value)
    return array is not None and array.size == 1 and array.ndim == 0


def _reduce_axes(node: ir.Node, rank: int) -> list[int] | None:
    """The reduced axes of a Reduce* node (input form from opset 18, attribute form before), or None."""
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = constant_array(node.inputs[1])
        if axes is None:
            return None
        values = [int(a) % rank for a in axes.reshape(-1)]
    else:
        attr = node.attributes.get("axes")
        values = [int(a) % rank for a in attr.as_ints()] if attr is not None else []
    if not values:
        return None if node.attributes.get_int("noop_with_empty_axes", 0) else list(range(rank))
    return values


# ------------------------------------------------------------------------------ rewriting
def _rewrite_consumer(
    graph: ir.Graph, node: ir.Node, perm: list[int], transposed: ir.Value, source: ir.Value
) -> list[ir.Node]:
    """Make ``node`` read ``source`` (the un-transposed value) and restore its outputs' layout after it."""
    op = node.op_type
    if op == "Transpose":
        combined = [perm[i] for i in _perm(node) or []]
        if combined == list(range(len(combined))):
            _replace_value(graph, node.outputs[0], source)
            graph.remove(node, safe=True)
            return []
        node.replace_input_with(0, source)
        node.attributes["perm"] = ir.AttrInt64s("perm", combined)
        return [node]
    if op == "Reshape":
        _fold_flatten(node, perm, source)
        return []
    if op == "Shape":
        dim = perm[_single_dim(node, len(perm))]
        node.replace_input_with(0, source)
        node.attributes["start"] = ir.AttrInt64("start", dim)
        node.attributes["end"] = ir.AttrInt64("end", dim + 1)
        return []
    inverse = _inverse(perm)
    rank = len(perm)
    out_perm = perm
    for index, value in enumerate(node.inputs):
        if value is None:
            continue
        if value is transposed:
            node.replace_input_with(index, source)
        elif op in _BROADCASTING or op == "Concat":
            if _is_same_transpose(value, perm):
                node.replace_input_with(index, value.producer().inputs[0])
            else:
                node.replace_input_with(index, _relaid_constant(graph, value, inverse, rank))
    if op == "Concat":
        node.attributes["axis"] = ir.AttrInt64("axis", perm[node.attributes.get_int("axis", 0) % rank])
    elif op in ("Softmax", "LogSoftmax"):
        node.attributes["axis"] = ir.AttrInt64("axis", perm[node.attributes.get_int("axis", -1) % rank])
    elif op == "Pad":
        pads = constant_array(node.inputs[1]).reshape(-1)
        # the pads of source axis perm[i] are those of the transposed value's axis i
        new_pads = np.concatenate([pads[:rank][inverse], pads[rank:][inverse]]).astype(np.int64)
        node.replace_input_with(1, new_initializer(graph, new_pads, f"{node.name}/pads"))
    elif op in _REDUCTIONS:
        out_perm = _relay_reduction(graph, node, perm)
    return _restore_layout(graph, node, out_perm)


def _relay_reduction(graph: ir.Graph, node: ir.Node, perm: list[int]) -> list[int]:
    """Reduce over the same axes in the source layout; returns the permutation its result then needs."""
    rank = len(perm)
    axes = _reduce_axes(node, rank) or []
    source_axes = sorted(perm[a] for a in axes)
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        node.replace_input_with(1, new_initializer(graph, np.array(source_axes, np.int64), f"{node.name}/axes"))
    else:
        node.attributes["axes"] = ir.AttrInt64s("axes", source_axes)
    if node.attributes.get_int("keepdims", 1):
        return perm
    kept_source = [a for a in range(rank) if a not in source_axes]
    kept_target = [perm[i] for i in range(rank) if i not in axes]
    return [kept_source.index(a) for a in kept_target]


def _restore_layout(graph: ir.Graph, node: ir.Node, perm: list[int]) -> list[ir.Node]:
    """Insert ``Transpose(perm)`` after ``node``'s output so its consumers see the layout they saw before."""
    output = node.outputs[0]
    if output.shape is not None:
        target_shape = list(output.shape)
        output.shape = ir.Shape([target_shape[i] for i in _inverse(perm)])
    else:
        target_shape = None
    if perm == list(range(len(perm))):
        return []
    uses = list(output.uses())
    transpose = ir.Node("", "Transpose", [output], attributes=[ir.AttrInt64s("perm", perm)])
    restored = transpose.outputs[0]
    restored.type = output.type
    restored.shape = None if target_shape is None else ir.Shape(target_shape)
    graph.insert_after(node, transpose)
    inherit([transpose], node)
    for use in uses:
        use.node.replace_input_with(use.idx, restored)
    if output.is_graph_output():
        _move_graph_output(graph, output, restored)
    else:
        # the restored value holds what the original name held (the divergence locator compares by name)
        restored.name, output.name = output.name, _relaid_name(output.name)
        # what the value is in terms of a lowered one: ``Transpose(output, perm)`` is ``restored``
        output.meta[RELAID_KEY] = (restored.meta.get(RELAID_KEY, (restored.name, None))[0], list(perm))
    return [transpose]


def _relaid_name(name: str) -> str:
    """A new name for a value whose layout changed, so no one mistakes it for the JAX value of its old name."""
    return f"{name}/relaid"


def _move_graph_output(graph: ir.Graph, old: ir.Value, new: ir.Value) -> None:
    """When ``old`` is a graph output, ``new`` takes its place and its name."""
    for index, value in enumerate(graph.outputs):
        if value is old:
            name = old.name
            old.name = f"{name}/before_transpose"
            graph.outputs[index] = new
            new.name = name


def _replace_value(graph: ir.Graph, old: ir.Value, new: ir.Value) -> None:
    if old.is_graph_output():
        identity = ir.Node("", "Identity", [new])
        graph.insert_after(old.producer(), identity)
        inherit([identity], old.producer())
        identity.outputs[0].type, identity.outputs[0].shape = old.type, old.shape
        _move_graph_output(graph, old, identity.outputs[0])
    old.replace_all_uses_with(new)


def _relaid_constant(graph: ir.Graph, value: ir.Value, inverse: list[int], rank: int) -> ir.Value:
    """A constant operand broadcast against the transposed value, stored in the source layout."""
    array = constant_array(value)
    if array.ndim == 0:
        return value
    full = array.reshape((1,) * (rank - array.ndim) + array.shape)
    relaid = np.ascontiguousarray(np.transpose(full, inverse))
    if value.is_initializer() and not value.is_graph_input() and len(value.uses()) == 1:
        # read only here: stored in the new layout under its own name (``bn1.mean``)
        value.const_value = ir.Tensor(relaid, name=value.name)
        value.shape = ir.Shape(relaid.shape)
        return value
    return new_initializer(graph, relaid, f"{value.name}/relaid")


# ------------------------------------------------------------------------------ dense heads
def _flatten_into_weight(reshape: ir.Node, perm: list[int]) -> tuple[ir.Node, ir.Value] | None:
    """(MatMul/Gemm, weight) when ``reshape`` flattens all but the batch axis into a product with a constant
    weight read only there, so the transpose before it can be moved into the weight's rows."""
    if perm[0] != 0:
        return None
    source, flat = reshape.inputs[0], reshape.outputs[0]
    if source is None or source.shape is None or flat.shape is None or len(flat.shape) != 2:
        return None
    inner = list(source.shape)[1:]
    if not all(isinstance(d, int) for d in inner) or flat.shape[1] != int(np.prod(inner)):
        return None
    uses = list(flat.uses())
    if len(uses) != 1 or uses[0].idx != 0 or flat.is_graph_output():
        return None
    product = uses[0].node
    if product.op_type not in ("MatMul", "Gemm") or product.domain != "" or product.attributes.get_int("transA", 0):
        return None
    weight = product.inputs[1]
    if weight is None or weight.const_value is None or len(weight.uses()) != 1 or weight.is_graph_input():
        return None
    return product, weight


def _fold_flatten(reshape: ir.Node, perm: list[int], source: ir.Value) -> None:
    """``W`` rows permuted so that ``flatten(source) @ W'`` equals ``flatten(transpose(source, perm)) @ W``."""
    product, weight = _flatten_into_weight(reshape, perm)  # type: ignore[misc]
    transposed_inner = [int(d) for d in list(reshape.inputs[0].shape)[1:]]
    source_inner = [transposed_inner[i] for i in _inverse([p - 1 for p in perm[1:]])]
    # position k of the transposed flattening reads position order[k] of the source flattening
    order = np.arange(int(np.prod(source_inner))).reshape(source_inner).transpose([p - 1 for p in perm[1:]]).reshape(-1)
    array = weight.const_value.numpy()
    transposed_b = product.op_type == "Gemm" and product.attributes.get_int("transB", 0)
    relaid = np.empty_like(array)
    if transposed_b:
        relaid[:, order] = array
    else:
        relaid[order] = array
    weight.const_value = ir.Tensor(np.ascontiguousarray(relaid), name=weight.name)
    reshape.replace_input_with(0, source)
    reshape.outputs[0].name = _relaid_name(reshape.outputs[0].name)  # flattened in another order now


def drop_identities(graph: ir.Graph | ir.Function) -> int:
    """Remove the Identity nodes rewrites leave behind.

    An Identity producing a graph output goes too when its input is computed by a node and is no
    graph output itself: that value then takes the output's name. One reading a graph input or an
    initializer, or a value that is also returned, stays (ONNX needs a node to rename a value).
    """
    count = 0
    for node in list(graph):
        if node.op_type != "Identity" or node.domain != "":
            continue
        source, output = node.inputs[0], node.outputs[0]
        if output.is_graph_output():
            if source is None or source.producer() is None or source.is_graph_output():
                continue
            ir.convenience.replace_all_uses_with(output, source, replace_graph_outputs=True)
            source.name = output.name
        else:
            output.replace_all_uses_with(source)
        graph.remove(node, safe=True)
        count += 1
    return count
