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

A traced function is also exported on those arrays, and the counts line says what it becomes: the
rows list the primitives JAX binds (``jax.nn.gelu``: ``integer_pow``, ``mul``, ``add``, ``tanh``), while the
export fuses them into one ``Gelu`` node (``jax.nn.gelu binds …; exports as Gelu``), or names the
primitive that has no handler.
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings
from collections import Counter
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
    exported: str = ""  # what its export on the traced arrays is: "Gelu", "MatMul ×2, Softmax", or why none

    def describe(self) -> str | None:
        """``"jax.nn.gelu binds integer_pow, mul, add, tanh; exports as Gelu"`` (the explorer's counts line); ``None`` for plain text."""
        if self.function is None:
            return None
        if not self.primitives:
            return f"{self.function}: not traced with plain array arguments; searched by its name"
        text = f"{self.function} binds {', '.join(self.primitives)}"
        return f"{text}; {self.exported}" if self.exported else text


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


def _traced_primitives(function: Any) -> tuple[tuple[str, ...], str]:
    """The primitives ``function`` binds on the first argument pattern it accepts, and what it exports as there.

    ``((), "")`` when it accepts none of the patterns.
    """
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
        arrays = [a for a in arguments if not isinstance(a, int)]
        if statics:  # lax.top_k(x, 1): the int is part of the function exported
            return tuple(dict.fromkeys(_primitive_names(closed.jaxpr))), _exported(lambda a: function(a, 1), arrays)
        return tuple(dict.fromkeys(_primitive_names(closed.jaxpr))), _exported(function, arrays)
    return (), ""


_MAX_OPS_NAMED = 6


def _exported(function: Any, arrays: list[Any]) -> str:
    """``"exports as Gelu"``, ``"exports as 14 nodes: Reshape ×6, …"`` or why it does not export, on ``arrays``."""
    from workbench.errors import UnsupportedPrimitiveError
    from workbench.jax_to_onnx.api import to_onnx

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = to_onnx(function, arrays)
    except UnsupportedPrimitiveError as error:
        return f"no ONNX handler for {', '.join(p.name for p in error.primitives)}"
    except Exception as error:  # noqa: BLE001 - a search line, not a conversion: say it failed and go on
        return f"its export on 3×3 float32 arrays failed ({type(error).__name__})"
    ops = Counter(node.op_type for node in model.graph.node)
    named = [op if number == 1 else f"{op} ×{number}" for op, number in ops.most_common(_MAX_OPS_NAMED)]
    more = ", …" if len(ops) > _MAX_OPS_NAMED else ""
    nodes = sum(ops.values())
    if nodes == 1:
        return f"exports as {named[0]}"
    return f"exports as {nodes} nodes: {', '.join(named)}{more}" if nodes else "exports as no node (an identity)"


@functools.lru_cache(maxsize=256)
def search_terms(text: str) -> SearchTerms:
    """The terms a coverage search for ``text`` matches (cached: the explorer filters at every keystroke)."""
    needle = text.strip().removesuffix("()").removesuffix("(").strip()
    resolved = _function(needle)
    if resolved is None:
        return SearchTerms((needle.lower(),) if needle else ())
    full_name, function = resolved
    bare = full_name.rsplit(".", 1)[1].lower()
    primitives, exported = _traced_primitives(function)
    return SearchTerms((needle.lower(), bare), primitives, full_name, exported)


__all__ = ["SearchTerms", "search_terms"]
