"""Make a bfloat16 / float16 / int16 model load in onnxruntime's CPU provider: widen the nodes it has no kernel for.

A model that computes in bfloat16 (a Flax or Equinox model with bfloat16 parameters, a mixed-precision
policy, ``precision="bfloat16"``) is valid ONNX that onnxruntime's CPU provider refuses: it has no
bfloat16 kernel for MatMul, Add, Max, Exp... (nor an int16 one for Max, Min, Relu). This pass asks the
installed onnxruntime which nodes it cannot run (:mod:`workbench.onnx_io.cpu_kernels`) and makes each
of them compute in the wider type (bfloat16 and float16 in float32, int16 in int32) between Casts; every
other node is left as it is. Each widened result is cast back to its own type, so the model rounds at
the same places as before: for the correctly rounded ops (Add, Sub, Mul, Div, Sqrt, Max, Min, Relu,
comparisons, Where...) computing in float32 and rounding once to bfloat16 or float16 gives the bits the
half-precision op gives (float32's 24 bits are at least 2p + 2 for both, p = 8 and 11, so the double
rounding is innocuous); MatMul, Exp, Tanh, Erf... round once where a half-precision kernel may round more often, and
their transcendental approximations are onnxruntime's.

Nodes inside If/Loop/Scan bodies are widened in their body (a cast of an outer value sits at the top
of the body that reads it); cast names are unique across the nested scopes. A model-local function
(``@wb.onnx_function``) whose body computes in a narrow type is inlined first: an ONNX function's inputs
carry no types, so its nodes cannot be probed in the body (onnxruntime inlines every call when it
loads the model anyway); functions computing in other types stay functions. A model written elsewhere
(onnx.helper, onnxscript) often states no types inside its functions, nor for the graph's inner values:
a function whose untyped body casts to a narrow type, or that is called on narrow values, is inlined
too, and the values without a type get the one ONNX shape inference finds before the probes run.

Learnt from onnxruntime's own float16 handling on CPU (its graph transformer that puts float16 nodes
without a kernel between Casts to float32), applied here to the types it leaves unrunnable. The casts
come from the precision pass's :class:`~workbench.jax_to_onnx.casts.CastInserter`: one per value and type,
shared by every reader.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir
from onnx_ir.passes.common import InlinePass

from workbench.errors import OnnxModelError
from workbench.jax_to_onnx.casts import CastInserter
from workbench.onnx_io.cpu_kernels import element_type, signature, without_cpu_kernel
from workbench.onnx_io.schema_types import schema_types
from workbench.onnx_io.inferred_types import infer_missing_types

#: The runtimes a model can be made to load in (``runtime=`` of ``wb.to_onnx`` / ``wb.convert``).
RUNTIMES = ("onnxruntime-cpu",)

#: The type a node without a kernel computes in instead of each narrow type.
WIDER: dict[ir.DataType, ir.DataType] = {
    ir.DataType.BFLOAT16: ir.DataType.FLOAT,
    ir.DataType.FLOAT16: ir.DataType.FLOAT,
    ir.DataType.INT16: ir.DataType.INT32,  # int16 sums and products fit; the cast back wraps as int16 does
}


@dataclass(frozen=True)
class Widened:
    """One node made to compute wider: its name and what it computed on before."""

    node: str
    was: str  # e.g. "MatMul (opset 21) on bfloat16, bfloat16 -> bfloat16"


def widen_for_cpu(model: ir.Model) -> list[Widened]:
    """Make every node of ``model`` (If/Loop/Scan bodies included) that onnxruntime's CPU provider has
    no kernel for compute in the wider type between Casts, in place; returns the nodes widened.

    Raises:
        OnnxModelError: a node still has no kernel once widened (or has no narrow type to widen),
            naming it, its op and types.
    """
    infer_missing_types(model)  # a foreign model states few types: the probes need every value's
    _inline_narrow_functions(model)
    infer_missing_types(model)  # the inlined bodies' values
    if not has_narrow_types(model):
        return []  # nothing to widen: a float32 model is not probed (its session says what it lacks)
    opsets = dict(model.opset_imports)
    missing = without_cpu_kernel(model)
    plan = [node for node in missing if any(element_type(v) in WIDER for v in (*node.inputs, *node.outputs) if v is not None)]
    widened = [Widened(node.name or node.op_type, _describe(node, opsets)) for node in plan]
    _rewrite_graphs(model, plan)
    still = without_cpu_kernel(model, missing)
    if still:
        listed = "; ".join(f"{node.name!r}: {_describe(node, opsets)}" for node in still)
        raise OnnxModelError(
            f"onnxruntime's CPU provider has no kernel for {len(still)} node(s), with their bfloat16/float16/int16 "
            f"values computed in float32/int32: {listed}. Run the model with a provider that has them, or "
            f"compute those ops in another type in the function."
        )
    return widened


def _inline_narrow_functions(model: ir.Model) -> None:
    """Inline, in place, the calls of model-local functions whose bodies compute in a narrow type: a body
    value typed bfloat16/float16/int16, or, in a body that states no types (a function written with
    onnx.helper or onnxscript), a narrow value at one of its calls, a Cast or constant of a narrow type."""
    called_narrow = {
        (node.domain, node.op_type, node.overload)
        for node in model.graph.all_nodes()
        if any(element_type(v) in WIDER for v in (*node.inputs, *node.outputs) if v is not None)
    }

    def computes_narrow(function: ir.Function) -> bool:
        if _is_narrow(function):
            return True
        untyped = any(v.type is None for node in function.all_nodes() for v in node.outputs)
        return untyped and (function.identifier() in called_narrow or any(_makes_narrow(n) for n in function.all_nodes()))

    if any(computes_narrow(function) for function in model.functions.values()):
        InlinePass(criteria=computes_narrow)(model)


def _is_narrow(function: ir.Function) -> bool:
    """Whether a value ``function``'s body computes (its If/Loop/Scan bodies included) is of a narrow type."""
    return any(element_type(v) in WIDER for node in function.all_nodes() for v in node.outputs)


