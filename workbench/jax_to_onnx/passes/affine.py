"""Inference-mode BatchNorm: per-channel affine chains folded into the Conv/Gemm/MatMul before them.

Every framework spells an inference BatchNorm differently (Flax NNX and Linen
``(x - mean) * (scale * rsqrt(var + eps)) + bias``, Haiku ``scale * (x - mean) / sqrt(var + eps) + bias``,
Equinox user code in yet another order); once the weight-only parts are folded
(:mod:`.folding`), all are a chain of ``Add``/``Sub``/``Mul``/``Div`` with per-channel constants, which
is ``a * x + b`` for two per-channel vectors. After a ``Conv``, ``Gemm`` or 2-D-weight ``MatMul``
(whose own bias ``Add`` is part of the chain) ``a`` scales the weight's output channels and ``b``
becomes the bias, as torch.onnx's exports do; elsewhere the chain becomes one
``BatchNormalization(x, a, b, mean=0, var=1, epsilon=0)``. ``a`` and ``b`` are computed in float64,
the scaled kernel in its own precision (float32 at least).

Why hand-written: onnxscript's BatchNorm fusions start from a ``BatchNormalization`` node, which JAX
never produces, and do not merge the convolution's own bias add.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from workbench.jax_to_onnx.copy_threads import run_chunked
from workbench.jax_to_onnx.ir_values import constant_array, new_initializer, own_array, owned_array
from workbench.jax_to_onnx.passes.layout import RELAID_KEY
from workbench.jax_to_onnx.provenance import inherit

_CHAIN_OPS = frozenset({"Add", "Sub", "Mul", "Div"})
_FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16})


@dataclass
class _Chain:
    """``a * x + b`` along ``axis`` of x (``a``/``b`` of length ``channels``), the nodes computing it."""

    axis: int
    channels: int
    nodes: list[ir.Node]
    scale: np.ndarray
    shift: np.ndarray
    shift_name: str | None = None  # a weight's name to give the folded bias (the layer's own bias)

    @property
    def per_channel(self) -> bool:
        return bool(np.any(self.scale != self.scale[0]) or np.any(self.shift != self.shift[0]))


def fold_affine_chains(graph: ir.Graph) -> int:
    """Fold per-channel affine chains into their producer, or into one BatchNormalization; returns how many."""
    count = 0
    for value in list(graph.inputs):
        chain = _collect(value, 1)
        if chain is not None and _replace_chain(graph, value, chain):
            count += 1
    for node in list(graph):
        if node.graph is None or len(node.outputs) != 1:
            continue
        value = node.outputs[0]
        axis = _channel_axis(node)
        chain = _collect(value, 1 if axis is None else axis)
        if chain is None:
            continue
        if axis is not None and _fold_into_producer(graph, node, chain):
            count += 1
        elif _replace_chain(graph, value, chain):
            count += 1
    return count


def _channel_axis(node: ir.Node) -> int | None:
    """The output channel axis of a foldable producer with a constant weight read only by it, else None."""
    if node.domain != "" or node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
        return None
    weight = node.inputs[1]
    if weight is None or weight.const_value is None or weight.is_graph_input() or len(weight.uses()) != 1:
        return None
    if node.op_type == "Conv":
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if bias is not None and (bias.const_value is None or len(bias.uses()) != 1):
            return None
        return 1
    if node.op_type == "Gemm":
        if node.attributes.get_int("transA", 0) or (len(node.inputs) > 2 and node.inputs[2] is not None and (
            node.inputs[2].const_value is None or len(node.inputs[2].uses()) != 1
        )):
            return None
        return 1
    output = node.outputs[0]
    if weight.const_value.numpy().ndim != 2 or output.shape is None:
        return None
    return len(output.shape) - 1


def _collect(value: ir.Value, axis: int) -> _Chain | None:
    """The longest chain of single-use affine ops with per-channel constants after ``value``."""
    uses = value.uses()
    if len(uses) != 1 or uses[0].node.op_type not in _CHAIN_OPS:  # no chain starts here (most values)
        return None
    if value.shape is None or value.dtype not in _FLOAT_TYPES or axis >= len(value.shape):
        return None
    channels = value.shape[axis]
    if not isinstance(channels, int):
        return None
    rank = len(value.shape)
    scale, shift = np.ones(channels), np.zeros(channels)
    nodes: list[ir.Node] = []
    shift_name = None
    current = value
    while len(current.uses()) == 1 and not current.is_graph_output():
        use = current.uses()[0]
        node = use.node
        if node.op_type not in _CHAIN_OPS or node.domain != "" or len(node.inputs) != 2:
            break
        other = node.inputs[1 - use.idx]
        vector = _per_channel(other, rank, axis, channels)
        step = None if vector is None else affine_step(scale, shift, node.op_type, vector, chain_first=use.idx == 0)
        if step is None:
            break
        scale, shift = step
        if node.op_type == "Add" and shift_name is None and not nodes and other.is_initializer():
            shift_name = other.name
        nodes.append(node)
        current = node.outputs[0]
    if not nodes:
        return None
    return _Chain(axis, channels, nodes, scale, shift, shift_name)


def affine_step(
    scale: np.ndarray, shift: np.ndarray, op_type: str, vector: np.ndarray, *, chain_first: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(a', b')`` with ``a' * x + b' = op(a * x + b, v)`` (``v`` first when not ``chain_first``), in float64.

    ``op_type`` is ``Add``, ``Sub``, ``Mul`` or ``Div``; None for ``v / (a * x + b)``, which is not affine.
    Shared by this pass and the convolution blocks folded while lowering (:mod:`..conv_blocks`).
    """
    if op_type == "Add":
        return scale, shift + vector
    if op_type == "Sub":
        return (scale, shift - vector) if chain_first else (-scale, vector - shift)
    if op_type == "Mul":
        return scale * vector, shift * vector
    if op_type == "Div" and chain_first:
        return scale / vector, shift / vector
    return None


