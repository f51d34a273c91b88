"""wb.view: shapes on every edge, the display bundle, and the kernel-side loopback server."""

from __future__ import annotations

import json
import re
import sys
import types
import urllib.error
import urllib.parse
import urllib.request

import onnx
import pytest

import workbench as wb
from workbench.errors import OnnxModelError, WorkbenchError
from workbench.jupyter.model_store import ENV_BASE_URL, ENV_STORE_DIR
from workbench.jupyter.viewer import MIME_TYPE
from workbench.onnx_io.shapes import edges_without_shape, with_shapes
from workbench.onnx_io.summary import summarize


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_with_shapes_infers_on_a_copy(mlp_model: onnx.ModelProto) -> None:
    assert edges_without_shape(mlp_model.graph) == ["h1", "h2"]
    shaped = with_shapes(mlp_model)
    assert edges_without_shape(shaped.graph) == []
    assert len(mlp_model.graph.value_info) == 0  # the caller's model is untouched
    rows = summarize(shaped).nodes
    assert [(r.op, [e.type for e in r.outputs]) for r in rows] == [
        ("Gemm", ["float32[B×20]"]),
        ("Gelu", ["float32[B×20]"]),
        ("Gemm", ["float32[B×10]"]),
    ]
    assert rows[0].inputs[1].is_parameter and rows[0].inputs[1].type == "float32[30×20]"


def test_view_without_server_extension_is_a_self_contained_drawing(mlp_model: onnx.ModelProto, no_server_extension: None) -> None:
    handle = wb.view(mlp_model)
    assert handle.transport == "inline"
    bundle = handle._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"}  # nothing a front end has to fetch
    page = bundle["text/html"]
    assert "<iframe" not in page and "<svg" in page
    for label in ("B×30", "B×20", "B×10", ">Gemm<", ">Gelu<", "B ⟨30×20⟩"):
        assert label in page
    assert 'data-transport="inline"' in page and "no workbench server extension" in page
    assert handle.url is not None and handle.url.replace("&", "&amp;") in page  # the full-Netron link (loopback)
    # the static fallback: every node with its output shape
    assert page.count("<tr>") == 1 + 3
    for shape in ("float32[B×30]", "float32[B×20]", "float32[B×10]"):
        assert shape in page
    text = bundle["text/plain"]
    assert text.splitlines()[0] == "ONNX graph 'mlp': 3 nodes (Gemm ×2, Gelu ×1), 830 parameters, opset 20"
    assert "in_0: float32[B×30]" in text and "out_1: float32[B×10]" in text
    assert not re.search(r"127\.0\.0\.1|http|:\d{4,5}|/", text)
    frame = handle.as_frame()
    assert list(frame["op"]) == ["Gemm", "Gelu", "Gemm"]


def test_kernel_server_view_is_an_iframe_and_a_mime_output(mlp_model: onnx.ModelProto, no_server_extension: None) -> None:
    handle = wb.view(mlp_model, transport="kernel-server", height=640, name="net")
    bundle = handle._repr_mimebundle_()
    assert set(bundle) == {MIME_TYPE, "text/html", "text/plain"}
    assert bundle[MIME_TYPE] == {
        "version": 1, "url": handle.url, "transport": "kernel-server", "transport_note": handle.transport_note,
        "name": "net", "title": "Netron · net", "height": 640,
    }  # fmt: skip
    assert f'<iframe src="{handle.url.replace("&", "&amp;")}"' in bundle["text/html"]
    assert "only for a browser on the kernel" in bundle["text/html"]


def test_jupyter_server_transport_uses_the_store_and_base_url(
    mlp_model: onnx.ModelProto, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_BASE_URL, "/user/ada/")
    monkeypatch.setenv(ENV_STORE_DIR, str(tmp_path / "store"))
    handle = wb.view(mlp_model)
    assert handle.transport == "jupyter-server"
    assert handle.url.startswith("/user/ada/workbench/viewer/index.html?model=")
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(handle.url).query)["model"][0]
    assert onnx.load_model_from_string((tmp_path / "store" / f"{token}.onnx").read_bytes()).graph.node
    payload = handle._repr_mimebundle_()[MIME_TYPE]
    assert payload["transport"] == "jupyter-server" and payload["url"] == handle.url


