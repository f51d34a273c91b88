"""Rewrite an ONNX model into forms onnxruntime-web's wasm build has kernels for.

onnxruntime-web's wasm build registers fewer type variants of some CPU kernels than onnxruntime in Python.
:data:`WASM_KERNEL_GAPS` lists the (op, input dtype) pairs onnxruntime 1.31 runs and onnxruntime-web
1.30.0's wasm build refuses ("Could not find an implementation for Where(16)"), measured on the build
itself by ``python -m tests.benchmarks.probe_web_kernels`` (one single-node model per op and dtype, 564
cases, each opened with onnxruntime-web in Node and with onnxruntime in Python). JAX programs reach them:
``jnp.floor_divide``/``jnp.remainder`` on the uint32 counters of ``jax.random`` select with ``Where``.

:func:`web_compatible` widens each such node's data inputs with ``Cast`` to a type the build has (every
value of the narrow type fits: the rewrite is exact), runs the op there and casts the result back.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper, inliner

#: (op type, data input dtype) -> the dtype to run it in: onnxruntime-web 1.30.0 wasm has no kernel for the key.
WASM_KERNEL_GAPS: dict[tuple[str, int], int] = {
    ("Where", TensorProto.INT8): TensorProto.INT32,
    ("Where", TensorProto.UINT32): TensorProto.INT64,
}
#: per op: the indices of its inputs that carry the data (``Where``'s condition stays bool).
_DATA_INPUTS: dict[str, tuple[int, ...]] = {"Where": (1, 2)}


@dataclass(frozen=True)
class WebRewrite:
    """One node rewritten by :func:`web_compatible`."""

    node: str
    op_type: str
    dtype: str
    runs_as: str

    def __str__(self) -> str:
        return f"{self.op_type} {self.node!r} on {self.dtype} runs on {self.runs_as} (Cast in and out)"


def _types(graph: onnx.GraphProto, outer: dict[str, int]) -> dict[str, int]:
    types = dict(outer)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    for tensor in graph.initializer:
        types[tensor.name] = tensor.data_type
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attribute in node.attribute:
                if attribute.name == "value":
                    types[node.output[0]] = attribute.t.data_type
    return types


def _rewrite_graph(graph: onnx.GraphProto, outer: dict[str, int], done: list[WebRewrite]) -> None:
    types = _types(graph, outer)
    nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _rewrite_graph(attribute.g, types, done)
            for sub in attribute.graphs:
                _rewrite_graph(sub, types, done)
        data = _DATA_INPUTS.get(node.op_type, ())
        dtype = types.get(node.input[data[0]]) if data and node.domain in ("", "ai.onnx") else None
        wide = WASM_KERNEL_GAPS.get((node.op_type, dtype)) if dtype is not None else None
        if wide is None:
            nodes.append(node)
            continue
        tag = f"{node.name or node.op_type}__web{index}"
        inputs = list(node.input)
        for position in data:
            widened = f"{tag}_in{position}"
            nodes.append(helper.make_node("Cast", [inputs[position]], [widened], name=f"{tag}_cast{position}", to=wide))
            inputs[position] = widened
        result = f"{tag}_out"
        nodes.append(helper.make_node(node.op_type, inputs, [result], name=node.name, domain=node.domain))
        nodes[-1].attribute.extend(node.attribute)
        nodes.append(helper.make_node("Cast", [result], [node.output[0]], name=f"{tag}_back", to=dtype))
        name = TensorProto.DataType.Name
        done.append(WebRewrite(node.name, node.op_type, name(dtype).lower(), name(wide).lower()))
    del graph.node[:]
    graph.node.extend(nodes)


def _needs_inlining(model: onnx.ModelProto) -> bool:
    return any(node.op_type in _DATA_INPUTS for function in model.functions for node in function.node)


def web_compatible(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[WebRewrite]]:
    """A copy of ``model`` that onnxruntime-web's wasm build runs, and the nodes rewritten for it.

    Model-local functions whose bodies hold an op of :data:`WASM_KERNEL_GAPS` are inlined first
    (onnxruntime inlines them when it loads the model anyway), so that every node's input types are known.
    A model with nothing to rewrite is returned unchanged (the same object).
    """
    if not _needs_inlining(model) and not any(node.op_type in _DATA_INPUTS for node in _all_nodes(model.graph)):
        return model, []  # no copy: the common case, and a model beyond 2 GB cannot be serialized to one
    from workbench.errors import OnnxModelError

    try:
        candidate = onnx.ModelProto.FromString(model.SerializeToString())
        if _needs_inlining(candidate):
            candidate = inliner.inline_local_functions(candidate)
        typed = onnx.shape_inference.infer_shapes(candidate)
    except (ValueError, onnx.shape_inference.InferenceError) as error:
        raise OnnxModelError(
            f"could not type the model's nodes to rewrite them for onnxruntime-web ({error}); "
            "pass web_rewrite=False to export it unchanged"
        ) from error
    done: list[WebRewrite] = []
    _rewrite_graph(typed.graph, {}, done)
    if not done:
        return model, []
    return typed, done


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    found = list(graph.node)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += _all_nodes(attribute.g)
            for sub in attribute.graphs:
                found += _all_nodes(sub)
    return found


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else []) + list(attribute.graphs):
                found += _graphs(sub)
    return found


def bfloat16_value(model: onnx.ModelProto) -> str | None:
    """The first value of ``model`` that is bfloat16 (an input, weight, constant or a node's result), if any.

    onnxruntime-web 1.30.0's wasm build has no bfloat16 kernel at all, not even ``Cast``: a bfloat16 Linen block
    exported with ``runtime="onnxruntime-cpu"`` (which loads in onnxruntime 1.31) failed to load in the page with
    "Could not find an implementation for Cast(21) node with name 'const_8.float32'" (measured by ux51).
    """
    for graph in _graphs(model.graph):
        for name, elem_type in _types(graph, {}).items():
            if elem_type == TensorProto.BFLOAT16:
                return name
    nodes = [*_all_nodes(model.graph), *(node for function in model.functions for node in function.node)]
    for node in nodes:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.BFLOAT16 for a in node.attribute):
            return node.output[0]
    return None


__all__ = ["WASM_KERNEL_GAPS", "WebRewrite", "bfloat16_value", "web_compatible"]
