"""What ``%%to_onnx`` binds in the namespace (``_onnx`` by default) and displays.

One display bundle: a compact header (function, nodes, parameters, size, opset,
time) followed by the inline viewer, or, when primitives are unsupported, the
table of them instead of the viewer. ``text/plain`` leaves out the timing and
the viewer address so notebook regression tools (nbval) can compare it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import onnx

from workbench.errors import UnsupportedPrimitive
from workbench.jupyter.viewer import MIME_TYPE, ViewerHandle, static_table_html
from workbench.onnx_io import ModelSummary, summarize

if TYPE_CHECKING:  # the table imports the tracer (jax); a successful conversion never needs it
    from workbench.jupyter.unsupported_table import UnsupportedTable


def _size_text(size: int) -> str:
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.2f} GB"


class _Stats(NamedTuple):
    """One reading of a model for its header and node table."""

    summary: ModelSummary
    size: int  # serialized bytes


@dataclass
class OnnxResult:
    """The outcome of one ``%%to_onnx`` cell: the model (or what was unsupported) and what was shown."""

    function: str
    seconds: float
    model: onnx.ModelProto | None = None
    path: str | None = None
    unsupported: list[UnsupportedPrimitive] = field(default_factory=list)
    viewer: ViewerHandle | None = None
    jax_source: str | None = None
    jax_path: str | None = None
    parity: Any = None  # the report object returned by workbench.parity, when --parity was given
    divergence: Any = None  # parity.locate()'s report (the first node that drifts), when --parity failed
    unsupported_table: UnsupportedTable | None = None  # the interactive table, when primitives are unsupported
    ir_path: str | None = None  # where --ir wrote the Graph IR

    @property
    def ok(self) -> bool:
        return self.model is not None

    def stub(self, name: str) -> str:
        """The handler stub for unsupported primitive ``name`` (what the table's "handler stub" button shows)."""
        if self.unsupported_table is None:
            raise ValueError(f"{self.function} converted: no primitive is unsupported, so there is no stub to write.")
        return self.unsupported_table.show_stub(name)

    def _model_stats(self) -> _Stats | None:
        """The summary and serialized size of the model as it is now (``None`` when nothing converted).

        Computed once per display and never kept between displays: a model edited in place (a node
        removed, an opset changed) must show in the next header, and a protobuf message has no cheap
        "changed since" mark to key a cache on (hashing its bytes costs what the summary costs).
        """
        if self.model is None:
            return None
        return _Stats(summarize(self.model), self.model.ByteSize())

    def header_text(self, stats: _Stats | None = None) -> str:
        """The one-line header: nodes, parameters, size, opset and where files were written.

        ``stats`` is the display's own reading of the model (:meth:`_model_stats`); left out, the
        model is read now.
        """
        if self.model is None:
            return f"{self.function} → ONNX: not converted, {len(self.unsupported)} unsupported primitive(s)"
        if stats is None:
            stats = _Stats(summarize(self.model), self.model.ByteSize())
        summary, size = stats
        parts = [
            f"{len(summary.nodes)} nodes",
            f"{summary.parameter_count:,} parameters",
            _size_text(size),
            f"opset {summary.opset}",
        ]
        if self.path:
            parts.append(f"written to {self.path}")
        if self.jax_path:
            parts.append(f"JAX source written to {self.jax_path}")
        if self.ir_path:
            parts.append(f"Graph IR written to {self.ir_path}")
        return f"{self.function} → ONNX: " + ", ".join(parts)

    def _header_html(self, header: str | None = None) -> str:
        """The header line as HTML: a mark, the text (``header``, else read now) and the conversion time."""
        if header is None:
            header = self.header_text()
        color = "#2e7d32" if self.ok else "#c62828"
        mark = "✔" if self.ok else "✘"
        return (
            f'<div style="font-family:monospace;margin:4px 0"><span style="color:{color}">{mark}</span> '
            f"{html.escape(header)} <span style=\"color:#777\">({self.seconds:.2f} s)</span></div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        stats = self._model_stats()  # the header shows three times: one reading of the model serves them all
        header = self.header_text(stats)
        if self.unsupported_table is not None:  # the widget, with the header, static table and text around it
            bundle = self.unsupported_table._repr_mimebundle_()
            bundle["text/plain"] = header + "\n" + bundle["text/plain"]
            return bundle
        parts_html = [self._header_html(header)]
        parts_text = [header]
        bundle: dict[str, Any] = {}
        if self.viewer is not None:
            viewer_bundle = self.viewer._repr_mimebundle_()
            parts_html.append(viewer_bundle["text/html"])
            parts_text.append(viewer_bundle["text/plain"])
            # the JupyterLab extension renders this one output: the header becomes the viewer's title line
            payload = self.viewer.payload(title=f"{'✔' if self.ok else '✘'} {header} ({self.seconds:.2f} s)")
            if payload is not None:
                bundle[MIME_TYPE] = payload
        elif stats is not None:  # --no-view: the node table alone, closed
            parts_html.append(static_table_html(stats.summary))
        bundle["text/html"] = "".join(parts_html)
        bundle["text/plain"] = "\n".join(parts_text)
        return bundle
