"""The one small source writer: indented lines, nothing else."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class SourceWriter:
    """Collects lines of Python source at the current indentation."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._depth = 0

    def line(self, text: str = "") -> None:
        if "\n" in text or "\r" in text:
            raise AssertionError(f"a generated statement must be one line: {text!r}")
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
        for text in other._lines:
            self._lines.append(("    " * self._depth + text) if text else "")

    def replaced(self, lines: dict[str, str]) -> "SourceWriter":
        """A copy with every line whose text (without its indentation) is a key of ``lines`` replaced
        by that key's value, at the same indentation."""
        copy = SourceWriter()
        for text in self._lines:
            stripped = text.lstrip(" ")
            replacement = lines.get(stripped)
            copy._lines.append(text if replacement is None else text[: len(text) - len(stripped)] + replacement)
        return copy

    def source(self) -> str:
        return "\n".join(self._lines) + "\n"
