"""What a divergence locator reports: one row per ONNX node, the first divergent node, and its figure.

Both locators fill it: :mod:`workbench.analysis.locate` (an ONNX model against the JAX function it
came from) and :mod:`workbench.analysis.locate_generated` (an ONNX model against the JAX code
generated from it). Kept apart from both so neither locator imports the other's module back.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.analysis.labels import model_phrase, sides

# the function name of a report on generated JAX code (locate_generated.py): its nodes have no primitive
GENERATED_LABEL = "generated JAX"
# node rows in the HTML table: %%to_onnx --parity shows the report in the notebook, where every row of a
# 2,000-node graph would be stored (EfficientNetB0's 310 compared nodes made 283 kB of HTML)
MAX_HTML_ROWS = 120
_HTML_COLUMNS = ["index", "node", "op", "max_abs_error", "tolerance", "ok", "primitive", "location", "max_rel_error"]


@dataclass(frozen=True)
class NodeResult:
    """One ONNX node of the main graph, in topological order, with its error against JAX."""

    index: int
    node: str
    op_type: str
    outputs: tuple[str, ...]
    primitive: str
    location: str
    compared: bool  # at least one output has a JAX counterpart
    max_abs_error: float
    max_rel_error: float
    tolerance: float
    ok: bool  # within tolerance (True when nothing was compared)
    inputs_ok: bool  # every value it reads was within tolerance


@dataclass
class DivergenceReport:
    """Node-by-node errors of an ONNX model against its JAX function on one input sample."""

    nodes: list[NodeResult]
    first_divergent: NodeResult | None
    suspects: list[str]  # the handler-internal nodes feeding the first divergent one
    changed_initializers: list[str]  # initializers whose values differ from the function's weights
    model_source: str
    function: str
    inputs: list[np.ndarray] = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)
    # known reasons a divergent node is no converter fault, one line each: the reference may be wrong there
    # (reference_caveats.py), or a quantizer rounds at a boundary (quantization_boundary.py)
    caveats: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_divergent is None and all(n.ok for n in self.nodes)

    @property
    def divergent(self) -> list[NodeResult]:
        """Every node whose error exceeds tolerance while its inputs were within it (root causes)."""
        return [n for n in self.nodes if not n.ok and n.inputs_ok]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "index": n.index,
                    "node": n.node,
                    "op": n.op_type,
                    "primitive": n.primitive,
                    "location": n.location,
                    "compared": n.compared,
                    "max_abs_error": n.max_abs_error,
                    "max_rel_error": n.max_rel_error,
                    "tolerance": n.tolerance,
                    "ok": n.ok,
                    "first_divergent": self.first_divergent is not None and n.index == self.first_divergent.index,
                }
                for n in self.nodes
            ]
        )

    def figure(self) -> Any:
        """Plotly figure: error of each compared node along the topological order, first divergent marked."""
        return divergence_figure(self)

    def summary(self) -> str:
        compared = sum(n.compared for n in self.nodes)
        pair = (f"the generated JAX vs {model_phrase(self.model_source)}" if self.function == GENERATED_LABEL
                else sides(self.function, self.model_source))  # fmt: skip
        head = f"Divergence locator: {pair}, {compared} of {len(self.nodes)} nodes compared"
        if self.first_divergent is None:
            return head + "; no node diverges."
        node = self.first_divergent
        where = f" at {node.location}" if node.location else ""
        origin = "" if self.function == GENERATED_LABEL else f" from {node.primitive or '?'}"
        return (
            f"{head}; first divergent node {node.node!r} ({node.op_type}{origin}{where}): "
            f"max abs error {node.max_abs_error:.3g} > tolerance {node.tolerance:.3g}"
        )

    def __repr__(self) -> str:
        lines = [self.summary()]
        if self.suspects:
            lines.append(f"  handler-internal nodes feeding it (no JAX counterpart): {', '.join(self.suspects)}")
        if self.changed_initializers:
            lines.append(f"  initializers differing from the function's weights: {', '.join(self.changed_initializers)}")
        lines.extend(f"  note: {caveat}" for caveat in self.caveats)
        shown = [n for n in self.nodes if n.compared]
        if self.first_divergent is not None:
            start = max(0, next(i for i, n in enumerate(shown) if n.index == self.first_divergent.index) - 3)
            shown = shown[start : start + 8]
        else:
            shown = sorted(shown, key=lambda n: -n.max_abs_error)[:8]
        for n in shown:
            mark = "  <-- first divergent" if self.first_divergent is not None and n.index == self.first_divergent.index else ""
            lines.append(
                f"  #{n.index:<4} {n.node:<24} {n.op_type:<12} {n.primitive:<18} abs {n.max_abs_error:9.3g}  "
                f"tol {n.tolerance:9.3g}  {'ok' if n.ok else 'DIVERGES'}{mark}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        color = "#2e7d32" if self.first_divergent is None else "#c62828"
        frame = self.to_pandas()
        frame = frame[frame["compared"]]
        omitted = ""
        if len(frame) > MAX_HTML_ROWS:  # a big graph: the rows around the first divergent node (else the worst)
            if self.first_divergent is not None:
                at = int(np.flatnonzero(frame["first_divergent"].to_numpy())[0])
            else:
                at = int(np.argmax(frame["max_abs_error"].to_numpy()))
            start = max(0, min(at - MAX_HTML_ROWS // 4, len(frame) - MAX_HTML_ROWS))
            shown = frame.iloc[start : start + MAX_HTML_ROWS]
            omitted = (
                f"<p>Rows {start + 1}-{start + len(shown)} of the {len(frame)} compared nodes, around the "
                f"{'first divergent node' if self.first_divergent is not None else 'largest error'}; "
                "<code>.to_pandas()</code> has them all.</p>"
            )
            frame = shown

        marked = frame["first_divergent"].to_numpy()
        # what decides a row first (error, tolerance, verdict), the long names and locations after; every row is
        # compared and the first divergent one is highlighted, so those two columns go
        frame = frame[_HTML_COLUMNS]

        def highlight(row: Any) -> list[str]:
            return ["background-color:#ffcdd2" if marked[frame.index.get_loc(row.name)] else "" for _ in row]

        # 3 significant digits: errors and tolerances span 1e-9..1 (a fixed 3 decimals showed float32 ones as 0.000)
        # node and value names are the model's text (an untrusted file's): pandas' Styler escapes only when asked
        numbers = {column: "{:.3g}" for column in ("max_abs_error", "tolerance", "max_rel_error")}
        table = frame.style.apply(highlight, axis=1).format(numbers, escape="html").hide(axis="index").to_html()
        notes = "".join(f"<p>Note: {html.escape(caveat)}</p>" for caveat in self.caveats)
        return f'<div><b style="color:{color}">{html.escape(self.summary())}</b>{notes}{omitted}{table}</div>'


# ----------------------------------------------------------------------------- figure (plotly imported when drawn)
def divergence_figure(report: DivergenceReport) -> Any:
    """Max abs error and tolerance of each compared node along the topological order."""
    import plotly.graph_objects as go

    compared = [n for n in report.nodes if n.compared]
    floor = 1e-12
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[n.index for n in compared],
            y=[max(n.max_abs_error, floor) for n in compared],
            mode="lines+markers",
            name="max |ONNX - JAX|",
            # plotly reads tags (<a href>, <br>) in text: the model's names are escaped
            text=[_plotly_text(f"{n.node} ({n.op_type} from {n.primitive}) {n.location}") for n in compared],
            hovertemplate="#%{x} %{text}<br>error %{y:.3g}<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(x=[n.index for n in compared], y=[max(n.tolerance, floor) for n in compared],
                   mode="lines", line={"dash": "dot", "color": "gray"}, name="tolerance")
    )
    first = report.first_divergent
    if first is not None:
        figure.add_trace(
            go.Scatter(x=[first.index], y=[max(first.max_abs_error, floor)], mode="markers",
                       marker={"size": 14, "color": "red", "symbol": "x"}, name=f"first divergent: {_plotly_text(first.node)}")
        )
        figure.add_annotation(x=first.index, y=np.log10(max(first.max_abs_error, floor)),
                              text=_plotly_text(f"{first.node} ({first.op_type})"), showarrow=True, arrowhead=2)
    figure.update_yaxes(type="log", title_text="max abs error")
    figure.update_xaxes(title_text="node (topological order)")
    figure.update_layout(title=_plotly_text(report.summary()[:160]), height=420)
    return figure


def _plotly_text(text: str) -> str:
    """``text`` (holding the model's names) with ``<``, ``>`` and ``&`` escaped: plotly reads tags in its texts."""
    return html.escape(text, quote=False)


__all__ = ["GENERATED_LABEL", "DivergenceReport", "NodeResult", "divergence_figure"]
