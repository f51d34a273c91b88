"""Read an untrusted ONNX model and check it before any code is generated from it.

``load_model`` accepts a path, raw bytes or a ``ModelProto`` and returns a
:class:`LoadedModel`: the model after ONNX shape inference, its nodes in
topological order and a label (the file name) used in every error message.
Everything that can go wrong with the input (empty, truncated or corrupt
file, a cycle, a value that nothing defines, an operator domain we do not
know) becomes an :class:`~workbench.errors.OnnxModelError` naming the file and
the node, never a raw protobuf traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import onnx
import onnx.inliner
from google.protobuf.message import DecodeError

from workbench.errors import OnnxModelError

ModelSource = Union[str, os.PathLike, bytes, onnx.ModelProto]

# Domains whose operators we can translate. Model-local functions add their own domains.
KNOWN_DOMAINS = frozenset({"", "ai.onnx"})


@dataclass
class LoadedModel:
    """A checked model: the proto (after shape inference), nodes in order, and where it came from."""

    model: onnx.ModelProto
    label: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)

    @property
    def opset(self) -> int:
        """The default-domain opset version the model imports."""
        return default_opset(self.model)


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    # ONNX says a model without an explicit default-domain import uses opset 1; be explicit.
    return 1


def describe_node(node: onnx.NodeProto, index: int) -> str:
    """How a node is named in error messages: its name (repr-escaped) or its position, and its op."""
    domain = f"{node.domain}::" if node.domain else ""
    name = repr(node.name) if node.name else f"#{index}"
    return f"node {name} ({domain}{node.op_type})"


def _read_bytes(source: str | os.PathLike, label: str) -> bytes:
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise OnnxModelError(f"{label}: file not found. Check the path.") from e
    except OSError as e:
        raise OnnxModelError(f"{label}: cannot read the file ({e.strerror}).") from e
    return data


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    if not data:
        raise OnnxModelError(f"{label}: the file is empty; expected a serialized ONNX ModelProto.")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise OnnxModelError(
            f"{label}: not a valid ONNX model (protobuf decoding failed: {e}). "
            "The file may be truncated or corrupt; re-export or re-download it."
        ) from e
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise OnnxModelError(
            f"{label}: decoded, but holds no graph (no nodes and no outputs). "
            "The file may be truncated, or it is not an ONNX model."
        )
    return model


def _check_domains(model: onnx.ModelProto, label: str) -> None:
    local = {f.domain for f in model.functions}
    known = KNOWN_DOMAINS | local
    for graph_nodes in _all_node_lists(model.graph):
        for index, node in enumerate(graph_nodes):
            if node.domain not in known:
                raise OnnxModelError(
                    f"{label}: {describe_node(node, index)} uses the operator domain {node.domain!r}, "
                    f"which has no JAX emitters (known: {sorted(known)!r}). "
                    "Re-export the model with standard ONNX operators."
                )


def _all_node_lists(graph: onnx.GraphProto):
    yield list(graph.node)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_node_lists(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_node_lists(sub)


def _subgraph_free_names(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names a node's subgraphs read (they count as inputs of the node for ordering)."""
    used: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
            for sub in graph.node:
                used.update(n for n in sub.input if n and n not in defined)
                used.update(n for n in _subgraph_free_names(sub) if n not in defined)
                defined.update(sub.output)
            used.update(o.name for o in graph.output if o.name not in defined)
    return used


def topological_order(
    graph: onnx.GraphProto, label: str, outer_names: frozenset[str] = frozenset()
) -> list[onnx.NodeProto]:
    """The graph's nodes ordered so every value is defined before use."""
    return [graph.node[i] for i in topological_indices(graph, label, outer_names)]


