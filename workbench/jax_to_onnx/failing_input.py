"""Which of a traced call's inputs a failure is about, found by identity where the failure is reported.

:class:`InputIndex` records every container and leaf the function was called with (``inputs[1]['params']``).
After a failure, :func:`subject` looks for the object the failing operation acted on: in the locals of the
library frames at the top of the traceback (``jnp.tanh``'s ``x``, ``jax.tree.map``'s trees), or, in the first
frame of user code, among the operands of the expression that failed, read from its source position
(``config["layer"]["shift"]`` acted on ``config["layer"]``). Only dicts, lists and tuples are subscripted
while resolving operands, so no user code runs. Used by :mod:`workbench.jax_to_onnx.structure`.
"""

from __future__ import annotations

import ast
import functools
import linecache
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

CONTAINERS = (dict, list, tuple)


@dataclass(frozen=True)
class Place:
    """Where an object of the traced call's arguments sits: ``inputs[1]['params']['dense']``."""

    argument: int
    keys: tuple[Any, ...]

    def __str__(self) -> str:
        return f"inputs[{self.argument}]" + "".join(f"[{key!r}]" for key in self.keys)


@dataclass(frozen=True)
class InputIndex:
    """Every container and leaf the traced function was called with, by ``id``, with its :class:`Place`."""

    places: dict[int, tuple[Any, Place]]

    @classmethod
    def of(cls, args: tuple[Any, ...]) -> InputIndex:
        places: dict[int, tuple[Any, Place]] = {}

        def visit(value: Any, place: Place) -> None:
            places[id(value)] = (value, place)  # the value is kept, so its id is not reused meanwhile
            if isinstance(value, dict):
                for key, item in value.items():
                    visit(item, Place(place.argument, (*place.keys, key)))
            elif isinstance(value, (list, tuple)):
                for position, item in enumerate(value):
                    visit(item, Place(place.argument, (*place.keys, position)))

        for argument, value in enumerate(args):
            visit(value, Place(argument, ()))
        return cls(places)

    def place(self, value: Any) -> Place | None:
        entry = self.places.get(id(value))
        return entry[1] if entry is not None and entry[0] is value else None

    @functools.cached_property
    def _by_place(self) -> dict[Place, Any]:
        return {place: value for value, place in self.places.values()}

    def at(self, place: Place) -> Any:
        """The input object at ``place`` (None when no input sits there)."""
        return self._by_place.get(place)


def tracebacks(error: BaseException) -> list[types.TracebackType]:
    """The traceback's entries, innermost first (each holds its frame and the instruction that failed there)."""
    entries = []
    tb = error.__traceback__
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    return entries[::-1]


# packages whose frames may hold the input a failure is about in their locals (jnp.tanh's ``x``, jax.tree.map's trees)
_LIBRARIES = frozenset({"jax", "jaxlib", "flax", "numpy"})


def is_library(frame: types.FrameType, packages: frozenset[str] = _LIBRARIES) -> bool:
    return frame.f_globals.get("__name__", "").partition(".")[0] in packages


def found_in(frame: types.FrameType, index: InputIndex, accept: Callable[[Any], bool]) -> list[tuple[Any, Place]]:
    """The input objects among ``frame``'s locals (and one level into its tuples, JAX's ``*rest``) that ``accept``."""
    found: dict[int, tuple[Any, Place]] = {}
    for value in frame.f_locals.values():
        for candidate in (value, *(value if type(value) is tuple and index.place(value) is None else ())):
            place = index.place(candidate)
            if place is not None and accept(candidate):
                found[id(candidate)] = (candidate, place)
    return list(found.values())


def subject(entries: list[types.TracebackType], index: InputIndex, accept: Callable[[Any], bool],
             packages: frozenset[str] = _LIBRARIES) -> tuple[Any, Place] | None:
    """The one input object the failing operation acted on, or None when it is not an input or cannot be told.

    Library frames at the top of the stack (JAX's ``jnp.tanh(x)``, ``jax.tree.map``) are searched by their
    locals; in the first frame of user code the operands of the expression that failed are found from its
    source position (``config["layer"]["shift"]``: ``config["layer"]``).
    """
    for entry in entries:
        frame = entry.tb_frame
        if is_library(frame, packages):
            found = found_in(frame, index, accept)
            if found:
                return found[0] if len(found) == 1 else None
            continue
        operands = _operands(entry)
        if operands is None:
            return None
        found = [(value, place) for value in operands if (place := index.place(value)) is not None and accept(value)]
        return found[0] if len(found) == 1 else None
    return None


