"""``workbench lab``: its help, its root/headless decisions (no browser is ever started) and a real start.

The decisions are tested on :func:`plan_lab` and :func:`browser_problem` with the inputs given
explicitly (user id, environment, platform, a stubbed ``webbrowser.get``). One test starts the real
JupyterLab headless (as root where the suite runs as root, as on CI), fetches the URL it prints and
the notebook through Jupyter's contents API, and stops it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path

import pytest

from workbench import cli
from workbench.errors import WorkbenchError
from workbench.jupyter import lab

REPO = Path(__file__).resolve().parents[2]


def test_help_names_the_root_and_headless_behaviour(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        cli.main(["lab", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "usage: workbench lab" in text
    assert "--allow-root" in text and "DISPLAY" in text and "01_quickstart.ipynb" in text


def test_root_gets_allow_root_with_a_notice(tmp_path: Path):
    notebook = tmp_path / "my notebook.ipynb"
    notebook.write_text("{}")
    as_root = lab.plan_lab(notebook, euid=0, no_browser_reason=None, python="py")
    assert as_root.argv == (
        "py", "-m", "jupyterlab", f"--ServerApp.root_dir={tmp_path.resolve()}",
        "--LabApp.default_url=/lab/tree/my%20notebook.ipynb", "--allow-root",
    )  # fmt: skip
    assert len(as_root.notices) == 1 and "root" in as_root.notices[0] and "--allow-root" in as_root.notices[0]
    for euid in (1000, None):  # an ordinary user; Windows (no user ids)
        plan = lab.plan_lab(notebook, euid=euid, no_browser_reason=None)
        assert "--allow-root" not in plan.argv and plan.notices == ()


def test_headless_gets_no_browser_and_a_pointer_to_the_printed_url(tmp_path: Path):
    plan = lab.plan_lab(tmp_path, euid=1000, no_browser_reason="no DISPLAY or WAYLAND_DISPLAY", port=9999, ip="0.0.0.0")
    assert plan.argv[-3:] == ("--no-browser", "--ServerApp.port=9999", "--ServerApp.ip=0.0.0.0")
    assert "--LabApp.default_url=/lab" in plan.argv  # a folder opens the file browser
    assert len(plan.notices) == 1 and "no DISPLAY or WAYLAND_DISPLAY" in plan.notices[0] and "URL" in plan.notices[0]


def test_a_missing_notebook_is_a_workbench_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(WorkbenchError, match="does not exist"):
        lab.plan_lab(tmp_path / "missing.ipynb", euid=0, no_browser_reason=None)
    assert cli.main(["lab", str(tmp_path / "missing.ipynb"), "--dry-run"]) == 1
    assert "workbench lab: error:" in capsys.readouterr().err


def _stub_browser(monkeypatch: pytest.MonkeyPatch, found: bool) -> list[str]:
    calls: list[str] = []

    def get(using: str | None = None) -> object:
        calls.append("get")
        if not found:
            raise webbrowser.Error("could not locate runnable browser")
        return object()

    monkeypatch.setattr(webbrowser, "get", get)
    return calls


def test_browser_problem_needs_a_display_on_linux(monkeypatch: pytest.MonkeyPatch):
    calls = _stub_browser(monkeypatch, found=True)
    assert lab.browser_problem({}, "linux") == "no DISPLAY or WAYLAND_DISPLAY"
    assert lab.browser_problem({"DISPLAY": ""}, "linux") == "no DISPLAY or WAYLAND_DISPLAY"
    assert calls == [], "without a display, webbrowser (which would pick lynx/w3m in the terminal) is not asked"
    assert lab.browser_problem({"DISPLAY": ":0"}, "linux") is None
    assert lab.browser_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert lab.browser_problem({}, "darwin") is None  # macOS and Windows need no DISPLAY


def test_browser_problem_when_webbrowser_finds_none(monkeypatch: pytest.MonkeyPatch):
    _stub_browser(monkeypatch, found=False)
    assert lab.browser_problem({"DISPLAY": ":0"}, "linux") == "no web browser found"
    assert lab.browser_problem({}, "win32") == "no web browser found"


def test_dry_run_opens_the_quickstart_notebook(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    assert cli.main(["lab", "--dry-run", "--no-browser"]) == 0
    out = capsys.readouterr().out
    assert f"--ServerApp.root_dir={REPO / 'notebooks'}" in out
    assert "--LabApp.default_url=/lab/tree/01_quickstart.ipynb" in out and "--no-browser" in out
    assert "no browser can be opened here (--no-browser was given)" in out
    assert ("--allow-root" in out) == (os.geteuid() == 0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    """GET ``url``; Jupyter prints its URL a moment before it accepts connections, so refusals are retried."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_starts_headless_and_serves_the_notebook(tmp_path: Path):
    notebook = tmp_path / "hello.ipynb"
    notebook.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    port = _free_port()
    command = [sys.executable, "-m", "workbench.cli", "lab", str(notebook), "--port", str(port)]
    log = tmp_path / "lab.log"  # a file, not a pipe: Jupyter never blocks on a full pipe nobody reads
    with log.open("w") as sink:
        server = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        pattern = re.compile(rf"http://127\.0\.0\.1:{port}/lab/tree/hello\.ipynb\?token=\w+")
        deadline = time.monotonic() + 120
        while (found := pattern.search(log.read_text())) is None and server.poll() is None:
            assert time.monotonic() < deadline, "JupyterLab printed no URL in 120 s:\n" + log.read_text()
            time.sleep(0.2)
        assert found is not None, "JupyterLab exited:\n" + log.read_text()
        url = found.group(0)
        status, page = _get(url)
        assert status == 200 and b"JupyterLab" in page
        token = url.split("token=")[1]
        status, body = _get(f"http://127.0.0.1:{port}/api/contents/hello.ipynb?content=0&token={token}")
        assert status == 200 and json.loads(body)["type"] == "notebook"
    finally:
        server.terminate()
        server.wait(timeout=60)
    seen = log.read_text().splitlines()
    notices = [line for line in seen if line.startswith("workbench lab: ")]
    assert any("no browser can be opened here (no DISPLAY or WAYLAND_DISPLAY)" in n for n in notices), seen
    assert any("--allow-root" in n for n in notices) == (os.geteuid() == 0)
    assert not any("Running as root is not recommended" in line or "No web browser found" in line for line in seen)