def per_channel_vector(array: np.ndarray, rank: int, axis: int, channels: int) -> np.ndarray | None:
    """A floating ``array`` broadcast against a value of rank ``rank`` as a float64 vector over its channel
    ``axis`` (of size ``channels``), or None when it varies along another axis."""
    if array.ndim > rank or array.dtype.kind != "f":  # NumPy's floating dtypes (not ml_dtypes' bfloat16)
        return None
    full = (1,) * (rank - array.ndim) + array.shape
    if any(d != 1 for i, d in enumerate(full) if i != axis) or full[axis] not in (1, channels):
        return None
    vector = array.reshape(-1).astype(np.float64)
    return vector if vector.shape[0] == channels else np.broadcast_to(vector, (channels,))


def scale_output_channels(kernel: np.ndarray, factor: np.ndarray | float, out: np.ndarray) -> np.ndarray:
    """``kernel * factor`` into ``out`` (``kernel`` itself for in place; C-ordered, ``kernel``'s shape and dtype),
    computed in ``kernel``'s precision (float32 at least) in slabs of the first axis on a few threads.

    One pass over the kernel (float64 took 3x as long on a ResNet-18's 11M weights); ``factor`` broadcasts
    over the kernel (a column of output-channel scales for an OIHW kernel). Returns ``out``.
    """
    compute = np.promote_types(kernel.dtype, np.float32)
    scale = np.broadcast_to(np.asarray(factor, compute), kernel.shape)

    def multiply(first: int, stop: int) -> None:
        np.multiply(kernel[first:stop], scale[first:stop], out=out[first:stop], dtype=compute, casting="same_kind")

    run_chunked(kernel.shape[0], multiply, out.nbytes)
    return out


def _per_channel(value: ir.Value | None, rank: int, axis: int, channels: int) -> np.ndarray | None:
    """The constant as a float64 vector over the channel axis, or None when it varies along another axis."""
    array = constant_array(value)
    if array is None:
        return None
    return per_channel_vector(array, rank, axis, channels)