def _makes_narrow(node: ir.Node) -> bool:
    """Whether ``node`` casts to a narrow type or is a constant of one (what a body without types tells)."""
    if node.op_type == "Cast" and node.domain in ("", "ai.onnx") and "to" in node.attributes:
        return ir.DataType(node.attributes["to"].as_int()) in WIDER
    value = node.attributes.get("value")
    return node.op_type == "Constant" and value is not None and value.type == ir.AttributeType.TENSOR and (
        value.as_tensor().dtype in WIDER
    )


def has_narrow_types(model: ir.Model) -> bool:
    """Whether a value of the model (its If/Loop/Scan bodies included) is bfloat16, float16 or int16
    (else nothing here applies)."""
    graph = model.graph
    values = [*graph.inputs, *graph.initializers.values(), *(o for node in graph.all_nodes() for o in node.outputs)]
    return any(element_type(v) in WIDER for v in values)


def widen_invalid_types(model: ir.Model) -> list[Widened]:
    """Make the default-domain nodes whose ONNX schema (at the model's opset) does not take their
    bfloat16 / float16 / int16 types compute in the wider type between Casts, in place.

    JAX computes a convolution, a rounding or an integer matmul in any type, ONNX not: ``Conv`` takes
    no bfloat16 before opset 22, ``Round`` none before 22, ``MatMul`` no int16. Without this a bfloat16
    CNN converts to a model the ONNX checker and every runtime reject. A model-local function holding
    such a node (a bfloat16 convolution in an ``@wb.onnx_function``) is inlined first: its inputs carry
    no types to cast by.
    """
    opset = next((v for d, v in model.opset_imports.items() if d in ("", "ai.onnx")), None)
    if opset is None:
        return []

    def invalid(node: ir.Node) -> bool:
        return node.domain in ("", "ai.onnx") and not _schema_takes(node, opset)

    def holds_invalid(function: ir.Function) -> bool:
        return any(invalid(node) for node in function.all_nodes())

    if any(holds_invalid(function) for function in model.functions.values()):
        InlinePass(criteria=holds_invalid)(model)
    plan = [node for node in model.graph.all_nodes() if invalid(node)]
    widened = [Widened(node.name or node.op_type, _describe(node, dict(model.opset_imports))) for node in plan]
    _rewrite_graphs(model, plan)
    return widened


