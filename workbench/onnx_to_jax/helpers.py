"""Runtime helpers: functions copied into generated modules, and the ones several emitter families share.

A helper (``@runtime_helper``) is a plain function using only ``jnp``, ``lax``, ``jax`` and ``np`` (or a
class of such methods, for an output type JAX has no tree for: ZipMap's rows);
the generator copies the source of the helpers a model uses (and of the helpers they call) into the
generated module, so that module runs with JAX alone. Emitter families register their own helpers
beside their emitters; the ones below serve several families and the node context.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

_HELPERS: dict[str, Callable] = {}


def runtime_helper(fn: Callable) -> Callable:  # a function, or a class (its methods are read)
    """Mark ``fn`` as a helper whose source may be copied into generated modules.

    Helper names start with ``_`` and are unique across all families.
    """
    if not fn.__name__.startswith("_"):
        raise ValueError(f"runtime helper names start with '_': {fn.__name__}")
    existing = _HELPERS.get(fn.__name__)
    if existing is not None and existing is not fn:
        raise ValueError(f"duplicate runtime helper name {fn.__name__!r}")
    _HELPERS[fn.__name__] = fn
    return fn


def registered_helpers() -> dict[str, Callable]:
    """Name -> function of every helper registered so far (families register theirs when imported)."""
    return dict(_HELPERS)


def helper_source(names: set[str]) -> str:
    """Source of the named helpers and every helper they call, in a stable order."""
    needed: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        referenced: set[str] = set()
        for code in _code_objects(_HELPERS[name]):
            referenced |= set(code.co_names)
            for const in code.co_consts:  # nested functions
                if inspect.iscode(const):
                    referenced |= set(const.co_names)
        todo.extend(n for n in referenced if n in _HELPERS and n not in needed)
    parts = [textwrap.dedent(inspect.getsource(_HELPERS[n])) for n in sorted(needed)]
    return "\n\n".join(p.replace("@runtime_helper\n", "") for p in parts)


def _code_objects(helper: Callable) -> list:
    """The code of a helper function, or of every method of a helper class."""
    if inspect.isclass(helper):
        return [member.__code__ for member in vars(helper).values() if inspect.isfunction(member)]
    return [helper.__code__]


# ---------------------------------------------------------------------------- shared helpers
@runtime_helper
def _ints(value):
    """A shape-like value as a tuple of Python ints (needs a concrete value, i.e. not under jit)."""
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


@runtime_helper
def _slice_axis(x, start, stop, axis):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


@runtime_helper
def _accumulation_dtype(dtype):
    """The type sums of products of ``dtype`` are carried in: float32 for half-precision floats
    (rounded once at the end, as XLA's fused convolutions and dots do), ``dtype`` itself otherwise
    (the convolution forms of emitters/conv.py and emitters/conv_wide.py)."""
    return jnp.float32 if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32 else dtype


@runtime_helper
def _norm_axis(axis, rank):
    return axis + rank if axis < 0 else axis


@runtime_helper
def _xla_accepts(name, value):
    """Whether the running XLA knows compiler option ``name`` with ``value`` (an older or newer jaxlib may
    not): compiles a one-op program once per option and value, then answers from a cache."""
    known = _xla_accepts.__dict__.setdefault("known", {})
    if (name, value) not in known:
        try:
            jax.jit(lambda x: x + 1).lower(np.float32(0)).compile(compiler_options={name: value})
            known[(name, value)] = True
        except Exception:  # noqa: BLE001 - XLA reports an unknown option or value as a runtime error
            known[(name, value)] = False
    return known[(name, value)]


@runtime_helper
def _xla_flag_set(name):
    """Whether the process's ``XLA_FLAGS`` sets XLA option ``name`` (``--name=value``)."""
    import os

    return any(flag.lstrip("-").split("=", 1)[0] == name for flag in os.environ.get("XLA_FLAGS", "").split())


@runtime_helper
def _jit_with_options(fn, options, **jit_kwargs):
    """``jax.jit(fn, **jit_kwargs)`` compiled with the XLA options ``options`` (a generated module's
    ``XLA_COMPILER_OPTIONS``: workbench/onnx_to_jax/jit_options.py), less those the running XLA does not
    know, and less an LLVM optimization level when the process's ``XLA_FLAGS`` sets one (the user's
    choice, or the test suite's fast compiles); ``compiler_options`` in ``jit_kwargs`` are added unchecked
    and win. Every jitted function of generated code is built here: ``wb.jit_forward`` for a whole model,
    ``_segment`` for the parts of a model whose shapes depend on values."""
    chosen = {
        name: value for name, value in options.items()
        if _xla_accepts(name, value) and not (name == "xla_backend_optimization_level" and _xla_flag_set(name))
    }
    chosen.update(jit_kwargs.pop("compiler_options", None) or {})
    return jax.jit(fn, compiler_options=chosen or None, **jit_kwargs)


@runtime_helper
def _segment(part, params, dynamic, static):
    """Run one part of a model whose shapes depend on values (workbench/onnx_to_jax/segments.py).

    With concrete arrays the part is compiled by ``jax.jit`` (once per input shapes and static
    values) with the XLA options of the module that defines it (its ``XLA_COMPILER_OPTIONS``, as
    ``wb.jit_forward`` applies them to a whole model); under an outer transformation (jit, grad,
    vmap) it is traced inline.
    """
    leaves = jax.tree_util.tree_leaves((params, dynamic, static))
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return part(params, *dynamic, *static)
    frozen = tuple((np.asarray(v).dtype, np.shape(v), np.asarray(v).tobytes()) for v in static)
    options = part.__globals__.get("XLA_COMPILER_OPTIONS") or {}  # jit_options.OPTIONS_NAME
    # one jitted function per options (one per generated module), kept: jax.jit's caches then serve
    # every later call of a part with the same shapes from its fast path
    jitted = _segment.__dict__.setdefault("jitted", {})
    key = tuple(sorted(options.items()))
    if key not in jitted:
        jitted[key] = _jit_with_options(_segment_run, options, static_argnums=(0, 3))
    return jitted[key](part, params, dynamic, frozen)


@runtime_helper
def _segment_shared(shared, specialized, params, dynamic, scalars, static):
    """Run ``shared`` (a part's code with some integer scalars as traced arguments) like ``_segment``;
    if those scalars cannot be traced there (a shape or an axis needs them concrete), run the part's
    own function ``specialized`` from then on."""
    if not shared.__dict__.get("needs_concrete_scalars", False):
        try:
            return _segment(shared, params, tuple(dynamic) + tuple(scalars), static)
        except Exception:  # noqa: BLE001 - any tracing failure: the part's own code runs (and reports real errors)
            shared.__dict__["needs_concrete_scalars"] = True
    return _segment(specialized, params, dynamic, static)


@runtime_helper
def _segment_run(part, params, dynamic, frozen):
    """``part`` with its static values rebuilt as numpy arrays (so they stay concrete while tracing)."""
    static = [np.frombuffer(data, dtype).reshape(shape) for dtype, shape, data in frozen]
    return part(params, *dynamic, *static)


@runtime_helper
def _stack_weights(params, table):
    """The weights of repeated blocks stacked along a new leading axis, one array per row of ``table``
    (a row holds one params key per block), for ``lax.scan`` (workbench/onnx_to_jax/repeats.py).

    Concrete weights (folded into ``jax.jit``, or an eager call) are stacked by NumPy, so XLA sees
    one constant per row; traced ones (weights passed as arguments, ``jax.grad``) by ``jnp.stack``.
    """
    stacked = []
    for keys in table:
        arrays = [params[key] for key in keys]
        if any(isinstance(array, jax.core.Tracer) for array in arrays):
            stacked.append(jax.numpy.stack(arrays))
        else:
            stacked.append(np.stack([np.asarray(array) for array in arrays]))
    return tuple(stacked)
