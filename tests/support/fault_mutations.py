"""Seeded mutations of valid ONNX models, for the fault sweep (tests/hardening/fault_sweep.py).

Each mutation takes a private copy of a valid model and a ``numpy.random.Generator`` and returns a
:class:`Mutant`: the broken model (a ModelProto, or bytes for the byte-level kinds) and the names an
error message about it should mention (the value, node, attribute or opset at fault), or ``None``
when the model has nothing the mutation applies to. The same seed gives the same mutant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper


@dataclass(frozen=True)
class Mutant:
    """A broken model (ModelProto, or serialized bytes) and the names its error should mention (any one)."""

    model: onnx.ModelProto | bytes
    targets: tuple[str, ...]
    what: str  # one line: what was changed, for the sweep's table of unclean cases


MISSING = "fuzz_missing_value"
UNKNOWN_DOMAIN = "org.fuzz.unknown"


def graphs(model: onnx.ModelProto) -> list[onnx.GraphProto]:
    """The main graph and every subgraph (If/Loop/Scan bodies), outermost first."""
    found = [model.graph]
    for graph in found:
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == AttributeProto.GRAPH:
                    found.append(attribute.g)
                found.extend(attribute.graphs)
    return found


def _nodes(model: onnx.ModelProto) -> list[tuple[onnx.GraphProto, onnx.NodeProto]]:
    return [(graph, node) for graph in graphs(model) for node in graph.node]


def node_label(node: onnx.NodeProto) -> tuple[str, ...]:
    """The names a message may use for a node: its name (if any) and its op type."""
    return tuple(name for name in (node.name, node.op_type) if name)


def _pick(rng: np.random.Generator, items: list) -> object | None:
    return items[int(rng.integers(len(items)))] if items else None


# ------------------------------------------------------------------------------ graph structure
def missing_input(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    picked = _pick(rng, [(n, i) for _, n in _nodes(model) for i, name in enumerate(n.input) if name])
    if picked is None:
        return None
    node, index = picked
    old = node.input[index]
    node.input[index] = MISSING
    return Mutant(model, (MISSING,), f"{node.op_type} input {index} {old!r} -> {MISSING!r}")


def drop_output(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    """A node's output name cleared (its consumers lose their producer), or a graph output removed."""
    if rng.random() < 0.5 and len(model.graph.output) > 0:
        index = int(rng.integers(len(model.graph.output)))
        name = model.graph.output[index].name
        del model.graph.output[index]
        return Mutant(model, (name, "output"), f"graph output {name!r} removed")
    picked = _pick(rng, [n for _, n in _nodes(model) if n.output])
    if picked is None:
        return None
    index = int(rng.integers(len(picked.output)))
    name = picked.output[index]
    picked.output[index] = ""
    return Mutant(model, (name, *node_label(picked)), f"{picked.op_type} output {index} {name!r} cleared")


