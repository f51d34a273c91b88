"""Try the newest releases that pyproject.toml's ranges allow, against the lock, without changing it.

Usage, from the repository root (docs/dependencies.md says when)::

    python3 tools/try_newest.py [--locked-venv .venv] [--keep DIR] [-- PYTEST ARGS]

1. Installs ``-e ".[test,torch,corpus]"`` with no lock into a temporary virtualenv ("newest"), as a user who
   installs the workbench today would get it, and prints every distribution whose version moved from
   requirements/lock.txt.
2. Runs the same pytest selection in the locked virtualenv (made by ``bash .ci/install``, default
   ``.venv``; created in a temporary folder when missing) and in the newest one, each writing a JUnit
   report, and prints every test whose outcome differs (passed / failed / error / skipped).

The default selection is CI's: ``WORKBENCH_CONFORMANCE=1 pytest -n 2 --dist loadgroup tests`` (the
Cast cases of the ONNX node suite are where ml_dtypes releases showed up), which takes about twice a
CI test run; narrow it with pytest arguments after ``--``, e.g. ``-- -n 2 tests/onnx_to_jax``. Exit
status 0 when no test got worse, 1 otherwise. Not on CI's path: it exists to see a release coming.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import lockfile

DEFAULT_PYTEST_ARGS = ["-n", "2", "--dist", "loadgroup", "tests"]
_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 2}


def outcomes(junit: Path) -> dict[str, str]:
    """``{test id: passed|failed|error|skipped}`` from a pytest JUnit XML report."""
    results: dict[str, str] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        tags = {child.tag for child in case}
        results[name] = next((tag for tag in ("error", "failure", "skipped") if tag in tags), "passed").replace(
            "failure", "failed"
        )
    return results


def run_suite(python: Path, pytest_args: list[str], junit: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("WORKBENCH_CONFORMANCE", "1")
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"  # the venv's jupyter, workbench, ...
    command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={junit}", *pytest_args]
    print(f"$ {' '.join(command)}", flush=True)
    subprocess.run(command, cwd=lockfile.ROOT, env=env, check=False)  # failures are the point: compared below
    if not junit.exists():
        raise SystemExit(f"pytest wrote no report to {junit}; see its output above")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locked-venv", type=Path, default=lockfile.ROOT / ".venv",
                        help="a virtualenv made by `bash .ci/install` (default .venv; made in a temp folder if missing)")
    parser.add_argument("--keep", type=Path, default=None, help="make the newest virtualenv in DIR and keep it")
    parser.add_argument("pytest_args", nargs="*", help="pytest arguments (after --); default: CI's selection")
    args = parser.parse_args()
    pytest_args = args.pytest_args or DEFAULT_PYTEST_ARGS

    temp = Path(tempfile.mkdtemp(prefix="workbench-newest-"))
    try:
        newest_dir = args.keep or temp / "newest"
        print(f"installing the newest releases into {newest_dir} ...", flush=True)
        newest = lockfile.make_venv(newest_dir)
        lockfile.pip(newest, "install", "--quiet", "--upgrade", "pip")
        lockfile.pip(newest, "install", "--quiet", "-e", f".[{lockfile.EXTRAS}]")
        moved = lockfile.changes(lockfile.read_lock(lockfile.LOCK), lockfile.installed(newest))

        locked = args.locked_venv / "bin" / "python"
        if not locked.exists():
            print(f"{args.locked_venv} does not exist; installing the lock into {temp / 'locked'} ...", flush=True)
            subprocess.run(["bash", str(lockfile.ROOT / ".ci" / "install"), str(temp / "locked")], check=True)
            locked = temp / "locked" / "bin" / "python"
        run_suite(locked, pytest_args, temp / "locked.xml")
        run_suite(newest, pytest_args, temp / "newest.xml")
        before, after = outcomes(temp / "locked.xml"), outcomes(temp / "newest.xml")
    finally:
        shutil.rmtree(temp, ignore_errors=True)

    print("\npackages that moved (locked -> newest):" if moved else "\nno package moved: the lock is the newest")
    for line in moved:
        print(f"  {line}")
    changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
    worse = [n for n in changed if _RANK.get(after.get(n, "error"), 2) > _RANK.get(before.get(n, "passed"), 0)]
    print(f"\ntests whose outcome changed (locked -> newest): {len(changed)} of {len(after)}")
    for name in changed:
        print(f"  {name}: {before.get(name, '-')} -> {after.get(name, '-')}")
    if worse:
        print(f"\n{len(worse)} got worse: fix them or bound the release in pyproject.toml before `python3 tools/lock.py`")
    elif moved:
        print("\nnothing got worse: `python3 tools/lock.py`, then `bash .ci/run`, then commit the lock")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
