"""``wb.to_onnx`` / ``wb.convert``: trace, lower, clean up, validate shapes, optionally save.

``wb.convert`` returns a :class:`~workbench.jax_to_onnx.conversion.Conversion` (the model held
without copying its weights, with ``save``/``run``/``parity``...); ``wb.to_onnx`` returns a plain
``onnx.ModelProto`` as it always has, for code written against the onnx package.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
import onnx
import onnx_ir as ir

from workbench.errors import SpecError
from workbench.jax_to_onnx.builder import GraphBuilder, ModelState
from workbench.jax_to_onnx.complex_numbers import COMPLEX_DOC, is_complex, real_dtype
from workbench.jax_to_onnx.conversion import Conversion
from workbench.jax_to_onnx.input_layout import InputLayout, input_permutations, relayout_inputs
from workbench.jax_to_onnx.keys import host_array
from workbench.jax_to_onnx.lowering import check_all_supported, lower_jaxpr
from workbench.jax_to_onnx.passes import run_passes
from workbench.jax_to_onnx.passes.layout import RELAID_KEY
from workbench.jax_to_onnx.precision import Precision
from workbench.jax_to_onnx.tracing import Traced, trace
from workbench.onnx_io import load_model
from workbench.onnx_io.write import DEFAULT_TENSOR_THRESHOLD

# protobuf cannot serialize a ModelProto above this size
PROTOBUF_LIMIT = 2**31 - 1

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
    placeholder = jax.tree_util.tree_unflatten(traced.out_tree, list(range(traced.out_tree.num_leaves)))
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
    precision: str | Precision = "float32",
    keep_io_types: bool = True,
    input_layout: InputLayout = None,
) -> Conversion:
    """Convert ``fn`` and return the :class:`Conversion`: the model (``.model``, ``.save``, ``.run``,
    ``.parity``...), the jaxpr, value origins and timings. Arguments as for :func:`to_onnx`.

    The conversion holds the model without copying its weights (they stay the traced arrays), so
    ``wb.convert(fn, specs).save(path)`` is the way to export a model of several GB.
    """
    chosen = Precision.of(precision, keep_io_types)
    with _collector_paused():
        start = time.perf_counter()
        target_opset = _resolve_opset(opset)
        traced = trace(fn, inputs, enable_double_precision=enable_double_precision)
        return _lower(traced, start=start, opset=target_opset, input_names=input_names, output_names=output_names,
                      enable_double_precision=enable_double_precision, optimize=optimize, input_layout=input_layout,
                      precision=chosen)


def convert_traced(
    traced: Traced,
    *,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    enable_double_precision: bool = False,
    optimize: bool = True,
    input_layout: InputLayout = None,
    precision: str | Precision = "float32",
    keep_io_types: bool = True,
) -> Conversion:
    """:func:`convert` of a function already traced (``enable_double_precision`` as it was traced with)."""
    chosen = Precision.of(precision, keep_io_types)
    with _collector_paused():
        return _lower(traced, start=time.perf_counter(), opset=_resolve_opset(opset), input_names=input_names,
                      output_names=output_names, enable_double_precision=enable_double_precision, optimize=optimize,
                      input_layout=input_layout, precision=chosen)


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


def _lower(
    traced: Traced,
    *,
    start: float,
    opset: int,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
    enable_double_precision: bool,
    optimize: bool,
    precision: Precision,
    input_layout: InputLayout,
) -> Conversion:
    """Lower a traced function to a model: the part of a conversion after tracing."""
    traced_at = time.perf_counter()
    jaxpr = traced.closed_jaxpr.jaxpr
    check_all_supported(jaxpr, opset)

    state = ModelState(opset=opset, x64=enable_double_precision, drop_root_scope=traced.callable.kind == "linen")
    builder = GraphBuilder(state)
    param_values = [
        builder.const(np.asarray(p), name=name)
        for p, name in zip(traced.callable.params, traced.callable.param_names, strict=True)
    ]
    state.weights.update(value.name for value in param_values)
    in_names = _names(input_names, _default_input_names(traced), "input_names")
    out_names = _names(output_names, _default_output_names(traced), "output_names")
    # reserve the user-facing names so no intermediate value takes them
    state.names.update(out_names)
    user_avals = [v.aval for v in jaxpr.invars[traced.num_params :]]
    layout_perms = input_permutations(input_layout, user_avals)
    graph_inputs = [builder.add_input(name, aval) for name, aval in zip(in_names, user_avals, strict=True)]
    const_values = [builder.const(host_array(c)) for c in traced.closed_jaxpr.consts]
    outputs = lower_jaxpr(builder, jaxpr, const_values, param_values + graph_inputs)
    outputs = _name_outputs(builder, outputs, out_names, traced.out_avals)
    graph_inputs = relayout_inputs(builder, graph_inputs, user_avals, layout_perms)
    lowered_at = time.perf_counter()

    graph = ir.Graph(
        graph_inputs,
        outputs,
        nodes=builder.nodes,
        initializers=state.initializers,
        opset_imports=dict(builder.used_opsets),
        name=traced.callable.display_name,
    )
    model = ir.Model(
        graph,
        ir_version=10,
        producer_name="workbench",
        producer_version=_version(),
        functions=list(state.functions.values()),
        doc_string=f"{traced.callable.display_name} converted from JAX by workbench",
    )
    weights = frozenset(value.name for value in param_values)
    run_passes(model, optimize=optimize, weights=weights, precision=precision)
    layouts = _relaid_origins(model.graph, state)
    done = time.perf_counter()
    return Conversion(
        ir_model=model,
        traced=traced,
        origins=state.origins,
        origin_vars=state.origin_vars,
        layouts=layouts,
        seconds=done - start,
        timings={"trace": traced_at - start, "lower": lowered_at - traced_at, "passes": done - lowered_at},
        weights=weights,
        optimized=optimize,
        precision=precision,
        opset=opset,
        enable_double_precision=enable_double_precision,
    )


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
    inputs: Sequence[Any],
    *,
    path: str | os.PathLike[str] | None = None,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    enable_double_precision: bool = False,
    external_data_threshold: int | None = DEFAULT_TENSOR_THRESHOLD,
    precision: str | Precision = "float32",
    keep_io_types: bool = True,
    input_layout: InputLayout = None,
) -> onnx.ModelProto:
    """Convert a JAX callable to an ONNX model.

    Args:
        fn: a plain or ``jax.jit`` function, a Flax NNX module, ``functools.partial(linen_model.apply,
            variables)`` or an Equinox module.
        inputs: one spec per positional argument: a shape tuple of ints and symbolic names
            (``("B", 30)``, float32), a ``jax.ShapeDtypeStruct``, an array, or a pytree of those.
        path: also write the model there, atomically; tensors of at least ``external_data_threshold``
            bytes go to ``<path>.data`` (``None`` keeps everything in one file).
        opset: target ONNX opset (default 21).
        input_names / output_names: names for the flattened graph inputs / outputs.
        enable_double_precision: trace with 64-bit types enabled (float64/int64 stay 64-bit).
        input_layout: ``"NCHW"`` (or ``"NCW"``, ``"NCDHW"``) makes every input of that rank take
            channels-first data although ``fn`` takes it channels-last, as ONNX convolutions do (a CNN
            then has no Transpose at its input); or one entry (layout string or ``None``) per
            flattened input. ``inputs`` still describe what ``fn`` takes.
        precision: ``"float16"`` or ``"bfloat16"`` store the float32 weights and compute in half
            precision, normalisations, softmax and accumulating reductions kept in float32
            (:data:`workbench.jax_to_onnx.precision.FLOAT32_OPS`; a ``wb.Precision`` chooses others).
        keep_io_types: with a half precision, the model still takes and returns float32 (default);
            ``False`` makes its float inputs and outputs half precision too.

    Returns:
        The model as an ``onnx.ModelProto`` (as the onnx package expects), weights included. When
        ``path`` is given and the weights do not fit a protobuf (2 GB), the proto returned is the
        saved model, its weights referring to ``<path>.data`` (``onnx.load(path,
        load_external_data=False)``): a copy of several GB is never made. ``wb.convert`` returns
        the richer :class:`~workbench.jax_to_onnx.conversion.Conversion`.

    Raises:
        UnsupportedPrimitiveError: listing every primitive without a handler, with source lines.
        SpecError: for a bad callable, input spec, name list or opset.
        TraceError: when the function itself fails to trace with these inputs.
    """
    conversion = convert(
        fn,
        inputs,
        opset=opset,
        input_names=input_names,
        output_names=output_names,
        enable_double_precision=enable_double_precision,
        precision=precision,
        keep_io_types=keep_io_types,
        input_layout=input_layout,
    )
    if path is None:
        return conversion.model
    conversion.save(path, external_data_threshold=external_data_threshold)
    if conversion.weight_bytes < PROTOBUF_LIMIT:
        return conversion.model
    return load_model(path, external_data=False).proto
