"""The pair under test: a JAX function and an ONNX model, matched input by input.

Parity and the divergence locator both start here: load the model, trace the function with
specs read from the model (or with the user's inputs), check that the two agree on the
inputs (count, dtype, rank), build sample inputs, and run the JAX side with clear errors.
Given a :class:`~workbench.jax_to_onnx.conversion.Conversion` (``wb.convert``'s result), nothing is
traced again: its traced function, its model and its value origins are used as they are.

Only the model's graph is loaded here: a file's external weights stay on disk (onnxruntime reads
the file itself, the locator memory-maps them) and a conversion's weights stay its arrays (handed
to onnxruntime in memory). So a model of several GB is checked without a copy of its weights and
without protobuf's 2 GB limit.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import onnx
import onnx_ir as ir

from workbench.analysis.inputs import (
    InputPlan,
    concrete_shape,
    make_sample,
    plan_inputs,
    symbol_sizes,
    unflatten_args,
)
from workbench.analysis.interpret import WholeCompile
from workbench.analysis.options import check_generated_bytes, check_size_names, refuse_sizes_beside_inputs
from workbench.errors import OnnxModelError, SpecError, WorkbenchError
from workbench.jax_to_onnx.complex_numbers import (
    COMPLEX_DOC,
    real_dtype,
    storage_shape,
    to_pairs,
)
from workbench.jax_to_onnx.conversion import CONVERSION_LABEL, Conversion
from workbench.jax_to_onnx.cpu_widening import Widened, has_narrow_types, widen_for_cpu
from workbench.jax_to_onnx.tracing import Traced, trace
from workbench.onnx_io import (
    LoadedModel,
    Session,
    ValueDescription,
    describe_inputs,
    load_memory_mapped,
    load_model,
    open_session,
    real_inputs,
    skeleton,
)
from workbench.onnx_io.cpu_kernels import missing_kernel_in, without_cpu_kernel
from workbench.onnx_io.load import external_tensors
from workbench.specs import parse_input_specs

_WIDE_DTYPES = frozenset({np.dtype("float64"), np.dtype("int64"), np.dtype("uint64"), np.dtype("complex128")})


@dataclass(frozen=True)
class Subject:
    """A traced function, the model it should equal, and how to make inputs for both."""

    fn: Any  # the user's callable (the conversion's normalized one when a Conversion was given)
    traced: Traced
    loaded: LoadedModel  # the graph; weights kept in external files or by a conversion have no bytes here
    x64: bool
    plans: tuple[InputPlan, ...]
    given: tuple[np.ndarray, ...] | None  # concrete flat inputs the user gave, if any
    source: onnx.ModelProto | Path | Conversion  # what onnxruntime runs: the proto, the file, the conversion
    conversion: Conversion | None = None  # what the model was converted from, when the caller had it
    traced_with_model_types: bool = False  # traced with the model's own input types (symbolic names)
    whole_compile: WholeCompile = field(default_factory=WholeCompile, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.traced.callable.display_name

    @property
    def input_names(self) -> list[str]:
        return [value.name for value in describe_inputs(self.loaded.proto.graph)]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.loaded.proto.graph.output]

    def session(self, optimize: bool) -> Session:
        """An onnxruntime session on the model, its weights read where they are (a load error reads the
        graph already loaded, not the file again)."""
        source = self.source.ir_model if isinstance(self.source, Conversion) else self.source
        return open_session(source, label=self.loaded.label, optimize=optimize, graph=self.loaded.proto)

    def runnable_session(self, optimize: bool) -> tuple[Session, tuple[Widened, ...]]:
        """:meth:`session`, or when onnxruntime's CPU provider has no kernel for some nodes (a bfloat16
        model), a session on a twin of the model whose such nodes compute in float32 between Casts
        (:func:`~workbench.jax_to_onnx.cpu_widening.widen_for_cpu`), with the nodes widened. The model
        itself is not changed; any other load failure is raised as it is."""
        graph = self.source.ir_model if isinstance(self.source, Conversion) else ir.serde.deserialize_model(self.loaded.proto)
        # probed first: a few kernels refuse a narrow type only when run (float16 ScatterND adding)
        if not (has_narrow_types(graph) and without_cpu_kernel(graph)):
            try:
                return self.session(optimize), ()
            except OnnxModelError as error:
                if missing_kernel_in(str(error)) is None:
                    raise
        twin = self._with_real_weights(ir.serde.deserialize_model(self.loaded.proto))
        widened = tuple(widen_for_cpu(twin))
        return open_session(twin, label=self.loaded.label, optimize=optimize), widened

    def session_with_outputs(self, model: onnx.ModelProto, optimize: bool) -> Session:
        """A session on ``model``, an edited copy of :attr:`loaded` (more graph outputs), with the real weights;
        through its widened twin when onnxruntime's CPU provider has no kernel for some nodes (see
        :meth:`runnable_session`)."""
        if isinstance(self.source, onnx.ModelProto):
            edited = ir.serde.deserialize_model(model)
        else:
            edited = self._with_real_weights(ir.serde.deserialize_model(model))
        try:
            return open_session(edited, label=self.loaded.label, optimize=optimize)
        except OnnxModelError as error:
            if missing_kernel_in(str(error)) is None:
                raise
        widen_for_cpu(edited)
        return open_session(edited, label=self.loaded.label, optimize=optimize)

    def _with_real_weights(self, edited: ir.Model) -> ir.Model:
        """``edited`` (a copy of :attr:`loaded`'s graph) with the weights its large initializers stand for."""
        if isinstance(self.source, onnx.ModelProto) or next(external_tensors(self.loaded.proto), None) is None:
            return edited  # the proto holds its weights (a file's own, read once when it was loaded)
        owner = self.source.ir_model if isinstance(self.source, Conversion) else load_memory_mapped(self.source)
        tensors = {value.name: value.const_value for value in owner.graph.initializers.values()}
        for value in edited.graph.initializers.values():
            if value.name in tensors:
                value.const_value = tensors[value.name]
        return edited

    def x64_context(self) -> Any:
        return jax.enable_x64(True) if self.x64 else contextlib.nullcontext()

    def samples(self, count: int, seed: int, sizes: Mapping[str, int] | None) -> list[tuple[list[np.ndarray], dict[str, int]]]:
        """``count`` flat input lists (the user's own inputs when given) with the symbol sizes used."""
        if self.given is not None:
            refuse_sizes_beside_inputs(sizes)  # was ignored: the report compared other sizes than asked for
            return [(list(self.given), {})]
        symbols = {str(symbol) for plan in self.plans for dim in plan.shape if not isinstance(dim, int) for symbol in dim.get_vars()}
        check_size_names(sizes, symbols, f"{self.name}'s inputs")
        rng = np.random.default_rng(seed)
        samples = []
        for index in range(count):
            chosen = symbol_sizes(self.plans, index, sizes)
            check_generated_bytes([(plan.name, concrete_shape(plan.shape, chosen), plan.dtype) for plan in self.plans], sizes)
            samples.append((make_sample(self.plans, chosen, rng), chosen))
        return samples

    @functools.cached_property
    def jitted(self) -> Any:
        """The function compiled whole by XLA, once per input shape.

        Run op by op instead, JAX compiles every operation for every new shape: a Keras EfficientNetB0
        spent 24 of its 29 CPU seconds of parity (3 samples) compiling 609 single-operation programs.
        The function traced abstractly already, so it traces for ``jax.jit`` at concrete shapes too; what
        does not compile (a primitive defined with an impl and no XLA lowering) runs op by op.
        """
        return jax.jit(self.traced.callable.pure)

    def _run_whole_or_op_by_op(self, normalized: Any, args: Sequence[Any]) -> Any:
        """The function compiled whole; op by op when it does not compile (tried once per subject)."""
        if self.whole_compile.worth_trying:
            try:
                return self.jitted(normalized.params, *args)
            except Exception as error:  # noqa: BLE001 - e.g. a primitive with an impl but no XLA lowering
                self.whole_compile.note(error)
        return normalized.pure(normalized.params, *args)

    def run_jax(self, flat_inputs: Sequence[np.ndarray], sizes: Mapping[str, int]) -> list[np.ndarray]:
        """The function's flat outputs as NumPy arrays; a failure names the inputs it got."""
        args = unflatten_args(self.traced, flat_inputs)
        normalized = self.traced.callable
        with self.x64_context():
            try:
                result = self._run_whole_or_op_by_op(normalized, args)
                # as the model carries them: complex values as (real, imag) pairs
                return [to_pairs(leaf) for leaf in jax.tree_util.tree_leaves(result)]
            except Exception as error:  # user code raises anything; we say with which inputs
                shapes = [f"{a.dtype}{list(a.shape)}" for a in flat_inputs]
                origin = "generated " if self.given is None else ""
                hint = f" (symbol sizes {dict(sizes)}; fix them with sizes=...)" if sizes else ""
                raise WorkbenchError(
                    f"{self.name} failed on the {origin}inputs {shapes}{hint}: {type(error).__name__}: {error}"
                ) from error


def _dims_text(value: ValueDescription) -> list[int | str]:
    """A graph input's dims: ints, symbolic names, or ``"?"`` when unknown and unnamed."""
    return ["?" if d is None else d for d in value.shape or ()]


def check_inputs_match(loaded: LoadedModel, flat_specs: Sequence[Any], fn_name: str) -> None:
    """Count, dtype and rank of the model's inputs against the function's flat inputs."""
    graph_inputs = describe_inputs(loaded.proto.graph)
    if len(graph_inputs) != len(flat_specs):
        raise WorkbenchError(
            f"model {loaded.label} has {len(graph_inputs)} input(s) {[i.name for i in graph_inputs]} but "
            f"{fn_name} takes {len(flat_specs)} flat input(s); is this the model exported from this function?"
        )
    for position, (value, spec) in enumerate(zip(graph_inputs, flat_specs, strict=True)):
        if value.dtype != real_dtype(spec.dtype):  # complex inputs are (real, imag) pairs in the model
            model_type = value.dtype if value.dtype is not None else value.type_name
            raise WorkbenchError(
                f"model {loaded.label} input {position} {value.name!r} is {model_type} but "
                f"{fn_name} gets {np.dtype(spec.dtype)} there; pass inputs of the model's dtype "
                "(64-bit model inputs need enable_double_precision)."
            )
        rank = value.rank or 0
        if rank != len(storage_shape(tuple(spec.shape), spec.dtype)):
            raise WorkbenchError(
                f"model {loaded.label} input {position} {value.name!r} has rank {rank} "
                f"({_dims_text(value)}) but {fn_name} gets rank {len(spec.shape)} ({list(spec.shape)})."
            )


def model_specs(loaded: LoadedModel) -> list[Any]:
    """Input specs (ShapeDtypeStruct with symbolic names) read from the model's graph inputs."""
    specs = []
    graph = loaded.proto.graph
    for value, info in zip(describe_inputs(graph), real_inputs(graph), strict=True):
        dims = _dims_text(value)
        if "?" in dims or value.dtype is None:
            raise WorkbenchError(
                f"model {loaded.label} input {value.name!r} has an unnamed dynamic dimension {dims} "
                f"or no numeric type ({value.text()}); pass inputs= with concrete arrays."
            )
        dtype = value.dtype
        if info.doc_string.startswith(COMPLEX_DOC.split("{")[0]) and dims[-1:] == [2]:  # our complex convention
            dims, dtype = dims[:-1], np.result_type(dtype, np.complex64)
        specs.append(jax.ShapeDtypeStruct(tuple(dims), dtype))
    return specs


def _all_arrays(inputs: Sequence[Any]) -> bool:
    leaves = jax.tree_util.tree_leaves(list(inputs))
    return bool(leaves) and all(isinstance(leaf, (np.ndarray, np.generic, jax.Array)) for leaf in leaves)


def _load(model: Any) -> tuple[LoadedModel, onnx.ModelProto | Path | Conversion]:
    """The model's graph (without the bytes of external or conversion-held weights) and what to run."""
    if isinstance(model, Conversion):
        return LoadedModel(skeleton(model.ir_model), CONVERSION_LABEL), model
    if isinstance(model, (str, os.PathLike)):
        loaded = load_model(model, external_data=False)
        return loaded, Path(model)
    loaded = load_model(model)
    return loaded, loaded.proto


def prepare(fn: Any, model: onnx.ModelProto | Any | None, inputs: Sequence[Any] | None) -> Subject:
    """Load the model, trace ``fn`` consistently with it and check that their inputs agree.

    ``fn`` may be a :class:`Conversion`: then ``model`` defaults to its model, nothing is traced, and
    ``inputs`` is ``None`` (the conversion's own input types) or concrete arrays.
    """
    if isinstance(fn, Conversion):
        return _prepare_conversion(fn, model, inputs)
    if isinstance(fn, (onnx.ModelProto, str, os.PathLike, bytes)):
        raise SpecError(
            f"fn: got an ONNX model ({type(fn).__name__}) where the JAX function goes; compare a function with its "
            "model as (fn, model, inputs), or the JAX code generated from an ONNX model with wb.locate_divergence(model)."
        )
    if model is None:
        raise SpecError("model: give the ONNX model (a ModelProto or a path), or pass the Conversion from wb.convert.")
    loaded, source = _load(model)
    given: tuple[np.ndarray, ...] | None = None
    if inputs is None:
        specs: Sequence[Any] = model_specs(loaded)
        # the model's flat inputs are the function's positional arguments (pytree inputs need inputs=)
        x64 = any(np.dtype(s.dtype) in _WIDE_DTYPES for s in specs)
    else:
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise WorkbenchError(f"inputs: expected a list with one entry per positional argument, got {type(inputs).__name__}.")
        specs = list(inputs)
        if _all_arrays(specs):
            given = tuple(np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(specs))
        x64 = any(np.dtype(s.dtype) in _WIDE_DTYPES for s in parse_input_specs(specs).flat())
    traced = trace(fn, specs, enable_double_precision=x64)
    plans = _check_pair(loaded, traced)
    return Subject(fn=fn, traced=traced, loaded=loaded, x64=x64, plans=plans, given=given, source=source,
                   traced_with_model_types=inputs is None)


def _prepare_conversion(conversion: Conversion, model: onnx.ModelProto | Any | None, inputs: Sequence[Any] | None) -> Subject:
    loaded, source = _load(conversion if model is None else model)
    given: tuple[np.ndarray, ...] | None = None
    if inputs is not None:
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence) or not _all_arrays(list(inputs)):
            raise SpecError(
                "inputs: with a Conversion give concrete arrays (one sample) or None (samples of the conversion's "
                "own input types; fix symbolic sizes with sizes=...). To use other input types, convert again."
            )
        given = tuple(np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(list(inputs)))
    traced = conversion.traced
    plans = _check_pair(loaded, traced)
    return Subject(fn=traced.callable, traced=traced, loaded=loaded, x64=conversion.enable_double_precision,
                   plans=plans, given=given, source=source, conversion=conversion)


def _check_pair(loaded: LoadedModel, traced: Traced) -> tuple[InputPlan, ...]:
    """Check the model against the traced function (inputs and output count); the plans of its inputs."""
    check_inputs_match(loaded, traced.specs.flat(), traced.callable.display_name)
    plans = tuple(plan_inputs(traced, [value.name for value in describe_inputs(loaded.proto.graph)]))
    if len(loaded.proto.graph.output) != len(traced.out_avals):
        raise WorkbenchError(
            f"model {loaded.label} has {len(loaded.proto.graph.output)} output(s) but "
            f"{traced.callable.display_name} returns {len(traced.out_avals)} flat output(s)."
        )
    return plans


__all__ = ["Subject", "check_inputs_match", "model_specs", "prepare"]
