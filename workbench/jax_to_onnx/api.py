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

import numpy as np
import onnx

from workbench.errors import SpecError, check_flag
from workbench.jax_to_onnx.conversion import Conversion, to_proto
from workbench.jax_to_onnx.input_layout import InputLayout
from workbench.jax_to_onnx.precision import Precision
from workbench.jax_to_onnx.program import (  # DEFAULT_OPSET & co. are read from here too (__all__)
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    _resolve_opset,
    build_model,
    check_save_options,
    program_of,
    write_model_to,
)
from workbench.jax_to_onnx.tracing import Traced, trace
from workbench.onnx_io import load_model
from workbench.onnx_io.write import DEFAULT_TENSOR_THRESHOLD

# protobuf cannot serialize a ModelProto above this size
PROTOBUF_LIMIT = 2**31 - 1


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
    constraints: Sequence[str] = (),
    runtime: str | None = None,
) -> Conversion:
    """Convert ``fn`` and return the :class:`Conversion`: the model (``.model``, ``.save``, ``.run``,
    ``.parity``...), the jaxpr, value origins and timings. Arguments as for :func:`to_onnx`.

    The conversion holds the model without copying its weights (they stay the traced arrays), so
    ``wb.convert(fn, specs).save(path)`` is the way to export a model of several GB.
    """
    for name, value in (("enable_double_precision", enable_double_precision), ("optimize", optimize)):
        check_flag(name, value, accepted=(bool, np.bool_))
    chosen = Precision.of(precision, keep_io_types, runtime)
    with _collector_paused():
        start = time.perf_counter()
        target_opset = _resolve_opset(opset)
        traced = trace(fn, inputs, enable_double_precision=enable_double_precision, constraints=constraints)
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
    runtime: str | None = None,
) -> Conversion:
    """:func:`convert` of a function already traced (``enable_double_precision`` as it was traced with)."""
    chosen = Precision.of(precision, keep_io_types, runtime)
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
    program = program_of(
        traced, input_names=input_names, output_names=output_names, enable_double_precision=enable_double_precision
    )
    built = build_model(program, opset=opset, optimize=optimize, input_layout=input_layout, precision=precision)
    done = time.perf_counter()
    return Conversion(
        ir_model=built.ir_model,
        traced=traced,
        origins=built.state.origins,
        origin_vars=built.state.origin_vars,
        layouts=built.layouts,
        seconds=done - start,
        timings={"trace": traced_at - start, "lower": built.lowered_at - traced_at, "passes": done - built.lowered_at},
        weights=built.weights,
        optimized=optimize,
        precision=precision,
        opset=opset,
        enable_double_precision=enable_double_precision,
        _checked=built.checked,
    )


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
    precision: str | Precision = "float32",
    keep_io_types: bool = True,
    input_layout: InputLayout = None,
    constraints: Sequence[str] = (),
    runtime: str | None = None,
) -> onnx.ModelProto:
    """Convert a JAX callable to an ONNX model.

    Args:
        fn: a plain or ``jax.jit`` function, a Flax NNX module, ``functools.partial(linen_model.apply,
            variables)`` or an Equinox module; or a ``jax.export.Exported``, its ``serialize()`` bytes
            or a file holding them, whose StableHLO module is converted op by op (no Python source needed).
        inputs: one spec per positional argument: a shape tuple of ints and symbolic names
            (``("B", 30)``, float32), a ``jax.ShapeDtypeStruct``, an array, or a pytree of those. In a
            pytree of arrays (an optimiser's state passed as it is) ``()`` and ``None`` are empty nodes, as in
            JAX; among shape tuples ``()`` is a float32 scalar.
            ``None`` for an Exported, which carries its input types.
        path: also write the model there, atomically; tensors of at least ``external_data_threshold``
            bytes go to the side file ``<path>.<16 hex of its SHA-256>.data`` (``None`` keeps
            everything in one file).
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
        constraints: bounds on the symbolic dimensions, as JAX's symbolic constraints (``["T <= 64"]``),
            for a program whose shapes depend on one: a causal mask sliced from a table of 64 positions
            has ``min(64, T)`` rows, which traces only when ``T <= 64`` is known. The model is then valid
            for sizes that meet them (ONNX shapes cannot state a bound).
        runtime: ``"onnxruntime-cpu"`` makes the model load in onnxruntime's CPU provider, which has
            almost no bfloat16 kernels (nor int16 Max/Min/Relu): each node the installed onnxruntime
            has no kernel for computes in float32 (int16: int32) between Casts and is rounded back,
            the rest as exported (:mod:`workbench.jax_to_onnx.cpu_widening`). ``None`` (default):
            the model as traced.

    Returns:
        The model as an ``onnx.ModelProto`` (as the onnx package expects), weights included. When
        ``path`` is given and the weights do not fit a protobuf (2 GB), the proto returned is the
        saved model, its weights referring to its side file (``onnx.load(path,
        load_external_data=False)``): a copy of several GB is never made. ``wb.convert`` returns
        the richer :class:`~workbench.jax_to_onnx.conversion.Conversion`.

    Raises:
        UnsupportedPrimitiveError: listing every primitive without a handler, with source lines.
        SpecError: for a bad callable, input spec, name list or opset.
        TraceError: when the function itself fails to trace with these inputs.
        UnsupportedStableHLOOpError: for an Exported, listing every op without a converter.
    """
    check_save_options(path, external_data_threshold)
    from workbench.jax_to_onnx.stablehlo.api import exported_to_onnx, is_exported_source

    if is_exported_source(fn):
        if isinstance(fn, (str, os.PathLike)) and not os.path.isfile(fn):
            raise SpecError(
                f"fn: {os.fspath(fn)!r} is not a file, and a string is read as the path of a serialized "
                "jax.export.Exported; give the function itself (wb.to_onnx(fn, inputs)), or the path of such a file."
            )
        if inputs is not None:
            raise SpecError("inputs: a jax.export.Exported carries its own input types; pass inputs=None.")
        if enable_double_precision or input_layout is not None or constraints:
            raise SpecError("an Exported's types were fixed when it was exported: "
                            "enable_double_precision, input_layout and constraints do not apply.")
        chosen = Precision.of(precision, keep_io_types, runtime)
        with _collector_paused():
            model = exported_to_onnx(fn, opset=_resolve_opset(opset), input_names=input_names,
                                     output_names=output_names, precision=chosen)
        if path is not None:
            write_model_to(model, path, external_data_threshold)
        return to_proto(model)
    if inputs is None:
        raise SpecError("inputs: give one input spec per positional argument of fn, e.g. [('B', 30)].")
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
        constraints=constraints,
        runtime=runtime,
    )
    if path is None:
        return conversion.model
    conversion.save(path, external_data_threshold=external_data_threshold)
    if conversion.weight_bytes < PROTOBUF_LIMIT:
        return conversion.model
    return load_model(path, external_data=False).proto


__all__ = ["DEFAULT_OPSET", "MAX_OPSET", "MIN_OPSET", "PROTOBUF_LIMIT", "convert", "convert_traced", "to_onnx"]
