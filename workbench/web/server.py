"""Serve a harness folder on 127.0.0.1 from a background thread (static files only).

The standard library server is enough for a local smoke test; we add what it lacks: the
``application/wasm`` and ``text/javascript`` (.mjs) types, no caching, the cross-origin
isolation headers that let onnxruntime-web use WebAssembly threads, and a Host check that
answers only requests addressed to this server (a DNS-rebinding guard, like the viewer's server).
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

_EXTRA_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
    ".data": "application/octet-stream",
}


class _HarnessRequestHandler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **_EXTRA_TYPES}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self._host_allowed():
            super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        if self._host_allowed():
            super().do_HEAD()

    def _host_allowed(self) -> bool:
        """Refuse a request whose Host header names another server (a DNS-rebinding page), as the viewer's server does.

        A page on another origin whose DNS name is rebound to 127.0.0.1 reaches this port with its
        own name in the Host header; only the server's own address is answered.
        """
        host, port = self.server.server_address[:2]
        allowed = {f"{host}:{port}", f"localhost:{port}"} if host == "127.0.0.1" else {f"{host}:{port}"}
        if self.headers.get("Host") in allowed:
            return True
        self.send_error(403, "Forbidden host")
        return False

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Silent: the smoke test records every request on the browser side instead."""


class HarnessServer:
    """``with HarnessServer(folder) as server: server.url`` - an ephemeral-port static server."""

    def __init__(self, directory: str | Path, host: str = "127.0.0.1") -> None:
        self.directory = Path(directory).resolve()
        handler = functools.partial(_HarnessRequestHandler, directory=str(self.directory))
        self._httpd = ThreadingHTTPServer((host, 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="workbench-web-server", daemon=True
        )

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def __enter__(self) -> HarnessServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
