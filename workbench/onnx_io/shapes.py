"""ONNX shape inference, run one way for every layer (the reader, the viewer, ``workbench inspect``).

Weights other than integers never decide a shape, so the checker and shape inference see a *light*
copy of the model (:func:`light_model`): its large non-integer initializers become typed graph
inputs without data. onnx serializes the whole model for each of those calls, which was most of
the ONNX -> JAX generation time for a 1,700-node CNN with its weights. Integer initializers
(shapes, axes) keep their values for data propagation.

Data propagation (shapes computed from values, e.g. ``Reshape(x, Concat(Shape(y), [-1]))``) is
turned off when onnx would represent too many values element by element
(:func:`data_propagation_entries`): it gives every 1-D value of known length n, float or not, n
entries per node that reads it, so a 1-D input of 10**8 elements took gigabytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import onnx

from workbench.errors import OnnxModelError
from workbench.limits import MAX_DATA_PROPAGATION_ENTRIES
from workbench.onnx_io.describe import model_graphs, opset_text, subgraph_free_names

_SHAPE_DATA_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})  # what data propagation reads
_SET_ASIDE_MIN_BYTES = 4096


def light_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[onnx.TensorProto]]:
    """A copy of ``model`` without the bytes of its large non-integer initializers of rank other than 1.

    Each such initializer becomes a graph input of the same type (unless the graph already lists it
    as an input), which is all the checker and shape inference need of it. Returns the copy and the
    tensors set aside (the caller's own, not copied). ``model`` is not modified.
    """
    light = model_without_initializers(model)
    graph = light.graph
    listed = {value.name for value in model.graph.input}
    set_aside = []
    for tensor in model.graph.initializer:
        # 1-D tensors stay: as typed inputs, data propagation would spell out each of their elements
        if tensor.data_type in _SHAPE_DATA_TYPES or len(tensor.dims) == 1 or _payload_bytes(tensor) < _SET_ASIDE_MIN_BYTES:
            graph.initializer.append(tensor)
            continue
        set_aside.append(tensor)
        if tensor.name not in listed:
            typed = graph.input.add()
            typed.name = tensor.name
            typed.type.tensor_type.elem_type = tensor.data_type
            typed.type.tensor_type.shape.SetInParent()  # a scalar has a shape without dims
            for size in tensor.dims:
                typed.type.tensor_type.shape.dim.add().dim_value = size
    return light, set_aside


def model_without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose main graph has no initializers (the rest copied; no weight is)."""
    copy = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(copy, field, value)
    for field, value in model.graph.ListFields():
        if field.name != "initializer":
            _copy_field(copy.graph, field, value)
    return copy


def _copy_field(target: onnx.ModelProto | onnx.GraphProto, field, value) -> None:  # noqa: ANN001 - protobuf descriptor
    if field.is_repeated:
        getattr(target, field.name).extend(value)
    elif field.message_type is not None:
        getattr(target, field.name).CopyFrom(value)
    else:
        setattr(target, field.name, value)


def _payload_bytes(tensor: onnx.TensorProto) -> int:
    return tensor.ByteSize()  # the serialized size: its data plus a few bytes (computed without copying the data)


def infer_shapes(
    model: onnx.ModelProto, label: str, *, strict: bool = False, light: onnx.ModelProto | None = None
) -> onnx.ModelProto:
    """``model`` with ``value_info`` (and output types) from ONNX shape inference, in place; returns it.

    Runs on :func:`light_model`'s copy (``light``, when the caller made it already; it is modified),
    with data propagation unless that would cost too much (:func:`data_propagation_entries`).
    ``strict`` makes any inference error (a wrong attribute, a type clash) an error, as
    ``onnx.checker.check_model(full_check=True)`` does. Errors name ``label``.
    """
    if light is None:
        light, _ = light_model(model)
    labelled = label_unnamed_nodes(light)
    fed = {t.name for t in model.graph.initializer}
    inferred = _infer(light, label, strict=strict, inputs=frozenset(v.name for v in model.graph.input if v.name not in fed))
    graph = model.graph
    if len(list(model_graphs(inferred))) > 1:
        # inference keeps the node list as it is and fills the value_info of subgraph bodies in place
        for index, node in enumerate(_all_nodes(inferred)):
            if index in labelled:
                node.ClearField("name")
        del graph.node[:]
        graph.node.extend(inferred.graph.node)
    del graph.value_info[:]
    graph.value_info.extend(inferred.graph.value_info)
    del graph.output[:]
    graph.output.extend(inferred.graph.output)
    return model


def spell_out_defaults(model: onnx.ModelProto) -> None:
    """Give each default-domain node defined by a function body the schema defaults it leaves out, in place.

    onnx's shape inference of such an operator (MeanVarianceNormalization, ...) expands its function
    body without putting the default in for an attribute the body refers to, and then fails on the
    body ("One and only one of the attributes 'value', 'value_*' or 'sparse_value' must be specified
    for a Constant node", onnx 1.2x; ``onnx.checker.check_model(full_check=True)`` refuses the model
    for it), while onnxruntime uses the default. Stating a default changes nothing of the model.
    """
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)
    if opset is None:
        return
    defaults: dict[str, list[onnx.AttributeProto]] = {}
    for node in _all_nodes(model):
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type not in defaults:
            defaults[node.op_type] = _function_op_defaults(node.op_type, opset)
        present = {attribute.name for attribute in node.attribute}
        node.attribute.extend(default for default in defaults[node.op_type] if default.name not in present)


