"""The divergence locator for ONNX -> JAX: the first ONNX node whose generated JAX value drifts from onnxruntime.

The other direction of :mod:`workbench.analysis.locate`. Here onnxruntime is the reference and the
generated code is under test. Every intermediate value of the generated code is exposed by
generating it from a copy of the model in which every node output is also a graph output (the same
emitters, the same weights: the generated statements are the same, only the return statement
lists more values); onnxruntime runs the same copy with its graph optimisations off, so every node
runs as written. One run of each, then a comparison in topological order: a node *diverges* when
an output is further from onnxruntime than the tolerance, and it is the *first divergent* node when
every value it reads was still within tolerance.

The generated code runs as one jitted function (``wb.jit_forward`` with the weights as arguments,
the model's XLA options, every exposed value an output of the program): one XLA compile instead of
one dispatch per operation (ResNet-18 at batch 2: 28.7 s wall op by op, see :func:`run_exposed`).
XLA's fusions may round a float32 value differently from an op-by-op run (a few ulps: a reassociated
reduction, a fused multiply-add); the tolerance (float32: 1e-4 of the tensor's scale) is far above
that, and what is compared is what ``jax.jit`` users get. A model with nodes whose output shapes
depend on values (NonZero, a detector's NMS) cannot be traced as a whole: its ``forward`` is called
directly, running the parts between those nodes jitted and the nodes themselves on concrete arrays.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from workbench.analysis.compare import NodeVerdict
from workbench.analysis.divergence import GENERATED_LABEL, DivergenceReport, NodeResult
from workbench.analysis.options import check_generated_bytes, check_size_names, refuse_sizes_beside_inputs
from workbench.analysis.quantization_boundary import boundary_step_caveat
from workbench.analysis.reference_caveats import reference_caveat
from workbench.errors import OnnxModelError, SpecError
from workbench.onnx_io.load import load_model
from workbench.onnx_io.session import open_session
from workbench.onnx_io.tensors import constant_tensors

if TYPE_CHECKING:
    from workbench.onnx_to_jax.api import GeneratedModule


def locate_generated_divergence(
    model: onnx.ModelProto | str | os.PathLike[str] | bytes,
    generated: Any = None,
    inputs: Sequence[np.ndarray] | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
) -> DivergenceReport:
    """Find the first node of ``model`` whose value in the generated JAX code drifts from onnxruntime's.

    ``generated`` gives the weights the JAX code runs with: ``None`` (the model's own), the params
    dict of ``wb.to_jax`` / ``generate``, a ``(forward, params)`` pair, or a ``GeneratedModule``.
    Weights that differ from the model's initializers are listed in the report's
    ``changed_initializers``. ``inputs``: one array per graph input, or ``None`` for random ones of
    the model's input types, each symbolic dimension (a torch export's ``batch``) of size
    ``sizes[name]`` or, not given there, 2 (``sizes={"batch": 8}``). ``rtol``/``atol`` default by dtype
    (float32: 1e-4, 1e-5), judged against each tensor's scale as the other direction does.
    """
    timings: dict[str, float] = {}
    loaded = load_model(model)
    proto = loaded.proto
    params = _params_of(generated)
    input_names = [value.name for value in proto.graph.input if value.name not in _initializer_names(proto)]
    if inputs is not None:
        refuse_sizes_beside_inputs(sizes)
    feeds = _given_inputs(inputs, input_names, loaded.label) if inputs is not None else _random_inputs(proto, seed, sizes or {}, loaded.label)

    start = time.perf_counter()
    exposed, names = _expose_every_value(proto)
    from workbench.onnx_to_jax.api import generate_module

    module = generate_module(exposed)
    own_params = module.params
    run_params = dict(own_params)
    changed = []
    if params is not None:
        unknown = sorted(set(params) - set(own_params))
        if unknown:
            raise SpecError(f"generated: params {unknown[:5]} are not initializers of model {loaded.label}")
        for name, value in params.items():
            if not _same(np.asarray(value), own_params[name]):
                changed.append(name)
        run_params.update(params)
    timings["generate"] = time.perf_counter() - start

    start = time.perf_counter()
    outputs = run_exposed(module, run_params, feeds)
    jax_values = {name: value for name, value in zip(names, outputs, strict=True)}
    timings["jax"] = time.perf_counter() - start

    start = time.perf_counter()
    session = open_session(exposed, label=loaded.label, optimize=False)
    got = session.run(dict(zip(input_names, feeds, strict=True)), names)
    reference = dict(zip(names, got, strict=True))
    timings["onnxruntime"] = time.perf_counter() - start

    start = time.perf_counter()
    report = _analyse(proto, jax_values, reference, rtol, atol)
    report.model_source = loaded.label
    report.function = GENERATED_LABEL
    report.inputs = [np.asarray(x) for x in feeds]
    report.changed_initializers = changed
    dtypes = {name: np.asarray(value).dtype for name, value in zip(input_names, feeds, strict=True)}
    dtypes.update((name, value.dtype) for name, value in reference.items())
    report.caveats = _caveats(proto, report, loaded.label, dtypes)
    report.caveats += _boundary_steps(proto, report, jax_values, reference)
    timings["compare"] = time.perf_counter() - start
    report.seconds = timings
    return report


# LLVM's level for the one compile of the exposed model, which runs once: the compile is most of the cost.
# ResNet-18 at batch 2, compile and run: 4.8 CPU s at the generated code's level 2, 2.8 at 0 (load 11).
ONE_RUN_LLVM_LEVEL = 0


def run_exposed(module: GeneratedModule, params: Mapping[str, Any], feeds: Sequence[np.ndarray]) -> tuple[Any, ...]:
    """Every output of ``module`` (the generated code of a model exposing every value) on ``feeds``: from one
    jitted program, or from ``forward`` called directly when the model has value-dependent nodes or does not
    trace (a JAX tracer error: then the jitted parts between host steps run as ``forward`` runs them)."""
    import jax

    from workbench.onnx_to_jax.jit_options import LLVM_LEVEL
    from workbench.onnx_to_jax.run_errors import tracer_errors

    outputs: Any = None
    if not module.value_dependent_nodes:
        try:
            jitted = module.jit(fold_weights=False, compiler_options={LLVM_LEVEL: ONE_RUN_LLVM_LEVEL})
            outputs = jax.block_until_ready(jitted(params, *feeds))
        except tracer_errors():
            outputs = None  # a value the code needs concrete: run it as written below
    if outputs is None:
        outputs = module.forward(params, *feeds)
    return outputs if isinstance(outputs, tuple) else (outputs,)


def _caveats(model: onnx.ModelProto, report: DivergenceReport, label: str,
             dtypes: Mapping[str, np.dtype]) -> list[str]:
    """What is known to put onnxruntime off the exact value at the report's root causes (``dtypes``: the
    type of every input and of every value onnxruntime computed)."""
    divergent = {result.index for result in report.divergent}
    if not divergent:
        return []
    constants = constant_tensors(model.graph)
    nodes = model.graph.node
    found = (reference_caveat(nodes[index], constants, label, dtypes) for index in sorted(divergent))
    return [caveat for caveat in found if caveat is not None]


def _boundary_steps(model: onnx.ModelProto, report: DivergenceReport, jax_values: Mapping[str, Any],
                    reference: Mapping[str, np.ndarray]) -> list[str]:
    """The report's root causes that are DynamicQuantizeLinear steps at a rounding boundary
    (:mod:`workbench.analysis.quantization_boundary`), one note each."""
    notes = []
    for result in report.divergent:
        node = model.graph.node[result.index]
        names = [node.input[0], *node.output] if node.op_type == "DynamicQuantizeLinear" and node.input else []
        if not names or not all(name in jax_values and name in reference for name in names):
            continue
        note = boundary_step_caveat(node, tuple(np.asarray(jax_values[name]) for name in names),
                                    tuple(np.asarray(reference[name]) for name in names))
        if note is not None:
            notes.append(note)
    return notes


def _params_of(generated: Any) -> Mapping[str, Any] | None:
    from workbench.onnx_to_jax.api import GeneratedModule

    if generated is None:
        return None
    if isinstance(generated, GeneratedModule):
        return generated.params
    if isinstance(generated, tuple) and len(generated) == 2 and isinstance(generated[1], Mapping):
        return generated[1]
    if isinstance(generated, Mapping):
        return generated
    raise SpecError(
        "generated: expected the params dict of wb.to_jax, a (forward, params) pair or a GeneratedModule, "
        f"got {type(generated).__name__}"
    )


def _initializer_names(model: onnx.ModelProto) -> set[str]:
    return {tensor.name for tensor in model.graph.initializer}


def _expose_every_value(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` whose graph outputs are its outputs and then every tensor a node makes."""
    try:
        typed = onnx.shape_inference.infer_shapes(model)
    except Exception as error:  # noqa: BLE001 - onnx raises several C++-level error types
        raise OnnxModelError(f"cannot infer the types of the model's values: {error}") from error
    types = {value.name: value for value in typed.graph.value_info}
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    names = [value.name for value in graph.output]
    present = set(names)
    for node in graph.node:
        for name in node.output:
            if not name or name in present:
                continue
            info = types.get(name)
            if info is not None and not info.type.HasField("tensor_type"):
                continue  # sequences, maps, optionals: no array to compare
            graph.output.append(info if info is not None else onnx.helper.make_empty_tensor_value_info(name))
            names.append(name)
            present.add(name)
    return copy, names


