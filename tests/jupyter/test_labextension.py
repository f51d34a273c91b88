"""The prebuilt JupyterLab extension: built from the committed sources, loadable, shipped in the wheel.

The bundle in extensions/jupyterlab/labextension is committed (see extensions/jupyterlab/README.md).
These checks need no node: the build script writes a digest of its inputs next to the bundle, and
this test recomputes it, so editing the TypeScript without rebuilding fails here. (.ci/run also
rebuilds from the lock file and checks the result is byte-identical to the committed bundle.)
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "extensions" / "jupyterlab"
BUNDLE = SOURCE / "labextension"
NAME = "workbench-jupyterlab"
# the same inputs, in the same order, as scripts/build-labextension.mjs
SOURCE_FILES = ("package.json", "package-lock.json", "tsconfig.json", "install.json", "webpack.config.js", "scripts/build-labextension.mjs")
SOURCE_DIRS = ("src", "style")


def _source_digest() -> str:
    files = [SOURCE / name for name in SOURCE_FILES]
    for directory in SOURCE_DIRS:
        files += sorted((path for path in (SOURCE / directory).rglob("*") if path.is_file()), key=str)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(SOURCE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def test_committed_bundle_is_the_build_of_the_committed_sources() -> None:
    built_from = (BUNDLE / "source-digest.txt").read_text().strip()
    assert built_from == _source_digest(), (
        "extensions/jupyterlab changed since its bundle was built: run `npm ci && npm run build` "
        "in extensions/jupyterlab and commit labextension/"
    )


def test_bundle_is_a_loadable_federated_extension() -> None:
    package = json.loads((BUNDLE / "package.json").read_text())
    assert package["name"] == NAME
    build = package["jupyterlab"]["_build"]
    assert (BUNDLE / build["load"]).is_file() and build["load"].startswith("static/remoteEntry.")
    assert build["extension"] == "./extension" and build["mimeExtension"] == "./mimeExtension"
    install = json.loads((BUNDLE / "install.json").read_text())
    assert install["packageName"] == "workbench" and install["packageManager"] == "python"
    remote_entry = (BUNDLE / build["load"]).read_text()
    assert NAME in remote_entry  # the container registers under the package name JupyterLab looks up


def test_wheel_ships_the_bundle_where_jupyterlab_looks() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["extensions/jupyterlab/labextension"] == f"share/jupyter/labextensions/{NAME}"


def test_npm_dependencies_are_locked() -> None:
    package = json.loads((SOURCE / "package.json").read_text())
    lock = json.loads((SOURCE / "package-lock.json").read_text())
    assert lock["lockfileVersion"] >= 3
    root = lock["packages"][""]
    assert root["dependencies"] == package["dependencies"]
    assert root["devDependencies"] == package["devDependencies"]
    for name in [*package["dependencies"], *package["devDependencies"]]:
        entry = lock["packages"][f"node_modules/{name}"]
        assert entry["version"] and entry["integrity"].startswith("sha512-"), name
