"""The dependency lock of the workbench: requirements/lock.txt and requirements/build-lock.txt.

``lock.txt`` pins every distribution that ``pip install -e ".[test,torch,corpus]"`` installs (and pip itself),
``build-lock.txt`` the build backend (hatchling) and its dependencies. Both are pip constraints files:
``.ci/install`` installs with ``-c requirements/lock.txt --build-constraint requirements/build-lock.txt``.

Shared by tools/lock.py (refresh the lock), tools/try_newest.py (try the newest releases against it)
and tests/test_install_lock.py (an install from the lock equals the lock). Standard library only, so
any Python 3.11 runs these tools, inside a virtualenv or not.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
BUILD_LOCK = ROOT / "requirements" / "build-lock.txt"
EXTRAS = "test,torch,corpus"
PROJECT = "workbench"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*$")


def canonical(name: str) -> str:
    """The PEP 503 normalized form of a distribution name (``ml_dtypes`` -> ``ml-dtypes``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a lock file; every non-comment line must be ``name==version``."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected name==version, got {raw!r}")
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def write_lock(path: Path, pins: dict[str, str], header: list[str]) -> None:
    """Write ``pins`` sorted by name under ``# ``-prefixed header lines (atomically: temp file + replace)."""
    lines = [f"# {text}".rstrip() for text in header]
    lines += [f"{name}=={pins[name]}" for name in sorted(pins)]
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(temp, path)


def make_venv(folder: Path) -> Path:
    """A new virtualenv in ``folder`` made by this interpreter's base Python; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    return folder / "bin" / "python"


def pip(python: Path, *args: str, capture: bool = False) -> str:
    """Run ``python -m pip ARGS`` (quiet), failing loudly; returns stdout when ``capture``."""
    result = subprocess.run(
        [str(python), "-m", "pip", *args], cwd=ROOT, check=False, text=True,
        stdout=subprocess.PIPE if capture else None,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"pip {' '.join(args)} failed with exit status {result.returncode}")
    return result.stdout or ""


def resolve(python: Path, *requirements: str) -> dict[str, str]:
    """What pip would install for ``requirements`` into an empty environment: ``{name: version}``.

    ``pip install --dry-run --ignore-installed --report -`` runs pip's resolver with this machine's pip
    configuration (indexes, find-links, its own constraints) and installs nothing.
    """
    report = json.loads(
        pip(python, "install", "--quiet", "--dry-run", "--ignore-installed", "--report", "-", *requirements, capture=True)
    )
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


def installed(python: Path) -> dict[str, str]:
    """Every distribution installed in ``python``'s environment (pip too), without the project itself."""
    listing = json.loads(pip(python, "list", "--format=json", capture=True))
    return {canonical(item["name"]): item["version"] for item in listing if canonical(item["name"]) != PROJECT}


def build_requirements() -> list[str]:
    """``[build-system] requires`` of pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle)["build-system"]["requires"])


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line per distribution whose version differs: ``name old -> new`` (``-`` for absent)."""
    return [
        f"{name} {old.get(name, '-')} -> {new.get(name, '-')}"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]
