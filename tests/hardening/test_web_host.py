"""The browser harness's server answers only requests addressed to it (DNS-rebinding guard), as the viewer's does."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from workbench.web.server import HarnessServer


def _get(server: HarnessServer, host: str | None, method: str = "GET") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.putrequest(method, "/model.onnx", skip_host=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_foreign_host_headers_are_refused(tmp_path: Path, method: str):
    (tmp_path / "model.onnx").write_bytes(b"weights of the user")
    with HarnessServer(tmp_path) as server:
        for foreign in ("evil.example", f"evil.example:{server.port}", "127.0.0.1", f"127.0.0.1:{server.port + 1}", None):
            status, body = _get(server, foreign, method)
            assert status == 403, foreign
            assert b"weights of the user" not in body
        for own in (f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
            status, body = _get(server, own, method)
            assert status == 200, own
            assert body == (b"weights of the user" if method == "GET" else b"")