def _schema_takes(node: ir.Node, opset: int) -> bool:
    """Whether ``node``'s schema takes its narrow-typed inputs and outputs (True when it has none, or no schema)."""
    types = schema_types(node, opset)
    if types is None:
        return True
    return all(
        types.takes(type_str, dtype)
        for values, bound in ((node.inputs, types.inputs), (node.outputs, types.outputs))
        for value, type_str in zip(values, bound, strict=True)
        if value is not None and (dtype := element_type(value)) in WIDER
    )


def _rewrite_graphs(model: ir.Model, plan: list[ir.Node]) -> None:
    """:func:`_rewrite` of each graph (the main one, If/Loop/Scan bodies) holding planned nodes, the
    names of the casts unique across all of them (ONNX defines each name once across nested scopes)."""
    graph = model.graph
    names = {v.name for v in graph.inputs} | set(graph.initializers)
    for node in graph.all_nodes():
        names.update(o.name for o in node.outputs)
        for attribute in node.attributes.values():
            if attribute.type == ir.AttributeType.GRAPH:
                names.update(v.name for v in attribute.as_graph().inputs)
            elif attribute.type == ir.AttributeType.GRAPHS:
                names.update(v.name for body in attribute.as_graphs() for v in body.inputs)
    by_graph: dict[ir.Graph, list[ir.Node]] = {}
    for node in plan:
        if node.graph is not None:
            by_graph.setdefault(node.graph, []).append(node)
    for owner, nodes in by_graph.items():
        _rewrite(owner, nodes, names)


def _rewrite(graph: ir.Graph, plan: list[ir.Node], names: set[str]) -> None:
    """Retype the planned nodes' narrow outputs wide and cast on every edge where types now differ.

    A value a widened node produced reaches every reader rounded to its own type first (so a chain of
    widened nodes rounds where the model did); a widened node reads each narrow input through one
    shared upcast.
    """
    casts = CastInserter(graph, names)
    wide_nodes = set(plan)
    original: dict[ir.Value, ir.DataType] = {}
    for node in plan:
        for value in node.outputs:
            dtype = element_type(value)
            if dtype in WIDER:
                original[value] = dtype
                value.type = ir.TensorType(WIDER[dtype])
    for value, dtype in original.items():  # readers that kept their kernel read the value in its own type
        for use in list(value.uses()):
            if use.node not in wide_nodes:
                use.node.replace_input_with(use.idx, casts.cast(value, dtype))
    for node in plan:
        for index, value in enumerate(node.inputs):
            if value is None:
                continue
            rounded = casts.cast(value, original[value]) if value in original else value
            dtype = element_type(rounded)
            if dtype in WIDER:
                node.replace_input_with(index, casts.cast(rounded, WIDER[dtype]))
            elif rounded is not value:
                node.replace_input_with(index, rounded)
    for index, value in enumerate(graph.outputs):
        if value in original:
            graph.outputs[index] = casts.cast_output(value, original[value])


def _describe(node: ir.Node, opsets: dict[str, int]) -> str:
    key = signature(node, opsets)
    return node.op_type if key is None else key.describe()


__all__ = ["RUNTIMES", "WIDER", "Widened", "has_narrow_types", "widen_for_cpu", "widen_invalid_types"]
