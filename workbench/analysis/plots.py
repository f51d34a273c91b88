"""Plotly figures of the analysis reports (plotly is imported only when a figure is asked for)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from workbench.analysis.locate import DivergenceReport
    from workbench.analysis.parity import ParityReport

MAX_POINTS_PER_OUTPUT = 4000  # scatter points per output (all samples), evenly subsampled
MAX_OUTPUT_PANELS = 6


def _subsample(values: np.ndarray, limit: int) -> np.ndarray:
    flat = values.reshape(-1)
    if flat.size <= limit:
        return flat
    return flat[np.linspace(0, flat.size - 1, limit).astype(np.int64)]


def _as_float(values: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(values):
        return np.abs(values).astype(np.float64)
    return values.astype(np.float64)


def parity_figure(report: ParityReport) -> Any:
    """ONNX vs JAX scatter per output (one colour per sample, y = x line) and an error histogram."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    outputs = report.output_names[:MAX_OUTPUT_PANELS]
    titles = [f"{name}: ONNX vs JAX" for name in outputs] + ["|ONNX - JAX| (log10)"]
    figure = make_subplots(rows=1, cols=len(outputs) + 1, subplot_titles=titles)
    errors: list[np.ndarray] = []
    per_output_limit = max(MAX_POINTS_PER_OUTPUT // max(len(report.inputs), 1), 1)
    for column, name in enumerate(outputs, start=1):
        low, high = np.inf, -np.inf
        for result in (r for r in report.results if r.output == name):
            if result.comparison.problem == "shape":
                continue
            jax_values = _subsample(_as_float(result.jax_value), per_output_limit)
            onnx_values = _subsample(_as_float(result.onnx_value), per_output_limit)
            finite = np.isfinite(jax_values) & np.isfinite(onnx_values)
            if finite.any():
                low = min(low, float(jax_values[finite].min()), float(onnx_values[finite].min()))
                high = max(high, float(jax_values[finite].max()), float(onnx_values[finite].max()))
            figure.add_trace(
                go.Scattergl(
                    x=jax_values, y=onnx_values, mode="markers", marker={"size": 4},
                    name=f"{name} sample {result.sample}", legendgroup=f"sample {result.sample}",
                ),
                row=1, col=column,
            )
            errors.append(np.abs(_as_float(result.onnx_value) - _as_float(result.jax_value)).reshape(-1))
        if np.isfinite(low):
            figure.add_trace(
                go.Scatter(x=[low, high], y=[low, high], mode="lines", line={"dash": "dot", "color": "gray"},
                           name="ONNX = JAX", showlegend=column == 1),
                row=1, col=column,
            )
        figure.update_xaxes(title_text="JAX", row=1, col=column)
        figure.update_yaxes(title_text="ONNX", row=1, col=column)
    if errors:
        all_errors = np.concatenate(errors)
        all_errors = all_errors[np.isfinite(all_errors)]
        logs = np.log10(np.maximum(all_errors, 1e-12))
        figure.add_trace(go.Histogram(x=logs, name="log10 |error|", marker={"color": "#555"}), row=1, col=len(outputs) + 1)
    figure.update_layout(title=report.summary(), height=420, width=360 * (len(outputs) + 1))
    return figure


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
            text=[f"{n.node} ({n.op_type} from {n.primitive}) {n.location}" for n in compared],
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
                       marker={"size": 14, "color": "red", "symbol": "x"}, name=f"first divergent: {first.node}")
        )
        figure.add_annotation(x=first.index, y=np.log10(max(first.max_abs_error, floor)),
                              text=f"{first.node} ({first.op_type})", showarrow=True, arrowhead=2)
    figure.update_yaxes(type="log", title_text="max abs error")
    figure.update_xaxes(title_text="node (topological order)")
    figure.update_layout(title=report.summary()[:160], height=420)
    return figure


__all__ = ["divergence_figure", "parity_figure"]
