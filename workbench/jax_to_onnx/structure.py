"""Input specs of the wrong pytree structure: say where the given structure and the expected one part.

What structure a function expects of an argument is known only when tracing reaches the code that
reads it (``tree["b"]``, ``jax.tree.map(update, params, grads)``, Linen's ``model.apply(variables, x)``).
So a mistake is translated at the point it is reported, from the failure itself: which input object
failed is found by identity among the objects the traced call was given (an ``InputIndex``, built
as the function is entered), in the traceback's frames. Each translator recognises one
specific failure (JAX's tree-structure errors, Flax Linen's scope errors, a missing dict key, a
string index on a sequence or an array, unpacking the wrong count, a container where an array is
used, a dict unpacked into names: :mod:`workbench.jax_to_onnx.dict_unpacking`) and declines anything
else, which stays a TraceError quoting Python's message. Finding the failing input is
:mod:`workbench.jax_to_onnx.failing_input`'s part.
"""

from __future__ import annotations

import ast
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.errors import SpecError
from workbench.jax_to_onnx.dict_unpacking import UNPACKING_COUNT, Finding, dict_unpacked, expected_count
from workbench.jax_to_onnx.failing_input import (
    CONTAINERS,
    InputIndex,
    Place,
    all_subjects,
    describe,
    found_in,
    is_array,
    subject,
    tracebacks,
)

# ------------------------------------------------------------------------------ the translators
# each returns a Finding (the place at fault, what was found there against what the code expected, what to do) or None


def _missing_key(error: Exception, frames: list[types.TracebackType], index: InputIndex) -> Finding | None:
    """``tree["b"]`` on an input dict without ``'b'`` (a KeyError raised right in the reading frame)."""
    if type(error) is not KeyError or not error.args or not frames:
        return None
    key = error.args[0]
    hit = subject(frames, index, lambda v: isinstance(v, dict) and key not in v)
    if hit is None:
        return None
    value, place = hit
    if isinstance(key, int) and not any(isinstance(k, int) for k in value):
        return (str(place), f"the function reads it by position [{key}] (a tuple or list); given {describe(value)}",
                f"give {place} as a tuple or list of specs, in the order the function reads them")
    return (str(place), f"it has no key {key!r}, which the function reads; given {describe(value)}",
            f"add {key!r} to {place} (a spec for each key the function reads)")


@dataclass(frozen=True)
class _Form:
    """One failure Python or JAX raises when code reads an input of the wrong structure, recognised by the error's
    type and message: ``wanted`` picks the input at fault (from the message's match), ``finding`` words it as
    (what was found against what the code expected, what to do), given the match, the input and its place."""

    error_type: type[Exception]
    message: re.Pattern[str]
    wanted: Callable[[re.Match[str]], Callable[[Any], bool]]
    finding: Callable[[re.Match[str], Any, Place], tuple[str, str]]
    subclasses: bool = False  # also an error of a subclass of error_type (JAX's own TypeErrors)

    def raised(self, error: Exception) -> re.Match[str] | None:
        if type(error) is not self.error_type and not (self.subclasses and isinstance(error, self.error_type)):
            return None
        return self.message.search(str(error))


_KINDS: dict[str, type] = {"dict": dict, "list": list, "tuple": tuple}


def _of_kind(match: re.Match[str]) -> Callable[[Any], bool]:
    """The input whose type the message names in its first (or second) group."""
    kind = _KINDS[match.group(1) or match.group(2)]
    return lambda value: type(value) is kind


def _unpacked_wrong(match: re.Match[str]) -> Callable[[Any], bool]:
    """The sequence ``a, b = pair`` failed on: longer than expected (too many), or exactly as long as it got."""
    if match.group(1):
        expected = int(match.group(1))
        return lambda value: isinstance(value, (list, tuple)) and len(value) > expected
    got = int(match.group(3))
    return lambda value: isinstance(value, (list, tuple)) and len(value) == got


_FORMS = (
    _Form(  # tree["a"] on an input tuple or list: the function expects a dict there
        TypeError, re.compile(r"^(tuple|list) indices must be integers or slices, not str$"), _of_kind,
        lambda match, value, place: (f"the function reads it by key (a dict); given {describe(value)}",
                                     f"give {place} as a dict of specs keyed by the names the function reads")),
    _Form(  # tree["a"] on an input array: the function expects a dict (a subtree) where a leaf spec was given
        TypeError, re.compile(r"JAX does not support string indexing; got idx=(.*)$"), lambda match: is_array,
        lambda match, value, place: (f"the function reads [{match.group(1)}] of it (a dict); given {describe(value)}",
                                     f"give {place} as a dict of specs, one per key the function reads"),
        subclasses=True),
    _Form(  # a, b = pair on an input tuple or list of another length
        ValueError, UNPACKING_COUNT, _unpacked_wrong,
        lambda match, value, place: (f"the function unpacks it into {expected_count(match)}; given {describe(value)}",
                                     f"give {place} {expected_count(match)} specs")),
    _Form(  # pair[2] on an input tuple or list of two
        IndexError, re.compile(r"^(tuple|list) index out of range$"), _of_kind,
        lambda match, value, place: (f"the function reads an element past its end; given {describe(value)}",
                                     f"give {place} as many specs as the function reads")),
    _Form(  # x + 1 or jnp.tanh(x) on an input dict, list or tuple: a subtree where the function uses an array
        TypeError, re.compile(r"'(dict|list|tuple)'|<class '(dict|list|tuple)'>"), _of_kind,
        lambda match, value, place: (
            f"the function uses it as an array; given {describe(value)}",
            f"give {place} as one array spec, e.g. ('B', 30), or index the {type(value).__name__} in the function")),
)  # fmt: skip