SYMBOLIC_SIZE = 2  # a symbolic dimension's size in random inputs, unless sizes= says otherwise


def _given_inputs(inputs: Any, input_names: list[str], label: str) -> list[np.ndarray]:
    """The user's ``inputs``: one array of numbers per graph input, in the graph's order."""
    expected = f"a list of arrays, one per graph input {input_names}"
    if isinstance(inputs, (np.ndarray, Mapping, str, bytes)) or not isinstance(inputs, Sequence):
        raise SpecError(f"inputs: expected {expected}, got {type(inputs).__name__}; pass inputs=[...] in that order.")
    if len(inputs) != len(input_names):
        raise SpecError(f"inputs: model {label} takes {len(input_names)} inputs {input_names}, got {len(inputs)}")
    feeds = []
    for name, given in zip(input_names, inputs, strict=True):
        array = np.asarray(given)
        if array.dtype.kind in "OSU":  # objects (None), strings, bytes; bfloat16 is kind "V" and stays
            raise SpecError(f"inputs: {name!r} must be an array of numbers (the model's input {name!r}), got {type(given).__name__}.")
        feeds.append(array)
    return feeds


def _random_inputs(model: onnx.ModelProto, seed: int, sizes: Mapping[str, int], label: str) -> list[np.ndarray]:
    """One random array per graph input; a symbolic dimension ``name`` is ``sizes.get(name, SYMBOLIC_SIZE)``."""
    rng = np.random.default_rng(seed)
    initializers = _initializer_names(model)
    inputs = [value for value in model.graph.input if value.name not in initializers]
    symbols = {d.dim_param for value in inputs for d in value.type.tensor_type.shape.dim if d.dim_param}
    check_size_names(sizes, symbols, f"model {label}'s inputs")
    arrays = []
    for value in inputs:
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor.HasField("shape") or any(
                not d.HasField("dim_value") and not d.dim_param for d in tensor.shape.dim):  # fmt: skip
            raise SpecError(
                f"inputs: input {value.name!r} is not a tensor, has no shape or has an unnamed dynamic dimension in "
                "the model; pass inputs=[...] (one array per graph input)"
            )
        dims = [d.dim_value if d.HasField("dim_value") else sizes.get(d.dim_param, SYMBOLIC_SIZE) for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        check_generated_bytes([(value.name, tuple(dims), dtype)], sizes)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(dims).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, dims).astype(bool))
        else:
            arrays.append(rng.integers(0, 5, dims).astype(dtype))
    return arrays


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def _analyse(
    model: onnx.ModelProto,
    jax_values: Mapping[str, Any],
    reference: Mapping[str, np.ndarray],
    rtol: float | None,
    atol: float | None,
) -> DivergenceReport:
    value_ok: dict[str, bool] = {}
    results: list[NodeResult] = []
    first: NodeResult | None = None
    for index, node in enumerate(model.graph.node):
        verdict = NodeVerdict()
        for name in node.output:
            if name in jax_values and name in reference:
                value_ok[name] = verdict.add(np.asarray(jax_values[name]), np.asarray(reference[name]), rtol, atol)
        inputs_ok = all(value_ok.get(name, True) for name in node.input if name)
        result = NodeResult(
            index=index, node=node.name or f"#{index}", op_type=node.op_type, outputs=tuple(node.output),
            primitive="", location="", compared=verdict.compared, max_abs_error=verdict.abs_error,
            max_rel_error=verdict.rel_error, tolerance=verdict.tolerance, ok=verdict.ok, inputs_ok=inputs_ok,
        )  # fmt: skip
        results.append(result)
        if first is None and not verdict.ok and inputs_ok:
            first = result
    return DivergenceReport(
        nodes=results, first_divergent=first, suspects=[], changed_initializers=[], model_source="", function="",
        inputs=[],
    )
