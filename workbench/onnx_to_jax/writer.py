"""The one small source writer: indented lines, nothing else.

A line may carry a second form, its host form (host_shapes.py: the same statement as numpy calls, for a
model whose shapes depend on values); ``source`` writes the first, ``with_host_forms`` a copy with the
second wherever a line has one.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class SourceWriter:
    """Collects lines of Python source at the current indentation."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._host_lines: dict[int, str] = {}  # line index -> its host form, indented as the line
        self._depth = 0

    def line(self, text: str = "", host: str | None = None) -> None:
        """Write ``text``; ``host``: the same statement in its host form, if it has one."""
        for statement in (text, host or ""):
            if "\n" in statement or "\r" in statement:
                raise AssertionError(f"a generated statement must be one line: {statement!r}")
        if host is not None:
            self._host_lines[len(self._lines)] = "    " * self._depth + host
        self._lines.append(("    " * self._depth + text) if text else "")

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """``header`` ends with ':'; lines written inside are indented one level."""
        self.line(header)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def extend(self, other: "SourceWriter") -> None:
        indent = "    " * self._depth
        for index, text in other._host_lines.items():
            self._host_lines[len(self._lines) + index] = indent + text
        for text in other._lines:
            self._lines.append((indent + text) if text else "")

    def with_host_forms(self) -> "SourceWriter":
        """A copy with every line that has a host form written in that form."""
        copy = SourceWriter()
        copy._lines = [self._host_lines.get(index, text) for index, text in enumerate(self._lines)]
        return copy

    def source(self) -> str:
        return "\n".join(self._lines) + "\n"
