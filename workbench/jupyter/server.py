"""Jupyter server extension: serve the patched Netron viewer and the models same-origin.

Enabled by ``etc/jupyter/jupyter_server_config.d/workbench.json`` (installed with
the package). Routes live under ``<base_url>workbench/viewer/`` (layout in
:mod:`workbench.jupyter.viewer_routes`; the ``files/`` route, which reads the Jupyter
contents for the JupyterLab ``.onnx`` viewer, is here) and require Jupyter's authentication, so
the viewer works wherever the notebook page works (JupyterHub, Binder, remote
servers), not only when the browser shares the kernel's machine.

Kernels learn where to put models from two environment variables the extension
sets in the server process at load time; kernels started by this server inherit
them (see :mod:`workbench.jupyter.model_store`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import urllib.parse
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import ensure_async, url_path_join

from workbench.errors import OnnxModelError

from workbench.jupyter import viewer_routes
from workbench.jupyter.model_store import (
    ENV_BASE_URL,
    ENV_STORE_DIR,
    ModelStore,
    default_store_dir,
)

VIEWER_PATH = "workbench/viewer"


class ViewerHandler(JupyterHandler):
    """GET of the viewer page, a registered model or a Netron file; authenticated, read-only."""

    auth_resource = "contents"  # viewing a model is reading a file the user's kernel wrote

    def initialize(self, store: ModelStore) -> None:
        self.store = store

    def get_login_url(self) -> str:
        """Refuse unauthenticated requests with 403 instead of redirecting an IFrame to the login page."""
        if not self.current_user:
            raise tornado.web.HTTPError(403)
        return super().get_login_url()

    @tornado.web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        if path.startswith(viewer_routes.CONTENTS_PREFIX):
            await self._contents_file(path[len(viewer_routes.CONTENTS_PREFIX) :])
            return
        query = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        self._send(viewer_routes.respond(path, query, self.store.get, serves_contents=True))

    async def _contents_file(self, file_path: str) -> None:
        """An .onnx file of the Jupyter contents with a shape on every edge; other files via Jupyter's handler."""
        if not viewer_routes.is_contents_path(file_path):
            self._send(viewer_routes.Response(404, b"No such file.", "text/plain; charset=utf-8"))
            return
        if not file_path.endswith(".onnx"):  # a model's external data: Jupyter's own handler serves it
            self.redirect(url_path_join(self.base_url, "files", urllib.parse.quote(file_path)))
            return
        try:
            model = await ensure_async(self.contents_manager.get(file_path, content=True, type="file", format="base64"))
        except tornado.web.HTTPError as error:  # 404 (missing, hidden, outside the root), 400...
            message = f"Cannot read {file_path}: {error.log_message or error.reason}"
            self._send(viewer_routes.Response(error.status_code, message.encode("utf-8"), "text/plain; charset=utf-8"))
            return
        data = base64.b64decode(model["content"])
        loop = asyncio.get_running_loop()
        try:  # shape inference of a big model takes a while: off the server's event loop
            shaped = await loop.run_in_executor(None, viewer_routes.shaped_model_bytes, data)
        except OnnxModelError as error:
            self._send(viewer_routes.Response(422, str(error).encode("utf-8"), "text/plain; charset=utf-8"))
            return
        self._send(viewer_routes.Response(200, shaped, "application/octet-stream"))

    def _send(self, response: viewer_routes.Response) -> None:
        self.set_status(response.status)
        self.set_header(viewer_routes.MARKER_HEADER, "1")
        self.set_header("Content-Type", response.content_type)
        self.set_header("Cache-Control", "private, max-age=3600" if response.cache else "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(response.body)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the viewer routes and tell future kernels where the model store is."""
    store = ModelStore(default_store_dir())
    store.ensure()
    web_app = serverapp.web_app
    base_url = web_app.settings["base_url"]
    route = url_path_join(base_url, VIEWER_PATH, "(.*)")
    web_app.add_handlers(".*$", [(route, ViewerHandler, {"store": store})])
    os.environ[ENV_STORE_DIR] = str(store.directory)
    os.environ[ENV_BASE_URL] = base_url
    serverapp.log.info("workbench: ONNX viewer at %s (model store %s)", url_path_join(base_url, VIEWER_PATH), store.directory)
