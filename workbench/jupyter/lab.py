"""``workbench lab``: JupyterLab on a notebook, also as root and on a machine without a desktop.

Plain ``jupyter lab notebook.ipynb`` stops on two things a fresh container or CI-like machine has:
as root it exits ("Running as root is not recommended. Use --allow-root to bypass."), and without a
desktop it complains that no browser was found. :func:`plan_lab` decides from plain inputs (the
effective user id, whether a browser can be opened) which options JupyterLab gets and which one-line
notices the user sees, so the decisions are tested without starting anything; :func:`run_lab` prints
the notices and replaces this process with JupyterLab (Ctrl-C and signals then reach Jupyter itself).

The notebook is opened through ``--LabApp.default_url``, so the URL JupyterLab prints (with its token)
leads straight to the notebook: on a headless machine that printed URL is what the user opens.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
import webbrowser
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from workbench.errors import WorkbenchError

DEFAULT_NOTEBOOK = Path("notebooks") / "01_quickstart.ipynb"
# Platforms whose graphical programs need an X11 or Wayland display (macOS and Windows do not).
_DISPLAY_PLATFORMS = ("linux", "freebsd", "openbsd", "netbsd")


@dataclass(frozen=True)
class LabPlan:
    """The JupyterLab command line to run and the notices to print first."""

    argv: tuple[str, ...]
    notices: tuple[str, ...]


def browser_problem(environ: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """Why no web browser can be opened here, or None when one can.

    On Linux and the BSDs a browser needs a display: without ``DISPLAY`` or ``WAYLAND_DISPLAY``,
    Python's ``webbrowser`` would pick a text-mode browser (lynx, w3m) in this very terminal, or none.
    Everywhere, ``webbrowser.get()`` (which honours ``BROWSER``) must find a browser.
    """
    if platform.startswith(_DISPLAY_PLATFORMS) and not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return "no DISPLAY or WAYLAND_DISPLAY"
    try:
        webbrowser.get()
    except webbrowser.Error:
        return "no web browser found"
    return None


def effective_uid() -> int | None:
    """The effective user id (0 is root), or None where there are no POSIX user ids (Windows)."""
    return None if sys.platform == "win32" else os.geteuid()


def default_notebook(cwd: Path) -> Path:
    """``notebooks/01_quickstart.ipynb`` of the repository: under ``cwd``, else beside this package's source."""
    for root in (cwd, Path(__file__).resolve().parents[2]):
        candidate = root / DEFAULT_NOTEBOOK
        if candidate.is_file():
            return candidate
    raise WorkbenchError(
        f"{DEFAULT_NOTEBOOK} was not found in {cwd} (nor beside the installed package); run `workbench lab` "
        "from the repository root, or name a notebook: `workbench lab path/to/notebook.ipynb`"
    )


def plan_lab(
    target: Path,
    *,
    euid: int | None,
    no_browser_reason: str | None,
    port: int | None = None,
    ip: str | None = None,
    python: str = sys.executable,
) -> LabPlan:
    """The command line and notices for JupyterLab on ``target`` (a notebook or a folder).

    ``euid`` 0 adds ``--allow-root``; a ``no_browser_reason`` (see :func:`browser_problem`) adds
    ``--no-browser``. Each adds a one-line notice.
    """
    target = target.resolve()
    if target.is_dir():
        root, url = target, "/lab"
    elif target.is_file():
        root, url = target.parent, "/lab/tree/" + urllib.parse.quote(target.name)
    else:
        raise WorkbenchError(f"{target} does not exist; name a notebook or a folder for `workbench lab`")
    argv = [python, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", f"--LabApp.default_url={url}"]
    notices = []
    if euid == 0:
        argv.append("--allow-root")
        notices.append(
            "running as root, so JupyterLab gets --allow-root (whoever reaches the server acts as root; "
            "it listens on localhost unless you pass --ip)"
        )
    if no_browser_reason is not None:
        argv.append("--no-browser")
        notices.append(
            f"no browser can be opened here ({no_browser_reason}): open the http://...?token=... URL "
            f"JupyterLab prints below, it leads to {target.name}"
        )
    if port is not None:
        argv.append(f"--ServerApp.port={port}")
    if ip is not None:
        argv.append(f"--ServerApp.ip={ip}")
    return LabPlan(tuple(argv), tuple(notices))


def run_lab(plan: LabPlan) -> NoReturn:
    """Print the notices, then replace this process with JupyterLab."""
    for notice in plan.notices:
        print(f"workbench lab: {notice}", file=sys.stderr, flush=True)
    os.execv(plan.argv[0], list(plan.argv))


__all__ = ["DEFAULT_NOTEBOOK", "LabPlan", "browser_problem", "default_notebook", "effective_uid", "plan_lab", "run_lab"]
