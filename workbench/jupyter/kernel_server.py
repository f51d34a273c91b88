"""The fallback transport: a loopback-only HTTP server inside the kernel.

Used when the Jupyter server extension is not active (plain IPython, VS Code,
a server without ``workbench`` enabled). It binds 127.0.0.1 on a free port, runs
in a daemon thread, and serves only the models this kernel registered (kept in
memory, keyed by random tokens) plus Netron's patched files. The IFrame then
points at ``http://127.0.0.1:PORT/...``, which works only when the browser runs
on the kernel's machine; that is why the server extension is preferred. In Colab the same
server is reached through Colab's authenticated kernel port proxy, which sends its own ``Host``
header, so there the Host check (a guard against DNS rebinding by a page in a browser on the
kernel's machine, which Colab's VM has no one using) is off.
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from typing import ClassVar

from workbench.errors import WorkbenchError
from workbench.jupyter import viewer_routes
from workbench.jupyter.model_store import new_token

_ROOT = "/viewer/"


class _Handler(http.server.BaseHTTPRequestHandler):
    registry: ClassVar[KernelViewerServer]
    server_version = "workbench-viewer"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        if self.registry.check_host and self.headers.get("Host") not in self.registry.allowed_hosts:
            # a page on another origin that rebinds its DNS name to 127.0.0.1 sends its own Host
            response = viewer_routes.Response(403, b"Forbidden host.", "text/plain; charset=utf-8")
        elif not path.startswith(_ROOT):
            response = viewer_routes.Response(404, b"No such file.", "text/plain; charset=utf-8")
        else:
            query = dict(urllib.parse.parse_qsl(parsed.query))
            response = viewer_routes.respond(path[len(_ROOT) :], query, self.registry.lookup)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header(viewer_routes.MARKER_HEADER, "1")
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "private, max-age=3600" if response.cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Stay quiet: request logs would land in the notebook's stderr."""


class KernelViewerServer:
    """A started loopback server and the models registered with it."""

    def __init__(self, *, check_host: bool = True) -> None:
        self.check_host = check_host
        self._models: dict[str, bytes] = {}
        self._lock = threading.Lock()
        handler = type("_BoundHandler", (_Handler,), {"registry": self})
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="workbench-viewer", daemon=True)
        self._thread.start()

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}{_ROOT}"

    def register(self, data: bytes) -> str:
        token = new_token()
        with self._lock:
            self._models[token] = data
        return token

    def lookup(self, token: str) -> bytes | None:
        with self._lock:
            return self._models.get(token)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


_server: KernelViewerServer | None = None
_server_lock = threading.Lock()


def kernel_server(*, check_host: bool = True) -> KernelViewerServer:
    """The kernel's viewer server, started on first use (``check_host=False``: behind Colab's proxy)."""
    global _server
    with _server_lock:
        if _server is None:
            _server = KernelViewerServer(check_host=check_host)
        elif _server.check_host != check_host:
            raise WorkbenchError(
                f"The kernel's viewer server already runs with check_host={_server.check_host}; "
                "restart the kernel to serve the viewer another way."
            )
        return _server