def test_colab_transport_goes_through_the_kernel_port_proxy(
    mlp_model: onnx.ModelProto, no_server_extension: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Colab is not available here: a stand-in ``google.colab`` module makes the kernel look like one.

    What is checked is ours: the choice, the page's proxyPort call with the server's port and the
    viewer path, and that the server answers requests whose Host is the proxy's.
    """
    from workbench.jupyter import kernel_server as kernel_server_module

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(kernel_server_module, "_server", None)  # a server of its own, closed below
    handle = wb.view(mlp_model)
    try:
        assert handle.transport == "colab"
        bundle = handle._repr_mimebundle_()
        assert MIME_TYPE not in bundle  # Colab renders HTML only
        page = bundle["text/html"]
        port = urllib.parse.urlsplit(handle.url).port
        path = handle.url.split(f":{port}", 1)[1]
        assert f"google.colab.kernel.proxyPort({port}, {{cache: false}})" in page
        assert json.dumps(path) in page and path.startswith("/viewer/index.html?model=")
        request = urllib.request.Request(handle.url, headers={"Host": "8000-m-s-abc.prod.colab.dev"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and b'<meta name="file"' in response.read()
    finally:
        kernel_server_module.kernel_server(check_host=False).close()


def test_transport_choice_errors(mlp_model: onnx.ModelProto, no_server_extension: None) -> None:
    with pytest.raises(WorkbenchError, match="server extension is not active"):
        wb.view(mlp_model, transport="jupyter-server")
    with pytest.raises(ValueError, match="transport='ftp'"):
        wb.view(mlp_model, transport="ftp")  # type: ignore[arg-type]


def test_kernel_server_serves_patched_page_and_registered_model(mlp_model: onnx.ModelProto, no_server_extension: None) -> None:
    handle = wb.view(mlp_model, name="my mlp", transport="kernel-server")
    assert handle.transport == "kernel-server"
    parsed = urllib.parse.urlsplit(handle.url)
    assert parsed.hostname == "127.0.0.1"
    status, page = _get(handle.url)
    assert status == 200
    token = urllib.parse.parse_qs(parsed.query)["model"][0]
    assert f'<meta name="file" content="models/{token}.onnx">'.encode() in page
    assert b'<meta name="identifier" content="my_mlp.onnx">' in page
    root = handle.url.split("index.html")[0]
    status, data = _get(f"{root}models/{token}.onnx")
    assert status == 200
    served = onnx.load_model_from_string(data)
    assert edges_without_shape(served.graph) == []  # the viewer gets the shape-inferred model
    status, js = _get(f"{root}browser.js")
    assert status == 200 and b"await consent();" not in js


def test_kernel_server_binds_loopback_only(no_server_extension: None, mlp_model: onnx.ModelProto) -> None:
    from workbench.jupyter.kernel_server import kernel_server

    wb.view(mlp_model)
    assert kernel_server().host == "127.0.0.1"


@pytest.mark.parametrize(
    "path",
    [
        "models/AAAAAAAAAAAAAAAAAAAAAAAA.onnx",  # well-formed but unregistered token
        "models/../../etc/passwd",
        "..%2f..%2f..%2fetc%2fpasswd",
        "%2e%2e/server.py",
        "../netron/server.py",
        "index.html?model=../../etc/passwd",
        "index.html",
        "server.py",
        "index.html?model=AAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_kernel_server_refuses_unregistered_and_traversal(path: str, mlp_model: onnx.ModelProto, no_server_extension: None) -> None:
    handle = wb.view(mlp_model)
    root = handle.url.split("/viewer/")[0]
    status, body = _get(f"{root}/viewer/{path}")
    assert status == 404
    assert b"root:" not in body and b"import" not in body
    status, _ = _get(f"{root}/etc/passwd")
    assert status == 404


def test_kernel_server_refuses_foreign_host_headers(mlp_model: onnx.ModelProto, no_server_extension: None) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    handle = wb.view(mlp_model)
    request = urllib.request.Request(handle.url, headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    port = urllib.parse.urlsplit(handle.url).port
    request = urllib.request.Request(handle.url, headers={"Host": f"localhost:{port}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_view_accepts_paths_and_bytes(tmp_path, mlp_model: onnx.ModelProto, no_server_extension: None) -> None:
    path = tmp_path / "net.onnx"
    onnx.save(mlp_model, path)
    assert "name=net" in wb.view(path).url
    assert wb.view(mlp_model.SerializeToString()).summary.parameter_count == 830


def test_view_bad_input_errors(tmp_path) -> None:
    with pytest.raises(OnnxModelError, match="does not exist"):
        wb.view(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00 not a model")
    with pytest.raises(OnnxModelError, match="junk.onnx is not an ONNX file"):
        wb.view(tmp_path / "junk.onnx")
    with pytest.raises(TypeError, match="onnx.ModelProto"):
        wb.view(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="height"):
        wb.view(b"", height=10)


def test_static_table_shows_subgraph_nodes_with_shapes(no_server_extension: None) -> None:
    import jax
    import jax.numpy as jnp

    def running_tanh(x):
        def body(carry, row):
            carry = jnp.tanh(carry + row)
            return carry, carry * 2

        return jax.lax.scan(body, jnp.zeros(x.shape[1:]), x)[1]

    model = wb.to_onnx(running_tanh, [("T", 4)])
    summary = summarize(with_shapes(model))
    assert [row.op for row in summary.nodes].count("Scan") == 1
    body_rows = [row for row in summary.subgraph_nodes if row.graph.endswith(".body")]
    assert {"Add", "Tanh", "Mul"} <= {row.op for row in body_rows}
    assert all(edge.type == "float32[4]" for row in body_rows for edge in row.outputs)
    page = wb.view(model)._repr_mimebundle_()["text/html"]
    assert "Inside subgraphs (" in page and "<b>Tanh</b>" in page and "float32[4]" in page
