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

A convolution lowered as a block (:mod:`..conv_blocks`) already keeps its result channels-first while lowering
(:mod:`..relaid`), as this pass would have left it: here are only the Transposes of convolutions and pools
lowered by their handlers and of the readers that need the jaxpr's layout.

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
    """Sink channel Transposes through layout-agnostic ops until they cancel, in place; returns how many moved.

    One walk in the order of a worklist: the graph's channel Transposes, then each step's new Transposes in
    the order they are made. A step moves a Transpose below its consumers and puts a new one after each
    of them; that new one is a :class:`_Relaid` record, not a node, until it sinks on (then it never
    existed) or the walk ends (then it is made and inserted where the step would have put it).
    """
    moved = 0
    walk = _Walk(graph)
    work: list[ir.Node | _Relaid] = [node for node in graph if _is_channel_transpose(node)]
    for item in work:  # grows while it is read
        if isinstance(item, _Relaid) and item.transpose is None:
            if item.removed:
                continue
            view: _View = item
        else:
            node = item.transpose if isinstance(item, _Relaid) else item
            if node.graph is None and not walk.owns(node):
                continue
            view = _NodeView(node)
        if view.unused():
            continue
        created = _sink(walk, view)
        if created is None:
            continue
        moved += 1
        work.extend(created)
    walk.place_relaid()
    drop_identities(graph)
    return moved


class _NodeView:
    """A Transpose node being sunk: its consumers read its output."""

    def __init__(self, transpose: ir.Node) -> None:
        self.transpose = transpose
        self.output = transpose.outputs[0]

    def reads(self, node: ir.Node, index: int) -> bool:
        return node.inputs[index] is self.output

    def uses(self) -> list[tuple[ir.Node, int]]:
        return [(use.node, use.idx) for use in self.output.uses()]

    def unused(self) -> bool:
        return not self.output.uses() and not self.output.is_graph_output()

    def read_source(self, node: ir.Node, index: int, source: ir.Value) -> None:
        node.replace_input_with(index, source)


class _Relaid:
    """The Transpose a step puts after ``node``, before it is a node.

    ``value`` (``node``'s output, renamed ``<name>/relaid``) now holds another layout; the consumers in
    ``pending`` read it still expecting ``Transpose(value, perm)``, the value once named ``name``. Made a
    node (:meth:`_Walk.materialize`) only when it has to exist: at the end of the walk unless it sank on,
    or when something must read it as a value.
    """

    def __init__(
        self, node: ir.Node, perm: list[int], name: str | None, shape: ir.Shape | None
    ) -> None:
        self.node = node
        self.value = node.outputs[0]
        self.perm = perm
        self.name = name
        self.type = self.value.type
        self.target_shape = shape
        # (id(consumer), input index) -> consumer, in the order a restoring Transpose's uses would be
        self.pending: dict[tuple[int, int], ir.Node] = {(id(use.node), use.idx): use.node for use in self.value.uses()}
        self.transpose: ir.Node | None = None  # once made a node
        self.placed = False  # its node inserted in the graph
        self.removed = False

    def reads(self, node: ir.Node, index: int) -> bool:
        return (id(node), index) in self.pending

    def uses(self) -> list[tuple[ir.Node, int]]:
        return [(node, index) for (_, index), node in self.pending.items()]

    def unused(self) -> bool:
        return not self.pending

    def read_source(self, node: ir.Node, index: int, source: ir.Value) -> None:
        # ``node`` reads ``value`` already; re-reading it moves the use last, where a consumer that switched from
        # the restoring Transpose's output to ``value`` would be (later walks see uses in the same order)
        del self.pending[(id(node), index)]
        node.replace_input_with(index, source)


_View = _NodeView | _Relaid


