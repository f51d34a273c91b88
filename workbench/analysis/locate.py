"""The divergence locator: find the first ONNX node whose value drifts from JAX.

One onnxruntime run of a copy of the model in which every intermediate value that came from a
jaxpr variable is also a graph output, one evaluation of the jaxpr that records those variables
(compiled by XLA as one program), and a comparison of the two in topological order. No per-node
re-runs.

A node *diverges* when one of its outputs is further from JAX than the tolerance, and it is the
*first divergent* node when every value it reads (following handler-internal values, which have
no JAX counterpart, back to ones that do) was still within tolerance. Errors are judged against
the tensor's scale (``|onnx - jax| <= atol + rtol * max|jax|``) so that float cancellation deep
inside a network is not mistaken for divergence.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from jax.extend import core as jex_core

from workbench.analysis.compare import NodeVerdict, rounding_tolerances
from workbench.analysis.divergence import (
    DivergenceReport,
    NodeResult,
    divergence_figure,
)
from workbench.analysis.interpret import CALL_BODIES, record_values_compiled
from workbench.analysis.options import check_options
from workbench.analysis.subject import Subject, model_specs, prepare
from workbench.errors import OnnxModelError, WorkbenchError
from workbench.jax_to_onnx.complex_numbers import to_pairs
from workbench.jax_to_onnx.cpu_widening import WIDER
from workbench.jax_to_onnx.source import eqn_location

# a re-export must reproduce at least this share of the model's value names, or it is another model
MIN_NAME_MATCH = 0.5


def locate_divergence(
    fn: Any,
    model: onnx.ModelProto | str | os.PathLike[str] | None = None,
    inputs: Sequence[Any] | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    optimize: bool = False,
    sizes: Mapping[str, int] | None = None,
) -> DivergenceReport:
    """Find the first node of ``model`` (exported from ``fn``) whose value drifts from JAX.

    ``fn`` may be the ``Conversion`` ``wb.convert`` returned (``model`` then defaults to its model):
    its jaxpr and value origins say which jaxpr variable each ONNX value came from, and nothing is
    traced or converted again. Otherwise ``model`` must come from ``wb.to_onnx(fn, ...)`` (possibly
    edited since) and the function is converted again with the model's input types (traced once,
    shared with the input check, when ``inputs`` is ``None``). ``inputs`` are concrete arrays, specs
    (not with a Conversion), or ``None`` (generated as for ``wb.parity``).
    onnxruntime runs with graph optimisations off by default so every node runs as written.

    The other direction: ``locate_divergence(onnx_model, generated)`` (an ONNX model first, then
    the params of the JAX code ``wb.to_jax`` generated from it, or ``None`` for the model's own
    weights) names the first node whose generated JAX value drifts from onnxruntime's
    (:mod:`workbench.analysis.locate_generated`; random inputs give symbolic dimensions the size
    in ``sizes``, else 2).
    """
    check_options(rtol=rtol, atol=atol, seed=seed, sizes=sizes)
    if isinstance(fn, (onnx.ModelProto, str, os.PathLike, bytes)):
        from workbench.analysis.locate_generated import locate_generated_divergence

        return locate_generated_divergence(fn, model, inputs, rtol=rtol, atol=atol, seed=seed, sizes=sizes)
    subject = prepare(fn, model, inputs)
    flat_inputs, chosen = subject.samples(1, seed, sizes)[0]
    return locate_on_subject(subject, flat_inputs, chosen, rtol=rtol, atol=atol, optimize=optimize)


def locate_on_subject(
    subject: Subject,
    flat_inputs: Sequence[np.ndarray],
    sizes: Mapping[str, int],
    *,
    rtol: float | None = None,
    atol: float | None = None,
    optimize: bool = False,
) -> DivergenceReport:
    """The locator on an already prepared function/model pair and one sample."""
    import time

    timings: dict[str, float] = {}
    start = time.perf_counter()
    proto = subject.loaded.proto
    conversion = subject.conversion if subject.conversion is not None else _reconvert(subject)
    timings["convert"] = time.perf_counter() - start
    origins = conversion.origin_vars
    node_outputs = [o for node in proto.graph.node for o in node.output if o]
    matched = [name for name in node_outputs if name in origins]
    fresh_outputs = {value.name for node in conversion.ir_model.graph for value in node.outputs}
    if len(matched) < MIN_NAME_MATCH * len([n for n in origins if n in fresh_outputs]):
        raise WorkbenchError(
            f"model {subject.loaded.label} does not look like an export of {subject.name} with these input types: "
            f"only {len(matched)} of its {len(node_outputs)} values carry the names a fresh export gives. The locator "
            "needs a model produced by wb.to_onnx(fn, ...) (edits of single nodes are fine)."
        )

    step = time.perf_counter()
    normalized = conversion.traced.callable
    with subject.x64_context():
        args = [*normalized.params, *flat_inputs]
        wanted = {origins[name] for name in matched}  # only the values compared below leave the program
        # Parity's run says whether the function compiles whole (not tried again when it did not). Its program is
        # not reused: this one returns every compared intermediate value, parity's only the outputs. Compiling the
        # recording program in parity instead would charge every passing parity call for the rare failing one
        # (measured on the zoo's nnx_resnet / nnx_gpt / nnx_vit: this second compile is 1.0 / 1.2 / 0.9 s of XLA
        # compile time, parity's 0.8 / 0.6 / 0.8 s per sample size; the recording program also keeps every
        # intermediate alive instead of letting XLA fuse them away).
        values = record_values_compiled(conversion.traced.closed_jaxpr, args, wanted, subject.whole_compile)
    timings["jax"] = time.perf_counter() - step

    step = time.perf_counter()
    exposed = _expose(proto, matched)  # the graph only: weights kept outside the proto stay outside
    session = subject.session_with_outputs(exposed, optimize)
    output_names = [o.name for o in exposed.graph.output]
    feeds = {name: to_pairs(x) for name, x in zip(subject.input_names, flat_inputs, strict=True)}  # complex as pairs
    got = session.run(feeds, output_names)
    onnx_values = dict(zip(output_names, got, strict=True))
    timings["onnxruntime"] = time.perf_counter() - step

    step = time.perf_counter()
    report = _analyse(proto, conversion, values, onnx_values, rtol, atol)
    report.model_source = subject.loaded.label
    report.function = subject.name
    report.inputs = list(flat_inputs)
    # a conversion run as it is has its own weights; a model given beside it may have edited ones
    report.changed_initializers = [] if subject.source is conversion else _changed_initializers(proto, conversion)
    timings["compare"] = time.perf_counter() - step
    report.seconds = timings
    return report


def _reconvert(subject: Subject) -> Any:
    """Convert the function again, as the model was exported, to learn each ONNX value's jaxpr variable.

    When the subject was traced with the model's own input types, that trace is lowered as it is.
    """
    from workbench.jax_to_onnx.api import convert, convert_traced

    opset = subject.loaded.opset
    if opset is None:
        raise OnnxModelError(f"model {subject.loaded.label} imports no version of the default ONNX domain")
    names = {"opset": opset, "input_names": subject.input_names, "output_names": subject.output_names,
             "enable_double_precision": subject.x64}  # fmt: skip
    if subject.traced_with_model_types:
        return convert_traced(subject.traced, **names)
    return convert(subject.fn, _specs_for_reconversion(subject), **names)


def _specs_for_reconversion(subject: Subject) -> list[Any]:
    """The model's own input types (with its symbolic dim names), so the re-export reproduces its names."""
    try:
        specs = model_specs(subject.loaded)
    except WorkbenchError:
        specs = subject.traced.specs.flat()
    import jax

    treedef = jax.tree_util.tree_structure(list(subject.traced.specs.args))
    return jax.tree_util.tree_unflatten(treedef, specs)


