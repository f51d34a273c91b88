"""The Jupyter server extension, in a real `jupyter server` on 127.0.0.1 with a token (subprocess)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest

import workbench as wb
from workbench.jupyter.model_store import ENV_BASE_URL, ENV_STORE_DIR

REPO = Path(__file__).resolve().parents[2]
BASE_URL = "/hub/user/ada/"  # a JupyterHub-like prefix, to check that routes follow base_url


@dataclass(frozen=True)
class RunningServer:
    origin: str  # http://127.0.0.1:PORT
    token: str
    runtime_dir: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _is_up(url: str, token: str) -> bool:
    try:
        return _get(url, token)[0] == 200
    except urllib.error.URLError:  # connection refused while the server starts
        return False


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("jupyter")
    runtime_dir = root / "runtime"
    token = secrets.token_hex(16)
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "JUPYTER_RUNTIME_DIR": str(runtime_dir),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_DATA_DIR": str(root / "data"),
    }
    # enable the extension with the very config file pip installs into etc/jupyter
    config_d = root / "config" / "jupyter_server_config.d"
    config_d.mkdir(parents=True)
    shutil.copy(REPO / "extensions" / "jupyter_server_config.d" / "workbench.json", config_d)
    # and keep the server lean: the other installed extensions only slow its start
    others = {"jupyterlab": False, "jupyter_lsp": False, "jupyter_server_terminals": False, "notebook_shim": False}
    (root / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": others}})
    )
    env.pop(ENV_BASE_URL, None)
    env.pop(ENV_STORE_DIR, None)
    command = [
        sys.executable, "-m", "jupyter_server",
        "--ip=127.0.0.1", f"--port={port}", "--port-retries=0", "--no-browser", "--allow-root",
        f"--IdentityProvider.token={token}", f"--ServerApp.base_url={BASE_URL}",
        f"--ServerApp.root_dir={root}",
    ]  # fmt: skip
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _is_up(f"{origin}{BASE_URL}api/status", token):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter server did not start:\n{(root / 'server.log').read_text()}")
            time.sleep(0.3)
        yield RunningServer(origin, token, runtime_dir)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def handle(jupyter_server: RunningServer, monkeypatch: pytest.MonkeyPatch, mlp_model: onnx.ModelProto) -> wb.view:
    """wb.view in a 'kernel' that inherited the extension's environment (same store, same base URL)."""
    monkeypatch.setenv(ENV_STORE_DIR, str(jupyter_server.runtime_dir / "workbench-viewer"))
    monkeypatch.setenv(ENV_BASE_URL, BASE_URL)
    return wb.view(mlp_model)


def test_extension_serves_patched_page_and_model_same_origin(jupyter_server: RunningServer, handle) -> None:
    assert handle.transport == "jupyter-server"
    assert handle.url.startswith(f"{BASE_URL}workbench/viewer/index.html?model=")  # relative: same origin
    status, page = _get(jupyter_server.origin + handle.url, jupyter_server.token)
    assert status == 200, page
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(handle.url).query)["model"][0]
    assert f'<meta name="file" content="models/{token}.onnx">'.encode() in page
    assert b'<meta name="version" content="0.0.0">' in page
    root = jupyter_server.origin + BASE_URL + "workbench/viewer/"
    status, data = _get(f"{root}models/{token}.onnx", jupyter_server.token)
    assert status == 200
    assert onnx.load_model_from_string(data).graph.name == "mlp"
    status, js = _get(f"{root}browser.js", jupyter_server.token)
    assert status == 200 and b"await age();" not in js and b"await capabilities();" in js


def test_extension_store_directory_is_private(jupyter_server: RunningServer, handle) -> None:
    store = jupyter_server.runtime_dir / "workbench-viewer"
    assert store.stat().st_mode & 0o777 == 0o700
    assert [p.suffix for p in store.iterdir()] and all(p.suffix == ".onnx" for p in store.iterdir())


@pytest.mark.parametrize("credentials", [None, "wrong-token"])
def test_extension_refuses_unauthenticated_requests(jupyter_server: RunningServer, handle, credentials) -> None:
    root = jupyter_server.origin + BASE_URL + "workbench/viewer/"
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(handle.url).query)["model"][0]
    for url in (jupyter_server.origin + handle.url, f"{root}models/{token}.onnx", f"{root}view.js"):
        status, body = _get(url, credentials)
        assert status == 403, url
        assert b"onnx" not in body.lower() or b"<html" in body.lower()