def _function_op_defaults(op_type: str, opset: int) -> list[onnx.AttributeProto]:
    try:
        schema = onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return []  # an unknown op: the checker names it
    if not (schema.has_function or schema.has_context_dependent_function):
        return []
    return [attribute.default_value for attribute in schema.attributes.values() if attribute.default_value.type]


def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Every node of the main graph and its subgraphs, in one fixed order."""
    for graph in model_graphs(model):
        yield from graph.node


def label_unnamed_nodes(model: onnx.ModelProto) -> set[int]:
    """Name each unnamed node ``#<index>`` (its position in its graph), in place, so onnx's messages name it.

    Returns the positions of the labelled nodes in :func:`_all_nodes`'s order. For copies the
    checker and shape inference see; a caller's model keeps its names.
    """
    labelled = set()
    position = 0
    for graph in model_graphs(model):
        for index, node in enumerate(graph.node):
            if not node.name:
                node.name = f"#{index}"
                labelled.add(position)
            position += 1
    return labelled


def drop_stated_shapes(model: onnx.ModelProto) -> bool:
    """Remove the shapes ``model`` states beyond its graph inputs, in place: the ``value_info`` of every graph
    (main graph and subgraph bodies) and the shapes of the main graph's outputs (their element types stay).
    Returns whether there was any."""
    found = False
    for graph in model_graphs(model):
        found = found or len(graph.value_info) > 0
        del graph.value_info[:]
    for output in model.graph.output:
        if output.type.HasField("tensor_type") and output.type.tensor_type.HasField("shape"):
            output.type.tensor_type.ClearField("shape")
            found = True
    return found


def _infer(light: onnx.ModelProto, label: str, *, strict: bool, inputs: frozenset[str] = frozenset()) -> onnx.ModelProto:
    """Inference of ``light``; ``inputs``: the model's graph inputs (not weights), which an error traces back to."""
    try:
        return guarded_inference(light, strict_mode=strict, check_type=strict)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as error:
        reason = str(error).strip()
        raise OnnxModelError(
            f"{label}: ONNX shape inference ({opset_text(light)}) rejected the model: {reason}"
            f"{_inputs_read(light, reason, inputs)}"
        ) from error
    except (RuntimeError, ValueError) as error:  # onnx's C++ side: an unparsable type, a bad data type
        raise OnnxModelError(f"{label}: ONNX shape inference cannot read the model: {error}") from error
    except MemoryError as error:  # std::bad_alloc: an attribute or shape asked onnx's C++ side for more than fits
        raise OnnxModelError(
            f"{label}: ONNX shape inference ran out of memory ({error}): an attribute or a declared shape of the model "
            "asks for more than any machine holds. The model is broken or hostile."
        ) from error


_NODE_IN_MESSAGE = re.compile(r"node name: ([^)]+?)\)")