def _fold_into_producer(graph: ir.Graph, producer: ir.Node, chain: _Chain) -> bool:
    op = producer.op_type
    unscaled = not np.any(chain.scale != 1.0)
    if op == "MatMul" and unscaled and len(chain.nodes) == 1 and chain.nodes[0].op_type == "Add":
        return False  # a dense layer's own bias add: already what folding would make of it
    weight = producer.inputs[1]
    kernel_array = weight.const_value.numpy()
    # what the kernel is multiplied by, broadcast over its layout; None: left as it is (a bias-only chain)
    factor: np.ndarray | float | None = None
    if op == "Conv":
        if not unscaled:
            factor = chain.scale.reshape((-1,) + (1,) * (kernel_array.ndim - 1))
        bias_input = producer.inputs[2] if len(producer.inputs) > 2 else None
        old_bias = 0.0 if bias_input is None else constant_array(bias_input).astype(np.float64)
        bias = chain.scale * old_bias + chain.shift
    elif op == "Gemm":
        bias_input = producer.inputs[2] if len(producer.inputs) > 2 else None
        old_bias = 0.0 if bias_input is None else _gemm_bias(bias_input, chain.channels)
        if old_bias is None:
            return False
        beta = producer.attributes.get_float("beta", 1.0)
        bias = chain.scale * beta * old_bias + chain.shift
        producer.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
        alpha = producer.attributes.get_float("alpha", 1.0)
        if not unscaled or alpha != 1.0:
            factor = (chain.scale[:, None] if producer.attributes.get_int("transB", 0) else chain.scale[None, :]) * alpha
        producer.attributes["alpha"] = ir.AttrFloat32("alpha", 1.0)
    else:
        if not unscaled:
            factor = chain.scale[None, :]
        bias = chain.shift
    dtype = kernel_array.dtype
    if factor is not None:
        # A kernel the export laid out itself (a copy made by the folding pass, HWIO -> OIHW) is scaled in
        # place: the same products, without allocating (and faulting in) a second array of the kernel's
        # size (a Haiku ResNet-18: 45 MB)
        owned = owned_array(weight)
        kernel = owned if owned is not None else np.empty(kernel_array.shape, dtype)
        own_array(weight, scale_output_channels(kernel_array, factor, kernel))
    last = chain.nodes[-1].outputs[0]
    own_bias = producer.inputs[2] if op in ("Conv", "Gemm") and len(producer.inputs) > 2 else None
    if own_bias is not None and own_bias.is_initializer():
        chain.shift_name = own_bias.name  # the layer's bias initializer takes the folded bias
    bias_value = _bias_value(graph, chain, bias.astype(dtype), bias_name(weight.name))
    if op in ("Conv", "Gemm"):
        if len(producer.inputs) > 2:
            producer.replace_input_with(2, bias_value)
        else:
            producer.resize_inputs(3)
            producer.replace_input_with(2, bias_value)
        result = producer.outputs[0]
    else:
        if not np.any(bias):
            result = producer.outputs[0]
        else:
            add = ir.Node("", "Add", [producer.outputs[0], bias_value])
            graph.insert_after(producer, add)
            inherit([add], chain.nodes[0])
            result = add.outputs[0]
            result.type, result.shape = last.type, last.shape
    _finish(graph, chain, last, result)
    return True


def _bias_value(graph: ir.Graph, chain: _Chain, bias: np.ndarray, default_name: str) -> ir.Value:
    """The folded bias, stored in the layer's own bias initializer (``conv1.bias``) when only the chain read it."""
    if chain.shift_name is not None:
        own = graph.initializers[chain.shift_name]
        if len(own.uses()) == 1 and not own.is_graph_input() and own.const_value is not None:
            own.const_value = ir.Tensor(np.ascontiguousarray(bias), name=own.name)
            own.shape = ir.Shape(bias.shape)
            return own
    return new_initializer(graph, bias, default_name)