def duplicate_name(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    """A node writes a value another node, an input or an initializer already defines."""
    graph_names = [v.name for v in model.graph.input] + [t.name for t in model.graph.initializer]
    top = [n for n in model.graph.node if n.output]
    if not top:
        return None
    node = _pick(rng, top)
    choices = [name for name in graph_names if name] + [o for n in top for o in n.output if o and n is not node]
    name = _pick(rng, choices)
    if name is None:
        return None
    node.output[0] = name
    return Mutant(model, (name,), f"{node.op_type} output 0 renamed to the existing {name!r}")


def cycle(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    """The first node reads the output of the last (a node reading its own output when there is one)."""
    nodes = [n for n in model.graph.node if n.input and n.output]
    if not nodes:
        return None
    first, last = nodes[0], nodes[-1]
    index = int(rng.integers(len(first.input)))
    first.input[index] = last.output[0]
    return Mutant(model, (last.output[0], *node_label(first), *node_label(last)), f"{first.op_type} reads {last.output[0]!r}")


# ------------------------------------------------------------------------------ attributes
def _attributes(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, AttributeProto]]:
    return [(n, a) for _, n in _nodes(model) for a in n.attribute]


def attribute_deleted(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    picked = _pick(rng, _attributes(model))
    if picked is None:
        return None
    node, attribute = picked
    name = attribute.name
    node.attribute.remove(attribute)
    return Mutant(model, (name, *node_label(node)), f"{node.op_type}.{name} deleted")


def attribute_wrong_type(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    picked = _pick(rng, _attributes(model))
    if picked is None:
        return None
    node, attribute = picked
    replacement = AttributeProto(name=attribute.name)
    if attribute.type == AttributeProto.INT:
        replacement.type, replacement.f = AttributeProto.FLOAT, float(attribute.i) + 0.5
    elif attribute.type == AttributeProto.INTS:
        replacement.type = AttributeProto.INT if rng.random() < 0.5 else AttributeProto.FLOATS
        if replacement.type == AttributeProto.INT:
            replacement.i = attribute.ints[0] if attribute.ints else 1
        else:
            replacement.floats.extend(float(v) for v in attribute.ints)
    elif attribute.type == AttributeProto.FLOAT:
        replacement.type, replacement.s = AttributeProto.STRING, b"fuzz"
    elif attribute.type == AttributeProto.STRING:
        replacement.type, replacement.i = AttributeProto.INT, 7
    else:
        replacement.type = AttributeProto.INTS
        replacement.ints.extend([1, 2])
    node.attribute.remove(attribute)
    node.attribute.append(replacement)
    kind = AttributeProto.AttributeType.Name(replacement.type)
    return Mutant(model, (attribute.name, *node_label(node)), f"{node.op_type}.{attribute.name} made {kind}")


_OUT_OF_RANGE = (-99, 99, 0, -1, 1 << 40, -(1 << 40), 1 << 62)


def attribute_out_of_range(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    picked = _pick(rng, [(n, a) for n, a in _attributes(model)
                         if a.type in (AttributeProto.INT, AttributeProto.INTS, AttributeProto.FLOAT)])  # fmt: skip
    if picked is None:
        return None
    node, attribute = picked
    value = int(_OUT_OF_RANGE[int(rng.integers(len(_OUT_OF_RANGE)))])
    if attribute.type == AttributeProto.INT:
        attribute.i = value
    elif attribute.type == AttributeProto.FLOAT:
        attribute.f = float(("nan", "inf", "-1e30")[int(rng.integers(3))])
        value = attribute.f
    elif attribute.ints:
        attribute.ints[int(rng.integers(len(attribute.ints)))] = value
    else:
        attribute.ints.append(value)
    return Mutant(model, (attribute.name, *node_label(node)), f"{node.op_type}.{attribute.name} element = {value}")


# ------------------------------------------------------------------------------ types, shapes, data
_ELEMENT_TYPES = (TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32, TensorProto.DOUBLE, TensorProto.BOOL,
                  TensorProto.FLOAT16, TensorProto.STRING, TensorProto.UINT8)  # fmt: skip


def _values(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    graph = model.graph
    return [v for v in [*graph.input, *graph.output, *graph.value_info] if v.type.HasField("tensor_type")]


def input_dtype(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    initializers = {t.name for t in model.graph.initializer}
    value = _pick(rng, [v for v in model.graph.input if v.name not in initializers and v.type.HasField("tensor_type")])
    if value is None:
        return None
    old = value.type.tensor_type.elem_type
    new = _pick(rng, [t for t in _ELEMENT_TYPES if t != old])
    value.type.tensor_type.elem_type = new
    return Mutant(model, (value.name,), f"input {value.name!r} {TensorProto.DataType.Name(old)} -> {TensorProto.DataType.Name(new)}")


def _raw(tensor: TensorProto) -> None:
    """Move a tensor's data into raw_data (how most exporters store it)."""
    if tensor.HasField("raw_data") or tensor.data_type == TensorProto.STRING:
        return
    array = numpy_helper.to_array(tensor)
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))


def _initializer(model: onnx.ModelProto, rng: np.random.Generator) -> TensorProto | None:
    return _pick(rng, [t for t in model.graph.initializer if t.data_type != TensorProto.STRING and not t.data_location])


def initializer_dtype(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    tensor = _initializer(model, rng)
    if tensor is None:
        return None
    _raw(tensor)
    old = tensor.data_type
    tensor.data_type = _pick(rng, [t for t in _ELEMENT_TYPES if t not in (old, TensorProto.STRING)])
    return Mutant(model, (tensor.name,), f"initializer {tensor.name!r} {TensorProto.DataType.Name(old)} -> "
                                          f"{TensorProto.DataType.Name(tensor.data_type)} (same bytes)")  # fmt: skip


def raw_data_resized(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    tensor = _initializer(model, rng)
    if tensor is None:
        return None
    _raw(tensor)
    size = len(tensor.raw_data)
    if rng.random() < 0.5 and size:
        tensor.raw_data = tensor.raw_data[: int(rng.integers(size))]
    else:
        tensor.raw_data = tensor.raw_data + bytes(int(rng.integers(1, 64)))
    return Mutant(model, (tensor.name,), f"initializer {tensor.name!r} raw_data {size} -> {len(tensor.raw_data)} bytes")


def shape_inconsistent(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    value = _pick(rng, [v for v in _values(model) if v.type.tensor_type.HasField("shape")])
    if value is None:
        return None
    dims = value.type.tensor_type.shape.dim
    if dims and rng.random() < 0.6:
        dim = dims[int(rng.integers(len(dims)))]
        old = dim.dim_value if dim.HasField("dim_value") else dim.dim_param
        dim.dim_value = (dim.dim_value + 1) if dim.HasField("dim_value") else 3
        what = f"{value.name!r} dim {old!r} -> {dim.dim_value}"
    else:
        dims.add().dim_value = 5
        what = f"{value.name!r} gained a dim (rank {len(dims)})"
    return Mutant(model, (value.name,), what)


def dim_huge(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    value = _pick(rng, [v for v in _values(model) if v.type.tensor_type.shape.dim])
    if value is None:
        return None
    dims = value.type.tensor_type.shape.dim
    dim = dims[int(rng.integers(len(dims)))]
    dim.dim_value = int((1 << 31, 1 << 40, 1 << 62)[int(rng.integers(3))])
    return Mutant(model, (value.name,), f"{value.name!r} dim -> {dim.dim_value}")


# ------------------------------------------------------------------------------ opsets, domains, subgraphs
def opset_changed(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    default = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not default:
        return None
    choice = int(rng.integers(3))
    if choice == 0:
        model.opset_import.remove(default[0])
        return Mutant(model, ("opset", "ai.onnx"), "default opset import removed")
    default[0].version = (1, 99)[choice - 1]
    return Mutant(model, ("opset",), f"default opset -> {default[0].version}")


def unknown_domain(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    graph, node = _pick(rng, _nodes(model)) or (None, None)
    if node is None:
        return None
    node.domain = UNKNOWN_DOMAIN
    if rng.random() < 0.5:
        model.opset_import.add(domain=UNKNOWN_DOMAIN, version=1)
    return Mutant(model, (UNKNOWN_DOMAIN, *node_label(node)), f"{node.op_type} moved to domain {UNKNOWN_DOMAIN}")


def subgraph_io(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    picked = _pick(rng, [(n, a) for _, n in _nodes(model) for a in n.attribute if a.type == AttributeProto.GRAPH])
    if picked is None:
        return None
    node, attribute = picked
    body = attribute.g
    choice = int(rng.integers(3))
    if choice == 0 and body.input:
        removed = body.input[len(body.input) - 1].name
        del body.input[len(body.input) - 1]
        what = f"{node.op_type}.{attribute.name} lost input {removed!r}"
    elif choice == 1 and body.output:
        removed = body.output[len(body.output) - 1].name
        del body.output[len(body.output) - 1]
        what = f"{node.op_type}.{attribute.name} lost output {removed!r}"
    else:
        extra = body.output.add()
        extra.CopyFrom(body.output[0] if len(body.output) > 1 else onnx.helper.make_tensor_value_info("fuzz_extra", TensorProto.FLOAT, [1]))
        what = f"{node.op_type}.{attribute.name} gained output {extra.name!r}"
    return Mutant(model, (*node_label(node), attribute.name, body.name), what)


# ------------------------------------------------------------------------------ the serialized file
def bytes_flipped(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    data = bytearray(model.SerializeToString())
    for _ in range(int(rng.integers(1, 5))):
        position = int(rng.integers(len(data)))
        data[position] ^= int(rng.integers(1, 256))
    return Mutant(bytes(data), (), "bytes flipped")


def bytes_truncated(model: onnx.ModelProto, rng: np.random.Generator) -> Mutant | None:
    data = model.SerializeToString()
    cut = int(rng.integers(len(data)))
    return Mutant(data[:cut], (), f"truncated to {cut} of {len(data)} bytes")


MUTATIONS: dict[str, Callable[[onnx.ModelProto, np.random.Generator], Mutant | None]] = {
    "missing_input": missing_input,
    "drop_output": drop_output,
    "duplicate_name": duplicate_name,
    "cycle": cycle,
    "attr_deleted": attribute_deleted,
    "attr_wrong_type": attribute_wrong_type,
    "attr_out_of_range": attribute_out_of_range,
    "input_dtype": input_dtype,
    "initializer_dtype": initializer_dtype,
    "raw_data_resized": raw_data_resized,
    "shape_inconsistent": shape_inconsistent,
    "dim_huge": dim_huge,
    "opset": opset_changed,
    "unknown_domain": unknown_domain,
    "subgraph_io": subgraph_io,
    "bytes_flipped": bytes_flipped,
    "bytes_truncated": bytes_truncated,
}


def mutants(model: onnx.ModelProto, kind: str, seed: int, count: int) -> Iterator[Mutant]:
    """Up to ``count`` mutants of ``model`` of one kind (fewer when the model offers nothing to mutate)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        mutant = MUTATIONS[kind](copy, rng)
        if mutant is None:
            return
        yield mutant
