"""The Netron web viewer from the installed ``netron`` package, patched for offline use.

Netron's stock page does not work offline or once its build is old:
``browser.js`` runs ``age()`` (an endless "Please update" modal after 180 days),
``consent()`` (a blocking cookie dialog when ipinfo.io is unreachable) and
``telemetry()`` (analytics for packaged builds) before it opens a model. We serve
the package's files ourselves and patch the *served bytes* (never the installed
package): those three calls are dropped, and ``index.html`` gets the meta tags
Netron's own Python server writes (type ``Python``, version ``0.0.0``, the model
``file`` URL). Every replacement is checked to have matched exactly once, so a
Netron release that renames these internals fails loudly instead of silently
showing a modal again.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError

# Netron keeps every web file flat in its package directory.
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+$")
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".svg": "image/svg+xml",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
}
_VERSION_META = re.compile(r'<meta name="version" content="[^"]*">')
_BLOCKING_CALLS = ("age", "consent", "telemetry")
# Netron reads the model URL from <meta name="file">; if a release stops doing so,
# our injected tag would be ignored and the viewer would open empty.
_REQUIRED_MARKERS = ("this._meta.file", "async view(view)")


@dataclass(frozen=True)
class Asset:
    """One file to send: its bytes and its Content-Type."""

    body: bytes
    content_type: str


def netron_directory() -> Path:
    """The directory of the installed ``netron`` package (found without importing it)."""
    spec = importlib.util.find_spec("netron")
    if spec is None or spec.origin is None:
        raise WorkbenchError("The viewer needs the 'netron' package: pip install netron")
    return Path(spec.origin).parent


def _replace_once(pattern: re.Pattern[str], replacement: str, text: str, what: str) -> str:
    patched, count = pattern.subn(lambda _match: replacement, text)
    if count != 1:
        raise WorkbenchError(
            f"Cannot patch Netron's {what}: expected exactly one match of {pattern.pattern!r}, found {count}. "
            "The installed netron release changed its files; pin netron to a version the workbench "
            "supports (9.3.x) or update workbench/jupyter/netron_assets.py."
        )
    return patched


def patch_index_html(text: str, *, model_url: str, identifier: str) -> str:
    """Point Netron's ``index.html`` at ``model_url`` and mark it as an unpackaged Python build.

    ``identifier`` is the file name Netron shows and uses to pick the format (``*.onnx``).
    """
    if not _IDENTIFIER.match(identifier):
        raise ValueError(f"identifier {identifier!r}: use a plain file name such as 'model.onnx'")
    meta = "\n".join(
        [
            '<meta name="type" content="Python">',
            '<meta name="version" content="0.0.0">',
            f'<meta name="file" content="{html.escape(model_url, quote=True)}">',
            f'<meta name="identifier" content="{html.escape(identifier, quote=True)}">',
        ]
    )
    return _replace_once(_VERSION_META, meta, text, "index.html version meta tag")


def patch_browser_js(text: str) -> str:
    """Drop the ``age()``, ``consent()`` and ``telemetry()`` calls from Netron's ``browser.js``."""
    for marker in _REQUIRED_MARKERS:
        if marker not in text:
            raise WorkbenchError(
                f"Cannot patch Netron's browser.js: {marker!r} is gone in the installed netron release; "
                "pin netron to 9.3.x or update workbench/jupyter/netron_assets.py."
            )
    for call in _BLOCKING_CALLS:
        pattern = re.compile(rf"^[ \t]*await {call}\(\);[ \t]*\r?\n", re.MULTILINE)
        text = _replace_once(pattern, "", text, f"browser.js '{call}()' call")
    return text


@functools.lru_cache(maxsize=4)
def _read_text(directory: Path, name: str) -> str:
    return (directory / name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=2)
def _patched_browser_js(directory: Path) -> bytes:
    return patch_browser_js(_read_text(directory, "browser.js")).encode("utf-8")


def viewer_page(*, model_url: str, identifier: str) -> Asset:
    """Netron's ``index.html``, patched to open ``model_url`` right away."""
    text = _read_text(netron_directory(), "index.html")
    body = patch_index_html(text, model_url=model_url, identifier=identifier).encode("utf-8")
    return Asset(body, _CONTENT_TYPES[".html"])


def read_asset(name: str) -> Asset | None:
    """A static Netron file by its plain name (``view.js``), or None if there is no such file.

    ``index.html`` is never served raw (only :func:`viewer_page` serves it, patched), and
    ``browser.js`` always comes patched. Names with slashes or other path syntax are refused.
    """
    if not _ASSET_NAME.match(name) or name == "index.html":
        return None
    content_type = _CONTENT_TYPES.get(Path(name).suffix)
    if content_type is None:
        return None
    directory = netron_directory()
    if name == "browser.js":
        return Asset(_patched_browser_js(directory), content_type)
    path = directory / name
    if not path.is_file():
        return None
    return Asset(path.read_bytes(), content_type)


def check_patches() -> None:
    """Apply every patch to the installed netron files; raise WorkbenchError if one no longer matches."""
    directory = netron_directory()
    patch_index_html(_read_text(directory, "index.html"), model_url="models/check.onnx", identifier="check.onnx")
    _patched_browser_js(directory)
