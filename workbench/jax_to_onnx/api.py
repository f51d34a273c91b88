"""``wb.to_onnx`` / ``wb.convert``: trace, lower, clean up, validate shapes, optionally save."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
import onnx
import onnx_ir as ir

from workbench.errors import SourceLocation, SpecError
from workbench.jax_to_onnx.builder import GraphBuilder, ModelState
from workbench.jax_to_onnx.complex_numbers import COMPLEX_DOC, is_complex, real_dtype
from workbench.jax_to_onnx.input_layout import InputLayout, input_permutations, relayout_inputs
from workbench.jax_to_onnx.keys import host_array
from workbench.jax_to_onnx.lowering import check_all_supported, lower_jaxpr
from workbench.jax_to_onnx.passes import run_passes
from workbench.jax_to_onnx.passes.layout import RELAID_KEY
from workbench.jax_to_onnx.tracing import Traced, trace
from workbench.onnx_io.write import DEFAULT_TENSOR_THRESHOLD, ExternalData, write_model

DEFAULT_OPSET = 21
MIN_OPSET = 18
# Highest opset the installed onnxruntime is known to run; newer ones are refused with a clear error.
MAX_OPSET = 23


@dataclass
class Conversion:
    """Everything one conversion produced: the model plus what analysis tools need to look inside."""

    model: onnx.ModelProto
    traced: Traced
    origins: dict[str, tuple[str, str, str]]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    # ONNX value name → (equation-index path of the enclosing jaxpr, jaxpr Var): the unique form of
    # ``origins`` that the divergence locator uses to find each value's JAX counterpart
    origin_vars: dict[str, tuple[tuple[int, ...], Any]] = field(default_factory=dict)
    # ONNX value name → permutation for values the layout pass keeps channels-first: transposed by it,
    # the value equals its JAX counterpart (``origins``/``origin_vars`` hold that counterpart under this name)
    layouts: dict[str, list[int]] = field(default_factory=dict)
    enable_double_precision: bool = False

    def to_graph_ir(self) -> dict[str, Any]:
        """The Graph IR of what was traced (as ``wb.export_graph_ir`` would give, without tracing again)."""
        from workbench.jax_to_onnx.graph_ir.api import graph_ir_of_traced

        return graph_ir_of_traced(
            self.traced,
            input_names=self.input_names,
            output_names=self.output_names,
            enable_double_precision=self.enable_double_precision,
        )

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.model.graph.input]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.model.graph.output]


def _resolve_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise SpecError(f"opset: expected an int from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}.")
    return opset


def _names(given: Sequence[str] | None, defaults: list[str], what: str) -> list[str]:
    if given is None:
        return defaults
    given = list(given)
    if len(given) != len(defaults) or not all(isinstance(n, str) and n for n in given):
        raise SpecError(f"{what}: expected {len(defaults)} non-empty names, got {given!r}.")
    if len(set(given)) != len(given):
        raise SpecError(f"{what}: names must be unique, got {given!r}.")
    return given


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


def convert(
    fn: Any,
    inputs: Sequence[Any],
    *,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    enable_double_precision: bool = False,
    optimize: bool = True,
    input_layout: InputLayout = None,
) -> Conversion:
    """Convert ``fn`` and return the :class:`Conversion` (model, jaxpr, value origins, timings)."""
    with _collector_paused():
        return _convert(fn, inputs, opset=opset, input_names=input_names, output_names=output_names,
                        enable_double_precision=enable_double_precision, optimize=optimize,
                        input_layout=input_layout)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the duration of one conversion.

    A conversion allocates tens of thousands of small objects (jaxpr equations, onnx-ir nodes and
    values) that all live until it ends; each automatic collection they trigger also walks JAX's and
    Flax's own heap (hundreds of thousands of objects), which cost about a tenth of a warm conversion.
    Reference counting still frees everything acyclic; cycles are collected by the next collection after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _convert(
    fn: Any,
    inputs: Sequence[Any],
    *,
    opset: int | None,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
    enable_double_precision: bool,
    optimize: bool,
    input_layout: InputLayout,
) -> Conversion:
    start = time.perf_counter()
    target_opset = _resolve_opset(opset)
    traced = trace(fn, inputs, enable_double_precision=enable_double_precision)
    traced_at = time.perf_counter()
    program = program_of(traced, input_names=input_names, output_names=output_names)
    built = build_model(program, opset=target_opset, optimize=optimize, input_layout=input_layout)
    done = time.perf_counter()
    return Conversion(
        model=built.model,
        traced=traced,
        origins=built.state.origins,
        origin_vars=built.state.origin_vars,
        layouts=built.layouts,
        seconds=done - start,
        timings={"trace": traced_at - start, "lower": built.lowered_at - traced_at, "passes": done - built.lowered_at},
        enable_double_precision=enable_double_precision,
    )


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
    drop_root_scope: bool = False  # Linen's name stack starts with the root module's own scope
    recorded: RecordedSourceInfo | None = None


@dataclass
class RecordedSourceInfo:
    """Source info of rebuilt equations by ``id(eqn)``: any frame, the user's own frame, the name stack."""

    locations: dict[int, SourceLocation] = field(default_factory=dict)
    user_locations: dict[int, SourceLocation] = field(default_factory=dict)
    scopes: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltModel:
    model: onnx.ModelProto
    state: ModelState
    lowered_at: float
    layouts: dict[str, list[int]]


