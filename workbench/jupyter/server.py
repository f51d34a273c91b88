"""Jupyter server extension: serve the patched Netron viewer and the models same-origin.

Enabled by ``etc/jupyter/jupyter_server_config.d/workbench.json`` (installed with
the package). Routes live under ``<base_url>workbench/viewer/`` (layout in
:mod:`workbench.jupyter.viewer_routes`) and require Jupyter's authentication, so
the viewer works wherever the notebook page works (JupyterHub, Binder, remote
servers), not only when the browser shares the kernel's machine.

Kernels learn where to put models from two environment variables the extension
sets in the server process at load time; kernels started by this server inherit
them (see :mod:`workbench.jupyter.model_store`).
"""

from __future__ import annotations

import os
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join

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
    def get(self, path: str) -> None:
        query = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        response = viewer_routes.respond(path, query, self.store.get)
        self.set_status(response.status)
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
