"""The URL layout of the viewer, shared by the Jupyter server extension and the kernel-side server.

Below the viewer root (``<base_url>workbench/viewer/`` or ``http://127.0.0.1:PORT/viewer/``):

- ``index.html?model=TOKEN&name=NAME.onnx``  Netron's page, patched to open that model;
- ``models/TOKEN.onnx``                      the model bytes, only for a registered token;
- ``file.html?path=DIR/NAME.onnx``           (server extension only) Netron's page opening a file of
                                             the Jupyter contents (the JupyterLab document viewer);
- ``files/DIR/NAME.onnx``                    (server extension only) that file read through Jupyter's
                                             contents manager, shape-inferred so every edge has a
                                             shape; other files (a model's external data) are
                                             redirected to Jupyter's own ``files/`` handler;
- ``<file>``                                 Netron's static files (``view.js``, ``grapher.css``…).

Everything else is 404. Only the transport differs (tornado with Jupyter's
authentication vs. a loopback-only http.server), so the decisions live here.
Every answer carries the ``X-Workbench-Viewer`` header, so the JupyterLab extension can tell
"this viewer says no" from "no viewer routes on this server" (a plain Jupyter 404).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from workbench.jupyter import netron_assets
from workbench.jupyter.model_store import TOKEN_PATTERN, is_token

_MODEL_PATH = re.compile(rf"^models/({TOKEN_PATTERN})\.onnx$")
_DEFAULT_NAME = "model.onnx"
MARKER_HEADER = "X-Workbench-Viewer"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str
    cache: bool = False  # static Netron files may be cached; pages and models may not


def _not_found(message: str) -> Response:
    return Response(404, message.encode("utf-8"), "text/plain; charset=utf-8")


def page_url(root: str, token: str, name: str) -> str:
    """URL of the viewer page for a registered model, below ``root`` (which ends with '/')."""
    query = urllib.parse.urlencode({"model": token, "name": name})
    return f"{root}index.html?{query}"


def _display_name(name: str | None) -> str:
    """A safe file name for Netron's title; it must end in .onnx so Netron picks the ONNX reader."""
    if not name:
        return _DEFAULT_NAME
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")[:100] or "model"
    return stem if stem.endswith(".onnx") else f"{stem}.onnx"


CONTENTS_PREFIX = "files/"


def is_contents_path(path: str) -> bool:
    """A plain relative path of the Jupyter contents: no ``..``, ``.``, empty segments, backslashes or NULs.

    Jupyter's contents manager is what decides which files may be read; refusing these forms
    keeps every URL the viewer builds inside the route it was meant for.
    """
    segments = path.split("/")
    return bool(path) and "\\" not in path and "\x00" not in path and all(s not in ("", ".", "..") for s in segments)


def contents_file_url(path: str) -> str:
    """The URL of a contents file below the viewer root, each segment quoted (``files/a%20b/m.onnx``)."""
    return CONTENTS_PREFIX + "/".join(urllib.parse.quote(segment, safe="") for segment in path.split("/"))


def shaped_model_bytes(data: bytes) -> bytes:
    """The serialized model with a shape on every edge (shape inference on a copy when some are missing).

    Raises OnnxModelError when ``data`` is not an ONNX model or its shapes cannot be inferred.
    """
    from workbench.onnx_io import load_model, with_shapes

    return with_shapes(load_model(data, external_data=False).proto).SerializeToString()


def respond(
    path: str,
    query: dict[str, str],
    lookup_model: Callable[[str], bytes | None],
    *,
    serves_contents: bool = False,
) -> Response:
    """Answer a GET for ``path`` (relative to the viewer root, no leading slash).

    ``lookup_model(token)`` returns the registered model bytes or None. ``serves_contents``: the
    caller (the server extension) also answers ``files/...`` from the Jupyter contents, so the
    ``file.html`` page exists; the kernel-side server has no contents and no such page.
    """
    if path == "file.html" and serves_contents:
        file_path = query.get("path", "")
        if not is_contents_path(file_path) or not file_path.endswith(".onnx"):
            return _not_found(f"{file_path!r} is not the path of an .onnx file relative to the Jupyter root.")
        asset = netron_assets.viewer_page(
            model_url=contents_file_url(file_path), identifier=_display_name(file_path.rsplit("/", 1)[-1])
        )
        return Response(200, asset.body, asset.content_type)
    if path in ("", "index.html"):
        token = query.get("model", "")
        if not is_token(token) or lookup_model(token) is None:
            return _not_found(
                "This model is not registered with the viewer (it may be from a previous kernel session). "
                "Run the cell again to show it."
            )
        asset = netron_assets.viewer_page(
            model_url=f"models/{token}.onnx", identifier=_display_name(query.get("name"))
        )
        return Response(200, asset.body, asset.content_type)
    model_match = _MODEL_PATH.match(path)
    if model_match:
        data = lookup_model(model_match.group(1))
        if data is None:
            return _not_found("No such model.")
        return Response(200, data, "application/octet-stream")
    asset = netron_assets.read_asset(path)
    if asset is None:
        return _not_found("No such file.")
    return Response(200, asset.body, asset.content_type, cache=True)