def bias_name(weight_name: str) -> str:
    """``conv1.kernel`` → ``conv1.bias`` (also for ``.weight``); otherwise ``<weight>.bias``: the folded bias's name."""
    for suffix in (".kernel", ".weight"):
        if weight_name.endswith(suffix):
            return weight_name[: -len(suffix)] + ".bias"
    return f"{weight_name}.bias"


def _gemm_bias(value: ir.Value, channels: int) -> np.ndarray | None:
    array = constant_array(value)
    if array is None or array.size not in (1, channels) or array.ndim > 2 or (array.ndim == 2 and array.shape[0] != 1):
        return None
    return np.broadcast_to(array.reshape(-1).astype(np.float64), (channels,))


def _replace_chain(graph: ir.Graph, value: ir.Value, chain: _Chain) -> bool:
    """A chain after anything else: one BatchNormalization (per-channel, channel axis 1), or a shorter scalar chain."""
    if chain.scale.size == 0:  # a zero-size channel axis: no element to scale, nothing worth folding
        return False
    last = chain.nodes[-1].outputs[0]
    dtype = value.dtype.numpy()
    if chain.per_channel:
        if chain.axis != 1 or len(chain.nodes) < 2 or len(value.shape) < 2:
            return False
        zeros, ones = np.zeros(chain.channels, dtype), np.ones(chain.channels, dtype)
        norm = ir.Node("", "BatchNormalization", [
            value,
            new_initializer(graph, chain.scale.astype(dtype), f"{chain.nodes[0].name}/scale"),
            new_initializer(graph, chain.shift.astype(dtype), f"{chain.nodes[0].name}/shift"),
            new_initializer(graph, zeros, f"{chain.nodes[0].name}/mean"),
            new_initializer(graph, ones, f"{chain.nodes[0].name}/var"),
        ], attributes=[ir.AttrFloat32("epsilon", 0.0)])
        new_nodes = [norm]
    else:
        scale, shift = chain.scale[0], chain.shift[0]
        needed = int(scale != 1.0) + int(shift != 0.0)
        if needed >= len(chain.nodes):
            return False
        new_nodes = []
        current = value
        if scale != 1.0:
            new_nodes.append(ir.Node("", "Mul", [current, new_initializer(graph, np.array(scale, dtype), "scale")]))
            current = new_nodes[-1].outputs[0]
        if shift != 0.0:
            new_nodes.append(ir.Node("", "Add", [current, new_initializer(graph, np.array(shift, dtype), "shift")]))
    if not new_nodes:
        _finish(graph, chain, last, value)
        return True
    for new in new_nodes:
        new.outputs[0].type, new.outputs[0].shape = last.type, last.shape
    graph.insert_before(chain.nodes[0], new_nodes)
    inherit(new_nodes, chain.nodes[0])
    _finish(graph, chain, last, new_nodes[-1].outputs[0])
    return True


def _finish(graph: ir.Graph, chain: _Chain, last: ir.Value, result: ir.Value) -> None:
    """Point the chain's consumers at ``result`` and drop the chain (``result`` takes a graph output's name)."""
    if last.is_graph_output():
        for index, output in enumerate(graph.outputs):
            if output is last:
                name = last.name
                last.name = f"{name}/unfolded"
                result.name = name
                graph.outputs[index] = result
    elif result.producer() is not None and not result.is_graph_input():
        # ``result`` now holds what the chain's end held: it takes that name (the divergence locator
        # compares values by name, and the producer's old value is gone)
        name = last.name
        last.name = f"{name}/unfolded"
        result.name = name
        if RELAID_KEY in last.meta:
            result.meta[RELAID_KEY] = last.meta[RELAID_KEY]
    last.replace_all_uses_with(result)
    for node in reversed(chain.nodes):
        graph.remove(node, safe=True)