class _Walk:
    """The graph being rewritten and the :class:`_Relaid` records its steps made, in the order made."""

    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph
        self._records: list[_Relaid] = []
        self._virtual: dict[int, _Relaid] = {}  # id(value) -> the record not yet a node on it
        self._made: dict[int, _Relaid] = {}  # id(Transpose) -> the record made into it, not placed yet

    def owns(self, node: ir.Node) -> bool:
        """Whether ``node`` is a Transpose made from a record and still to be placed."""
        return id(node) in self._made

    def relay(self, node: ir.Node, perm: list[int], name: str | None, shape: ir.Shape | None) -> _Relaid:
        """A record for the Transpose after ``node``, whose output (named ``name``) its consumers read now."""
        old = self._virtual.get(id(node.outputs[0]))
        if old is not None:  # a second layout change of the same value: the first restoring Transpose must exist
            self.materialize(old)
        record = _Relaid(node, perm, name, shape)
        self._records.append(record)
        self._virtual[id(record.value)] = record
        return record

    def view_of(self, node: ir.Node, index: int) -> _Relaid | None:
        """The record whose restoring Transpose ``node``'s input ``index`` reads, if any."""
        value = node.inputs[index]
        record = None if value is None else self._virtual.get(id(value))
        return record if record is not None and record.reads(node, index) else None

    def source_of(self, transpose: ir.Node) -> ir.Value:
        """The value the Transpose node ``transpose`` reads (a record's Transpose, made now, if it reads one)."""
        record = self.view_of(transpose, 0)
        return transpose.inputs[0] if record is None else self.materialize(record).outputs[0]

    def materialize(self, record: _Relaid) -> ir.Node:
        """Make ``record``'s Transpose (not yet in the graph) and let its pending consumers read it."""
        value = record.value
        transpose = ir.Node(
            "", "Transpose", [value], attributes=[ir.AttrInt64s("perm", record.perm)]
        )
        restored = transpose.outputs[0]
        restored.name, restored.type = record.name, record.type
        restored.shape = record.target_shape
        for (_, index), consumer in record.pending.items():
            consumer.replace_input_with(index, restored)
        record.pending.clear()
        # the Transpose read ``value`` before any use added since it was due: move those after it
        for use in value.uses():
            if use.node is not transpose:
                use.node.replace_input_with(use.idx, value)
        record.transpose = transpose
        del self._virtual[id(value)]
        self._made[id(transpose)] = record
        return transpose

    def remove(self, node: ir.Node) -> None:
        """Remove ``node`` (no output of it in use) from the graph, or drop it if it was never placed there."""
        record = self._made.pop(id(node), None)
        if record is None:
            self.graph.remove(node, safe=True)
        else:
            record.removed = True
            node.resize_inputs(0)  # no longer a use of the value it read

    def drop(self, record: _Relaid) -> None:
        """Forget a record whose Transpose sank on before it was made."""
        record.removed = True
        del self._virtual[id(record.value)]

    def place_now(self, transpose: ir.Node) -> None:
        """Insert the made Transpose ``transpose`` in the graph now (something is to go after it), with the other
        records after the same node: at the walk's end they would go between that node and these."""
        after = self._made[id(transpose)].node
        for record in self._records:
            if record.node is after and not record.removed and not record.placed:
                made = record.transpose if record.transpose is not None else self.materialize(record)
                self._place(record, made)

    def _place(self, record: _Relaid, transpose: ir.Node) -> None:
        self.graph.insert_after(record.node, transpose)
        inherit([transpose], record.node)
        record.placed = True
        self._made.pop(id(transpose), None)

    def place_relaid(self) -> None:
        """Insert the Transposes of the records still standing, each right after its node, in the order the
        records were made: a later one after the same node goes between it and the earlier one, as an
        insertion at each step would have put it; the node's provenance as :func:`inherit` gives."""
        for record in self._records:
            if not record.removed and not record.placed:
                self._place(record, record.transpose if record.transpose is not None else self.materialize(record))
        self._records.clear()
        self._made.clear()