@pytest.mark.parametrize(
    "path",
    ["models/AAAAAAAAAAAAAAAAAAAAAAAA.onnx", "..%2F..%2Fserver.log", "index.html?model=..%2Fserver", "server.py", "index.html"],
)
def test_extension_refuses_unknown_models_and_traversal(jupyter_server: RunningServer, path: str) -> None:
    status, body = _get(jupyter_server.origin + BASE_URL + "workbench/viewer/" + path, jupyter_server.token)
    assert status == 404
    assert b"ServerApp" not in body


# --- .onnx files of the Jupyter contents (the JupyterLab document viewer) -----------------------


def _get_full(url: str, token: str | None) -> tuple[int, bytes, dict[str, str], str]:
    """Like _get, plus the response headers and the final URL (redirects followed)."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers), response.url
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers), url


@pytest.fixture(scope="module")
def contents_files(jupyter_server: RunningServer) -> Path:
    from tests.jupyter.conftest import make_mlp

    root = jupyter_server.runtime_dir.parent
    folder = root / "my models"
    folder.mkdir(exist_ok=True)
    onnx.save(make_mlp(), folder / "net work.onnx")  # no value_info: shapes must be inferred
    (folder / "junk.onnx").write_bytes(b"\xff\x00 not a model")
    return folder


def test_file_page_opens_a_contents_file(jupyter_server: RunningServer, contents_files: Path) -> None:
    root = jupyter_server.origin + BASE_URL + "workbench/viewer/"
    query = urllib.parse.urlencode({"path": "my models/net work.onnx"})
    status, page, headers, _ = _get_full(f"{root}file.html?{query}", jupyter_server.token)
    assert status == 200 and headers["X-Workbench-Viewer"] == "1"
    assert b'<meta name="file" content="files/my%20models/net%20work.onnx">' in page
    assert b'<meta name="identifier" content="net_work.onnx">' in page


def test_contents_model_is_served_with_a_shape_on_every_edge(jupyter_server: RunningServer, contents_files: Path) -> None:
    from workbench.onnx_io.shapes import edges_without_shape

    on_disk = onnx.load(contents_files / "net work.onnx")
    assert edges_without_shape(on_disk.graph) == ["h1", "h2"]
    url = jupyter_server.origin + BASE_URL + "workbench/viewer/files/my%20models/net%20work.onnx"
    status, data, headers, _ = _get_full(url, jupyter_server.token)
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    served = onnx.load_model_from_string(data)
    assert edges_without_shape(served.graph) == []
    assert [n.op_type for n in served.graph.node] == [n.op_type for n in on_disk.graph.node]


def test_contents_route_errors_and_external_data(jupyter_server: RunningServer, contents_files: Path) -> None:
    root = jupyter_server.origin + BASE_URL + "workbench/viewer/"
    (contents_files / "net work.onnx.data").write_bytes(b"weights")
    status, body, _, final_url = _get_full(f"{root}files/my%20models/net%20work.onnx.data", jupyter_server.token)
    assert status == 200 and body == b"weights"  # redirected to Jupyter's own files/ handler
    assert final_url == jupyter_server.origin + BASE_URL + "files/my%20models/net%20work.onnx.data"
    status, body, headers, _ = _get_full(f"{root}files/my%20models/missing.onnx", jupyter_server.token)
    assert status == 404 and headers["X-Workbench-Viewer"] == "1"
    status, body, _, _ = _get_full(f"{root}files/my%20models/junk.onnx", jupyter_server.token)
    assert status == 422 and b"not a serialized ONNX model" in body
    for path in ("files/..%2Fserver.log", "files/my%20models/../../etc/passwd.onnx", "file.html?path=../x.onnx",
                 "file.html?path=server.log", "file.html?path=%2Fetc%2Fx.onnx"):  # fmt: skip
        status, body, _, _ = _get_full(root + path, jupyter_server.token)
        assert status == 404, path
        assert b"ServerApp" not in body
    status, _, _, _ = _get_full(f"{root}files/my%20models/net%20work.onnx", None)
    assert status == 403
