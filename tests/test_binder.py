"""binder/: the files repo2docker reads parse, and postBuild enables the server extension in a fresh venv."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def test_binder_files_parse():
    assert (BINDER / "runtime.txt").read_text().strip().startswith("python-3.11")
    from packaging.requirements import Requirement

    for line in (BINDER / "requirements.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()  # pip's requirements format: "#" starts a comment
        if requirement:
            Requirement(requirement)
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK)
    subprocess.run(["bash", "-n", str(post_build)], check=True)
    config = json.loads((ROOT / "extensions" / "jupyter_server_config.d" / "workbench.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"]["workbench"] is True


@pytest.mark.slow
def test_post_build_enables_the_extension_in_a_fresh_venv(tmp_path):
    """A fresh venv that sees the test environment's installed dependencies (through a .pth file, so pip
    finds them satisfied instead of downloading them again) but not this package."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    import site
    import sysconfig

    venv_site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    parent_site = [p for p in site.getsitepackages() if Path(p).exists()] or [sysconfig.get_paths()["purelib"]]
    (venv_site / "_test_parent_env.pth").write_text("\n".join(parent_site) + "\n")
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    build = subprocess.run(["bash", str(BINDER / "postBuild")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    listing = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "jupyter_server.extension.serverextension", "list"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )
    text = listing.stdout + listing.stderr
    assert re.search(r"workbench\s+(\x1b\[\d+m)?enabled", text), text
