"""What a coverage search means: the text itself and, for a JAX function's name, the primitives it binds.

A user looking for ``jnp.cumsum``, ``jax.nn.gelu`` or ``lax.top_k`` finds the rows of the primitives
those functions trace to (``cumsum``; ``tanh``, ``mul``…; ``top_k``), and the rows naming the bare
function (``cumsum`` testcases, the ONNX op ``MatMul`` for ``jnp.matmul``). Only the array functions of
``jax.numpy``, ``jax.lax``, ``jax.nn``, ``jax.scipy``, ``jax.random`` and ``jax.image`` (and their submodules)
are resolved, never the numpy file and print-option functions jnp re-exports, nor any other of jax's
public callables (``jnp``, ``lax``, ``nn`` and ``jsp`` stand for ``jax.numpy``, ``jax.lax``, ``jax.nn`` and
``jax.scipy``); the function is traced abstractly (``jax.make_jaxpr``) on small square float32 arrays, one to
three of them, or one and the integer 1 (``lax.top_k(x, 1)``). A function those calls cannot trace
(``jnp.einsum`` needs its subscripts) is searched by its bare name alone.
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_ALIASES = {"jnp": "jax.numpy", "lax": "jax.lax", "nn": "jax.nn", "jsp": "jax.scipy"}
# the modules of array functions a search may call (abstractly): a search text must never run jax's other
# public callables (jax.clear_caches, jax.distributed.initialize, jax.profiler.start_trace, jnp.save...)
_SEARCHABLE_MODULES = ("jax.numpy", "jax.lax", "jax.nn", "jax.scipy", "jax.random", "jax.image")
_SIDE_EFFECTS = frozenset({"save", "savez", "load", "fromfile", "tofile", "set_printoptions", "printoptions"})
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
# call-like primitives wrap the body the converter inlines: their rows say nothing about the function
_WRAPPERS = frozenset({"jit", "pjit", "custom_jvp_call", "custom_vjp_call", "remat2", "closed_call"})


@dataclass(frozen=True)
class SearchTerms:
    """What one search text matches: any of ``texts`` in a row's text, or a row of one of ``primitives``."""

    texts: tuple[str, ...]  # lower case
    primitives: tuple[str, ...] = ()  # the JAX primitives the named function binds, when it is one
    function: str | None = None  # the function's full name (``jax.numpy.cumsum``), when the text names one

    def describe(self) -> str | None:
        """``"jax.numpy.matmul binds dot_general"`` (for the explorer's counts line); ``None`` for plain text."""
        if self.function is None:
            return None
        if not self.primitives:
            return f"{self.function}: not traced with plain array arguments; searched by its name"
        return f"{self.function} binds {', '.join(self.primitives)}"


def _function(text: str) -> tuple[str, Any] | None:
    """The public JAX callable ``text`` names (``jnp.cumsum``, ``jax.numpy.linalg.norm``) and its full name."""
    if not _DOTTED.match(text):
        return None
    head, *rest = text.split(".")
    parts = [*_ALIASES.get(head, head).split("."), *rest]
    if parts[0] != "jax" or any(part.startswith("_") for part in parts):
        return None
    module_name, name = ".".join(parts[:-1]), parts[-1]
    searchable = any(module_name == root or module_name.startswith(root + ".") for root in _SEARCHABLE_MODULES)
    if not searchable or name in _SIDE_EFFECTS:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    target = vars(module).get(name)
    return (f"{module_name}.{name}", target) if callable(target) else None


def _primitive_names(jaxpr: Any) -> Iterator[str]:
    from workbench.jax_to_onnx.lowering import sub_jaxprs

    for eqn in jaxpr.eqns:
        if eqn.primitive.name not in _WRAPPERS:
            yield eqn.primitive.name
        for inner in sub_jaxprs(eqn):
            yield from _primitive_names(inner)


def _traced_primitives(function: Any) -> tuple[str, ...]:
    """The primitives ``function`` binds on the first argument pattern it accepts (none when it accepts none)."""
    import jax
    import numpy as np

    x = jax.ShapeDtypeStruct((3, 3), np.float32)  # square: matmul, solve and transposes accept it too
    for arguments in ((x,), (x, x), (x, x, x), (x, 1)):
        statics = tuple(i for i, a in enumerate(arguments) if isinstance(a, int))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                closed = jax.make_jaxpr(function, static_argnums=statics)(*arguments)
        except Exception:  # noqa: BLE001 - any JAX function, any refusal: try the next pattern, else none
            continue
        return tuple(dict.fromkeys(_primitive_names(closed.jaxpr)))
    return ()


@functools.lru_cache(maxsize=256)
def search_terms(text: str) -> SearchTerms:
    """The terms a coverage search for ``text`` matches (cached: the explorer filters at every keystroke)."""
    needle = text.strip().removesuffix("()").removesuffix("(").strip()
    resolved = _function(needle)
    if resolved is None:
        return SearchTerms((needle.lower(),) if needle else ())
    full_name, function = resolved
    bare = full_name.rsplit(".", 1)[1].lower()
    return SearchTerms((needle.lower(), bare), _traced_primitives(function), full_name)


__all__ = ["SearchTerms", "search_terms"]
