"""Failures of generated code while it runs, named by the ONNX node whose statement failed.

A model can pass every check at conversion and still fail on the inputs it is given: a graph
input declared ``[2, 3]`` fed where the graph computes ``[2, 4]``, a Reshape whose computed shape
does not fit, an attribute value that only fails for these shapes. onnxruntime then refuses the
run naming the node; the generated code would raise JAX's or numpy's own error (``TypeError: add
got incompatible shapes``) pointing at a line of ``<workbench-generated>``. :func:`guard` wraps the
generated ``forward`` (in the generated module's own namespace, so everything that reads the
module through ``forward.__globals__`` still does) so that such an error becomes a
:class:`~workbench.errors.ModelRunError` naming the node, its statement and the original error
(chained). Errors that are not about the data (JAX's tracer errors, which callers catch to run a
value-dependent model eagerly; the workbench's own errors) pass through unchanged.
"""

from __future__ import annotations

import inspect
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from workbench.errors import ModelRunError, WorkbenchError
from workbench.onnx_io.describe import ValueDescription, describe_inputs, model_graphs

#: what numpy, JAX and Python raise when a computation does not fit its operands
RUN_ERRORS = (TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError, ArithmeticError)

_ASSIGNED = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*,?\s*=[^=]")


@dataclass(frozen=True)
class SourceMap:
    """What a failing line of generated code means in the model's terms."""

    label: str  # the model, as messages name it
    filename: str  # the generated code's file name in tracebacks
    lines: tuple[str, ...]  # the generated source
    node_of_identifier: dict[str, str]  # identifier -> "node 'x' (Add) writing 'y'"
    helpers_from: int  # the line where the runtime helpers start (their locals are not model values)
    declared_inputs: tuple[ValueDescription, ...] = ()  # the model's graph inputs, to compare the given ones with
    weight_names: frozenset[str] = frozenset()  # the keys of the params wb.to_jax returns (the names forward reads)
    value_dependent: tuple[str, ...] = ()  # nodes whose output shapes depend on values (VALUE_DEPENDENT_NODES)

    def describe(self, error: BaseException) -> str | None:
        """The failing node and its statement, from the innermost generated frame that assigns a model value."""
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == self.filename]
        for frame in reversed(frames):
            if not frame.lineno or frame.lineno >= self.helpers_from:
                continue
            text = self.lines[frame.lineno - 1].strip() if frame.lineno and frame.lineno <= len(self.lines) else ""
            match = _ASSIGNED.match(text)
            if match is None:
                continue
            for identifier in (name.strip() for name in match.group(1).split(",")):
                node = self.node_of_identifier.get(identifier)
                if node is not None:
                    return f"{node} (generated line {frame.lineno}: {text[:200]})"
        return None


def source_map(
    label: str, filename: str, source: str, identifiers: dict[str, str], model: onnx.ModelProto, helpers_marker: str,
    weight_names: frozenset[str] = frozenset(), value_dependent: tuple[str, ...] = (),
) -> SourceMap:
    """``identifiers``: generated identifier -> the ONNX value it holds; the model tells which node writes each;
    the runtime helpers start at the line ``helpers_marker``; ``weight_names`` are the keys of the params the
    generated code reads; ``value_dependent`` nodes have output shapes that depend on values."""
    writer: dict[str, str] = {}
    for graph in model_graphs(model):
        for index, node in enumerate(graph.node):
            name = repr(node.name) if node.name else f"#{index}"
            domain = f"{node.domain}::" if node.domain else ""
            for output in node.output:
                if output:
                    writer.setdefault(output, f"node {name} ({domain}{node.op_type}) writing {output!r}")
    nodes = {ident: writer[value] for ident, value in identifiers.items() if value in writer}
    lines = tuple(source.splitlines())
    helpers_from = next((number for number, text in enumerate(lines, 1) if text == helpers_marker), len(lines) + 1)
    declared = tuple(describe_inputs(model.graph))
    return SourceMap(label, filename, lines, nodes, helpers_from, declared, frozenset(weight_names), value_dependent)


def _given_text(value: Any) -> tuple[np.dtype | None, tuple[int, ...] | None, str]:
    """A given input's dtype, shape and ``float32[1×3]`` text (a tracer under jax.jit has both too)."""
    import jax

    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        dtype, shape = np.dtype(value.dtype), tuple(int(d) for d in value.shape)
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):
            return None, None, type(value).__name__
        dtype, shape = array.dtype, array.shape
    return dtype, shape, f"{dtype}[{'×'.join(str(d) for d in shape)}]"


def input_mismatches(declared: tuple[ValueDescription, ...], given: tuple[Any, ...]) -> list[str]:
    """Where the given inputs differ from the model's declared ones: count, element type, rank, fixed sizes."""
    if len(given) != len(declared):
        names = ", ".join(repr(value.name) for value in declared)
        return [f"the model takes {len(declared)} input(s) ({names}), given {len(given)}"]
    found = []
    for value, arg in zip(declared, given, strict=True):
        if not value.is_tensor:
            continue
        dtype, shape, text = _given_text(arg)
        wrong_type = value.dtype is not None and dtype is not None and dtype != value.dtype
        wrong_shape = value.shape is not None and shape is not None and (
            len(shape) != len(value.shape) or any(isinstance(d, int) and d != n for d, n in zip(value.shape, shape, strict=True))
        )  # fmt: skip
        if wrong_type or wrong_shape:
            found.append(f"{value.name!r} is declared {value.text()}, given {text}")
    return found


