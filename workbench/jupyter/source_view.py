"""How ``%%to_onnx --to-jax`` shows the generated JAX module: ``forward`` first, helpers folded away.

The generated module defines ``forward`` and then, below a marker line, the runtime helpers it
calls (``_conv``, ``_pool``...), which can run to a hundred lines and more. The notebook shows the
module down to ``forward``'s end, highlighted, and the helpers in a collapsed ``<details>``;
``text/plain`` (and ``_onnx.jax_source``) keep the whole module. The rendering is
``workbench.onnx_to_jax.source_text``'s, which ``wb.to_jax_source``'s result displays with too.
"""

from __future__ import annotations

from typing import Any

from workbench.onnx_to_jax.source_text import source_bundle, split_helpers


class GeneratedSource:
    """Display object for a generated JAX module."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.main, self.helpers = split_helpers(source)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return source_bundle(self.source)


__all__ = ["GeneratedSource", "split_helpers"]
