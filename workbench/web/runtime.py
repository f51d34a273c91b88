"""The pinned onnxruntime-web release: install it with npm into a cache folder and pick its files.

onnxruntime-web is published on the npm registry only, so ``workbench web setup`` runs
``npm install`` once into a cache folder (``WORKBENCH_WEB_CACHE`` or the user cache dir);
exporting a harness then copies just the bundle and the WebAssembly files it loads.
Nothing is downloaded at export or smoke-test time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError

#: The pinned onnxruntime-web release (supports ONNX opset 21 and IR version 10).
ORT_WEB_VERSION = "1.30.0"
CACHE_ENV_VAR = "WORKBENCH_WEB_CACHE"
SETUP_COMMAND = "workbench web setup"
ALLOWED_PROVIDERS = ("webgpu", "wasm")


@dataclass(frozen=True)
class RuntimeBundle:
    """The onnxruntime-web files a harness needs: the ES module the page imports and what it loads."""

    entry: str  # the ES module bundle the page imports, e.g. ort.webgpu.min.mjs
    loaders: tuple[str, ...]  # the Emscripten glue module(s) and .wasm binary it fetches

    @property
    def files(self) -> tuple[str, ...]:
        return (self.entry, *self.loaders)


# Which bundle serves which provider set. The WebGPU bundle of 1.30 also contains the wasm
# (CPU) execution provider, so a page can fall back without loading a second runtime.
_WEBGPU_BUNDLE = RuntimeBundle(
    "ort.webgpu.min.mjs",
    ("ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"),
)
_WASM_BUNDLE = RuntimeBundle(
    "ort.wasm.min.mjs", ("ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
)


def validate_providers(providers: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Check the provider order: a non-empty sequence of distinct names out of ``ALLOWED_PROVIDERS``."""
    if isinstance(providers, str):
        providers = (providers,)
    providers = tuple(providers)
    allowed = ", ".join(repr(p) for p in ALLOWED_PROVIDERS)
    if not providers:
        raise ValueError(f"providers is empty; give one or more of {allowed}")
    for provider in providers:
        if provider not in ALLOWED_PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; allowed providers are {allowed}")
    if len(set(providers)) != len(providers):
        raise ValueError(f"providers {providers!r} lists a provider twice")
    return providers


def bundle_for(providers: tuple[str, ...]) -> RuntimeBundle:
    return _WEBGPU_BUNDLE if "webgpu" in providers else _WASM_BUNDLE


def default_cache_dir() -> Path:
    """``$WORKBENCH_WEB_CACHE`` if set, otherwise ``<user cache dir>/workbench/web``."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "workbench" / "web"


def _install_root(cache_dir: Path, version: str) -> Path:
    return cache_dir / f"onnxruntime-web-{version}"


def _dist_dir(root: Path) -> Path:
    return root / "node_modules" / "onnxruntime-web" / "dist"


def installed_version(root: Path) -> str | None:
    package_json = root / "node_modules" / "onnxruntime-web" / "package.json"
    if not package_json.is_file():
        return None
    return str(json.loads(package_json.read_text(encoding="utf-8")).get("version"))


def runtime_dist_dir(cache_dir: Path | None = None, version: str = ORT_WEB_VERSION) -> Path:
    """The ``dist`` folder of the installed onnxruntime-web; a clear error when it is missing."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    root = _install_root(cache_dir, version)
    if installed_version(root) != version:
        raise WorkbenchError(
            f"onnxruntime-web {version} is not installed in {cache_dir}. "
            f"Run `{SETUP_COMMAND}` once (needs npm and access to the npm registry); "
            f"set {CACHE_ENV_VAR} to use another cache folder."
        )
    return _dist_dir(root)


def runtime_files(providers: tuple[str, ...], cache_dir: Path | None = None) -> dict[str, Path]:
    """File name -> path in the cache of every runtime file a harness for ``providers`` needs."""
    dist = runtime_dist_dir(cache_dir)
    files = {name: dist / name for name in bundle_for(providers).files}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise WorkbenchError(
            f"the onnxruntime-web install in {dist} lacks {', '.join(missing)}; "
            f"delete {dist.parents[2]} and run `{SETUP_COMMAND}` again"
        )
    return files


def setup_runtime(
    cache_dir: Path | None = None, *, version: str = ORT_WEB_VERSION, force: bool = False
) -> Path:
    """Install onnxruntime-web ``version`` with npm into the cache; return its ``dist`` folder.

    The install goes to a temporary folder first and is renamed into place, so an interrupted
    install never looks complete. Install scripts are disabled (``--ignore-scripts``).
    """
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    root = _install_root(cache_dir, version)
    if not force and installed_version(root) == version:
        return _dist_dir(root)
    npm = shutil.which("npm")
    if npm is None:
        raise WorkbenchError(
            "npm was not found on PATH; install Node.js with npm (e.g. `apt-get install -y npm`) "
            f"and run `{SETUP_COMMAND}` again"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=cache_dir))
    command = [
        npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund",
        "--ignore-scripts", "--no-save", "--loglevel=error", f"onnxruntime-web@{version}",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise WorkbenchError(
                f"`{' '.join(command[1:])}` failed (exit {result.returncode}):\n"
                f"{result.stderr.strip()[-2000:]}"
            )
        got = installed_version(staging)
        if got != version:
            raise WorkbenchError(f"npm installed onnxruntime-web {got}, expected {version}")
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return _dist_dir(root)
