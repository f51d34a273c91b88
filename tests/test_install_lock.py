"""The dependency lock: consistent with pyproject.toml, and .ci/run's install step reproduces it exactly.

Under .ci/run the suite itself runs in the fresh virtualenv that .ci/install (its install step) has just
made, so the environment running the tests is checked: ``pip check`` must be clean and every installed
distribution, pip included, must have exactly its locked version (``WORKBENCH_LOCKED_ENV=1``, set by
.ci/run; elsewhere, e.g. a developer's venv with extra tools, only the locked distributions are compared).
Installing a second copy inside the suite would cost 3.5 to 5.5 minutes of CI (2.3 GB unpacked), so the
test that runs .ci/install into a new folder is opt-in: ``WORKBENCH_INSTALL_TEST=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tools import lockfile

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_the_lock_satisfies_pyproject_ranges():
    """Every dependency pyproject.toml names (with the extras the lock covers) is locked within its range."""
    locked = lockfile.read_lock(lockfile.LOCK)
    project = _pyproject()["project"]
    extras = [project["optional-dependencies"][extra] for extra in lockfile.EXTRAS.split(",")]
    direct = [*project["dependencies"], *(text for extra in extras for text in extra)]
    outside = []
    for text in direct:
        requirement = Requirement(text)
        version = locked.get(lockfile.canonical(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            outside.append(f"{text} (locked: {version})")
    assert not outside, f"refresh the lock with `python3 tools/lock.py`: {outside}"
    assert "pip" in locked, "the lock pins pip itself (.ci/install installs it first)"
    build = lockfile.read_lock(lockfile.BUILD_LOCK)
    for text in _pyproject()["build-system"]["requires"]:
        requirement = Requirement(text)
        assert requirement.specifier.contains(build[lockfile.canonical(requirement.name)]), text


def test_ci_and_readme_install_with_the_lock():
    run = (ROOT / ".ci" / "run").read_text()
    commands = "\n".join(line for line in run.splitlines() if not line.lstrip().startswith("#"))
    assert "bash .ci/install .venv" in commands and "pip install" not in commands
    install = (ROOT / ".ci" / "install").read_text()
    assert '-c requirements/lock.txt --build-constraint requirements/build-lock.txt \\\n    -e ".[test,torch,corpus]"' in install
    readme = (ROOT / "README.md").read_text()
    assert "pip install -c requirements/lock.txt -e . && workbench lab" in readme


def test_this_environment_is_exactly_the_lock():
    python = Path(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT")}
    check = subprocess.run([str(python), "-m", "pip", "check"], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    locked, present = lockfile.read_lock(lockfile.LOCK), lockfile.installed(python)
    if os.environ.get("WORKBENCH_LOCKED_ENV") != "1":  # a developer's venv may hold extra tools
        present = {name: version for name, version in present.items() if name in locked}
    differences = lockfile.changes(locked, present)
    assert not differences, f"installed versions differ from requirements/lock.txt (locked -> installed): {differences}"


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("WORKBENCH_INSTALL_TEST") != "1",
    reason="opt-in (WORKBENCH_INSTALL_TEST=1): .ci/run already runs the suite in the venv .ci/install made from scratch",
)
def test_ci_install_step_gives_exactly_the_lock(tmp_path: Path):
    venv = tmp_path / "venv"
    try:
        _install_and_compare(venv)
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # 2.3 GB: not left for pytest's kept temp folders


def _install_and_compare(venv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_CONSTRAINT")}
    install = subprocess.run(
        ["bash", str(ROOT / ".ci" / "install"), str(venv)], env=env, capture_output=True, text=True, timeout=1800
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    python = venv / "bin" / "python"
    check = subprocess.run([str(python), "-m", "pip", "check"], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    differences = lockfile.changes(lockfile.read_lock(lockfile.LOCK), lockfile.installed(python))
    assert not differences, f"installed versions differ from requirements/lock.txt (locked -> installed): {differences}"
    where = subprocess.run(
        [str(python), "-c", "import workbench; print(workbench.__file__)"], env=env, cwd=venv.parent,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(ROOT), "the workbench is installed editable from this checkout"
