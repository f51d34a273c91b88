"""Normalize any supported callable into ``pure(params, *args)`` plus its named parameters.

Supported: plain functions, ``jax.jit``-wrapped functions, Flax NNX modules (run in
eval mode on a copy), Flax Linen ``functools.partial(model.apply, variables)``,
Equinox modules (run in inference mode) and any ``functools.partial`` whose bound
arguments hold arrays.

Lifting the weights out of the callable into an explicit ``params`` argument is
what lets the exporter name every initializer after its module path
(``linear1.kernel``, ``blocks.3.attn.query.kernel``) instead of ``const_17``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from workbench.errors import SpecError
from workbench.jax_to_onnx.scopes import (
    equinox_module_paths,
    equinox_training_modules,
    module_scopes,
    nnx_eval_module_paths,
)

# Key-path components that only say "the array inside a Variable"; dropped from names.
_WRAPPER_KEYS = frozenset({"value", "raw_value"})


@dataclass(frozen=True)
class NormalizedCallable:
    """A pure function and the parameters it closes over, with names for each parameter leaf."""

    pure: Callable[..., Any]
    params: Any
    param_names: tuple[str, ...]
    kind: str  # "function" | "nnx" | "linen" | "equinox" | "partial"
    display_name: str
    # the modules found in train mode and switched to eval/inference mode for the export, as
    # ``dropout (Dropout.deterministic=False)``; an NNX callable fills it at each trace (its modules are
    # only walked then), an Equinox module when normalized
    switched_to_eval: list[str] = field(default_factory=list)


def _path_name(path: tuple[Any, ...]) -> str:
    parts = jax.tree_util.keystr(path, simple=True, separator=".").split(".") if path else []
    while parts and parts[-1] in _WRAPPER_KEYS:
        parts.pop()
    return ".".join(p for p in parts if p) or "param"


def _is_exportable_array(leaf: Any) -> bool:
    """Numeric arrays become initializers; PRNG keys and Python scalars stay closed over."""
    if not isinstance(leaf, (jax.Array, np.ndarray)):
        return False
    return not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _split_arrays(
    tree: Any, leaves_with_path: list[tuple[Any, Any]] | None = None, treedef: Any = None
) -> tuple[list[Any], list[str], Callable[[list[Any]], Any]]:
    """Split a pytree into its exportable array leaves (with names) and a function that rebuilds it
    (``leaves_with_path`` and ``treedef``: the tree already flattened with its paths)."""
    if leaves_with_path is None:
        leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    arrays: list[Any] = []
    names: list[str] = []
    positions: list[int] = []
    for position, (path, leaf) in enumerate(leaves_with_path):
        if _is_exportable_array(leaf):
            positions.append(position)
            arrays.append(leaf)
            names.append(_path_name(path))
    all_leaves = [leaf for _, leaf in leaves_with_path]

    def rebuild(new_arrays: list[Any]) -> Any:
        leaves = list(all_leaves)
        for position, array in zip(positions, new_arrays, strict=True):
            leaves[position] = array
        return jax.tree_util.tree_unflatten(treedef, leaves)

    return arrays, names, rebuild


def _callable_name(fn: Any) -> str:
    if isinstance(fn, functools.partial):
        return _callable_name(fn.func)
    name = getattr(fn, "__name__", None)  # plain attribute of functions; classes use their type name
    return name if isinstance(name, str) else type(fn).__name__


def _normalize_nnx(module: Any) -> NormalizedCallable:
    from flax import nnx

    as_pytree = _nnx_as_pytree(module)
    if as_pytree is not None:
        arrays, names, rebuild, structure = as_pytree
        switched: list[str] = []

        def pure_copy(params: list[Any], *args: Any) -> Any:
            copy = rebuild(params)  # new modules and Variables: the user's module is untouched
            switched.clear()
            with module_scopes(nnx_eval_module_paths(copy, structure, switched)):
                return copy(*args)

        return NormalizedCallable(pure_copy, arrays, tuple(names), "nnx", type(module).__name__, switched)

    graphdef, state = nnx.split(module)
    arrays, names, rebuild = _split_arrays(state)
    switched = []

    def pure(params: list[Any], *args: Any) -> Any:
        copy = nnx.merge(graphdef, rebuild(params))
        # eval mode (Dropout off, BatchNorm on running statistics); the user's module is untouched
        switched.clear()
        with module_scopes(nnx_eval_module_paths(copy, graphdef, switched)):
            return copy(*args)

    return NormalizedCallable(pure, arrays, tuple(names), "nnx", type(module).__name__, switched)


def _nnx_as_pytree(module: Any) -> tuple[list[Any], list[str], Callable[[list[Any]], Any], Any] | None:
    """An NNX module's arrays, their names, a function that rebuilds a copy of the module around new
    arrays, and its tree structure, by JAX's pytree flattening; None when that is not what ``nnx.split``
    and ``nnx.merge`` would give.

    NNX modules are JAX pytrees (``nnx.Pytree``, Flax 0.12), whose leaves are the Variables' arrays in
    the order and under the paths of ``nnx.split``'s state; flattening and unflattening them costs
    ~0.5 ms for a ResNet of 47 arrays where ``split`` + ``merge`` cost ~3-5 ms (Flax walks its module
    graph in Python). Two differences are checked for, and leave the module to ``nnx.split``: a module
    that is not a pytree all the way down (``pytree=False``: it would be one leaf), and an array reached
    twice (a Variable or submodule shared between two attributes, which ``split`` keeps as one and the
    pytree would repeat).
    """
    from flax import nnx

    if not isinstance(module, nnx.Pytree):
        return None
    leaves_with_path, structure = jax.tree_util.tree_flatten_with_path(module)
    seen: set[int] = set()
    for _, leaf in leaves_with_path:
        if nnx.graph.is_node(leaf) or isinstance(leaf, nnx.Variable):
            return None  # a part that is not a pytree: nnx.split looks inside it
        if isinstance(leaf, (jax.Array, np.ndarray)):
            if id(leaf) in seen:
                return None  # shared: nnx.split stores it once
            seen.add(id(leaf))
    arrays, names, rebuild = _split_arrays(module, leaves_with_path, structure)
    return arrays, names, rebuild, structure


def _normalize_equinox(module: Any) -> NormalizedCallable:
    import equinox as eqx

    switched = equinox_training_modules(module)
    inference = eqx.nn.inference_mode(module, value=True)
    arrays, names, rebuild = _split_arrays(inference)

    def pure(params: list[Any], *args: Any) -> Any:
        rebuilt = rebuild(params)
        with module_scopes(equinox_module_paths(rebuilt)):
            return rebuilt(*args)

    return NormalizedCallable(pure, arrays, tuple(names), "equinox", type(module).__name__, switched)


def _normalize_partial(fn: functools.partial) -> NormalizedCallable:
    bound = (fn.args, dict(fn.keywords))
    arrays, names, rebuild = _split_arrays(bound)
    inner = fn.func
    kind = "linen" if _is_linen_apply(inner) else "partial"
    if kind == "linen":
        # `partial(model.apply, variables)`: name weights by module path inside their collection,
        # dropping the argument index and the default "params" collection for readability.
        names = [_linen_name(name) for name in names]

    def pure(params: list[Any], *args: Any) -> Any:
        bound_args, bound_kwargs = rebuild(params)
        return inner(*bound_args, *args, **bound_kwargs)

    return NormalizedCallable(pure, arrays, tuple(names), kind, _callable_name(inner))


def _linen_name(name: str) -> str:
    parts = name.split(".")
    while parts and parts[0].isdigit():  # position inside the partial's (args, kwargs)
        parts = parts[1:]
    if parts and parts[0] == "params":
        parts = parts[1:]
    return ".".join(parts) or name


def _is_linen_apply(fn: Any) -> bool:
    import flax.linen as nn

    return isinstance(getattr(fn, "__self__", None), nn.Module)


def normalize_callable(fn: Any) -> NormalizedCallable:
    """Dispatch on the kind of callable; raise SpecError for anything that is not callable."""
    if not callable(fn):
        raise SpecError(
            f"fn: expected a callable (function, jax.jit function, Flax NNX/Linen or Equinox module), "
            f"got {type(fn).__name__}."
        )
    if _derives_from_package(fn, "flax"):
        from flax import nnx

        if isinstance(fn, nnx.Module):
            return _normalize_nnx(fn)
        import flax.linen as nn

        if isinstance(fn, nn.Module):
            raise SpecError(
                f"fn: the Linen module {type(fn).__name__} is not bound to variables; pass "
                "functools.partial(model.apply, variables) instead."
            )
    if isinstance(fn, types.MethodType) and _derives_from_package(fn.__self__, "flax") and _is_linen_apply(fn):
        # `model.apply` itself: its first argument would be taken for the variables and the input for them
        raise SpecError(
            f"fn: {type(fn.__self__).__name__}.{fn.__name__} of a Linen module needs its variables as its first "
            f"argument; pass functools.partial(model.{fn.__name__}, variables) with variables = model.init(key, x)."
        )
    if isinstance(fn, functools.partial):
        return _normalize_partial(fn)
    if _is_equinox_module(fn):
        return _normalize_equinox(fn)
    if _derives_from_package(getattr(fn, "__self__", None), "flax") and isinstance(fn.__self__, _nnx_module_type()):
        # a bound method of an NNX module, e.g. model.encode: lift the module's weights too
        return _normalize_nnx_method(fn)

    def pure(params: list[Any], *args: Any) -> Any:
        del params
        return fn(*args)

    return NormalizedCallable(pure, [], (), "function", _callable_name(fn))


def _nnx_module_type() -> type:
    from flax import nnx

    return nnx.Module


def _normalize_nnx_method(method: Any) -> NormalizedCallable:
    from flax import nnx

    module = method.__self__
    method_name = method.__name__
    graphdef, state = nnx.split(module)
    arrays, names, rebuild = _split_arrays(state)
    switched: list[str] = []

    def pure(params: list[Any], *args: Any) -> Any:
        copy = nnx.merge(graphdef, rebuild(params))
        switched.clear()
        with module_scopes(nnx_eval_module_paths(copy, graphdef, switched)):  # in eval mode, as above
            return getattr(copy, method_name)(*args)

    return NormalizedCallable(pure, arrays, tuple(names), "nnx", f"{type(module).__name__}.{method_name}", switched)


# how each framework's modules are put in inference mode, for the warning naming the modules that were not
_EVAL_CALLS = {"nnx": "model.eval()", "equinox": "model = eqx.nn.inference_mode(model)"}


def train_mode_warning(normalized: NormalizedCallable) -> str | None:
    """The warning for a module converted in eval mode although some of its modules were in train mode, or None.

    ONNX models exported here are for inference: a random Dropout mask or BatchNorm's batch statistics (which
    also update the running ones) are not what a deployed model computes, so the export always switches to
    eval mode, on a copy; this says so and names what was in train mode.
    """
    if not normalized.switched_to_eval:
        return None
    entries = normalized.switched_to_eval
    listed = ", ".join(entries[:6]) + (f" and {len(entries) - 6} more" if len(entries) > 6 else "")
    return (
        f"{normalized.display_name} is in train mode: {listed}. It was converted in inference mode (Dropout off, "
        f"BatchNorm on its running statistics), as {_EVAL_CALLS[normalized.kind]} sets it, on a copy (your module "
        f"is unchanged); call {_EVAL_CALLS[normalized.kind]} before converting to silence this. Train mode (random "
        "Dropout masks, BatchNorm on batch statistics) is not exported."
    )


def _derives_from_package(value: Any, package: str) -> bool:
    """True when a class in the value's MRO comes from ``package`` (avoids importing it otherwise)."""
    return any(cls.__module__.split(".")[0] == package for cls in type(value).__mro__)


def _is_equinox_module(fn: Any) -> bool:
    if not _derives_from_package(fn, "equinox"):
        return False
    import equinox as eqx

    return isinstance(fn, eqx.Module)