def _read_in_the_wrong_form(error: Exception, frames: list[types.TracebackType], index: InputIndex) -> Finding | None:
    """Any of ``_FORMS``: the first whose error matches and whose input at fault is found among the frames."""
    for form in _FORMS:
        match = form.raised(error)
        hit = subject(frames, index, form.wanted(match)) if match is not None else None
        if hit is not None:
            value, place = hit
            found, todo = form.finding(match, value, place)
            return str(place), found, todo
    return None


# JAX's own structure errors (jax.tree.map and friends over trees of different structure):
# "pytree structure error: different types at key path\n    tree_map tree['a']\n..."
_JAX_TREE_MESSAGES = re.compile(r"pytree structure error|Dict key mismatch|Tuple arity mismatch|"
                                r"Custom node type mismatch|Expected (?:list|tuple|dict|None), got")  # fmt: skip
_KEY_PATH = re.compile(r"at key path\n\s+[^\[\n]*((?:\[[^\]\n]*\])*)")


def _jax_tree_mismatch(error: Exception, frames: list[types.TracebackType], index: InputIndex) -> Finding | None:
    """A JAX tree function (``jax.tree.map(f, params, grads)``) given an input of another structure than the tree
    it is combined with: the path from JAX's message, the input and that tree from the frame of JAX's tree module."""
    if not isinstance(error, ValueError) or not frames or not _is_jax_tree_module(frames[0].tb_frame):
        return None
    message = str(error)
    if not _JAX_TREE_MESSAGES.search(message):
        return None
    hit = subject(frames, index, lambda v: True, frozenset({"jax"}))
    if hit is None:
        return None
    value, place = hit
    match = _KEY_PATH.search(message)
    keys = _key_path(match.group(1)) if match else ()
    inner, at = _descend(value, keys, place)
    # the outermost frame of JAX's tree functions given the input: the public one (jax.tree.map's f, tree, *rest);
    # with JAX_TRACEBACK_FILTERING=off its helpers' frames come first, holding their own lists of leaves
    holding = [e.tb_frame for e in frames
               if _is_jax_tree_module(e.tb_frame) and found_in(e.tb_frame, index, lambda v: v is value)]
    reference = _combined_with(holding[-1], value, index) if holding else None
    if reference is None:
        expected = "JAX: " + " ".join(message.split())[:300]
    else:
        expected = f"the tree it is combined with has {describe(_descend(reference, keys, place)[0])} there"
    return (str(at), f"given {describe(inner)}; {expected}",
            f"give {place} the structure of the tree it is combined with (same keys, lengths and nesting)")


def _combined_with(frame: types.FrameType, given: Any, index: InputIndex) -> Any:
    """The one other tree among the locals of JAX's tree function (``jax.tree.map``'s first tree), or None."""
    others = [v for v in frame.f_locals.values()
              if isinstance(v, CONTAINERS) and index.place(v) is None
              and not (type(v) is tuple and any(item is given for item in v))]
    return others[0] if len(others) == 1 else None


def _key_path(text: str) -> tuple[Any, ...]:
    """The keys of a key path as JAX prints it (``['layer'][0]``); () when one is not a Python literal."""
    try:
        return tuple(ast.literal_eval(key) for key in re.findall(r"\[([^\]]*)\]", text))
    except (ValueError, SyntaxError):
        return ()


def _is_jax_tree_module(frame: types.FrameType) -> bool:
    return frame.f_globals.get("__name__", "") in ("jax._src.tree", "jax._src.tree_util")


def _descend(value: Any, keys: tuple[Any, ...], place: Place) -> tuple[Any, Place]:
    """Follow ``keys`` from ``value`` (at ``place``) as far as they lead."""
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            break
        place = Place(place.argument, (*place.keys, key))
    return value, place


# Flax Linen's variable lookups (flax.errors), by their messages
_LINEN_MISSING = re.compile(r'Could not find parameter named "([^"]+)" in scope "([^"]*)"')
_LINEN_NO_COLLECTION = re.compile(r'Tried to access "([^"]+)" from collection "([^"]+)" in "([^"]*)" but the '
                                  r"collection is empty")  # fmt: skip
