"""``wb.view(model)``: show an ONNX model inline with Netron, offline, with a shape on every edge.

The result is a display object. Its one display bundle holds
- ``text/html``: an IFrame on the patched Netron viewer plus a static node table
  (op, inputs, outputs, shapes) that stays readable when the IFrame is dead
  (kernel restarted, nbviewer, GitHub);
- ``text/plain``: a stable summary without addresses or timings (nbval can compare it).

Transport: when the workbench Jupyter server extension is active (the kernel
inherited its environment variables), the model goes to its private store and
the IFrame is same-origin under the Jupyter base URL; otherwise a loopback-only
server inside the kernel serves it.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import onnx

from workbench.errors import OnnxModelError, WorkbenchError
from workbench.jupyter import viewer_routes
from workbench.jupyter.model_store import (
    ENV_BASE_URL,
    ENV_STORE_DIR,
    ModelStore,
    new_token,
)
from workbench.onnx_io import ModelSource, ModelSummary, load_model, summarize, with_shapes

if TYPE_CHECKING:
    import pandas

Transport = Literal["jupyter-server", "kernel-server"]
MAX_TABLE_ROWS = 400  # the static table of a huge graph would bloat the notebook file


@dataclass
class ViewerHandle:
    """A model registered with a viewer transport; displays as the viewer plus its static fallback."""

    model: onnx.ModelProto
    url: str
    transport: Transport
    height: int = 500
    summary: ModelSummary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summarize(self.model)

    def as_frame(self) -> pandas.DataFrame:
        """The node table as a DataFrame: one row per node with op, inputs and outputs (with shapes)."""
        import pandas

        return pandas.DataFrame(
            [
                {
                    "op": row.op,
                    "name": row.name,
                    "inputs": ", ".join(f"{e.name}: {e.type}" for e in row.inputs),
                    "outputs": ", ".join(f"{e.name}: {e.type}" for e in row.outputs),
                }
                for row in self.summary.nodes
            ]
        )

    def iframe_html(self) -> str:
        src = html.escape(self.url, quote=True)
        return (
            f'<iframe src="{src}" title="ONNX graph viewer" loading="lazy" '
            f'style="width:100%;height:{int(self.height)}px;border:1px solid #ccc;border-radius:4px"></iframe>'
            f'<div style="font-size:85%;margin:2px 0 6px 0"><a href="{src}" target="_blank" rel="noopener">'
            "open the viewer in a new tab</a></div>"
        )

    def fallback_html(self) -> str:
        return static_table_html(self.summary)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/html": f'<div class="workbench-viewer">{self.iframe_html()}{self.fallback_html()}</div>',
            "text/plain": self.summary.text(),
        }


def _edges_html(edges: tuple[Any, ...]) -> str:
    parts = []
    for edge in edges:
        mark = ' <span title="parameter (initializer)">⚙</span>' if edge.is_parameter else ""
        parts.append(f"<code>{html.escape(edge.name)}</code>: {html.escape(edge.type)}{mark}")
    return "<br>".join(parts)


def static_table_html(summary: ModelSummary, *, open_: bool = False) -> str:
    """The static fallback: graph inputs/outputs and a node table with shapes, in a <details> block."""
    rows = summary.nodes[:MAX_TABLE_ROWS]
    body = "".join(
        "<tr>"
        f"<td>{row.index}</td><td><b>{html.escape(row.op)}</b></td><td>{html.escape(row.name)}</td>"
        f"<td>{_edges_html(row.inputs)}</td><td>{_edges_html(row.outputs)}</td>"
        "</tr>"
        for row in rows
    )
    more = len(summary.nodes) - len(rows)
    more_html = f"<p>… and {more} more nodes (see <code>.as_frame()</code>).</p>" if more > 0 else ""
    nested = summary.subgraph_nodes[: max(0, MAX_TABLE_ROWS - len(rows))]
    if nested:
        nested_body = "".join(
            "<tr>"
            f"<td>{html.escape(row.graph)}</td><td>{row.index}</td><td><b>{html.escape(row.op)}</b></td>"
            f"<td>{_edges_html(row.inputs)}</td><td>{_edges_html(row.outputs)}</td>"
            "</tr>"
            for row in nested
        )
        skipped = len(summary.subgraph_nodes) - len(nested)
        more_html += (
            f"<p>Inside subgraphs ({len(summary.subgraph_nodes)} nodes):</p>"
            '<table class="workbench-nodes"><thead><tr><th>subgraph</th><th>#</th><th>op</th><th>inputs</th>'
            f"<th>outputs</th></tr></thead><tbody>{nested_body}</tbody></table>"
            + (f"<p>… and {skipped} more subgraph nodes.</p>" if skipped > 0 else "")
        )
    ops = ", ".join(f"{html.escape(op)} ×{count}" for op, count in summary.op_counts)
    return (
        f"<details{' open' if open_ else ''}><summary>Node table: {len(summary.nodes)} nodes ({ops}), "
        f"{summary.parameter_count:,} parameters</summary>"
        f"<p>inputs: {_edges_html(summary.inputs)}<br>outputs: {_edges_html(summary.outputs)}</p>"
        '<table class="workbench-nodes"><thead><tr><th>#</th><th>op</th><th>name</th><th>inputs</th>'
        f"<th>outputs</th></tr></thead><tbody>{body}</tbody></table>{more_html}</details>"
    )


def _serialize(model: onnx.ModelProto) -> bytes:
    try:
        return model.SerializeToString()
    except ValueError as error:  # protobuf refuses messages over 2 GB
        raise OnnxModelError(
            "The model is too large to serialize for the viewer (over 2 GB); save it with external data "
            "and open it in the Netron app instead."
        ) from error


def _register(data: bytes, name: str, transport: Literal["auto", "jupyter-server", "kernel-server"]) -> tuple[str, Transport]:
    base_url = os.environ.get(ENV_BASE_URL)
    store_dir = os.environ.get(ENV_STORE_DIR)
    use_server = transport == "jupyter-server" or (transport == "auto" and base_url and store_dir)
    if use_server:
        if not (base_url and store_dir):
            raise WorkbenchError(
                "The workbench Jupyter server extension is not active for this kernel; enable it with "
                "`jupyter server extension enable workbench` and restart Jupyter, or use transport='auto'."
            )
        token = new_token()
        ModelStore(Path(store_dir)).put(token, data)
        root = base_url.rstrip("/") + "/workbench/viewer/"
        return viewer_routes.page_url(root, token, name), "jupyter-server"
    from workbench.jupyter.kernel_server import kernel_server

    server = kernel_server()
    token = server.register(data)
    return viewer_routes.page_url(server.root, token, name), "kernel-server"


def view(
    model: ModelSource,
    *,
    height: int = 500,
    name: str | None = None,
    transport: Literal["auto", "jupyter-server", "kernel-server"] = "auto",
) -> ViewerHandle:
    """Show an ONNX model (ModelProto, .onnx path or bytes) inline with Netron, shapes on every edge.

    Returns a display object: the last expression of a cell displays it; ``.as_frame()`` gives the
    node table as data. ``transport`` forces the Jupyter server extension or the kernel-side server.
    """
    if isinstance(height, bool) or not isinstance(height, int) or height < 100:
        raise ValueError(f"height={height!r}: give the viewer height in pixels, at least 100.")
    if transport not in ("auto", "jupyter-server", "kernel-server"):
        raise ValueError(f"transport={transport!r}: use 'auto', 'jupyter-server' or 'kernel-server'.")
    proto = with_shapes(load_model(model).proto)
    if name is None:
        name = Path(model).stem if isinstance(model, (str, os.PathLike)) else (proto.graph.name or "model")
    url, used = _register(_serialize(proto), name, transport)
    return ViewerHandle(model=proto, url=url, transport=used, height=height)
