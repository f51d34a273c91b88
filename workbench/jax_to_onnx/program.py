"""What the lowering takes, whichever door a program came through, and how it becomes a model.

A :class:`Program` (a ClosedJaxpr with its weights and names) comes from a traced callable
(:func:`program_of`, ``wb.to_onnx``) or from a Graph IR document (``graph_ir/decode.py``);
:func:`build_model` lowers it with the handlers and runs the pass pipeline. :func:`assemble_model`
wraps a builder's graph as a model (the StableHLO door builds its graph itself and uses it too).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import onnx
import onnx_ir as ir

from workbench.errors import SourceLocation, SpecError
from workbench.jax_to_onnx.builder import GraphBuilder, ModelState
from workbench.jax_to_onnx.complex_numbers import COMPLEX_DOC, is_complex, real_dtype
from workbench.jax_to_onnx.conversion import to_proto
from workbench.jax_to_onnx.input_layout import InputLayout, input_permutations, relayout_inputs
from workbench.jax_to_onnx.keys import host_array
from workbench.jax_to_onnx.lowering import check_all_supported, lower_jaxpr
from workbench.jax_to_onnx.passes import run_passes
from workbench.jax_to_onnx.passes.layout import RELAID_KEY
from workbench.jax_to_onnx.passes.shapes import CHECKED_PROTO_KEY
from workbench.jax_to_onnx.precision import Precision
from workbench.jax_to_onnx.tracing import Traced
from workbench.onnx_io.write import ExternalData, write_model

DEFAULT_OPSET = 21
# Lowest opset the export writes (handlers that need a newer one declare it: min_opset in the registry)
MIN_OPSET = 13
# Highest opset the installed onnxruntime (1.31) runs; newer ones are refused with a clear error.
MAX_OPSET = 26



def _resolve_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise SpecError(f"opset: expected an int from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}.")
    return opset


def _names(given: Sequence[str] | None, defaults: list[str], what: str) -> list[str]:
    if given is None:
        return defaults
    if isinstance(given, (str, bytes)):  # its letters would be the names
        raise SpecError(f"{what}: expected a list of names such as [{given!r}], got the string {given!r}.")
    given = list(given)
    if len(given) != len(defaults) or not all(isinstance(n, str) and n for n in given):
        raise SpecError(f"{what}: expected {len(defaults)} non-empty names, got {given!r}.")
    if len(set(given)) != len(given):
        raise SpecError(f"{what}: names must be unique, got {given!r}.")
    return given


def check_distinct_io_names(in_names: Sequence[str], out_names: Sequence[str]) -> None:
    """No graph input may share its name with a graph output (the output would silently rename the input)."""
    shared = sorted(set(in_names) & set(out_names))
    if shared:
        raise SpecError(
            f"input_names and output_names share {', '.join(map(repr, shared))}: an ONNX value has one name, so "
            "each graph input and output needs its own (an output that returns an input gets an Identity node)."
        )


def _default_input_names(traced: Traced) -> list[str]:
    names: list[str] = []
    for arg_name, arg in zip(traced.arg_names, traced.specs.args, strict=True):
        leaves = jax.tree_util.tree_flatten_with_path(arg)[0]
        for path, _ in leaves:
            suffix = jax.tree_util.keystr(path, simple=True, separator=".") if path else ""
            names.append(f"{arg_name}.{suffix}" if suffix else arg_name)
    return names


def _default_output_names(traced: Traced) -> list[str]:
    return _output_names_of_tree(traced.out_tree)


def _output_names_of_tree(out_tree: Any) -> list[str]:
    """``output`` for a single array, ``output.<path>`` for the leaves of a pytree of outputs."""
    placeholder = jax.tree_util.tree_unflatten(out_tree, list(range(out_tree.num_leaves)))
    leaves = jax.tree_util.tree_flatten_with_path(placeholder)[0]
    if len(leaves) == 1 and not leaves[0][0]:
        return ["output"]
    names = []
    for path, _ in leaves:
        names.append("output." + jax.tree_util.keystr(path, simple=True, separator="."))
    return names



@dataclass(frozen=True)
class Program:
    """What the lowering needs, whichever door it came through (a traced callable or a Graph IR).

    ``closed_jaxpr``'s first ``len(weights)`` inputs are the weights (named ``weight_names``, module
    paths), the rest are the graph inputs (named ``input_names``). For equations whose JAX traceback
    and name stack are gone (a jaxpr rebuilt from a Graph IR), ``recorded`` holds what was recorded of
    them (source lines, module scopes) by ``id(eqn)``; traced equations carry their own.
    """

    closed_jaxpr: Any
    weights: Sequence[Any]
    weight_names: Sequence[str]
    input_names: list[str]
    output_names: list[str]
    name: str
    x64: bool = False  # traced with 64-bit types enabled
    drop_root_scope: bool = False  # Linen's name stack starts with the root module's own scope
    recorded: RecordedSourceInfo | None = None
    constraints: tuple[str, ...] = ()  # bounds of the symbolic dimensions it was traced under ("T <= 64")


# The model's metadata key that records the symbolic dimensions' bounds (ONNX shapes cannot state them)
CONSTRAINTS_KEY = "workbench.symbolic_constraints"


@dataclass
class RecordedSourceInfo:
    """Source info of rebuilt equations by ``id(eqn)``: any frame, the user's own frame, the name stack."""

    locations: dict[int, SourceLocation] = field(default_factory=dict)
    user_locations: dict[int, SourceLocation] = field(default_factory=dict)
    scopes: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltModel:
    """A lowered program after the passes: the onnx-ir model (its weights the program's own arrays)."""

    ir_model: ir.Model
    state: ModelState
    lowered_at: float
    layouts: dict[str, list[int]]
    weights: frozenset[str]  # the initializers that hold the program's weights
    # the weight-less ModelProto the shape step checked, when nothing changed the model after the check
    # (conversion.proto_from_checked makes the ModelProto from it); None otherwise
    checked: onnx.ModelProto | None = None

    @property
    def model(self) -> onnx.ModelProto:
        """The model as a ModelProto (every weight copied in), as ``wb.to_onnx`` returns it."""
        return to_proto(self.ir_model)


