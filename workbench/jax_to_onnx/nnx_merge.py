"""``nnx.merge(graphdef, state)`` with a state given as an input spec: its key paths must be the module's.

Flax binds a state's arrays to the module's variables by position (the state's leaves in the sorted
order of its keys) and keeps no names, so a state whose keys were renamed but sort in the same order
(``{'bias', 'weight'}`` for a Linear's ``{'bias', 'kernel'}``, string keys ``'10'`` sorting before
``'2'``, one level of nesting too few) is accepted and binds the wrong weights without a word. While a
function is traced, every module Flax unflattens is checked: each of its variables whose array is an
input leaf (by identity, see :class:`~workbench.jax_to_onnx.failing_input.InputIndex`) held in an input
dict must sit at the end of that dict path under the module's own path; the first that does not is a
SpecError naming both paths. A state given as a list of arrays (Flax's positional form) is not checked.

Why by hand: Flax offers no hook on merging, and drops the paths before its ``unflatten`` sees the
leaves. ``flax.nnx.graphlib.unflatten``, which every merge calls through the module's globals, is
wrapped for the duration of a trace (counted, so concurrent traces share one wrapper; the original is
put back by the last) and checks only in the context of a trace that asked for it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from workbench.errors import SpecError
from workbench.jax_to_onnx.failing_input import InputIndex, Place


class MergeSpecError(SpecError):
    """A state given to ``nnx.merge`` whose key paths differ from the module's (raised from inside the trace)."""


@dataclass(frozen=True)
class MergeCheck:
    """What one trace's check needs: the inputs the function was called with (None before the call)."""

    inputs: Callable[[], InputIndex | None]
    display_name: str
    names: list[str]


_ACTIVE: contextvars.ContextVar[MergeCheck | None] = contextvars.ContextVar("workbench_nnx_merge_check", default=None)
_LOCK = threading.Lock()
_users = 0
_original: Callable[..., Any] | None = None


@contextlib.contextmanager
def checked_merges(check: MergeCheck) -> Iterator[None]:
    """Within the block, a module Flax merges from input arrays is checked against their key paths.

    Nothing is done when Flax NNX is not imported (a function using ``nnx.merge`` has imported it)."""
    graphlib = sys.modules.get("flax.nnx.graphlib")
    if graphlib is None or not callable(vars(graphlib).get("unflatten")):
        # no Flax NNX in the process, or a Flax whose merge no longer goes through graphlib.unflatten: the check
        # is off rather than every trace broken; test_spec_structure pins that the locked Flax has it
        yield
        return
    token = _ACTIVE.set(check)
    _install(graphlib)
    try:
        yield
    finally:
        _uninstall(graphlib)
        _ACTIVE.reset(token)


def _install(graphlib: Any) -> None:
    global _users, _original
    with _LOCK:
        if _users == 0:
            _original = graphlib.unflatten
            graphlib.unflatten = _checking(_original)
        _users += 1


def _uninstall(graphlib: Any) -> None:
    global _users, _original
    with _LOCK:
        _users -= 1
        if _users == 0 and _original is not None:
            graphlib.unflatten = _original
            _original = None


def _checking(unflatten: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(unflatten)
    def checked_unflatten(graphdef: Any, state: Any, /, **kwargs: Any) -> Any:
        node = unflatten(graphdef, state, **kwargs)
        check = _ACTIVE.get()
        index = check.inputs() if check is not None else None
        # nnx.merge hands unflatten the state's leaves as a list; only a state holding inputs is checked (a module
        # converted as such is merged from its own parameters, not walked again)
        if check is None or index is None or type(state) is not list or all(index.place(v) is None for v in state):
            return node
        mismatch = first_mismatch(node, index)
        if mismatch is not None:
            raise _error(mismatch, check)
        return node

    return checked_unflatten


@dataclass(frozen=True)
class Mismatch:
    """An input array bound to a module variable of another path."""

    given: Place  # where the array sits in the inputs
    module_path: tuple[Any, ...]  # the variable's path in the module
    given_name: str  # the first key of the given path that differs from the module's
    module_name: str


def first_mismatch(node: Any, index: InputIndex) -> Mismatch | None:
    """The first of ``node``'s variables (in the module's path order, Flax's binding order) holding an input array
    from an input dict whose key path does not end with the variable's path; None when all agree."""
    from flax import nnx

    if not nnx.graph.is_graph_node(node):
        return None
    for path, leaf in nnx.to_flat_state(nnx.state(node)):
        value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        place = index.place(value)
        if place is None or not place.keys or type(index.at(Place(place.argument, place.keys[:-1]))) is not dict:
            continue
        if len(place.keys) < len(path):  # fewer levels of nesting than the module's
            return Mismatch(place, tuple(path), _joined(place.keys), _joined(path))
        for given, expected in zip(place.keys[len(place.keys) - len(path):], path, strict=True):
            if str(given) != str(expected):
                return Mismatch(place, tuple(path), str(given), str(expected))
    return None


def _joined(path: tuple[Any, ...]) -> str:
    return "/".join(str(key) for key in path)


def _error(mismatch: Mismatch, check: MergeCheck) -> MergeSpecError:
    argument = mismatch.given.argument
    name = f" ({check.names[argument]!r})" if argument < len(check.names) else ""
    return MergeSpecError(
        f"{mismatch.given}{name}: the input spec's structure differs from what {check.display_name} expects there: "
        f"nnx.merge binds this array to the module's variable {_joined(mismatch.module_path)}, and Flax pairs a state's "
        f"arrays with the module's variables by their sorted order, not by name (the wrong weights would be bound "
        f"without an error); the first key that differs is {mismatch.given_name!r}, where the module has "
        f"{mismatch.module_name!r}. Fix the spec: give the state under the module's own key paths (those of "
        f"nnx.to_pure_dict(nnx.state(model)); its specs: jax.eval_shape(lambda: nnx.to_pure_dict(nnx.state(model))))."
    )