def _passes_through() -> tuple[type[BaseException], ...]:
    """JAX's own error classes (tracer errors callers rely on) and the workbench's: never rewrapped. XLA's
    runtime error (an allocation the node's shapes ask for, RESOURCE_EXHAUSTED) is about the data: it is."""
    import jax

    jax_errors = tuple(v for v in vars(jax.errors).values()
                       if isinstance(v, type) and issubclass(v, Exception) and v is not jax.errors.JaxRuntimeError)  # fmt: skip
    return (*jax_errors, WorkbenchError)


def _missing_weight(error: BaseException, params: Any, weight_names: frozenset[str]) -> str | None:
    """The weight name a KeyError says ``params`` lacks: one of the model's ``weight_names`` that ``params`` does
    not hold. ``None`` when the KeyError is about something else (a key of the caller's own mapping, a lookup
    in code forward calls): that error is the caller's and passes through unchanged."""
    if not isinstance(error, KeyError) or not isinstance(params, Mapping) or len(error.args) != 1:
        return None
    key = error.args[0]
    return key if isinstance(key, str) and key in weight_names and key not in params else None


def tracer_errors() -> tuple[type[BaseException], ...]:
    """JAX's errors for code that needs a concrete value where it is traced (it cannot run under jax.jit)."""
    import jax

    errors = jax.errors
    return (errors.ConcretizationTypeError, errors.TracerArrayConversionError, errors.TracerIntegerConversionError,
            errors.TracerBoolConversionError, errors.NonConcreteBooleanIndexError)  # fmt: skip


def _whole_jit_note(where: SourceMap) -> str:
    nodes = ", ".join(repr(name) for name in where.value_dependent[:5]) + (" …" if len(where.value_dependent) > 5 else "")
    return (
        f"workbench: {where.label} has nodes whose output shapes depend on the input values ({nodes}; the module's "
        "VALUE_DEPENDENT_NODES), so jax.jit cannot trace forward as a whole. Call forward(params, ...) directly: it "
        "runs the parts around those nodes jitted (jax.jit(forward) works for models without them)."
    )


def translate(error: BaseException, where: SourceMap, params: Any = None, inputs: tuple[Any, ...] = ()) -> None:
    """Raise ``error`` as a ModelRunError naming its node when it comes from a model statement; else re-raise it.

    ``params`` and ``inputs`` are what the call was given: a weight missing from ``params`` is named,
    and so are the inputs that differ from the model's declared inputs, the likeliest cause of a failure.
    """
    if isinstance(error, _passes_through()):
        if where.value_dependent and isinstance(error, tracer_errors()):
            note = _whole_jit_note(where)  # a note, JAX's own type kept: callers catch it to run eagerly
            if note not in vars(error).get("__notes__", ()):  # forward and forward_prepared both pass it on
                error.add_note(note)
        raise error
    node = where.describe(error)
    missing = _missing_weight(error, params, where.weight_names)
    if missing is not None:  # read by a model statement, or by prepare() laying weights out
        reader = f", which {node} reads" if node is not None else ""
        raise ModelRunError(
            f"{where.label}: params has no weight {missing!r}{reader}. Pass the params wb.to_jax returned with the "
            f"function ({len(where.weight_names)} arrays keyed by the model's initializer names); edited or loaded "
            "params must keep every name."
        ) from error
    if node is None or isinstance(error, KeyError):
        raise error
    first = (str(error).strip().splitlines() or [""])[0][:400].rstrip(".")
    mismatches = input_mismatches(where.declared_inputs, inputs) if where.declared_inputs else []
    cause = (
        "The given inputs differ from the model's: " + "; ".join(mismatches) + ". Give inputs of the declared "
        "element types and ranks (fixed sizes as declared)."
        if mismatches else
        "The inputs' shapes or values do not fit what the model computes there (onnxruntime refuses such a run too), "
        "or the model contradicts itself; check the inputs against the model's declared inputs, or the model's "
        "attributes at that node."
    )  # fmt: skip
    raise ModelRunError(f"{where.label}: {node} failed on the given inputs: {type(error).__name__}: {first}. {cause}") from error


def guard(namespace: dict[str, Any], function_name: str, where: SourceMap) -> Callable[..., Any]:
    """Rebind ``namespace[function_name]`` to a wrapper of it with the same signature that translates run errors.

    The wrapper is compiled into ``namespace`` itself, so ``wrapper.__globals__`` is the generated module's.
    """
    inner = namespace[function_name]
    hidden = f"_workbench_unguarded_{function_name}"
    parameters = inspect.signature(inner).parameters.values()
    names = [f"*{p.name}" if p.kind is inspect.Parameter.VAR_POSITIONAL else p.name for p in parameters]
    arguments = ", ".join(names)
    given = "".join(f"{name}, " for name in names[1:])  # the model inputs: every parameter after params
    code = (
        f"def {function_name}({arguments}):\n"
        f"    try:\n"
        f"        return {hidden}({arguments})\n"
        f"    except _workbench_run_errors as error:\n"
        f"        _workbench_translate(error, _workbench_source_map, {names[0].lstrip('*')}, ({given}))\n"
    )
    import jax

    namespace.update({hidden: inner, "_workbench_run_errors": (*RUN_ERRORS, KeyError, jax.errors.JaxRuntimeError),
                      "_workbench_translate": translate, "_workbench_source_map": where})  # fmt: skip
    exec(compile(code, "<workbench-guard>", "exec"), namespace)  # noqa: S102 - our own fixed wrapper text
    wrapper = namespace[function_name]
    wrapper.__doc__ = inner.__doc__
    return wrapper


__all__ = ["RUN_ERRORS", "SourceMap", "guard", "input_mismatches", "source_map", "translate"]