def topological_indices(
    graph: onnx.GraphProto, label: str, outer_names: frozenset[str] = frozenset()
) -> list[int]:
    """Order the nodes so every value is defined before use; report cycles and undefined inputs."""
    available = set(outer_names) | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    available |= {t.name for t in graph.sparse_initializer} | {""}
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for out in node.output:
            if out:
                producer[out] = index
    needs = []
    for index, node in enumerate(graph.node):
        names = set(node.input) | _subgraph_free_names(node)
        for name in sorted(names):
            if name not in available and name not in producer:
                raise OnnxModelError(
                    f"{label}: {describe_node(node, index)} reads the value {name!r}, which no node, "
                    "graph input or initializer defines. The model is incomplete or was edited by hand."
                )
        needs.append({producer[n] for n in names if n not in available and n in producer})
    order: list[int] = []
    state = [0] * len(graph.node)  # 0 new, 1 on stack, 2 done
    for start in range(len(graph.node)):
        if state[start]:
            continue
        stack = [(start, iter(sorted(needs[start])))]
        state[start] = 1
        while stack:
            index, pending = stack[-1]
            nxt = next(pending, None)
            if nxt is None:
                state[index] = 2
                order.append(index)
                stack.pop()
            elif state[nxt] == 1:
                node = graph.node[nxt]
                raise OnnxModelError(
                    f"{label}: the graph has a cycle through {describe_node(node, nxt)}; "
                    "ONNX graphs must be acyclic (use Loop for iteration)."
                )
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(needs[nxt]))))
    for out in graph.output:
        if out.name not in available and out.name not in producer:
            raise OnnxModelError(
                f"{label}: graph output {out.name!r} is not produced by any node or input."
            )
    return order


# Float weights never decide a shape, so shape inference runs without their bytes: onnx
# serializes the whole model to infer it, which was most of the generation time for a
# 1,700-node CNN with its weights. Integer initializers (shapes, axes) keep their values.
_FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
)
_DETACH_MIN_BYTES = 4096


def _infer_shapes(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """``onnx.shape_inference.infer_shapes`` (data propagation on) with the big float weights set aside."""
    detached: dict[int, bytes] = {}
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.data_type in _FLOAT_TYPES and len(tensor.raw_data) >= _DETACH_MIN_BYTES:
            detached[index] = tensor.raw_data
            tensor.ClearField("raw_data")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as e:
        raise OnnxModelError(f"{label}: ONNX shape inference rejected the model: {e}") from e
    finally:
        for index, data in detached.items():
            model.graph.initializer[index].raw_data = data
    for index, data in detached.items():
        # inference keeps the initializer list as it is, so the indices still apply
        restored = inferred.graph.initializer[index]
        if restored.name != model.graph.initializer[index].name:  # pragma: no cover - onnx contract
            raise AssertionError("shape inference reordered the initializers")
        restored.raw_data = data
    return inferred


def load_model(source: ModelSource, *, infer_shapes: bool = True) -> LoadedModel:
    """Read and validate an ONNX model from a path, bytes or a ``ModelProto``."""
    if isinstance(source, onnx.ModelProto):
        label = f"model {source.graph.name!r}" if source.graph.name else "model"
        model = onnx.ModelProto()
        model.CopyFrom(source)
    elif isinstance(source, (bytes, bytearray)):
        label = "<bytes>"
        model = _parse(bytes(source), label)
    elif isinstance(source, (str, os.PathLike)):
        label = os.fspath(source)
        model = _parse(_read_bytes(source, label), label)
        if model.graph.initializer and any(
            t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer
        ):
            try:
                onnx.load_external_data_for_model(model, str(Path(label).parent))
            except (OSError, ValueError) as e:
                raise OnnxModelError(f"{label}: cannot load external weight data: {e}") from e
    else:
        raise ValueError(
            f"expected a path, bytes or onnx.ModelProto, got {type(source).__name__}"
        )
    _check_domains(model, label)
    if model.functions:
        # model-local functions are expanded into plain nodes by onnx's own inliner
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as e:  # noqa: BLE001 - the inliner raises several C++-level error types
            raise OnnxModelError(f"{label}: cannot expand the model-local functions: {e}") from e
    order = topological_indices(model.graph, label)
    if infer_shapes:
        model = _infer_shapes(model, label)
    # shape inference keeps the node list as it is, so the indices still apply
    nodes = [model.graph.node[i] for i in order]
    return LoadedModel(model=model, label=label, nodes=nodes)
