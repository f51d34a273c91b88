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
        if line.strip() and not line.startswith("#"):
            Requirement(line)
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK)
    subprocess.run(["bash", "-n", str(post_build)], check=True)
    config = json.loads((ROOT / "extensions" / "jupyter_server_config.d" / "workbench.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"]["workbench"] is True


@pytest.mark.slow
def test_post_build_enables_the_extension_in_a_fresh_venv(tmp_path):
    """A venv that sees the already-installed dependencies (system site packages) but not this package."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    env["PIP_NO_BUILD_ISOLATION"] = "0"
    subprocess.run(["bash", str(BINDER / "postBuild")], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    listing = subprocess.run(
        [str(venv / "bin" / "jupyter"), "server", "extension", "list"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )
    text = listing.stdout + listing.stderr
    assert re.search(r"workbench\s+(\x1b\[\d+m)?enabled", text), text