def _inputs_read(model: onnx.ModelProto, reason: str, inputs: frozenset[str] = frozenset()) -> str:
    """`` Node #3 (Gemm) reads A='x', B='w'.`` for the node onnx's message names first (onnx names a node's inputs
    by their formal names only, so the values at odds, an initializer of the wrong type for one, would go unnamed),
    and which of the graph's ``inputs`` its values are computed from (a clash often starts at a mistyped input)."""
    match = _NODE_IN_MESSAGE.search(reason)
    if match is None:
        return ""
    node = next((n for graph in model_graphs(model) for n in graph.node if n.name == match.group(1)), None)
    if node is None or not (any(node.input) or subgraph_free_names(node)):
        return ""
    opset = next((int(o.version) for o in model.opset_import if o.domain == node.domain), 1)
    try:
        formal = [f.name for f in onnx.defs.get_schema(node.op_type, opset, node.domain).inputs]
    except onnx.defs.SchemaError:
        formal = []
    named = [f"{formal[min(i, len(formal) - 1)] if formal else f'input {i}'}={name!r}" for i, name in enumerate(node.input) if name]
    outer = sorted(subgraph_free_names(node) - set(node.input))
    bodies = f"; its subgraphs read {', '.join(repr(n) for n in outer[:20])}" if outer else ""
    sources = _graph_inputs_upstream(model.graph, node, inputs)
    computed = f" Its values are computed from the graph input(s) {', '.join(repr(n) for n in sources)}." if sources else ""
    return f" Node {match.group(1)} ({node.op_type}) reads {', '.join(named)}{bodies}.{computed}"


def _graph_inputs_upstream(graph: onnx.GraphProto, node: onnx.NodeProto, inputs: frozenset[str]) -> list[str]:
    """The names of ``inputs`` that ``node`` (a node of ``graph``, or of one of its subgraphs) reads, directly or
    through the nodes of ``graph`` that compute what it reads; at most 10, sorted."""
    producer = {output: n for n in graph.node for output in n.output if output}
    pending = [*node.input, *subgraph_free_names(node)]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        upstream = producer.get(name)
        if upstream is not None:
            pending.extend([*upstream.input, *subgraph_free_names(upstream)])
    return sorted(seen & inputs)[:10]


def guarded_inference(model: onnx.ModelProto, *, strict_mode: bool, check_type: bool = False) -> onnx.ModelProto:
    """``onnx.shape_inference.infer_shapes``, with data propagation only where it stays cheap.

    When the model states every shape, :func:`data_propagation_entries` is counted on it. Otherwise
    inference runs once without data propagation to learn the shapes; when that leaves a shape
    open (e.g. a Reshape to a computed shape), it runs again with data propagation if the count
    allows. onnx's own exceptions pass through (each caller names the model its way).
    """
    def run(data_prop: bool) -> onnx.ModelProto:
        return onnx.shape_inference.infer_shapes(model, check_type=check_type, strict_mode=strict_mode, data_prop=data_prop)

    graphs = list(model_graphs(model))
    if any(_outputs_without(graph, _has_type) for graph in graphs):
        plain = run(data_prop=False)
        plain_graphs = list(model_graphs(plain))
        if not any(_outputs_without(graph, _has_full_shape, _VALUE_SHAPED_OPS) for graph in plain_graphs):
            return plain  # every value-shaped op has its shape: data propagation has nothing to add
        if data_propagation_entries(plain_graphs) > MAX_DATA_PROPAGATION_ENTRIES:
            return plain
    elif data_propagation_entries(graphs) > MAX_DATA_PROPAGATION_ENTRIES:
        return run(data_prop=False)
    try:
        return run(data_prop=True)
    except onnx.shape_inference.InferenceError as error:
        if _DATA_PROPAGATION_CLASH.search(str(error)) is None:
            raise
        # onnx keeps one table of propagated values across an If's two branches: a name both branches
        # compute (Optimum's merged decoders: two exported decoders whose nodes torch.onnx numbered alike)
        # fails with "Data for input 0 already exists", a fault of the propagation, not of the model.
        # Inference without it still checks every node (its own errors pass through).
        return run(data_prop=False)


# onnx's message when its data propagation meets a name a second time (see guarded_inference)
_DATA_PROPAGATION_CLASH = re.compile(r"Data for input +\d+ already exists")  # onnx prints two spaces before N