def program_of(
    traced: Traced, *, input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None
) -> Program:
    """The :class:`Program` of a traced callable, with the default (or the given) input/output names."""
    return Program(
        closed_jaxpr=traced.closed_jaxpr,
        weights=traced.callable.params,
        weight_names=traced.callable.param_names,
        input_names=_names(input_names, _default_input_names(traced), "input_names"),
        output_names=_names(output_names, _default_output_names(traced), "output_names"),
        name=traced.callable.display_name,
        drop_root_scope=traced.callable.kind == "linen",
    )


def build_model(program: Program, *, opset: int, optimize: bool = True, input_layout: InputLayout = None) -> BuiltModel:
    """Lower ``program`` and run the passes (both doors, traced callables and Graph IRs, come through here)."""
    jaxpr = program.closed_jaxpr.jaxpr
    state = ModelState(opset=opset, drop_root_scope=program.drop_root_scope)
    if program.recorded is not None:
        state.source_locations = program.recorded.locations
        state.user_locations = program.recorded.user_locations
        state.scopes = program.recorded.scopes
    check_all_supported(jaxpr, opset, state.location)
    builder = GraphBuilder(state)
    param_values = [
        builder.const(np.asarray(p), name=name) for p, name in zip(program.weights, program.weight_names, strict=True)
    ]
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
    model_proto, graph = assemble_model(
        builder, graph_inputs, outputs, name=program.name, optimize=optimize,
        weights=frozenset(value.name for value in param_values),
    )
    return BuiltModel(model_proto, state, lowered_at, _relaid_origins(graph, state))


def assemble_model(
    builder: GraphBuilder,
    inputs: list[ir.Value],
    outputs: list[ir.Value],
    *,
    name: str,
    optimize: bool = True,
    weights: frozenset[str] = frozenset(),
    doc: str | None = None,
) -> tuple[onnx.ModelProto, ir.Graph]:
    """The main graph's nodes and initializers as an ONNX model after the pass pipeline (and its ir.Graph)."""
    state = builder.state
    graph = ir.Graph(
        inputs,
        outputs,
        nodes=builder.nodes,
        initializers=state.initializers,
        opset_imports=dict(builder.used_opsets),
        name=name,
    )
    model = ir.Model(
        graph,
        ir_version=10,
        producer_name="workbench",
        producer_version=_version(),
        functions=list(state.functions.values()),
        doc_string=doc or f"{name} converted from JAX by workbench",
    )
    return run_passes(model, optimize=optimize, weights=weights), model.graph


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


def to_onnx(
    fn: Any,
    inputs: Sequence[Any] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    enable_double_precision: bool = False,
    external_data_threshold: int | None = DEFAULT_TENSOR_THRESHOLD,
    input_layout: InputLayout = None,
) -> onnx.ModelProto:
    """Convert a JAX callable to an ONNX model.

    Args:
        fn: a plain or ``jax.jit`` function, a Flax NNX module, ``functools.partial(linen_model.apply,
            variables)`` or an Equinox module; or a ``jax.export.Exported``, its ``serialize()`` bytes
            or a file holding them, whose StableHLO module is converted op by op (no Python source needed).
        inputs: one spec per positional argument: a shape tuple of ints and symbolic names
            (``("B", 30)``, float32), a ``jax.ShapeDtypeStruct``, an array, or a pytree of those.
            ``None`` for an Exported, which carries its input types.
        path: also write the model there, atomically; tensors of at least ``external_data_threshold``
            bytes go to ``<path>.data`` (``None`` keeps everything in one file).
        opset: target ONNX opset (default 21).
        input_names / output_names: names for the flattened graph inputs / outputs.
        enable_double_precision: trace with 64-bit types enabled (float64/int64 stay 64-bit).
        input_layout: ``"NCHW"`` (or ``"NCW"``, ``"NCDHW"``) makes every input of that rank take
            channels-first data although ``fn`` takes it channels-last, as ONNX convolutions do (a CNN
            then has no Transpose at its input); or one entry (layout string or ``None``) per
            flattened input. ``inputs`` still describe what ``fn`` takes.

    Raises:
        UnsupportedPrimitiveError: listing every primitive without a handler, with source lines.
        SpecError: for a bad callable, input spec, name list or opset.
        TraceError: when the function itself fails to trace with these inputs.
        UnsupportedStableHLOOpError: for an Exported, listing every op without a converter.
    """
    from workbench.jax_to_onnx.stablehlo.api import exported_to_onnx, is_exported_source

    if is_exported_source(fn):
        if inputs is not None:
            raise SpecError("inputs: a jax.export.Exported carries its own input types; pass inputs=None.")
        if enable_double_precision or input_layout is not None:
            raise SpecError("an Exported's types were fixed when it was exported: "
                            "enable_double_precision and input_layout do not apply.")
        with _collector_paused():
            model = exported_to_onnx(fn, opset=_resolve_opset(opset), input_names=input_names, output_names=output_names)
    else:
        if inputs is None:
            raise SpecError("inputs: give one input spec per positional argument of fn, e.g. [('B', 30)].")
        model = convert(
            fn,
            inputs,
            opset=opset,
            input_names=input_names,
            output_names=output_names,
            enable_double_precision=enable_double_precision,
            input_layout=input_layout,
        ).model
    if path is not None:
        write_model_to(model, path, external_data_threshold)
    return model


def write_model_to(model: onnx.ModelProto, path: str | os.PathLike[str], external_data_threshold: int | None) -> None:
    """Write ``model`` atomically; tensors of at least ``external_data_threshold`` bytes to ``<path>.data``."""
    policy = None if external_data_threshold is None else ExternalData(tensor_bytes=external_data_threshold)
    write_model(model, path, external_data=policy)
