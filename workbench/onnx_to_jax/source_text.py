"""The generated JAX module as ``wb.to_jax_source`` returns it: a ``str`` that a notebook shows as code.

A plain ``str`` as a cell's last value shows as its quoted repr, one line with ``\\n`` escapes: a
generated module of a few hundred lines became one unreadable line. :class:`JaxSource` is a ``str``
everywhere else (write it, compile it, compare it) and displays as the highlighted module, ``forward``
first and its runtime helpers folded (the display ``%%to_onnx --to-jax`` shows).
"""

from __future__ import annotations

from typing import Any


class JaxSource(str):
    """Source of a generated JAX module; displays as code in IPython and Jupyter."""

    __slots__ = ()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from workbench.jupyter.source_view import GeneratedSource  # IPython: only when displayed

        return GeneratedSource(str(self))._repr_mimebundle_()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Terminal IPython: the module's text, not its repr."""
        printer.text(str(self))


__all__ = ["JaxSource"]