def program_of(
    traced: Traced,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    enable_double_precision: bool = False,
) -> Program:
    """The :class:`Program` of a traced callable, with the default (or the given) input/output names."""
    in_names = _names(input_names, _default_input_names(traced), "input_names")
    out_names = _names(output_names, _default_output_names(traced), "output_names")
    check_distinct_io_names(in_names, out_names)
    return Program(
        closed_jaxpr=traced.closed_jaxpr,
        weights=traced.callable.params,
        weight_names=traced.callable.param_names,
        input_names=in_names,
        output_names=out_names,
        name=traced.callable.display_name,
        x64=enable_double_precision,
        drop_root_scope=traced.callable.kind == "linen",
        constraints=traced.specs.constraints,
    )


def build_model(
    program: Program,
    *,
    opset: int,
    optimize: bool = True,
    input_layout: InputLayout = None,
    precision: Precision = Precision(),
) -> BuiltModel:
    """Lower ``program`` and run the passes (both doors, traced callables and Graph IRs, come through here)."""
    jaxpr = program.closed_jaxpr.jaxpr
    state = ModelState(opset=opset, x64=program.x64, drop_root_scope=program.drop_root_scope, fuse_blocks=optimize)
    if program.recorded is not None:
        state.source_locations = program.recorded.locations
        state.user_locations = program.recorded.user_locations
        state.scopes = program.recorded.scopes
    check_all_supported(jaxpr, opset, state.location)
    builder = GraphBuilder(state)
    # made initializers on their first read: those only the convolution blocks read as arrays are never made
    param_values = [builder.weight(p, name) for p, name in zip(program.weights, program.weight_names, strict=True)]
    state.weights.update(value.name for value in param_values)
    # reserve the user-facing names so no intermediate value takes them
    state.names.update(program.output_names)
    user_avals = [v.aval for v in jaxpr.invars[len(param_values) :]]
    layout_perms = input_permutations(input_layout, user_avals)
    graph_inputs = [builder.add_input(name, aval) for name, aval in zip(program.input_names, user_avals, strict=True)]
    const_values = [builder.const(host_array(c)) for c in program.closed_jaxpr.consts]
    outputs = lower_jaxpr(builder, jaxpr, const_values, param_values + graph_inputs)
    outputs = _name_outputs(builder, outputs, program.output_names, [atom.aval for atom in jaxpr.outvars])
    graph_inputs = relayout_inputs(builder, graph_inputs, user_avals, layout_perms)
    lowered_at = time.perf_counter()
    weights = frozenset(value.name for value in param_values)
    model = assemble_model(
        builder, graph_inputs, outputs, name=program.name, optimize=optimize, weights=weights, precision=precision,
        constraints=program.constraints,
    )
    checked = model.graph.meta.pop(CHECKED_PROTO_KEY, None)  # not left on a model that may be changed later
    return BuiltModel(model, state, lowered_at, _relaid_origins(model.graph, state), weights, checked)


