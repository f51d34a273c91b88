"""The Netron patches: they match the installed netron release and fail loudly when they do not."""

from __future__ import annotations

import re

import pytest

from workbench.errors import WorkbenchError
from workbench.jupyter import netron_assets


def test_patches_match_installed_netron() -> None:
    netron_assets.check_patches()  # raises WorkbenchError if a replacement no longer matches


def test_patched_browser_js_drops_blocking_calls_and_keeps_the_rest() -> None:
    original = (netron_assets.netron_directory() / "browser.js").read_text(encoding="utf-8")
    served = netron_assets.read_asset("browser.js")
    assert served is not None
    text = served.body.decode("utf-8")
    for call in ("age", "consent", "telemetry"):
        assert re.search(rf"await {call}\(\);", original), f"installed browser.js lost {call}() - patch is moot"
        assert not re.search(rf"await {call}\(\);", text)
    assert "await capabilities();" in text
    assert len(original) - len(text) < 200  # only the three call lines went away


def test_viewer_page_meta_tags() -> None:
    page = netron_assets.viewer_page(model_url="models/abc.onnx", identifier="mlp.onnx").body.decode("utf-8")
    assert '<meta name="type" content="Python">' in page
    assert '<meta name="version" content="0.0.0">' in page
    assert '<meta name="file" content="models/abc.onnx">' in page
    assert '<meta name="identifier" content="mlp.onnx">' in page
    assert page.count('<meta name="version"') == 1


def test_model_url_is_html_escaped() -> None:
    text = '<head><meta name="version" content="9.3.3"></head>'
    patched = netron_assets.patch_index_html(text, model_url='x"><script>', identifier="m.onnx")
    assert "<script>" not in patched and "&quot;&gt;&lt;script&gt;" in patched


@pytest.mark.parametrize(
    "renamed",
    [
        "        await ageCheck();\n        await consent();\n        await telemetry();\n        this._meta.file; async view(view)",
        "        await age();\n        await consent();\n        await telemetry();\n        async view(view)",
        "        await age();\n        await age();\n        await consent();\n        await telemetry();\n this._meta.file async view(view)",
    ],
    ids=["call-renamed", "meta-file-gone", "call-twice"],
)
def test_browser_patch_fails_loudly_on_a_changed_release(renamed: str) -> None:
    with pytest.raises(WorkbenchError, match="Cannot patch Netron"):
        netron_assets.patch_browser_js(renamed)


def test_index_patch_fails_loudly_when_version_meta_is_gone() -> None:
    with pytest.raises(WorkbenchError, match="version meta tag"):
        netron_assets.patch_index_html('<meta name="release" content="9">', model_url="m.onnx", identifier="m.onnx")


@pytest.mark.parametrize("name", ["index.html", "../server.py", "server.py", "sub/view.js", ".hidden.js", "view"])
def test_read_asset_refuses_raw_index_paths_and_python(name: str) -> None:
    assert netron_assets.read_asset(name) is None


def test_read_asset_serves_static_files() -> None:
    asset = netron_assets.read_asset("view.js")
    assert asset is not None and asset.content_type.startswith("text/javascript") and len(asset.body) > 1000
