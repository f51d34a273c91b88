"""``@wb.onnx_function``: keep a function's or a module's calls as ONNX local functions.

Outside an export the decorator changes nothing (the original function runs, no ``jit``).
During ``wb.to_onnx`` each call goes through ``jax.jit`` under a marker name, so the jaxpr
holds one ``jit`` equation per call; the ``jit`` handler (jax_to_onnx/handlers/structural.py) turns it
into one node calling an ONNX local function in the ``workbench.functions`` domain.

- The call's array leaves (arguments, keyword arguments and, for a module, its weights) become
  the function's inputs, so each call site passes its own module's weights, which stay
  main-graph initializers named after their module path. Everything else in the pytrees
  (activation functions, Python numbers and flags, PRNG keys) is closed over, as ``eqx.filter_jit`` does.
- Calls that compute the same thing on inputs of the same shapes and dtypes share one function
  definition, so a 12-block transformer shows one ``Block`` function called 12 times. "The same
  thing" is decided by a structural fingerprint of the call's jaxpr (primitives, parameters,
  literals, wiring and constants), never by the name alone: a block called once with
  ``deterministic=True`` and once with ``False`` gets two definitions (overloads).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import jax
import numpy as np
import onnx_ir as ir

from workbench.jax_to_onnx.constant_pool import ArrayKey
from workbench.jax_to_onnx.keys import host_array

ONNX_FUNCTION_DOMAIN = "workbench.functions"
_MARKER = "wb_onnx_function__"
# separates the function name from its input names inside the jit name (never part of an identifier)
_INPUTS_SEPARATOR = "|in|"
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
    """The ONNX function name carried by a marked jit name, or None for an ordinary jit."""
    if not jit_name.startswith(_MARKER):
        return None
    return jit_name[len(_MARKER) :].split(_INPUTS_SEPARATOR, 1)[0]


def input_names_from_marker(jit_name: str) -> list[str]:
    """The input names (pytree paths of the call's array leaves) carried by a marked jit name."""
    _, _, names = jit_name.partition(_INPUTS_SEPARATOR)
    return names.split(",") if names else []


def _is_traced_array(leaf: Any) -> bool:
    """Numeric arrays (and tracers) become function inputs; PRNG keys stay closed over."""
    if not isinstance(leaf, (jax.Array, np.ndarray)):
        return False
    return not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _leaf_name(path: tuple[Any, ...], parameter_names: Sequence[str]) -> str:
    """``x``, ``mask``, ``attn.query.kernel`` for a leaf of ``(args, kwargs)``."""
    parts = jax.tree_util.keystr(path, simple=True, separator=".").split(".")
    # parts[0] is 0 (positional args) or 1 (kwargs); then the position or the keyword
    if parts[0] == "0" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(parameter_names):
        parts = [parameter_names[int(parts[1])], *parts[2:]]
    else:
        parts = parts[1:]
    if parts and parts[0] == "self":
        parts = parts[1:]
    while len(parts) > 1 and parts[-1] in ("value", "raw_value"):  # the array inside an NNX Variable
        parts.pop()
    name = "".join(ch if ch.isalnum() or ch in "._" else "_" for ch in ".".join(parts))
    return name or "x"


def _parameter_names(fn: Callable[..., Any]) -> list[str]:
    try:
        return [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return []


def _marked_call(name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``fn`` through a marker-named ``jax.jit`` whose arguments are the call's array leaves."""
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path((args, kwargs))
    leaves = [leaf for _, leaf in leaves_with_path]
    positions = [i for i, leaf in enumerate(leaves) if _is_traced_array(leaf)]
    parameter_names = _parameter_names(fn)
    input_names = [_leaf_name(leaves_with_path[i][0], parameter_names) for i in positions]

    def body(*arrays: Any) -> Any:
        rebuilt = list(leaves)
        for position, array in zip(positions, arrays, strict=True):
            rebuilt[position] = array
        call_args, call_kwargs = jax.tree_util.tree_unflatten(treedef, rebuilt)
        return fn(*call_args, **call_kwargs)

    body.__name__ = _MARKER + name + _INPUTS_SEPARATOR + ",".join(input_names)
    return jax.jit(body)(*[leaves[i] for i in positions])


def onnx_function(target: T | None = None, *, name: str | None = None) -> Any:
    """Decorate a function or a module class (Flax NNX, Equinox, any class with ``__call__``).

    Usable bare (``@wb.onnx_function``) or with a name (``@wb.onnx_function(name="Block")``).
    During ``wb.to_onnx`` each call becomes one node calling an ONNX local function; outside an
    export the decorated function or class behaves exactly as before.
    """
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        raise ValueError(f"onnx_function: name must be a Python identifier such as 'Block', got {name!r}")

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
            raise ValueError(f"@onnx_function expects a function or a class, got {type(obj).__name__}")
        function_name = name or getattr(obj, "__name__", None) or type(obj).__name__
        if not function_name.isidentifier():  # e.g. a lambda
            function_name = "Function"

        @functools.wraps(obj)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not _EXPORTING.get():
                return obj(*args, **kwargs)
            return _marked_call(function_name, obj, args, kwargs)

        return wrapper

    if target is None:
        return decorate
    return decorate(target)


# ----------------------------------------------------------------------------- lowering
# Fingerprints of nested jaxprs, which JAX shares between calls (the jitted jnp helpers inside each
# block): computed once per jaxpr object, forgotten with it.
_FINGERPRINTS: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = weakref.WeakKeyDictionary()


def _param_key(value: Any) -> Any:
    """A hashable stand-in for an equation parameter, for the structural fingerprint."""
    from jax.extend import core as jex_core

    if isinstance(value, jex_core.ClosedJaxpr):
        return ("closed_jaxpr", jaxpr_fingerprint(value.jaxpr), _consts_key(value.consts))
    if isinstance(value, jex_core.Jaxpr):
        return ("jaxpr", jaxpr_fingerprint(value))
    if isinstance(value, (tuple, list)):
        return tuple(_param_key(v) for v in value)
    if isinstance(value, np.ndarray):
        return ("array", _consts_key([value]))
    from jax.extend import linear_util

    opaque = isinstance(value, linear_util.WrappedFun) or type(value).__eq__ is object.__eq__
    if opaque or (callable(value) and not isinstance(value, type)):
        # JVP/VJP rules, thunks and other objects compared by identity (linear_util.WrappedFun):
        # differentiation machinery that does not change what the ONNX graph computes
        return ("opaque", type(value).__name__)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value  # JAX requires equation parameters to be hashable; equal values compute the same


def _consts_key(consts: Sequence[Any]) -> tuple[ArrayKey, ...]:
    """The closed-over constants as exact keys (equal bytes), without hashing every weight whole."""
    return tuple(ArrayKey(host_array(const)) for const in consts)


def jaxpr_fingerprint(jaxpr: Any) -> tuple[Any, ...]:
    """What a jaxpr computes, independent of variable names and source lines (linear in its size)."""
    cached = _FINGERPRINTS.get(jaxpr)
    if cached is not None:
        return cached
    from jax.extend import core as jex_core

    numbering: dict[Any, int] = {}

    def atom(value: Any) -> Any:
        if isinstance(value, jex_core.Literal):
            return ("literal", repr(value.val), value.aval)
        return numbering.setdefault(value, len(numbering))

    header = tuple((atom(v), v.aval) for v in [*jaxpr.constvars, *jaxpr.invars])
    body = tuple(
        (
            eqn.primitive.name,
            tuple(atom(v) for v in eqn.invars),
            tuple((k, _param_key(v)) for k, v in sorted(eqn.params.items())),
            tuple((atom(v), v.aval) for v in eqn.outvars),
        )
        for eqn in jaxpr.eqns
    )
    fingerprint = (header, body, tuple(atom(v) for v in jaxpr.outvars))
    _FINGERPRINTS[jaxpr] = fingerprint
    return fingerprint


def lower_onnx_function(
    ctx: Any, jit_name: str, closed_jaxpr: Any, operands: list[ir.Value]
) -> tuple[ir.Value, ...]:
    """Emit (or reuse) the ONNX function for this call's computation and a node calling it."""
    from workbench.jax_to_onnx.builder import GraphBuilder
    from workbench.jax_to_onnx.lowering import finish_subgraph, lower_jaxpr

    function_name = function_name_from_marker(jit_name) or "Function"
    state = ctx.builder.state
    jaxpr = closed_jaxpr.jaxpr
    key = (function_name, jaxpr_fingerprint(jaxpr), _consts_key(closed_jaxpr.consts))
    function = state.functions.get(key)
    if function is None:
        names = input_names_from_marker(jit_name)
        if len(names) != len(ctx.avals_in):
            names = [f"x{i}" for i in range(len(ctx.avals_in))]
        body = GraphBuilder(state, is_function=True)
        inputs = [body.add_input(n, aval) for n, aval in zip(names, ctx.avals_in, strict=True)]
        consts = [body.const(host_array(c)) for c in closed_jaxpr.consts]
        outputs = lower_jaxpr(body, jaxpr, consts, inputs)
        graph = finish_subgraph(body, inputs, outputs, function_name)
        overloads = sum(1 for k in state.functions if k[0] == function_name)
        overload = f"v{overloads}" if overloads else ""
        graph.opset_imports.update(body.used_opsets)
        function = ir.Function(ONNX_FUNCTION_DOMAIN, function_name, overload, graph=graph, attributes=[])
        state.functions[key] = function
    node_outputs = ctx.builder.call_function(function, operands, len(jaxpr.outvars))
    for value, var in zip(node_outputs, jaxpr.outvars, strict=True):
        ctx.builder.set_type(value, var.aval)
    return node_outputs
