"""How ``%%to_onnx --to-jax`` shows the generated JAX module: ``forward`` first, helpers folded away.

The generated module defines ``forward`` and then, below a marker line, the runtime helpers it
calls (``_conv``, ``_pool``...), which can run to a hundred lines and more. The notebook shows the
module down to ``forward``'s end, highlighted, and the helpers in a collapsed ``<details>``;
``text/plain`` (and ``_onnx.jax_source``) keep the whole module.
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


class GeneratedSource:
    """Display object for a generated JAX module."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.main, self.helpers = split_helpers(source)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from IPython.display import Code

        page = Code(self.main, language="python")._repr_html_()
        if self.helpers:
            names = [line[4:].split("(", 1)[0] for line in self.helpers.splitlines() if line.startswith("def ")]
            count = self.helpers.count("\n")
            page += (
                f"<details><summary>runtime helpers used above ({html.escape(', '.join(names))}; {count} lines)</summary>"
                + Code(self.helpers, language="python")._repr_html_()
                + "</details>"
            )
        return {"text/html": page, "text/plain": self.source}


__all__ = ["GeneratedSource", "split_helpers"]
