"""``wb.view(model)``: show an ONNX model inline with Netron, offline, with a shape on every edge.

The result is a display object. Its one display bundle holds
- ``application/vnd.workbench.onnx+json`` (when Netron is served to this front end): the viewer's
  address and size, rendered as a first-class output by the workbench's JupyterLab / Notebook 7
  extension (``extensions/jupyterlab``);
- ``text/html``: the same viewer for every other front end, plus a static node table (op, inputs,
  outputs, shapes) that stays readable when the viewer is dead (kernel restarted, nbviewer, GitHub);
- ``text/plain``: a stable summary without addresses or timings (nbval can compare it).

Transports, picked in this order by ``transport="auto"`` (the output says which one it used):
1. ``jupyter-server``: the workbench Jupyter server extension is active for this kernel (it
   inherited the extension's environment variables); the model goes to its private store and the
   viewer is same-origin under the Jupyter base URL: JupyterLab, Notebook 7, JupyterHub, Binder.
2. ``colab``: in Google Colab (``google.colab`` importable); a loopback server in the kernel, shown
   through Colab's kernel port proxy (``google.colab.kernel.proxyPort``).
3. ``inline``: everywhere else (VS Code, a Jupyter without the server extension, plain IPython): a
   self-contained SVG drawing of the graph made in Python (:mod:`workbench.jupyter.graph_drawing`),
   nothing to reach; plus a link to full Netron on the kernel's loopback server, for when the
   browser runs on the kernel's machine.
``kernel-server`` (an IFrame on that loopback server) is available on request.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import onnx

from workbench.errors import OnnxModelError, WorkbenchError
from workbench.jax_to_onnx.conversion import Conversion
from workbench.jupyter import viewer_routes
from workbench.jupyter.graph_drawing import MAX_DRAWN_NODES, draw_svg
from workbench.jupyter.model_store import (
    ENV_BASE_URL,
    ENV_STORE_DIR,
    ModelStore,
    new_token,
)
from workbench.onnx_io import (
    ModelSource,
    ModelSummary,
    load_model,
    summarize,
    with_shapes,
    without_weight_bytes,
)

if TYPE_CHECKING:
    import pandas

Transport = Literal["jupyter-server", "colab", "kernel-server", "inline"]
TransportChoice = Literal["auto", "jupyter-server", "colab", "kernel-server", "inline"]
TRANSPORTS: tuple[str, ...] = ("auto", "jupyter-server", "colab", "kernel-server", "inline")
MAX_TABLE_ROWS = 400  # the static table of a huge graph would bloat the notebook file
# above this many bytes of weights, the viewer gets the graph without the bytes of its large weights
# (Netron shows them as external tensors): drawing a graph never needs them
VIEWER_WEIGHT_BYTES = 64 * 1024 * 1024
MIME_TYPE = "application/vnd.workbench.onnx+json"  # rendered by extensions/jupyterlab (src/mime.ts)
TRANSPORT_NOTES: dict[str, str] = {
    "jupyter-server": "served by the workbench Jupyter server extension",
    "colab": "served from the kernel through Colab's port proxy",
    "kernel-server": "served by the kernel on 127.0.0.1 (only for a browser on the kernel's machine)",
    "inline": "self-contained drawing: no workbench server extension in this front end",
}


@dataclass
class ViewerHandle:
    """A model registered with a viewer transport; displays as the viewer plus its static fallback."""

    model: onnx.ModelProto
    url: str | None  # the Netron page (for ``inline``: the optional loopback link); None when there is none
    transport: Transport
    height: int = 500
    name: str = "model"
    summary: ModelSummary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summarize(self.model)

    @property
    def transport_note(self) -> str:
        """How the viewer reaches the browser, in words (shown under the viewer)."""
        return TRANSPORT_NOTES[self.transport]

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

    def payload(self, title: str | None = None) -> dict[str, Any] | None:
        """The data of the ``application/vnd.workbench.onnx+json`` output, or None without an IFrame viewer.

        ``title`` (plain text) heads the output; by default ``Netron · <name>``.
        """
        if self.url is None or self.transport not in ("jupyter-server", "kernel-server"):
            return None
        return {
            "version": 1,
            "url": self.url,
            "transport": self.transport,
            "transport_note": self.transport_note,
            "name": self.name,
            "title": f"Netron · {self.name}" if title is None else title,
            "height": self.height,
        }

    def _note_html(self, extra: str = "") -> str:
        return (
            f'<div class="workbench-transport" data-transport="{self.transport}" '
            f'style="font-size:85%;color:#666;margin:2px 0 6px 0">viewer: {html.escape(self.transport_note)}{extra}</div>'
        )

    def iframe_html(self) -> str:
        """The viewer for a front end without the workbench extension (text/html)."""
        frame_style = f"width:100%;height:{int(self.height)}px;border:1px solid #ccc;border-radius:4px"
        if self.transport == "inline":
            drawing = draw_svg(self.model)
            link = ""
            if self.url is not None:
                link = (
                    f' · <a href="{html.escape(self.url, quote=True)}" target="_blank" rel="noopener">full Netron</a>'
                    " (when the browser runs on the kernel's machine)"
                )
            if drawing is None:
                body = f"<p>The graph has more than {MAX_DRAWN_NODES} nodes: see the node table below.</p>"
            else:
                body = f'<div style="max-height:{int(self.height)}px;overflow:auto;border:1px solid #ccc;border-radius:4px">{drawing}</div>'
            return body + self._note_html(link)
        if self.transport == "colab":
            frame_id = f"workbench-viewer-{new_token()}"
            path = json.dumps(urllib.parse.urlsplit(self.url or "")._replace(scheme="", netloc="").geturl())
            port = int(urllib.parse.urlsplit(self.url or "").port or 0)
            return (
                f'<iframe id="{frame_id}" title="ONNX graph viewer" style="{frame_style}"></iframe>'
                # Colab shows outputs in their own sandboxed frame; only its proxy reaches the kernel's port.
                f"<script>(async () => {{ const root = await google.colab.kernel.proxyPort({port}, {{cache: false}}); "
                f"document.getElementById({json.dumps(frame_id)}).src = root.replace(/\\/$/, '') + {path}; }})();</script>"
                + self._note_html()
            )
        src = html.escape(self.url or "", quote=True)
        return (
            f'<iframe src="{src}" title="ONNX graph viewer" loading="lazy" style="{frame_style}"></iframe>'
            + self._note_html(
                f' · <a href="{src}" target="_blank" rel="noopener">open the viewer in a new tab</a>'
            )
        )

    def fallback_html(self) -> str:
        return static_table_html(self.summary)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "text/html": f'<div class="workbench-viewer">{self.iframe_html()}{self.fallback_html()}</div>',
            "text/plain": self.summary.text(),
        }
        payload = self.payload()
        if payload is not None:
            bundle[MIME_TYPE] = payload
        return bundle


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


def in_colab() -> bool:
    """True in a Google Colab kernel (``google.colab`` is loaded or importable)."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ModuleNotFoundError, ValueError):  # no 'google' package at all
        return False