_LINEN_SHAPE = re.compile(r'For parameter "([^"]+)" in "([^"]*)", the given initializer is expected to generate '
                          r"shape (\(.*?\)), but the existing parameter it received has shape (\(.*?\))")  # fmt: skip
_LINEN_ERRORS = ("ScopeParamNotFoundError", "ScopeCollectionNotFound", "ScopeParamShapeError")


def _linen_variables(error: Exception, frames: list[types.TracebackType], index: InputIndex) -> Finding | None:
    """``model.apply(variables, x)`` with variables whose keys or shapes differ from the model's parameters."""
    if type(error).__name__ not in _LINEN_ERRORS or not type(error).__module__.startswith("flax"):
        return None
    message = str(error)
    if (match := _LINEN_MISSING.search(message)) is not None:
        name, scope, collection, shapes = match.group(1), match.group(2), "params", None
    elif (match := _LINEN_NO_COLLECTION.search(message)) is not None:
        name, collection, scope, shapes = match.group(1), match.group(2), match.group(3), None
    elif (match := _LINEN_SHAPE.search(message)) is not None:
        name, scope, collection, shapes = match.group(1), match.group(2), "params", (match.group(3), match.group(4))
    else:
        return None
    roots = all_subjects(frames, index, lambda v: isinstance(v, dict))  # model.apply(variables, x) among them
    if not roots:
        return None
    root, place = min(roots, key=lambda hit: len(hit[1].keys))  # the variables as given (not a subtree of them)
    wanted = [p for p in scope.split("/") if p] + [name]
    if type(error).__name__ == "ScopeCollectionNotFound":
        if wanted[0] in root:  # the parameters themselves, without their collection
            return (str(place), f"it has no {collection!r} collection: given {describe(root)}, the parameters "
                    "themselves", f"pass {{{collection!r}: <this tree>}}, the variables model.init returns")  # fmt: skip
        return (str(place), f"it has no {collection!r} collection; given {describe(root)}",
                f"pass the variables of model.init(key, x) ({{{collection!r}: ...}})")
    base, base_place = root, place  # the collection's tree, when the function wrapped the input in it
    if collection in root:
        base, base_place = root[collection], Place(place.argument, (*place.keys, collection))
    value, at = _descend(base, tuple(wanted), base_place)
    if shapes is not None:
        return (str(at), f"the model expects shape {shapes[0]}; given {describe(value)}",
                f"give {at} the shape {shapes[0]} (the model's parameters: jax.eval_shape(model.init, key, x))")
    missing = wanted[len(at.keys) - len(base_place.keys)]
    return (str(at), f"it has no key {missing!r}, which the model reads ({collection} at {'/'.join(wanted)}); "
            f"given {describe(value)}", "give the model's parameter tree (its structure: jax.eval_shape(model.init, "
            "key, x)); a renamed or missing submodule or parameter is refused here")


_NNX_LEAVES = re.compile(r"Incorrect number of leaves, expected (\d+) leaves, but got (\d+)")


def _nnx_state(error: Exception, frames: list[types.TracebackType], index: InputIndex) -> Finding | None:
    """``nnx.merge(graphdef, state)`` with a state of another number of arrays than the module's (a missing or
    extra variable): Flax reports only the counts, so the place named is the state as given."""
    match = _NNX_LEAVES.search(str(error)) if type(error) is ValueError and frames else None
    if match is None or not frames[0].tb_frame.f_globals.get("__name__", "").startswith("flax.nnx"):
        return None
    roots = all_subjects(frames, index, lambda v: isinstance(v, CONTAINERS))  # nnx.merge(graphdef, state)
    if not roots:
        return None
    root, place = min(roots, key=lambda hit: len(hit[1].keys))
    return (str(place), f"nnx.merge expects a state of {match.group(1)} arrays; given {describe(root)} holding "
            f"{match.group(2)}", "give every variable of nnx.state(model), nested as it is (its specs: "
            "jax.eval_shape(lambda: nnx.to_pure_dict(nnx.state(model))))")


_TRANSLATORS = (_missing_key, _read_in_the_wrong_form, _jax_tree_mismatch, _linen_variables, _nnx_state, dict_unpacked)


def structure_error(error: Exception, index: InputIndex | None, display_name: str, names: list[str]) -> SpecError | None:
    """The SpecError for a tracing failure caused by an input of the wrong structure, or None when ``error`` is not
    one (or the input at fault cannot be told for certain)."""
    if index is None:
        return None
    frames = tracebacks(error)
    for translate in _TRANSLATORS:
        finding = translate(error, frames, index)
        if finding is not None:
            where, found, todo = finding
            argument = int(where[len("inputs["):].partition("]")[0])
            name = f" ({names[argument]!r})" if argument < len(names) else ""
            return SpecError(
                f"{where}{name}: the input spec's structure differs from what {display_name} expects there: {found}. "
                f"Fix the spec: {todo}.\n{type(error).__name__}: {_first_line(error)}"
            )
    return None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else ""