# ops whose output shape depends on the *values* of an input (a shape, sizes, axes, repeats, a count):
# the ones data propagation can help when that input is computed (Reshape(x, Concat(Shape(y), [-1])))
_VALUE_SHAPED_OPS = frozenset(
    "Reshape Expand ConstantOfShape Tile Range Slice Pad Resize Upsample Squeeze Unsqueeze TopK OneHot Split "
    "ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp "
    "ReduceSumSquare CenterCropPad Col2Im DFT STFT AffineGrid".split()
)


def _outputs_without(
    graph: onnx.GraphProto, has: Callable[[onnx.ValueInfoProto], bool], op_types: frozenset[str] | None = None
) -> bool:
    """Whether some node output of ``graph`` (this graph only; of the ``op_types`` nodes) lacks what ``has`` asks for."""
    nodes = [node for node in graph.node if op_types is None or node.op_type in op_types]
    if not nodes:
        return False
    wanted = {name for node in nodes for name in node.output if name}
    known = {value.name for value in [*graph.value_info, *graph.input, *graph.output] if value.name in wanted and has(value)}
    known.update(init.name for init in graph.initializer)
    return any(name not in known for name in wanted)


def _has_full_shape(value: onnx.ValueInfoProto) -> bool:
    """A tensor type whose every dimension is a number or a name (other types: their kind is enough)."""
    if not value.type.HasField("tensor_type"):
        return value.type.WhichOneof("value") is not None
    tensor_type = value.type.tensor_type
    return tensor_type.HasField("shape") and all(d.HasField("dim_value") or d.dim_param for d in tensor_type.shape.dim)


def data_propagation_entries(graphs: list[onnx.GraphProto]) -> int:
    """How many dimension entries ONNX data propagation would create for the known 1-D values of ``graphs``.

    onnx represents the value of every 1-D tensor of known length n that a node reads as n entries
    (and an int32/int64 initializer of n elements likewise), whatever its element type.
    """
    total = 0
    for graph in graphs:
        lengths: dict[str, int] = {}
        for value in [*graph.input, *graph.output, *graph.value_info]:
            length = _fixed_length(value.type)
            if length is not None:
                lengths[value.name] = length
        for tensor in graph.initializer:
            if len(tensor.dims) == 1:
                lengths[tensor.name] = int(tensor.dims[0])
        if lengths:
            total += sum(lengths.get(name, 0) for node in graph.node for name in node.input)
    return total


def _fixed_length(value_type: onnx.TypeProto) -> int | None:
    if not value_type.HasField("tensor_type") or not value_type.tensor_type.HasField("shape"):
        return None
    dims = value_type.tensor_type.shape.dim
    return int(dims[0].dim_value) if len(dims) == 1 and dims[0].HasField("dim_value") else None


def _has_type(value: onnx.ValueInfoProto) -> bool:
    if value.type.HasField("tensor_type"):
        return value.type.tensor_type.HasField("shape")
    return value.type.WhichOneof("value") is not None


def subgraphs(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    """``(attribute name, body)`` of every If/Loop/Scan body a node holds."""
    found = []
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            found.append((attribute.name, attribute.g))
        found.extend((f"{attribute.name}[{i}]", g) for i, g in enumerate(attribute.graphs))
    return found


def edges_without_shape(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> list[str]:
    """Names of node outputs, in the graph and in every If/Loop/Scan body below it, that carry no shape."""
    known = set(outer) | {value.name for value in [*graph.value_info, *graph.input, *graph.output] if _has_type(value)}
    known.update(init.name for init in graph.initializer)
    missing = [name for node in graph.node for name in node.output if name and name not in known]
    for node in graph.node:
        for _, body in subgraphs(node):
            missing += edges_without_shape(body, frozenset(known))
    return missing


def with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model itself if every edge has a shape, else a shape-inferred copy (the input is not modified)."""
    if not edges_without_shape(model.graph):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return infer_shapes(copy, f"ONNX graph {model.graph.name!r}")


__all__ = [
    "data_propagation_entries",
    "edges_without_shape",
    "guarded_inference",
    "infer_shapes",
    "label_unnamed_nodes",
    "light_model",
    "subgraphs",
    "with_shapes",
]