def _expose(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs also list ``names`` (types from value_info)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    present = {o.name for o in graph.output}
    typed = {v.name: v for v in graph.value_info}
    for name in names:
        if name in present:
            continue
        info = typed.get(name)
        if info is None:
            info = onnx.helper.make_empty_tensor_value_info(name)
        graph.output.append(info)
        present.add(name)
    return copy


def _changed_initializers(model: onnx.ModelProto, fresh: Any) -> list[str]:
    """Initializers of ``model`` that differ from the fresh conversion's (weights in external files are not compared)."""
    from onnx import numpy_helper

    reference = {value.name: value.const_value for value in fresh.ir_model.graph.initializers.values()}
    changed = []
    for tensor in model.graph.initializer:
        twin = reference.get(tensor.name)
        if twin is None or tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue
        if tuple(twin.shape) != tuple(tensor.dims) or int(twin.dtype) != tensor.data_type:
            changed.append(tensor.name)
            continue
        a, b = numpy_helper.to_array(tensor), twin.numpy()
        if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            changed.append(tensor.name)
    return changed


# (JAX's type, the type runtime="onnxruntime-cpu" computes it in): bfloat16/float16 in float32, int16 in int32
_WIDENED = frozenset((np.dtype(narrow.numpy()), np.dtype(wide.numpy())) for narrow, wide in WIDER.items())


def _analyse(
    model: onnx.ModelProto,
    conversion: Any,
    values: Mapping[Any, Any],
    onnx_values: Mapping[str, np.ndarray],
    rtol: float | None,
    atol: float | None,
) -> DivergenceReport:
    origins = conversion.origins
    origin_vars = conversion.origin_vars
    value_ok: dict[str, bool] = {}  # compared values only
    floor = rounding_tolerances(model)  # a bfloat16 network's float32 values are no closer than its bfloat16 ones
    producer: dict[str, int] = {}
    results: list[NodeResult] = []
    for index, node in enumerate(model.graph.node):
        verdict = NodeVerdict()
        primitive, location = "", ""
        for output in node.output:
            producer[output] = index
            key = origin_vars.get(output)
            if key is None or key not in values or output not in onnx_values:
                continue
            jax_value = to_pairs(values[key])  # complex values as the model carries them
            onnx_value = onnx_values[output]
            if output in conversion.layouts:  # kept channels-first by the export's layout pass
                onnx_value = np.transpose(onnx_value, conversion.layouts[output])
            if (np.asarray(jax_value).dtype, onnx_value.dtype) in _WIDENED:
                # computed wider for onnxruntime's CPU (runtime="onnxruntime-cpu"): judged as the Cast back rounds it
                onnx_value = onnx_value.astype(np.asarray(jax_value).dtype)
            value_ok[output] = verdict.add(onnx_value, jax_value, rtol, atol, floor)
            _, primitive, location = origins.get(output, ("", "", ""))
            if not location:
                location = _call_site_location(conversion.traced.closed_jaxpr.jaxpr, key[0])
        if not primitive and node.doc_string:
            primitive, _, location = node.doc_string.partition(" at ")
        results.append(
            NodeResult(
                index=index,
                node=node.name or f"#{index}",
                op_type=node.op_type,
                outputs=tuple(node.output),
                primitive=primitive,
                location=location,
                compared=verdict.compared,
                max_abs_error=verdict.abs_error,
                max_rel_error=verdict.rel_error,
                tolerance=verdict.tolerance,
                ok=verdict.ok,
                inputs_ok=True,
            )
        )
    # inputs_ok: follow values without a JAX counterpart back to ones that have one
    upstream_ok: dict[str, bool] = {}
    upstream_nodes: dict[str, set[int]] = {}

    def resolve(name: str) -> tuple[bool, set[int]]:
        if name in value_ok:
            return value_ok[name], set()
        if name in upstream_ok:
            return upstream_ok[name], upstream_nodes[name]
        index = producer.get(name)
        if index is None:  # graph input or initializer
            upstream_ok[name], upstream_nodes[name] = True, set()
            return True, set()
        status, nodes = _node_inputs(index)
        upstream_ok[name], upstream_nodes[name] = status, nodes | {index}
        return status, upstream_nodes[name]

    def _node_inputs(index: int) -> tuple[bool, set[int]]:
        status, nodes = True, set()
        for name in model.graph.node[index].input:
            if name:
                input_ok, feeding = resolve(name)
                status = status and input_ok
                nodes |= feeding
        return status, nodes

    final: list[NodeResult] = []
    first: NodeResult | None = None
    suspects: list[str] = []
    for result in results:
        inputs_ok, feeding = _node_inputs(result.index)
        updated = NodeResult(**{**result.__dict__, "inputs_ok": inputs_ok})
        final.append(updated)
        if first is None and not updated.ok and inputs_ok:
            first = updated
            suspects = [model.graph.node[i].name or f"#{i}" for i in sorted(feeding)]
    return DivergenceReport(
        nodes=final,
        first_divergent=first,
        suspects=suspects,
        changed_initializers=[],
        model_source="",
        function="",
        inputs=[],
    )


def _call_site_location(jaxpr: Any, path: tuple[int, ...]) -> str:
    """The user's line for a value inside library code (``jax.nn.relu``'s own jit): its call site."""
    location = ""
    for index in path:
        eqn = jaxpr.eqns[index]
        found = eqn_location(eqn)
        location = str(found) if found else location
        body = eqn.params.get(CALL_BODIES.get(eqn.primitive.name, ""))
        if body is None:
            break
        jaxpr = body.jaxpr if isinstance(body, jex_core.ClosedJaxpr) else body
    return location


__all__ = ["DivergenceReport", "NodeResult", "divergence_figure", "locate_divergence", "locate_on_subject"]
