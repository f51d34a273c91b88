"""Serve a harness folder on 127.0.0.1 from a background thread (static files only).

The standard library server is enough for a local smoke test; we add what it lacks: the
``application/wasm`` and ``text/javascript`` (.mjs) types, no caching, and the cross-origin
isolation headers that let onnxruntime-web use WebAssembly threads.
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
