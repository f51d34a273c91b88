"""The one identifier sanitizer: ONNX value names -> unique, valid, non-keyword Python names.

ONNX names are untrusted text (they may hold quotes, newlines or code). The
only way they reach generated source is through :meth:`NameScope.assign`,
which keeps ``[A-Za-z0-9_]`` characters, checks the result with
``str.isidentifier`` and ``keyword.iskeyword`` and resolves clashes with a
numeric suffix.
"""

from __future__ import annotations

import builtins
import keyword
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")
_MAX_LEN = 60


def sanitize(text: str, fallback: str = "v") -> str:
    """A valid identifier derived from ``text`` (not yet made unique)."""
    base = _UNSAFE.sub("_", text).strip("_")[:_MAX_LEN].rstrip("_")
    if not base:
        base = fallback
    if base[0].isdigit():
        base = f"{fallback}_{base}"
    if keyword.iskeyword(base) or keyword.issoftkeyword(base):
        base = f"{base}_"
    if not base.isidentifier():  # pragma: no cover - the regex above already guarantees it
        raise AssertionError(f"sanitizer produced a non-identifier {base!r}")
    return base


class NameScope:
    """Maps ONNX names to identifiers, unique within one generated module."""

    def __init__(self, reserved: set[str] | frozenset[str] = frozenset()):
        self._taken: set[str] = set(reserved) | set(dir(builtins))
        self._by_onnx: dict[str, str] = {}
        self._by_identifier: dict[str, str] = {}  # identifier -> the ONNX name it was assigned for (shared by children)

    def reserve(self, name: str) -> None:
        self._taken.add(name)

    def fresh(self, hint: str) -> str:
        """A new identifier based on ``hint`` (which may be untrusted)."""
        base = sanitize(hint)
        name = base
        counter = 1
        while name in self._taken:
            name = f"{base}_{counter}"
            counter += 1
        self._taken.add(name)
        return name

    def assign(self, onnx_name: str) -> str:
        """Bind an ONNX value name to a new identifier (a later definition gets a new one)."""
        name = self.fresh(onnx_name)
        self._by_onnx[onnx_name] = name
        self._by_identifier[name] = onnx_name
        return name

    def identifiers(self) -> dict[str, str]:
        """Every identifier assigned for an ONNX value in this module (any scope) -> that value's name."""
        return dict(self._by_identifier)

    def bind(self, onnx_name: str, expression: str) -> None:
        """Let ``onnx_name`` stand for an expression we built (e.g. ``params['w']`` with a repr-escaped key)."""
        self._by_onnx[onnx_name] = expression

    def lookup(self, onnx_name: str) -> str | None:
        return self._by_onnx.get(onnx_name)

    def child(self) -> "NameScope":
        """A scope for a subgraph: sees the outer bindings, shares the taken names."""
        scope = NameScope.__new__(NameScope)
        scope._taken = self._taken  # shared on purpose: nested defs must not shadow outer names
        scope._by_identifier = self._by_identifier
        scope._by_onnx = dict(self._by_onnx)
        return scope
