"""Module paths while tracing: each submodule call of an NNX or Equinox model runs in a JAX name scope.

Flax Linen opens a name scope per module call itself (``CNN/block2/c1``), so its equations carry
the module path in ``source_info.name_stack``. Flax NNX opens none and Equinox only its class
names (``eqx.nn.Conv``). To name ONNX nodes after the module that computed them (``block2.c1/conv``)
for those two, the classes of the model's submodules get, for the duration of one trace, a
``__call__`` that enters ``jax.named_scope`` with the module's path relative to the module calling
it; the originals are put back afterwards, also on errors. Only ``__call__`` is scoped: other
methods (``embed.attend``) run in their caller's scope.

Why by hand: neither framework offers a hook that names the scope after the attribute path, and
JAX only records scopes it is told about.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax

# class patching is process-wide: one trace at a time may hold it
_PATCH_LOCK = threading.RLock()


# id(submodule) -> (submodule, its attribute path from the root)
ModulePaths = dict[int, tuple[Any, tuple[str, ...]]]


# what ``nnx.Module.eval()`` sets on every module that has the attribute
_NNX_EVAL_ATTRIBUTES = {"deterministic": True, "use_running_average": True}


def nnx_eval_module_paths(module: Any, graphdef: Any = None, switched: list[str] | None = None) -> ModulePaths:
    """Switch an NNX module to eval mode as ``module.eval()`` does; returns every submodule below the root,
    with its path. Each attribute found in train mode (``False``) is appended to ``switched`` as
    ``dropout (Dropout.deterministic=False)``, the root's under its class name.

    One walk of the module graph instead of two (``eval()`` walks it with ``nnx.iter_modules`` too):
    Flax walks ~0.1 ms a module: ~10 of the ~38 ms a GPT-12 took to trace beyond its make_jaxpr.

    With ``graphdef``, the ``nnx.split`` structure ``module`` was merged from, the walk is skipped when
    the last walk was of an equal structure (a model converted again): the paths it found are looked up
    on ``module`` (see :func:`_resolve`), ~3 ms instead of ~14 ms for a GPT-12 (Flax's walk visits all
    ~1,700 attributes and variables to find its 125 modules).
    """
    from flax import nnx

    global _last_walk
    found = None
    last = _last_walk
    if graphdef is not None and last is not None and _same_structure(last[0], graphdef):
        found = _resolve(module, last[1])
    if found is None:
        found = list(nnx.iter_modules(module))
        if graphdef is not None:
            _last_walk = (graphdef, tuple(path for path, _ in found))
    paths: ModulePaths = {}
    for path, sub in found:
        for name, value in _NNX_EVAL_ATTRIBUTES.items():
            if hasattr(sub, name):
                if switched is not None and getattr(sub, name) is False:
                    switched.append(_train_mode_entry(path, sub, name))
                setattr(sub, name, value)
        if path:
            paths[id(sub)] = (sub, tuple(str(p) for p in path))
    return paths


# the structure (nnx GraphDef) last walked by nnx_eval_module_paths and the paths of the modules it found,
# in walk order (a GraphDef holds the module graph's types, attribute keys and static values; the weights are in the state)
_last_walk: tuple[Any, tuple[tuple[Any, ...], ...]] | None = None


def _same_structure(first: Any, second: Any) -> bool:
    """Whether two nnx GraphDefs are equal (~0.6 ms for a GPT-12); False when a static value cannot say."""
    if first is second:
        return True
    try:
        return bool(first == second)
    except Exception:  # noqa: BLE001 - a static attribute whose == is not a bool (an array): walk again
        return False


def _resolve(module: Any, module_paths: tuple[tuple[Any, ...], ...]) -> list[tuple[tuple[Any, ...], Any]] | None:
    """The submodules of ``module`` at ``module_paths`` (as ``nnx.iter_modules`` yields them), or None.

    Each step goes through Flax's own view of a node's children (``node_dict`` of its node type, as its
    graph walk does), once per container on the way; None when a path does not lead to a Module, and the
    caller walks the graph instead. Equal GraphDefs give equal walks, so the paths are those
    ``nnx.iter_modules(module)`` would find.
    """
    from flax import nnx

    objects: dict[tuple[Any, ...], Any] = {(): module}
    children: dict[int, dict[Any, Any]] = {}
    found = []
    try:
        for path in module_paths:
            node = module
            for depth in range(1, len(path) + 1):
                prefix = path[:depth]
                known = objects.get(prefix)
                if known is None:
                    view = children.get(id(node))
                    if view is None:
                        impl = nnx.graph.get_node_impl(node)
                        if impl is None:
                            return None
                        view = children[id(node)] = impl.node_dict(node)
                    known = objects[prefix] = view[prefix[-1]]
                node = known
            if not isinstance(node, nnx.Module):
                return None
            found.append((path, node))
    except (KeyError, TypeError):
        return None
    return found


def _train_mode_entry(path: tuple[Any, ...], module: Any, attribute: str) -> str:
    """``blocks.0.dropout (Dropout.deterministic=False)``: where a module in train mode is, what says so."""
    where = ".".join(str(p) for p in path) or "the root module"
    return f"{where} ({type(module).__name__}.{attribute}=False)"


def equinox_training_modules(module: Any) -> list[str]:
    """The modules ``eqx.nn.inference_mode(module, value=True)`` switches: those whose ``inference`` field is
    False (Dropout, BatchNorm and any module declaring that field), as :func:`_train_mode_entry` names them."""
    import equinox as eqx

    found = [(path, sub) for sub, path in equinox_module_paths(module).values()]
    return [
        _train_mode_entry(path, sub, "inference")
        for path, sub in [((), module), *found]
        if isinstance(sub, eqx.Module)
        and any(f.name == "inference" for f in dataclasses.fields(sub))
        and sub.__dict__.get("inference") is False
    ]


def equinox_module_paths(module: Any) -> ModulePaths:
    """Every Equinox submodule reachable through fields, lists, tuples and dicts, with its path."""
    import equinox as eqx

    paths: ModulePaths = {}

    def visit(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, eqx.Module):
            if path and id(value) in paths:
                return
            if path:
                paths[id(value)] = (value, path)
            for field in dataclasses.fields(value):
                visit(value.__dict__.get(field.name), (*path, field.name))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(item, (*path, str(index)))
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, (*path, str(key)))

    visit(module, ())
    return paths


@contextlib.contextmanager
def module_scopes(modules: ModulePaths) -> Iterator[None]:
    """Within the block, calling any of ``modules`` enters a name scope of its path.

    Nested calls push the path relative to the innermost scoped caller, so the name stack reads
    ``block2/c1``. Classes without a ``__call__`` (containers such as ``nnx.List``) are left alone.
    """
    classes = {type(module) for module, _ in modules.values() if callable(module)}
    if not classes:
        yield
        return
    paths = {key: path for key, (_, path) in modules.items()}
    active: list[tuple[str, ...]] = []
    with _PATCH_LOCK:
        originals = {cls: (cls.__dict__.get("__call__"), cls.__call__) for cls in classes}
        try:
            for cls, (_, call) in originals.items():
                cls.__call__ = _scoped(call, paths, active)
            yield
        finally:
            for cls, (own, _) in originals.items():
                if own is None:
                    del cls.__call__
                else:
                    cls.__call__ = own


def _scoped(call: Callable[..., Any], paths: dict[int, tuple[str, ...]], active: list[tuple[str, ...]]) -> Callable[..., Any]:
    @functools.wraps(call)
    def scoped_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        path = paths.get(id(self))
        if path is None:
            return call(self, *args, **kwargs)
        parent = active[-1] if active else ()
        relative = path[len(parent):] if path[: len(parent)] == parent and len(path) > len(parent) else path
        active.append(path)
        try:
            with jax.named_scope(".".join(relative)):
                return call(self, *args, **kwargs)
        finally:
            active.pop()

    return scoped_call


def module_path(name_stack: str, *, drop_root: bool) -> str:
    """The dotted module path in a JAX name stack: ``jit(f)/CNN/block2/c1`` → ``block2.c1``.

    Transformation markers are skipped: ``jit(f)`` names a function, ``vmap(conv1)`` wraps the scope
    opened inside the vmapped function (``conv1``). Equinox's class scopes (``eqx.nn.Conv``) are not
    module names either; Linen's root module (its class name) is dropped with ``drop_root``.
    """
    parts = [part for part in map(_unwrap, name_stack.split("/")) if _is_module_name(part)]
    if drop_root and parts:
        parts = parts[1:]
    return ".".join(parts)


# transformations whose marker holds a function name rather than the name scope opened inside them
_FUNCTION_MARKERS = frozenset({"jit", "pjit", "remat", "checkpoint", "custom_jvp_call", "custom_vjp_call"})


def _is_module_name(part: str) -> bool:
    """Attribute paths (``blocks.0.attn``) only: not einsum's ``BTNH,BSNH->BNTS`` scope nor ``eqx.nn.Conv``."""
    return bool(part) and not part.startswith("eqx.") and all(p.isidentifier() or p.isdigit() for p in part.split("."))


def _unwrap(part: str) -> str:
    """``vmap(conv1)`` → ``conv1``, ``vmap()`` and ``jit(f)`` → ``""``, anything else unchanged."""
    while part.endswith(")") and "(" in part:
        marker, _, inner = part.partition("(")
        if marker in _FUNCTION_MARKERS or not marker.isidentifier():
            return ""
        part = inner[:-1]
    return part