def assemble_model(
    builder: GraphBuilder,
    inputs: list[ir.Value],
    outputs: list[ir.Value],
    *,
    name: str,
    optimize: bool = True,
    weights: frozenset[str] = frozenset(),
    precision: Precision = Precision(),
    doc: str | None = None,
    constraints: tuple[str, ...] = (),
) -> ir.Model:
    """The main graph's nodes and initializers as an onnx-ir model, after the pass pipeline.

    ``constraints``: the symbolic dimensions' bounds the function was traced under; the model is valid only
    within them and ONNX shapes cannot say so, so they are written in the model's metadata
    (``CONSTRAINTS_KEY``) and its doc string, where a reader of the file sees them.
    """
    state = builder.state
    graph = ir.Graph(
        inputs,
        outputs,
        nodes=builder.nodes,
        initializers=state.graph_initializers(),
        opset_imports=dict(builder.used_opsets),
        name=name,
    )
    model = ir.Model(
        graph,
        ir_version=10,
        producer_name="workbench",
        producer_version=_version(),
        functions=list(state.functions.values()),
        doc_string=(doc or f"{name} converted from JAX by workbench")
        + (f"; valid where {', '.join(constraints)}" if constraints else ""),
    )
    if constraints:
        model.metadata_props[CONSTRAINTS_KEY] = "; ".join(constraints)
    return run_passes(model, optimize=optimize, weights=weights, precision=precision)


def _relaid_origins(graph: ir.Graph, state: ModelState) -> dict[str, list[int]]:
    """Values the layout pass left channels-first, mapped to the JAX variables they hold transposed."""
    layouts: dict[str, list[int]] = {}
    for node in graph:
        for value in node.outputs:
            relaid = value.meta.get(RELAID_KEY)
            if relaid is None or relaid[0] not in state.origin_vars:
                continue
            original, perm = relaid
            state.origin_vars[value.name] = state.origin_vars[original]
            state.origins[value.name] = state.origins.get(original, ("", "", ""))
            layouts[value.name] = perm
    return layouts


def _version() -> str:
    from workbench.version import __version__

    return __version__


def _name_outputs(
    builder: GraphBuilder, outputs: list[ir.Value], names: list[str], avals: Sequence[Any]
) -> list[ir.Value]:
    """Give graph outputs their final names; inputs, initializers and repeats get an Identity first."""
    produced = {id(o) for node in builder.nodes for o in node.outputs}
    final: list[ir.Value] = []
    seen: set[int] = set()
    for value, name, aval in zip(outputs, names, avals, strict=True):
        if id(value) not in produced or id(value) in seen:
            value = builder.op("Identity", value)
        seen.add(id(value))
        builder.state.origins[name] = builder.state.origins.pop(value.name, ("", "", ""))
        if value.name in builder.state.origin_vars:
            builder.state.origin_vars[name] = builder.state.origin_vars.pop(value.name)
        value.name = name
        builder.set_type(value, aval)
        if is_complex(aval.dtype):
            value.doc_string = COMPLEX_DOC.format(real=real_dtype(aval.dtype).name)
        final.append(value)
    return final



def check_save_options(path: object, external_data_threshold: object) -> None:
    """``path``/``external_data_threshold`` as ``wb.to_onnx`` and ``wb.for_onnxruntime_cpu`` take them, or a SpecError."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise SpecError(f"path: expected a file path (str or os.PathLike), got {type(path).__name__}.")
    if external_data_threshold is not None and (
        not isinstance(external_data_threshold, int) or isinstance(external_data_threshold, bool) or external_data_threshold < 0
    ):
        raise SpecError(
            f"external_data_threshold: expected an int >= 0 (bytes) or None, got {external_data_threshold!r}."
        )


def write_model_to(model: onnx.ModelProto | ir.Model, path: str | os.PathLike[str], external_data_threshold: int | None) -> None:
    """Write ``model`` atomically; tensors of at least ``external_data_threshold`` bytes to its side file."""
    policy = None if external_data_threshold is None else ExternalData(tensor_bytes=external_data_threshold)
    write_model(model, path, external_data=policy)
