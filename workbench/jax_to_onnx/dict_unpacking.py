"""An input dict unpacked where the function expects a tuple: ``first, second = pair`` given ``{'a': ..., 'b': ...}``.

Python unpacks a dict into its keys. When the counts differ the unpacking itself fails ("too many values
to unpack") and the failing statement's operand is the dict; when they agree it succeeds, the names
hold the key strings, and the failure comes later, where a key is used as an array. Both are recognised
from evidence, never from the error's type alone: the unpacking statement ``targets = value`` in a frame
of the user's code whose value is an input dict (by identity, see
:class:`~workbench.jax_to_onnx.failing_input.InputIndex`), and, for the later failure, target variables
holding that dict's own key objects, one of which the failing operation acted on.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import types
from dataclasses import dataclass
from typing import Any

from workbench.errors import SourceLocation
from workbench.jax_to_onnx.failing_input import InputIndex, Place, describe, failing_operands, is_library, resolve, subject
from workbench.notebook_cells import cell_label

# (place at fault, what was found there against what the code expected, what to do): what every translator of
# structure.py returns, this module's included
Finding = tuple[str, str, str]


@dataclass(frozen=True)
class Unpacking:
    """One ``a, b = value`` statement of a user frame whose value is an input dict."""

    value: dict[Any, Any]
    place: Place
    targets: tuple[str, ...]
    text: str  # the statement as written
    where: SourceLocation


# Python's message for ``a, b = value`` where value has another length: groups (expected) when too many,
# (expected, got) when too few; structure.py's tuple/list form reads the same message
UNPACKING_COUNT = re.compile(r"^(?:too many values to unpack \(expected (\d+)\)|not enough values to unpack "
                             r"\(expected (\d+), got (\d+)\))$")  # fmt: skip


def expected_count(match: re.Match[str]) -> int:
    """How many names the failing unpacking had, from an ``UNPACKING_COUNT`` match."""
    return int(match.group(1) or match.group(2))


def dict_unpacked(error: Exception, frames: list[types.TracebackType], index: InputIndex) -> Finding | None:
    """The finding for an input dict unpacked into names (either failure above), or None."""
    match = UNPACKING_COUNT.match(str(error)) if type(error) is ValueError else None
    if match is not None:
        return _wrong_count(match, frames, index)
    return _keys_used(frames, index)


def _wrong_count(match: re.Match[str], frames: list[types.TracebackType], index: InputIndex) -> Finding | None:
    """``a, b = tree`` failing on an input dict of another length (Python counted its keys)."""
    expected = expected_count(match)
    hit = subject(frames, index, lambda v: isinstance(v, dict) and len(v) != expected)
    if hit is None:
        return None
    value, place = hit
    return _finding(place, expected, value, "")


def _keys_used(frames: list[types.TracebackType], index: InputIndex) -> Finding | None:
    """A failure acting on a key string that an unpacking of an input dict bound to a name."""
    operands = [value for value in failing_operands(frames) if isinstance(value, str)]
    if not operands:
        return None
    for entry in frames:
        if is_library(entry.tb_frame):
            continue
        for unpacking in _unpackings(entry.tb_frame, index):
            keys = list(unpacking.value)
            if any(operand is key for operand in operands for key in keys):
                where = f" ({unpacking.text}, {unpacking.where.short()})"
                return _finding(unpacking.place, len(unpacking.targets), unpacking.value, where)
    return None


def _finding(place: Place, count: int, value: dict[Any, Any], where: str) -> Finding:
    keys = ", ".join(repr(key) for key in list(value)[:8]) + (", ..." if len(value) > 8 else "")
    return (str(place), f"the function unpacks it into {count}{where}, which for a dict gives its keys ({keys}), "
            f"not its arrays; given {describe(value)}",
            f"give {place} as a tuple of {count} specs, in the order the function unpacks them")


def _unpackings(frame: types.FrameType, index: InputIndex) -> list[Unpacking]:
    """The statements ``a, b = value`` of ``frame``'s function that unpacked an input dict: ``value`` is the dict
    (a name or constant subscripts of one) and every target name holds that dict's own key object, in order."""
    try:
        lines, first = inspect.getsourcelines(frame.f_code)
    except (OSError, TypeError):
        return []
    try:
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (SyntaxError, ValueError):  # a lambda's line, a null byte
        return []
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], (ast.Tuple, ast.List))):
            continue
        names = node.targets[0].elts
        if not all(isinstance(name, ast.Name) for name in names):
            continue
        value = resolve(node.value, frame)
        place = index.place(value) if type(value) is dict else None
        if place is None or len(value) != len(names):
            continue
        targets = tuple(name.id for name in names)  # type: ignore[attr-defined]
        if all(target in frame.f_locals and frame.f_locals[target] is key for target, key in zip(targets, value)):
            file = frame.f_code.co_filename
            where = SourceLocation(file, first + node.lineno - 1, frame.f_code.co_name, cell_label(file))
            found.append(Unpacking(value, place, targets, ast.unparse(node), where))
    return found

