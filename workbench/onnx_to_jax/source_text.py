"""The generated JAX module as ``wb.to_jax_source`` returns it: a ``str`` that a notebook shows as code.

A plain ``str`` as a cell's last value shows as its quoted repr, one line with ``\\n`` escapes: a
generated module of a few hundred lines became one unreadable line. :class:`JaxSource` is a ``str``
everywhere else (write it, compile it, compare it) and displays as the highlighted module, ``forward``
first and the runtime helpers it calls (``_conv``, ``_pool``..., defined below a marker line, often a
hundred lines and more) folded in a ``<details>``; ``text/plain`` keeps the whole module. ``%%to_onnx
--to-jax`` displays this same object (``_onnx.jax_source``).
"""

from __future__ import annotations

import html
from typing import Any

from workbench.onnx_to_jax.generator import HELPERS_MARKER


def split_helpers(source: str) -> tuple[str, str]:
    """(the module down to forward's end, the runtime helpers below the marker; "" when there are none)."""
    head, marker, rest = source.partition(f"\n{HELPERS_MARKER}")
    if not marker:
        return source, ""
    helpers = rest.split("\n", 1)[1].strip("\n") if "\n" in rest else ""
    return head.rstrip() + "\n", (helpers + "\n") if helpers else ""


def source_bundle(source: str) -> dict[str, str]:
    """The display bundle of a generated module: highlighted HTML with the helpers folded, and the text."""
    from IPython.display import Code  # only when displayed

    main, helpers = split_helpers(source)
    page = Code(main, language="python")._repr_html_()
    if helpers:
        names = [line[4:].split("(", 1)[0] for line in helpers.splitlines() if line.startswith("def ")]
        count = helpers.count("\n")
        page += (
            f"<details><summary>runtime helpers used above ({html.escape(', '.join(names))}; {count} lines)</summary>"
            + Code(helpers, language="python")._repr_html_()
            + "</details>"
        )
    return {"text/html": page, "text/plain": source}


class JaxSource(str):
    """Source of a generated JAX module; displays as code in IPython and Jupyter."""

    __slots__ = ()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return source_bundle(str(self))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Terminal IPython: the module's text, not its repr."""
        printer.text(str(self))


__all__ = ["JaxSource", "source_bundle", "split_helpers"]
