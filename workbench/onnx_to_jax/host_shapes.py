"""Value-dependent models: what runs on concrete arrays written in numpy, no XLA compile per operation.

In a model whose shapes depend on values (segments.py) much of the shape arithmetic can only run once
a ``NonZero`` has counted something: ``TopK``'s ``k = min(1000, n)`` from a shape read inside a part,
a ``ConstantOfShape`` of the number of boxes. The generator writes such nodes under
``jax.ensure_compile_time_eval()`` so they stay concrete while ``jax.jit`` traces, and JAX then runs
each operation eagerly: one small XLA compile per operation and input shape, 10-50 ms of CPU each. The
same holds for the subgraphs of a value-dependent node, which run op by op on the host (torchvision's
batched NMS: an ``If`` whose branch moves each label's boxes apart, then calls NonMaxSuppression). A
detector's first call made 25 to 47 such compiles. For these models the segment assembler writes those
operations as numpy calls instead (``HostForms``, ``host_form``), through ``_on_host``, which keeps
JAX's function wherever an argument is traced (a part shared between classes passes its class label as
a traced argument, segments.py; ``jax.grad`` through the model traces everything).

Only single-output nodes are rewritten, whose inputs are integers, booleans or float32/float64, and
only operations whose numpy function computes what the JAX one does on such inputs (data movement,
comparisons, one correctly rounded IEEE operation, min/max; integer sums and products); anything else
keeps its JAX code. Models without value-dependent nodes never see this code: their source is unchanged.
"""

from __future__ import annotations

import io
import re
import tokenize
from typing import Callable

import jax
import numpy as np

from workbench.onnx_to_jax.helpers import runtime_helper


@runtime_helper
def _on_host(numpy_fn, jax_fn, *args, **kwargs):
    """``numpy_fn(*args, **kwargs)`` on concrete values (shape arithmetic of a value-dependent model:
    no XLA compile), ``jax_fn`` where an argument is traced."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((args, kwargs))):
        return jax_fn(*args, **kwargs)
    return numpy_fn(*args, **kwargs)


@runtime_helper
def _unsqueeze_np(x, axes):
    """``_unsqueeze`` in numpy."""
    x = np.asarray(x)
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(sorted(a % rank for a in axes)))


@runtime_helper
def _squeeze_np(x, axes):
    """``_squeeze`` in numpy."""
    x = np.asarray(x)
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a % x.ndim for a in axes))


@runtime_helper
def _reduce_np(kind, x, axes, keepdims, noop_with_empty_axes):
    """``_reduce`` in numpy for min, max, sum and prod (host_form writes sum and prod for integers only)."""
    x = np.asarray(x)
    if axes is not None:
        axes = tuple(int(a) for a in np.asarray(axes).reshape(-1))
    if not axes:
        if noop_with_empty_axes:
            return x
        axes = tuple(range(x.ndim))
    axes = tuple(a % x.ndim for a in axes) if x.ndim else ()
    if kind in ("max", "min"):
        if x.dtype.kind == "f":
            initial = -np.inf if kind == "max" else np.inf
        elif x.dtype == np.bool_:  # the identities: max over nothing is False, min is True
            initial = kind == "min"
        else:
            info = np.iinfo(x.dtype)
            initial = info.min if kind == "max" else info.max
        fn = np.max if kind == "max" else np.min
        return fn(x, axis=axes, keepdims=keepdims, initial=initial)
    if kind == "sum":
        return np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    if kind == "prod":
        return np.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    raise ValueError(f"no numpy form of reduction {kind!r}")


@runtime_helper
def _constant_of_shape_np(shape, value):
    """``_constant_of_shape`` in numpy."""
    shape = tuple(int(s) for s in np.asarray(shape).reshape(-1))
    value = np.asarray(value).reshape(-1)
    return np.full(shape, value[0], dtype=value.dtype)


# JAX functions the emitters call whose numpy namesake computes the same on integer and boolean arrays,
# and on float32/float64 too: each is data movement, a comparison or one correctly rounded IEEE operation
_SAME_IN_NUMPY = (
    "take", "concatenate", "reshape", "equal", "not_equal", "add", "subtract", "multiply", "where", "tile",
    "less", "greater", "less_equal", "greater_equal", "maximum", "minimum", "logical_and", "logical_or",
    "logical_not", "logical_xor",
)
_JNP_CALL = re.compile(rf"jnp\.({'|'.join(_SAME_IN_NUMPY)})\(")
# runtime helpers with a numpy twin above; sum and prod of floats round in another order, so not those
_HELPER_CALL = re.compile(r"(_unsqueeze|_squeeze|_constant_of_shape)\(|_reduce\('(min|max|sum|prod)',")
_TWINS: dict[str, Callable] = {
    "_unsqueeze": _unsqueeze_np, "_squeeze": _squeeze_np, "_constant_of_shape": _constant_of_shape_np,
    "_reduce": _reduce_np,
}
# Cast of integers (the emitter's form): numpy converts as XLA does
_CAST = re.compile(r"jnp\.asarray\((\w+)\)\.astype\((jnp\.\w+)\)")


def host_form(expression: str, floats: bool) -> tuple[str, tuple[Callable, ...]] | None:
    """``expression`` (one node's code, a call of a JAX function or runtime helper) as a call of
    ``_on_host`` with the numpy form first, and the helpers the new text names; None when the call has
    no numpy form here. ``floats``: some input of the node is float32/float64 (the caller checks that
    the others are integers or booleans)."""
    cast = _CAST.fullmatch(expression)
    if cast is not None:
        return (None if floats else
                (f"_on_host(np.asarray, jnp.asarray, {cast.group(1)}).astype({cast.group(2)})", (_on_host,)))
    if not _one_call(expression):
        return None  # an operator after the call could promote a numpy result differently
    match = _JNP_CALL.match(expression)
    if match is not None:
        name = match.group(1)
        return f"_on_host(np.{name}, jnp.{name}, {expression[match.end():]}", (_on_host,)
    match = _HELPER_CALL.match(expression)
    if match is None or (floats and match.group(2) in ("sum", "prod")):
        return None
    name = match.group(1) or "_reduce"
    twin = _TWINS[name]
    return f"_on_host({twin.__name__}, {name}, {expression[len(name) + 1:]}", (_on_host, twin)


class HostForms:
    """The numpy forms of one top-level node's code (its own line, or the lines of its subgraphs when
    they run on the host): line text -> replacement, and the helpers the replacements call."""

    def __init__(self) -> None:
        self.lines: dict[str, str] = {}
        self.helpers: set[Callable] = set()

    def note(self, target: str, expression: str, floats: bool) -> None:
        host = host_form(expression, floats)
        if host is not None:
            self.lines[f"{target} = {expression}"] = f"{target} = {host[0]}"
            self.helpers.update(host[1])


def _one_call(expression: str) -> bool:
    """True when ``expression`` is a single call: its first parenthesis closes at its last token (strings,
    such as a ``params['...']`` key, are tokens of their own, so their characters do not count)."""
    depth = 0
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(expression).readline)
                  if t.type not in (tokenize.NEWLINE, tokenize.ENDMARKER)]
    except (tokenize.TokenError, SyntaxError):
        return False
    for position, token in enumerate(tokens):
        if token.type == tokenize.OP and token.string == "(":
            depth += 1
        elif token.type == tokenize.OP and token.string == ")":
            depth -= 1
            if depth == 0:
                return position == len(tokens) - 1
    return False