def _sink(walk: _Walk, view: _View) -> list[ir.Node | _Relaid] | None:
    """Move the Transpose ``view`` below all its consumers when each of them allows it; returns the new ones."""
    if isinstance(view, _Relaid):
        perm, source = view.perm, view.value
    else:
        transpose = view.transpose
        perm, source, output = _perm(transpose), transpose.inputs[0], view.output
        if perm is None or source is None or output.is_graph_output():
            return None
    uses = view.uses()
    if not uses or not all(_can_sink_through(walk, node, perm, view) for node, _ in uses):
        return None
    if isinstance(view, _NodeView):
        source = walk.source_of(transpose)
        if RELAID_KEY not in source.meta and RELAID_KEY not in output.meta and source.producer() is not None:
            source.meta[RELAID_KEY] = (output.name, list(perm))  # for the divergence locator, as below
    created: list[ir.Node | _Relaid] = []
    for consumer in {id(node): node for node, _ in uses}.values():
        created.extend(_rewrite_consumer(walk, consumer, perm, view, source))
    if isinstance(view, _Relaid):
        if view.unused():  # as it must be: every consumer now reads ``source``
            walk.drop(view)
    elif not output.uses():
        walk.remove(transpose)
    return created


# ------------------------------------------------------------------------------ which consumers
def _can_sink_through(walk: _Walk, node: ir.Node, perm: list[int], view: _View) -> bool:
    if node.domain != "":
        return False
    op = node.op_type
    rank = len(perm)
    if op == "Transpose":
        return True
    if op in _UNARY:
        return (view.reads(node, 0) or _is_scalar_constant(node.inputs[0])) and all(
            value is None or _is_scalar_constant(value) for value in node.inputs[1:]
        )
    if op in _BROADCASTING or op == "Concat":
        return (
            all(_other_operand_ok(walk, node, index, perm, view, rank) for index in range(len(node.inputs)))
            and len(node.outputs) == 1
        )
    if op in _REDUCTIONS:
        axes = _reduce_axes(node, rank)
        return view.reads(node, 0) and axes is not None
    if op in ("Softmax", "LogSoftmax"):
        return True
    if op == "Pad":
        return (
            view.reads(node, 0)
            and constant_array(node.inputs[1]) is not None
            and (len(node.inputs) < 3 or node.inputs[2] is None or _is_scalar_constant(node.inputs[2]))
            and (len(node.inputs) < 4 or node.inputs[3] is None)
        )
    if op == "Reshape":
        return _flatten_into_weight(node, perm, _read_shape(walk, node)) is not None
    if op == "Shape":  # one dim's size (a batch size read for a broadcast): the same dim of the source
        return _single_dim(node, rank) is not None
    return False


def _read_shape(walk: _Walk, node: ir.Node) -> ir.Shape | None:
    """The shape of ``node``'s first input as ``node`` reads it (a record's Transpose's output's, if so)."""
    record = walk.view_of(node, 0)
    return node.inputs[0].shape if record is None else record.target_shape


def _single_dim(shape_node: ir.Node, rank: int) -> int | None:
    """The one dim a ``Shape(x, start, end)`` node reads, or None when it reads several."""
    start = shape_node.attributes.get_int("start", 0)
    end = shape_node.attributes.get_int("end", rank)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    return start if 0 <= start < rank and end == start + 1 else None


def _other_operand_ok(walk: _Walk, node: ir.Node, index: int, perm: list[int], view: _View, rank: int) -> bool:
    value = node.inputs[index]
    if value is None or view.reads(node, index):
        return True
    if _same_transpose(walk, node, index, perm) is not None:
        return True
    array = constant_array(value)
    return array is not None and array.ndim <= rank


