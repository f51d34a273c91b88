"""``@wb.onnx_function``: keep a function's or a module's calls as ONNX local functions.

Outside an export the decorator changes nothing. During ``wb.to_onnx`` each call goes through
``jax.jit`` under a marker name, so the jaxpr holds one ``jit`` equation per call; the ``jit``
handler turns it into a call of an ONNX local function. Calls with the same signature (input
shapes and dtypes) share one function definition, so a 12-block transformer shows one ``Block``
function called 12 times, with each block's weights passed in as inputs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
import numpy as np
import onnx_ir as ir

ONNX_FUNCTION_DOMAIN = "workbench.functions"
_MARKER = "wb_onnx_function__"
_EXPORTING: contextvars.ContextVar[bool] = contextvars.ContextVar("workbench_exporting", default=False)

T = TypeVar("T")


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Activate @onnx_function markers for the duration of one trace."""
    token = _EXPORTING.set(True)
    try:
        yield
    finally:
        _EXPORTING.reset(token)


def function_name_from_marker(jit_name: str) -> str | None:
    return jit_name[len(_MARKER) :] if jit_name.startswith(_MARKER) else None


def _marked_call(name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    def body(*inner_args: Any) -> Any:
        return fn(*inner_args, **kwargs)

    body.__name__ = _MARKER + name
    return jax.jit(body)(*args)


def onnx_function(target: T | None = None, *, name: str | None = None) -> Any:
    """Decorate a function or a module class (Flax NNX, Equinox, any class with ``__call__``).

    Usable bare (``@wb.onnx_function``) or with a name (``@wb.onnx_function(name="Block")``).
    """

    def decorate(obj: Any) -> Any:
        if inspect.isclass(obj):
            original_call = obj.__call__
            function_name = name or obj.__name__

            @functools.wraps(original_call)
            def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
                if not _EXPORTING.get():
                    return original_call(self, *args, **kwargs)
                return _marked_call(function_name, original_call, (self, *args), kwargs)

            obj.__call__ = __call__
            return obj
        if not callable(obj):
            raise TypeError(f"@onnx_function expects a function or a class, got {type(obj).__name__}")
        function_name = name or obj.__name__

        @functools.wraps(obj)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not _EXPORTING.get():
                return obj(*args, **kwargs)
            return _marked_call(function_name, obj, args, kwargs)

        return wrapper

    if target is None:
        return decorate
    return decorate(target)


def lower_onnx_function(ctx: Any, function_name: str, closed_jaxpr: Any, operands: list[ir.Value]) -> tuple[ir.Value, ...]:
    """Emit (or reuse) the ONNX function for this signature and a node calling it."""
    from workbench.export.builder import GraphBuilder
    from workbench.export.lowering import finish_subgraph, lower_jaxpr

    state = ctx.builder.state
    jaxpr = closed_jaxpr.jaxpr
    signature = tuple((str(np.dtype(a.dtype)), tuple(str(d) for d in a.shape)) for a in ctx.avals_in)
    key = (function_name, signature, len(closed_jaxpr.consts))
    function = state.functions.get(key)
    if function is None:
        body = GraphBuilder(state, is_function=True)
        inputs = [body.add_input(f"{function_name}_x{i}", aval) for i, aval in enumerate(ctx.avals_in)]
        consts = [body.const(np.asarray(c)) for c in closed_jaxpr.consts]
        outputs = lower_jaxpr(body, jaxpr, consts, inputs)
        graph = finish_subgraph(body, inputs, outputs, function_name)
        overload = "" if not any(k[0] == function_name for k in state.functions) else f"v{len(state.functions)}"
        graph.opset_imports.update(body.used_opsets)
        function = ir.Function(ONNX_FUNCTION_DOMAIN, function_name, overload, graph=graph, attributes=[])
        state.functions[key] = function
    node_outputs = ctx.builder.call_function(function, operands, len(jaxpr.outvars))
    for value, var in zip(node_outputs, jaxpr.outvars, strict=True):
        ctx.builder.set_type(value, var.aval)
    return node_outputs
