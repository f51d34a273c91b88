"""The URL layout of the viewer, shared by the Jupyter server extension and the kernel-side server.

Below the viewer root (``<base_url>workbench/viewer/`` or ``http://127.0.0.1:PORT/viewer/``):

- ``index.html?model=TOKEN&name=NAME.onnx``  Netron's page, patched to open that model;
- ``models/TOKEN.onnx``                      the model bytes, only for a registered token;
- ``<file>``                                 Netron's static files (``view.js``, ``grapher.css``…).

Everything else is 404. Only the transport differs (tornado with Jupyter's
authentication vs. a loopback-only http.server), so the decisions live here.
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


def respond(path: str, query: dict[str, str], lookup_model: Callable[[str], bytes | None]) -> Response:
    """Answer a GET for ``path`` (relative to the viewer root, no leading slash).

    ``lookup_model(token)`` returns the registered model bytes or None.
    """
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