def choose_transport(requested: TransportChoice = "auto") -> Transport:
    """The transport ``requested``, or for ``auto`` the first that works here (see the module docstring)."""
    if requested not in TRANSPORTS:
        raise ValueError(f"transport={requested!r}: use one of {', '.join(map(repr, TRANSPORTS))}.")
    server_active = bool(os.environ.get(ENV_BASE_URL) and os.environ.get(ENV_STORE_DIR))
    if requested == "jupyter-server" and not server_active:
        raise WorkbenchError(
            "The workbench Jupyter server extension is not active for this kernel; enable it with "
            "`jupyter server extension enable workbench` and restart Jupyter, or use transport='auto'."
        )
    if requested == "colab" and not in_colab():
        raise WorkbenchError("transport='colab' needs a Google Colab kernel (google.colab is not importable here).")
    if requested != "auto":
        return requested
    if server_active:
        return "jupyter-server"
    return "colab" if in_colab() else "inline"


def _register(data: bytes, name: str, transport: Transport) -> str:
    """Hand the model to the transport; the URL of its Netron page."""
    if transport == "jupyter-server":
        token = new_token()
        ModelStore(Path(os.environ[ENV_STORE_DIR])).put(token, data)
        root = os.environ[ENV_BASE_URL].rstrip("/") + "/workbench/viewer/"
        return viewer_routes.page_url(root, token, name)
    from workbench.jupyter.kernel_server import kernel_server

    # Behind Colab's proxy the Host header is the proxy's; the VM's port is reachable only through it.
    server = kernel_server(check_host=transport != "colab")
    token = server.register(data)
    return viewer_routes.page_url(server.root, token, name)


def _graph_to_show(model: ModelSource | Conversion) -> onnx.ModelProto:
    """The model to draw: a file without loading its external weights, a large model without its weights' bytes."""
    if isinstance(model, Conversion):
        return without_weight_bytes(model.ir_model)
    if isinstance(model, (str, os.PathLike)):
        return load_model(model, external_data=False).proto
    proto = load_model(model).proto
    weight_bytes = sum(len(tensor.raw_data) for tensor in proto.graph.initializer)
    return without_weight_bytes(proto) if weight_bytes > VIEWER_WEIGHT_BYTES else proto


def view(
    model: ModelSource | Conversion,
    *,
    height: int = 500,
    name: str | None = None,
    transport: TransportChoice = "auto",
) -> ViewerHandle:
    """Show an ONNX model (ModelProto, .onnx path, bytes or a ``wb.convert`` result) inline with
    Netron, shapes on every edge. Weights are not needed to draw a graph: a file's external weights
    are not read, and a model with more than 64 MB of weights is shown without their bytes, so
    graphs of any size (above protobuf's 2 GB too) can be viewed.

    Returns a display object: the last expression of a cell displays it; ``.as_frame()`` gives the
    node table as data. ``transport`` forces one way of reaching the browser: ``jupyter-server``
    (the server extension), ``colab`` (Colab's port proxy), ``kernel-server`` (loopback IFrame) or
    ``inline`` (a self-contained drawing); ``auto`` picks the first that works and
    ``handle.transport`` / the output say which.
    """
    if isinstance(height, bool) or not isinstance(height, int) or height < 100:
        raise ValueError(f"height={height!r}: give the viewer height in pixels, at least 100.")
    used = choose_transport(transport)
    proto = with_shapes(_graph_to_show(model))
    if name is None:
        name = Path(model).stem if isinstance(model, (str, os.PathLike)) else (proto.graph.name or "model")
    url = _register(_serialize(proto), name, used)
    return ViewerHandle(model=proto, url=url, transport=used, height=height, name=name)
