"""Refresh the dependency lock: pin the newest releases that pyproject.toml's ranges allow.

Usage, from the repository root (any Python 3.11; docs/dependencies.md says when)::

    python3 tools/lock.py          # the newest releases the ranges allow
    python3 tools/lock.py --keep   # keep every pin that still fits; pin only what is new (an added dependency)

In a temporary virtualenv it upgrades pip, asks pip's resolver (``--dry-run --report``, nothing is
installed) what ``pip install -e ".[test,torch,corpus]"`` and the build backend would install on this machine
(Python 3.11, Linux x86_64, with this machine's pip configuration: the local CPU torch wheel), and
writes requirements/lock.txt and requirements/build-lock.txt, printing which pins moved. Then run
``bash .ci/run`` (it installs from the new lock) and commit the lock files only when it is green.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import lockfile

HEADER = [
    "The complete dependency set of `pip install -e \".[test,torch,corpus]\"` (and pip itself), all pinned:",
    "a pip constraints file. .ci/install and the README install with it:",
    "    pip install -c requirements/lock.txt -e \".[test,torch,corpus]\"",
    "Written by `python3 tools/lock.py` (the newest releases pyproject.toml allows; never edit by hand),",
    "for CPython {python} on {machine} Linux; docs/dependencies.md says when and how to refresh it.",
]
BUILD_HEADER = [
    "The build backend of `pip install -e .` and its dependencies (pyproject.toml [build-system]), pinned:",
    "    pip install --build-constraint requirements/build-lock.txt ...",
    "Written by `python3 tools/lock.py` with requirements/lock.txt.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Refresh requirements/lock.txt and requirements/build-lock.txt.")
    parser.add_argument("--keep", action="store_true",
                        help="resolve with the current lock as constraints: pins move only where the ranges force "
                             "them to, and new dependencies get the newest release that fits")
    keep = parser.parse_args(argv).keep
    held = ["-c", str(lockfile.LOCK)] if keep and lockfile.LOCK.exists() else []
    held_build = ["-c", str(lockfile.BUILD_LOCK)] if keep and lockfile.BUILD_LOCK.exists() else []
    with tempfile.TemporaryDirectory(prefix="workbench-lock-") as temp:
        python = lockfile.make_venv(Path(temp) / "venv")
        lockfile.pip(python, "install", "--quiet", "--upgrade", "pip", *held)
        pins = lockfile.resolve(python, *held, "-e", f".[{lockfile.EXTRAS}]")
        pins.pop(lockfile.PROJECT, None)
        pins["pip"] = lockfile.installed(python)["pip"]
        build = lockfile.resolve(python, *held_build, *lockfile.build_requirements())
    old = lockfile.read_lock(lockfile.LOCK) if lockfile.LOCK.exists() else {}
    old_build = lockfile.read_lock(lockfile.BUILD_LOCK) if lockfile.BUILD_LOCK.exists() else {}
    facts = {"python": platform.python_version(), "machine": platform.machine()}
    lockfile.write_lock(lockfile.LOCK, pins, [line.format(**facts) for line in HEADER])
    lockfile.write_lock(lockfile.BUILD_LOCK, build, BUILD_HEADER)
    moved = lockfile.changes(old, pins) + [f"(build) {line}" for line in lockfile.changes(old_build, build)]
    print(f"wrote {lockfile.LOCK.relative_to(lockfile.ROOT)} ({len(pins)} pins) and "
          f"{lockfile.BUILD_LOCK.relative_to(lockfile.ROOT)} ({len(build)} pins)")  # fmt: skip
    print("moved:" if moved else "no pin moved", *moved, sep="\n  ")
    if moved:
        print("next: `bash .ci/run` installs from the new lock and runs the suite; commit the lock when it is green")
    return 0


if __name__ == "__main__":
    sys.exit(main())
