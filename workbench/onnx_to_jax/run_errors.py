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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx

from workbench.errors import ModelRunError, WorkbenchError
from workbench.onnx_io.describe import model_graphs

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
    label: str, filename: str, source: str, identifiers: dict[str, str], model: onnx.ModelProto, helpers_marker: str
) -> SourceMap:
    """``identifiers``: generated identifier -> the ONNX value it holds; the model tells which node writes each;
    the runtime helpers start at the line ``helpers_marker``."""
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
    return SourceMap(label, filename, lines, nodes, helpers_from)


def _passes_through() -> tuple[type[BaseException], ...]:
    """JAX's own error classes (tracer errors callers rely on) and the workbench's: never rewrapped. XLA's
    runtime error (an allocation the node's shapes ask for, RESOURCE_EXHAUSTED) is about the data: it is."""
    import jax

    jax_errors = tuple(v for v in vars(jax.errors).values()
                       if isinstance(v, type) and issubclass(v, Exception) and v is not jax.errors.JaxRuntimeError)  # fmt: skip
    return (*jax_errors, WorkbenchError)


def translate(error: BaseException, where: SourceMap) -> None:
    """Raise ``error`` as a ModelRunError naming its node when it comes from a model statement; else re-raise it."""
    if isinstance(error, _passes_through()):
        raise error
    node = where.describe(error)
    if node is None:
        raise error
    first = (str(error).strip().splitlines() or [""])[0][:400].rstrip(".")
    raise ModelRunError(
        f"{where.label}: {node} failed on the given inputs: {type(error).__name__}: {first}. The inputs' shapes or "
        "values do not fit what the model computes there (onnxruntime refuses such a run too), or the model "
        "contradicts itself; check the inputs against the model's declared inputs, or the model's attributes at "
        "that node."
    ) from error


def guard(namespace: dict[str, Any], function_name: str, where: SourceMap) -> Callable[..., Any]:
    """Rebind ``namespace[function_name]`` to a wrapper of it with the same signature that translates run errors.

    The wrapper is compiled into ``namespace`` itself, so ``wrapper.__globals__`` is the generated module's.
    """
    inner = namespace[function_name]
    hidden = f"_workbench_unguarded_{function_name}"
    parameters = inspect.signature(inner).parameters.values()
    names = [f"*{p.name}" if p.kind is inspect.Parameter.VAR_POSITIONAL else p.name for p in parameters]
    arguments = ", ".join(names)
    code = (
        f"def {function_name}({arguments}):\n"
        f"    try:\n"
        f"        return {hidden}({arguments})\n"
        f"    except _workbench_run_errors as error:\n"
        f"        _workbench_translate(error, _workbench_source_map)\n"
    )
    import jax

    namespace.update({hidden: inner, "_workbench_run_errors": (*RUN_ERRORS, jax.errors.JaxRuntimeError),
                      "_workbench_translate": translate, "_workbench_source_map": where})  # fmt: skip
    exec(compile(code, "<workbench-guard>", "exec"), namespace)  # noqa: S102 - our own fixed wrapper text
    wrapper = namespace[function_name]
    wrapper.__doc__ = inner.__doc__
    return wrapper


__all__ = ["RUN_ERRORS", "SourceMap", "guard", "source_map", "translate"]