def failing_operands(entries: list[types.TracebackType]) -> list[Any]:
    """Every object the failing operation may have acted on, inputs or not: the locals of the library frames at the
    top of the stack (and one level into their tuples) and the operands of the failing expression of the first
    frame of user code."""
    values: list[Any] = []
    for entry in entries:
        if not is_library(entry.tb_frame):
            return values + (_operands(entry) or [])
        for value in entry.tb_frame.f_locals.values():
            values.append(value)
            if type(value) is tuple:
                values.extend(value)
    return values


def all_subjects(entries: list[types.TracebackType], index: InputIndex, accept: Callable[[Any], bool]) -> list[tuple[Any, Place]]:
    """Every accepted input object the failing operations of the whole stack acted on (library frames: their
    locals; user code: the operands of its failing expression), outermost callers included."""
    found: dict[int, tuple[Any, Place]] = {}
    for entry in entries:
        if is_library(entry.tb_frame):
            hits = found_in(entry.tb_frame, index, accept)
        else:
            hits = [(v, p) for v in _operands(entry) or () if (p := index.place(v)) is not None and accept(v)]
        found.update((id(value), (value, place)) for value, place in hits)
    return list(found.values())


UNRESOLVED = object()


def _operands(entry: types.TracebackType) -> list[Any] | None:
    """The values the failing expression of ``entry``'s frame operated on (a subscript's container, a binary
    operation's two sides, a call's arguments), as far as they are names or constant subscripts of them;
    None when its source is unavailable or is another kind of expression."""
    frame = entry.tb_frame
    positions = list(frame.f_code.co_positions())
    if entry.tb_lasti // 2 >= len(positions):
        return None
    line, end_line, column, end_column = positions[entry.tb_lasti // 2]
    if line is None or line != end_line or column is None or end_column is None:
        return None
    text = linecache.getline(frame.f_code.co_filename, line).encode()[column:end_column].decode(errors="replace")
    try:
        statement = ast.parse(text.strip()).body
    except (SyntaxError, ValueError):  # ValueError: a null byte
        return None
    if len(statement) != 1 or not isinstance(statement[0], (ast.Expr, ast.Assign)):
        return None
    node = statement[0].value
    if isinstance(node, (ast.Tuple, ast.List)):  # an unpacking target (``a, b`` of ``a, b = pair``): its line's value
        node = _assigned(linecache.getline(frame.f_code.co_filename, line))
        if node is None:
            return None
    if isinstance(node, ast.Name):
        parts = [node]
    elif isinstance(node, ast.Subscript):
        parts = [node.value]
    elif isinstance(node, ast.BinOp):
        parts = [node.left, node.right]
    elif isinstance(node, ast.Call):
        parts = list(node.args)
    else:
        return None
    values = [resolve(item, frame) for part in parts for item in _literal_items(part)]
    return [value for value in values if value is not UNRESOLVED]


def _literal_items(node: ast.expr) -> list[ast.expr]:
    """A dict, list or tuple display's items (``{"params": p}``: ``p``), else the node itself."""
    if isinstance(node, ast.Dict):
        return [item for value in node.values for item in _literal_items(value)]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [item for element in node.elts for item in _literal_items(element)]
    return [node]


def _assigned(line: str) -> ast.expr | None:
    """The value of the one-line assignment ``line`` (``pair`` in ``a, b = pair``), or None."""
    try:
        statement = ast.parse(line.strip()).body
    except (SyntaxError, ValueError):
        return None
    return statement[0].value if len(statement) == 1 and isinstance(statement[0], ast.Assign) else None


def resolve(node: ast.expr, frame: types.FrameType) -> Any:
    """The value of a name or of constant subscripts of one (``config["layer"]``) in ``frame``; only dicts, lists
    and tuples are subscripted (no user code runs)."""
    if isinstance(node, ast.Name):
        for scope in (frame.f_locals, frame.f_globals):
            if node.id in scope:
                return scope[node.id]
        return UNRESOLVED
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        base = resolve(node.value, frame)
        if type(base) in (dict, list, tuple):
            try:
                return base[node.slice.value]
            except (KeyError, IndexError, TypeError):
                return UNRESOLVED
    return UNRESOLVED


def describe(value: Any) -> str:
    """``a dict with keys 'a', 'b'``, ``a tuple of 2``, ``an array float32[2, 3]`` for a (traced) spec subtree."""
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:8]) + (", ..." if len(value) > 8 else "")
        return f"a dict with keys {keys}" if value else "an empty dict"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, jax.core.Tracer):
        return f"an array {value.aval.str_short()}"
    return f"a {type(value).__name__}"


def is_array(value: Any) -> bool:
    return not isinstance(value, CONTAINERS)
