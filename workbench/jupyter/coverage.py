"""``wb.coverage()``: the coverage explorer widget (and ``wb.coverage(as_frame=True)``, its DataFrame).

The rows come from :mod:`workbench.analysis.coverage` (handler testcases, zoo models, ONNX → JAX
emitters). The widget filters them by text, area and status, runs the shown rows on demand with a
progress bar (tqdm), and shows the graph of the selected row in the inline viewer. Everything it
shows is also data: ``explorer.frame()`` is the DataFrame of the rows currently shown.
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

from workbench.analysis import coverage as catalogue_module
from workbench.analysis.coverage_search import search_terms
from workbench.analysis.coverage import AREAS, KNOWN_FAILURE, NO_CASE, NOT_RUN, STATUSES, CoverageEntry, Outcome
from workbench.jupyter.widget_bundle import widget_bundle

_ALL = "(all)"
MAX_STATIC_ROWS = 60  # the static fallback summarises; the full table is explorer.frame()
# a known failure (every failing case listed with its reason) reads apart from a regression (✘)
# an emitter with no case to run here (its detail says where it is tested) is not a failure (○)
_STATUS_MARK = {NOT_RUN: "·", "pass": "✔", KNOWN_FAILURE: "◐", NO_CASE: "○", "fail": "✘", "error": "!"}


_NOT_A_ROW = (
    "rows are JAX primitives, jnp/lax/nn/scipy/random/image functions, ONNX ops and zoo models, not layer classes: "
    "convert a small instance of a layer with %%to_onnx to see what it exports as"
)


def _row_label(entry: CoverageEntry) -> str:
    status = catalogue_module.status_of(entry.key)
    ops = ", ".join(entry.onnx_ops)
    return f"{_STATUS_MARK[status]} {entry.area:<10} {entry.subject:<26} {entry.testcase:<40} {ops}"


class CoverageExplorer:
    """Every registered handler, zoo model and ONNX → JAX emitter, filterable, runnable, viewable."""

    def __init__(self, entries: list[CoverageEntry] | None = None) -> None:
        import ipywidgets as widgets

        self.entries = catalogue_module.catalogue() if entries is None else entries
        # None: worker processes where they pay (4+ cores); False: every row in this kernel; True: workers
        self.use_workers: bool | None = None
        self.shown: list[CoverageEntry] = list(self.entries)
        self.selected_graph: Any = None  # the ViewerHandle of the last selected row
        self.search = widgets.Text(placeholder="filter: primitive, jnp./lax./nn. function, testcase, ONNX op…",
                                   description="search")
        self.area = widgets.Dropdown(options=[_ALL, *AREAS], value=_ALL, description="area")
        self.status = widgets.Dropdown(options=[_ALL, *STATUSES], value=_ALL, description="status")
        self.run_button = widgets.Button(
            description="run shown", icon="play", tooltip="run every row shown", layout=widgets.Layout(width="auto")
        )
        self.rows = widgets.Select(options=[], rows=10, layout=widgets.Layout(width="100%"))
        self.counts = widgets.HTML()
        self.detail = widgets.HTML()
        self.output = widgets.Output()
        self.progress = widgets.Box()
        for control in (self.search, self.area, self.status):
            control.observe(lambda _change: self.refresh(), names="value")
        self.rows.observe(self._on_select, names="index")
        self.run_button.on_click(lambda _button: self.run_shown())
        self.widget = widgets.VBox([
            self.counts,
            widgets.HBox([self.search, self.area, self.status, self.run_button]),
            self.progress,
            self.rows,
            self.detail,
            self.output,
        ])
        self.refresh()

    # ------------------------------------------------------------------ state
    def refresh(self) -> None:
        """Apply the filters to the rows and update the counts line."""
        self.shown = catalogue_module.filter_entries(
            self.entries,
            text=self.search.value,
            areas=() if self.area.value == _ALL else (self.area.value,),
            statuses=() if self.status.value == _ALL else (self.status.value,),
        )
        self.rows.unobserve(self._on_select, names="index")
        self.rows.options = [(_row_label(entry), position) for position, entry in enumerate(self.shown)]
        self.rows.index = None
        self.rows.observe(self._on_select, names="index")
        self.counts.value = html.escape(self.summary())

    def summary(self) -> str:
        statuses = Counter(catalogue_module.status_of(entry.key) for entry in self.shown)
        counted = ", ".join(f"{statuses[s]} {s}" for s in STATUSES if statuses[s])
        meaning = search_terms(self.search.value).describe()  # what a JAX function's name was searched as
        if meaning is None and not self.shown and "." in self.search.value.strip():
            meaning = _NOT_A_ROW  # nnx.Conv, eqx.nn.Linear, flax.linen.LayerNorm: 0 rows and no word why
        return f"{len(self.shown)} of {len(self.entries)} rows shown ({counted or 'none'})" + (f"; {meaning}" if meaning else "")

    def frame(self) -> Any:
        """The DataFrame of the rows currently shown."""
        return catalogue_module.coverage_frame(self.shown)

    # ------------------------------------------------------------------ actions
    def run_shown(self) -> None:
        """Run every shown row; each row's mark, the counts and a progress bar update as it finishes."""
        # tqdm's notebook bar is an ipywidgets HBox; built with display=False it is placed in the
        # explorer's own box, so it renders there in every frontend instead of in the cell's output.
        from tqdm.notebook import tqdm

        running = list(self.shown)
        positions = {entry.key: position for position, entry in enumerate(running)}
        bar = tqdm(total=len(running), desc="running", unit="row", display=False)
        self.progress.children = (bar.container,)

        def show(entry: CoverageEntry, _outcome: Outcome) -> None:
            bar.update(1)
            position = positions.get(entry.key)
            if position is not None and position < len(self.shown) and self.shown[position] is entry:
                self._relabel(position)
            self.counts.value = html.escape(self.summary())

        catalogue_module.run_entries(running, on_result=show, workers=self.use_workers)
        bar.close()
        selected = self.rows.index
        self.refresh()
        if selected is not None and selected < len(self.shown):
            self.rows.index = selected

    def _relabel(self, position: int) -> None:
        """Show the row's new status in place (the selection stays)."""
        options = list(self.rows.options)
        options[position] = (_row_label(self.shown[position]), position)
        selected = self.rows.index
        self.rows.unobserve(self._on_select, names="index")
        self.rows.options = options
        self.rows.index = selected
        self.rows.observe(self._on_select, names="index")

    def select(self, position: int) -> None:
        """Select the shown row at ``position``: show its details and its graph in the viewer."""
        self.rows.index = position

    def _on_select(self, change: dict[str, Any]) -> None:
        position = change["new"]
        if position is None:
            return
        entry = self.shown[position]
        outcome = catalogue_module.last_outcome(entry.key)
        detail = outcome.detail if outcome else "not run yet: press “run shown”"
        doc = f"<a href='{html.escape(entry.doc)}' target='_blank'>docs</a>" if entry.doc.startswith("https://") else ""
        self.detail.value = (
            f"<b>{html.escape(entry.subject)}</b> · {html.escape(entry.testcase)} · {html.escape(entry.direction)} · "
            f"<code>{html.escape(entry.module)}</code> {doc}<br><span style='white-space:pre-wrap'>{html.escape(detail)}</span>"
        )
        self.show_graph(entry)

    def show_graph(self, entry: CoverageEntry) -> Any:
        """Export (or load) the row's graph and show it in the inline viewer below the table."""
        from workbench.jupyter.viewer import view

        self.output.outputs = ()
        try:
            model = entry.graph()
        except Exception as error:  # noqa: BLE001 - a row that does not convert shows why instead of a graph
            self.selected_graph = None
            self.output.append_stdout(f"{entry.subject} · {entry.testcase}: no graph ({type(error).__name__}: {error})\n")
            return None
        self.selected_graph = view(model, name=f"{entry.subject}.{entry.testcase}".replace(" ", "_"), height=400)
        self.output.append_display_data(self.selected_graph)
        return self.selected_graph

    # ------------------------------------------------------------------ display
    def static_html(self) -> str:
        frame = self.frame()
        pivot = frame.pivot_table(index="area", columns="status", values="subject", aggfunc="count", observed=False)
        return (
            f"<p>{html.escape(self.summary())}</p>{pivot.to_html()}"
            f"{frame.head(MAX_STATIC_ROWS)[['area', 'subject', 'testcase', 'onnx_ops', 'status']].to_html(index=False)}"
        )

    def plain_text(self) -> str:
        frame = self.frame()
        per_area = frame.groupby("area", observed=True).size()
        return self.summary() + "\n" + "\n".join(f"  {area:<11} {count} rows" for area, count in per_area.items())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return widget_bundle(self.widget, html=self.static_html(), text=self.plain_text())


def coverage(*, as_frame: bool = False) -> Any:
    """Explore what converts: a widget over every handler testcase, zoo model and ONNX → JAX emitter.

    With ``as_frame=True``, the pandas DataFrame the widget shows (area, direction, subject,
    testcase, onnx_ops, status, detail, max_abs_error, seconds, module, doc), with each row's
    last status in this session.
    """
    if as_frame:
        return catalogue_module.coverage_frame()
    return CoverageExplorer()


__all__ = ["CoverageExplorer", "coverage"]
