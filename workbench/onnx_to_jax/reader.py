"""Check an untrusted ONNX model before any code is generated from it.

:func:`read_model` loads a path, raw bytes or a ``ModelProto`` with :mod:`workbench.onnx_io`
and returns a :class:`CheckedModel`: the model (a private copy) after function inlining and ONNX
shape inference, and its nodes in topological order. Everything that can go wrong with the input
(empty, truncated or corrupt file, a cycle, a value that nothing defines, an operator domain we
do not know) becomes an :class:`~workbench.errors.OnnxModelError` naming the file and the node,
never a raw protobuf traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import onnx

from workbench.errors import OnnxModelError, UnsupportedOnnxOpError, warn
from workbench.onnx_io import LoadedModel, ModelSource, default_opset, describe_inputs, infer_shapes, load_model
from workbench.onnx_io.describe import model_graphs
from workbench.onnx_io.order import describe_node, sort_in_place, topological_indices
from workbench.onnx_io.shapes import drop_stated_shapes, light_model, spell_out_defaults
from workbench.onnx_io.validate import check_computed_sizes, check_model_rules, check_single_assignment
from workbench.onnx_to_jax.local_functions import inline_functions
from workbench.onnx_io.runtime_ops import RUNTIME_ONNX_OPS

# Domains whose operators we can translate (onnxruntime's com.microsoft: the fused ops its optimizer and
# quantization tools write). Model-local functions add their own domains.
KNOWN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training", "com.microsoft"})
# what a graph input may be: the generated function takes arrays, lists (sequences) and None (optionals)
SUPPORTED_INPUT_KINDS = ("tensor", "sequence", "optional")


@dataclass(frozen=True)
class CheckedModel:
    """A model the reader accepted: ``loaded`` (inlined, shapes inferred) and its nodes in order."""

    loaded: LoadedModel
    nodes: tuple[onnx.NodeProto, ...]

    @property
    def opset(self) -> int:
        """The default-domain opset; ONNX says a model without an explicit import uses opset 1."""
        opset = default_opset(self.loaded.proto)
        return 1 if opset is None else opset


def _check_domains(model: onnx.ModelProto, label: str) -> None:
    """Every node whose operator domain has no emitters, counted by operator, in one error."""
    local = {f.domain for f in model.functions}
    known = KNOWN_DOMAINS | local
    first: dict[str, str] = {}  # "domain::Op" -> the first node using it
    counts: dict[str, int] = {}
    for graph in model_graphs(model):
        for index, node in enumerate(graph.node):
            if node.domain not in known:
                op = f"{node.domain}::{node.op_type}"
                first.setdefault(op, describe_node(node, index))
                counts[op] = counts.get(op, 0) + 1
    if not first:
        return
    listed = "; ".join(f"{op!r} x{counts[op]} (first: {where})" for op, where in first.items())
    domains = sorted({op.split("::")[0] for op in first})
    raise OnnxModelError(
        f"{label}: {sum(counts.values())} node(s) use operator domain(s) {domains}, which have no JAX emitters "
        f"(known: {sorted(known)!r}): {listed}. Re-export the model with standard ONNX operators (or with "
        "onnxruntime's com.microsoft ones, which are supported)."
    )


def _check_input_kinds(model: onnx.ModelProto, label: str) -> None:
    for value in describe_inputs(model.graph):
        if value.kind not in SUPPORTED_INPUT_KINDS:
            raise UnsupportedOnnxOpError(
                f"{label}: graph input {value.name!r} is a {value.kind}; only tensors, sequences and optionals are supported"
            )


def _strict_inference(model: onnx.ModelProto, label: str, light: onnx.ModelProto) -> onnx.ModelProto:
    """Strict shape inference of ``model`` on its light copy ``light`` (``light_model``; changed), its
    attributes' defaults spelled out first."""
    spell_out_defaults(light)  # what onnxruntime assumes and onnx's function-body inference misses
    return infer_shapes(model, label, strict=True, light=light)


def _infer_without_stated_shapes(model: onnx.ModelProto, label: str, error: OnnxModelError) -> onnx.ModelProto:
    """Strict shape inference once more without the shapes the file states for its intermediate values
    (``value_info``) and outputs (``model`` is the reader's own copy: changed in place), as onnxruntime does when
    a stated shape contradicts the one it infers (it logs the clash and runs the graph as it computes). Some
    exporters leave stale shapes there: jax2onnx 0.17.1 states the NHWC shapes of values it has laid out NCHW,
    and onnxruntime runs those models where onnx's strict inference refuses them. Graph inputs keep their
    shapes. Raises ``error`` (about the file as given) when the file states no such shape or inference fails
    without them.
    """
    if not drop_stated_shapes(model):
        raise error
    try:
        inferred = _strict_inference(model, label, light_model(model)[0])
    except OnnxModelError:
        raise error from error.__cause__  # the graph itself is at fault: the message of the file as given
    clash = str(error.__cause__ or error).strip().split("\n", 1)[0]  # onnx's message: the first node and dims at odds
    warn(f"{label}: the shapes this file states for intermediate values (its value_info) or outputs contradict what "
         f"the graph computes ({clash}); they were ignored and the shapes inferred from the graph used instead, as "
         "onnxruntime does. Re-export the model to fix the file.")
    return inferred


def read_model(source: ModelSource, *, base_dir: str | os.PathLike[str] | None = None) -> CheckedModel:
    """Load and validate an ONNX model from a path, bytes or a ``ModelProto`` (never modified).

    ``base_dir``: the folder of the external data files of a model given as bytes or a ModelProto.
    The checks of :func:`workbench.onnx_io.validate.check_model_rules` and strict shape inference
    (together what ``onnx.checker.check_model(full_check=True)`` checks, and more) run before any
    code is generated.
    """
    loaded = load_model(source, copy=True, base_dir=base_dir)
    model, label = loaded.proto, loaded.label
    _check_domains(model, label)
    _check_input_kinds(model, label)
    check_single_assignment(model, label)  # before sorting: a value defined twice is the fault, not what goes missing
    # ONNX wants nodes in topological order; like onnxruntime we accept any order (sorted here, once)
    sort_in_place(model.graph, label)
    light = light_model(model)  # the checker and shape inference both run on it (onnx serializes what it gets)
    check_model_rules(model, label, runtime_ops={op for op, _ in RUNTIME_ONNX_OPS}, light=light,
                      single_assignment_checked=True)
    order = list(range(len(model.graph.node)))  # sorted above
    if model.functions:
        # model-local functions are expanded into plain nodes by onnx's own inliner
        model = inline_functions(model, label)
        order = topological_indices(model.graph, label)
        light = light_model(model)
    try:
        model = _strict_inference(model, label, light[0])
    except OnnxModelError as error:
        model = _infer_without_stated_shapes(model, label, error)
    check_computed_sizes(model, label)
    # shape inference keeps the node list as it is, so the indices still apply
    nodes = tuple(model.graph.node[i] for i in order)
    return CheckedModel(LoadedModel(model, label, loaded.folder), nodes)
