"""The unsupported-primitives table: an ipywidgets view of a compatibility report.

One row per primitive with no ONNX handler: its name, how often it appears, where (each
``file:line`` is a button that shows the source lines around it, read through ``linecache`` so
notebook cells work too), what to do, and a button that shows the handler stub to fill in and
keeps it in ``table.last_stub`` (so it can be pasted into a cell, or written out); none for a primitive
that has no handler on purpose (a host callback: what to do says to move it out).
Displayed as one bundle with a static HTML table and a text summary (see ``widget_bundle``).
"""

from __future__ import annotations

import html
import linecache
from typing import Any

from workbench.analysis.report import CompatibilityReport, PrimitiveUsage, handler_stub
from workbench.errors import SourceLocation
from workbench.jupyter.widget_bundle import widget_bundle

MAX_LOCATIONS_SHOWN = 5
SOURCE_CONTEXT_LINES = 2
_COLUMNS = ("primitive", "count", "where", "what to do", "handler")
_GRID_TEMPLATE = "max-content max-content minmax(10em, 1fr) minmax(12em, 1.5fr) max-content"


def source_excerpt(location: SourceLocation, context: int = SOURCE_CONTEXT_LINES) -> str:
    """The lines around ``location`` with the line itself marked, or a note when the source is unavailable."""
    lines = []
    for number in range(max(1, location.line - context), location.line + context + 1):
        text = linecache.getline(location.file, number)
        if not text and number > location.line:
            break
        marker = "→" if number == location.line else " "
        lines.append(f"{marker} {number:>4} | {text.rstrip()}")
    if not any(line.strip(" →0123456789|") for line in lines):
        return f"{location}: source not available (the file is gone or was never saved)"
    return f"{location.cell or location.file}\n" + "\n".join(lines)


class UnsupportedTable:
    """Interactive table of a report's unsupported primitives (build with a report from ``wb.check``)."""

    def __init__(self, report: CompatibilityReport, *, header_html: str = "", stub_call: str | None = None) -> None:
        """``stub_call``: how the user prints a stub from code (``_onnx.stub``), named in the advice."""
        import ipywidgets as widgets

        if stub_call is not None:
            report.name_stub_call(stub_call)
        self.report = report
        self.rows: list[PrimitiveUsage] = report.unsupported
        self.last_stub: str | None = None
        self.last_excerpt: str | None = None
        self.output = widgets.Output(layout=widgets.Layout(border="1px solid #ddd", padding="4px"))
        self.stub_buttons: dict[str, Any] = {}
        self.location_buttons: dict[str, list[Any]] = {}
        cells: list[Any] = [widgets.HTML(f"<b>{name}</b>") for name in _COLUMNS]
        for usage in self.rows:
            location_buttons = [self._location_button(loc, usage) for loc in usage.locations[:MAX_LOCATIONS_SHOWN]]
            self.location_buttons[usage.name] = location_buttons
            more = len(usage.locations) - len(location_buttons)
            where: list[Any] = list(location_buttons) or [widgets.HTML("<i>no source location</i>")]
            if more > 0:
                where.append(widgets.HTML(f"<i>and {more} more</i>"))
            if usage.reason:  # no handler on purpose (a host callback) or a handler refusing this use: no stub
                handler_cell: Any = widgets.HTML("<i>none: see what to do</i>")
            else:
                handler_cell = widgets.Button(description="handler stub", icon="code", tooltip=f"show a handler for {usage.name}")
                handler_cell.on_click(lambda _button, usage=usage: self.show_stub(usage.name))
                self.stub_buttons[usage.name] = handler_cell
            cells += [
                widgets.HTML(f"<code>{html.escape(usage.name)}</code>"),
                widgets.HTML(str(usage.count)),
                widgets.VBox(where),
                widgets.HTML(f"<span style='white-space:normal'>{html.escape(usage.suggestion)}</span>"),
                handler_cell,
            ]
        grid = widgets.GridBox(
            cells, layout=widgets.Layout(grid_template_columns=_GRID_TEMPLATE, grid_gap="2px 10px", width="100%")
        )
        parts: list[Any] = [widgets.HTML(header_html)] if header_html else []
        self.widget = widgets.VBox([*parts, widgets.HTML(f"<b>{html.escape(report.summary())}</b>"), grid, self.output])
        self._header_html = header_html

    def _location_button(self, location: SourceLocation, usage: PrimitiveUsage) -> Any:
        import ipywidgets as widgets

        count = usage.location_counts.get(location, 1)
        # the short name fits the cell; the tooltip and the excerpt carry the full path
        label = f"{location.short()} ({location.function})" + (f" ×{count}" if count > 1 else "")
        button = widgets.Button(
            description=label, tooltip=f"{location}: show the source lines", layout=widgets.Layout(width="auto", max_width="100%")
        )
        button.style.button_color = "transparent"
        button.on_click(lambda _button: self.show_source(location))
        return button

    def show_source(self, location: SourceLocation) -> str:
        """Show (and return) the source lines around ``location`` below the table."""
        from IPython.display import Code

        self.last_excerpt = source_excerpt(location)
        self.output.outputs = ()
        self.output.append_display_data(Code(self.last_excerpt, language="text"))
        return self.last_excerpt

    def show_stub(self, name: str) -> str:
        """Show (and return) the handler stub for primitive ``name`` below the table."""
        from IPython.display import Code, Markdown

        self.last_stub = handler_stub(self.report[name])
        self.output.outputs = ()
        self.output.append_display_data(
            Markdown(f"Handler stub for `{name}`: paste it into a cell (or a module registered under the "
                     "`workbench.handlers` entry point), fill in the TODOs, run it, then convert again.")
        )
        self.output.append_display_data(Code(self.last_stub, language="python"))
        return self.last_stub

    def static_html(self) -> str:
        rows = "".join(
            "<tr>"
            f"<td><code>{html.escape(p.name)}</code></td><td>{p.count}</td>"
            f"<td>{'<br>'.join(f'<code>{html.escape(str(loc))}</code>' for loc in p.locations[:MAX_LOCATIONS_SHOWN]) or '?'}</td>"
            f"<td>{html.escape(p.suggestion)}</td>"
            "</tr>"
            for p in self.rows
        )
        return (
            f"{self._header_html}<table><thead><tr><th>primitive</th><th>count</th><th>where</th><th>what to do</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )

    def text(self) -> str:
        lines = [self.report.summary()]
        for p in self.rows:
            lines.append(f"  {p.name} ×{p.count} at {p.where(MAX_LOCATIONS_SHOWN) or '?'}")
            lines.append(f"      what to do: {p.suggestion}")
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return widget_bundle(self.widget, html=self.static_html(), text=self.text())


__all__ = ["UnsupportedTable", "source_excerpt"]