def _same_transpose(walk: _Walk, node: ir.Node, index: int, perm: list[int]) -> _View | None:
    """The Transpose by ``perm`` (a node, or a record's) whose output ``node``'s input ``index`` reads, if any."""
    record = walk.view_of(node, index)
    if record is not None:
        return record if record.perm == perm else None
    producer = node.inputs[index].producer()
    if producer is not None and producer.op_type == "Transpose" and producer.domain == "" and _perm(producer) == perm:
        return _NodeView(producer)
    return None


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
    walk: _Walk, node: ir.Node, perm: list[int], view: _View, source: ir.Value
) -> list[ir.Node | _Relaid]:
    """Make ``node`` read ``source`` (the un-transposed value) and restore its outputs' layout after it."""
    graph = walk.graph
    op = node.op_type
    if op == "Transpose":
        combined = [perm[i] for i in _perm(node) or []]
        if combined == list(range(len(combined))):
            if node.outputs[0].is_graph_output() and walk.owns(node):
                walk.place_now(node)  # an Identity goes after it
            _replace_value(graph, node.outputs[0], source)
            if isinstance(view, _Relaid):
                del view.pending[(id(node), 0)]  # removed with the node below
            walk.remove(node)
            return []
        view.read_source(node, 0, source)
        node.attributes["perm"] = ir.AttrInt64s("perm", combined)
        return [node]
    if op == "Reshape":
        _fold_flatten(walk, node, perm, view, source)
        return []
    if op == "Shape":
        dim = perm[_single_dim(node, len(perm))]
        view.read_source(node, 0, source)
        node.attributes["start"] = ir.AttrInt64("start", dim)
        node.attributes["end"] = ir.AttrInt64("end", dim + 1)
        return []
    inverse = _inverse(perm)
    rank = len(perm)
    out_perm = perm
    for index, value in enumerate(node.inputs):
        if value is None:
            continue
        if view.reads(node, index):
            view.read_source(node, index, source)
        elif op in _BROADCASTING or op == "Concat":
            other = _same_transpose(walk, node, index, perm)
            if other is not None:
                other_source = other.value if isinstance(other, _Relaid) else walk.source_of(other.transpose)
                other.read_source(node, index, other_source)
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
    return _restore_layout(walk, node, out_perm)


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


def _restore_layout(walk: _Walk, node: ir.Node, perm: list[int]) -> list[ir.Node | _Relaid]:
    """Restore the layout ``node``'s consumers saw before with ``Transpose(perm)`` after its output: a record of
    it (:class:`_Relaid`), or when the output is a graph output a Transpose node, placed at the walk's end."""
    output = node.outputs[0]
    shape = output.shape  # what the restoring Transpose's output will have (shapes are replaced, never changed)
    if shape is not None:
        output.shape = ir.Shape([shape[i] for i in _inverse(perm)])
    if perm == list(range(len(perm))):
        return []
    name = output.name
    record = walk.relay(node, list(perm), name, shape)
    if output.is_graph_output():
        restored = walk.materialize(record).outputs[0]
        _move_graph_output(walk.graph, output, restored)
        return [record]
    output.name = _relaid_name(name)  # the restoring Transpose's output holds what the name held
    # what the value is in terms of a lowered one: ``Transpose(output, perm)`` is the value once named ``name``
    output.meta[RELAID_KEY] = (name, list(perm))
    return [record]


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
def _flatten_into_weight(
    reshape: ir.Node, perm: list[int], read_shape: ir.Shape | None
) -> tuple[ir.Node, ir.Value] | None:
    """(MatMul/Gemm, weight) when ``reshape`` flattens all but the batch axis (of a value of ``read_shape``) into
    a product with a constant weight read only there, so the transpose before it can move into the weight's rows."""
    if perm[0] != 0:
        return None
    source, flat = reshape.inputs[0], reshape.outputs[0]
    if source is None or read_shape is None or flat.shape is None or len(flat.shape) != 2:
        return None
    inner = list(read_shape)[1:]
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


def _fold_flatten(walk: _Walk, reshape: ir.Node, perm: list[int], view: _View, source: ir.Value) -> None:
    """``W`` rows permuted so that ``flatten(source) @ W'`` equals ``flatten(transpose(source, perm)) @ W``."""
    read_shape = _read_shape(walk, reshape)
    product, weight = _flatten_into_weight(reshape, perm, read_shape)  # type: ignore[misc]
    transposed_inner = [int(d) for d in list(read_shape)[1:]]
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
    view.read_source(reshape, 0, source)
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
