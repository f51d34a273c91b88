"""wb.view: shapes on every edge, the display bundle, and the kernel-side loopback server."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

import onnx
import pytest

import workbench as wb
from workbench.errors import OnnxModelError
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


def test_view_bundle_has_iframe_fallback_and_stable_text(mlp_model: onnx.ModelProto, no_server_extension: None) -> None:
    handle = wb.view(mlp_model)
    bundle = handle._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"}
    page = bundle["text/html"]
    assert "<iframe" in page and handle.url.replace("&", "&amp;") in page
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


def test_kernel_server_serves_patched_page_and_registered_model(mlp_model: onnx.ModelProto, no_server_extension: None) -> None:
    handle = wb.view(mlp_model, name="my mlp")
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
