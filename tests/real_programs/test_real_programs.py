"""Real programs convert, pass the full ONNX checker and match JAX in onnxruntime.

The catalogue (tests/real_programs/) holds programs written with other projects' published APIs;
``EXPECTED_FAILURES`` lists, with its reason, every program that does not convert yet (strict xfail:
one that starts converting fails the test until it is taken off the list). Programs with symbolic dimensions
are also checked at other sizes of them (``SIZES_FULL_ONLY``: the heaviest of those checks, left to the full
catalogue). ``FULL_ONLY`` names the slowest
programs, run with WORKBENCH_REAL_PROGRAMS_FULL=1 (CI runs the rest). WORKBENCH_REAL_PROGRAMS_TFP=1 adds
the distrax, TensorFlow Probability and rlax programs (they need tfp-nightly, outside the lock);
WORKBENCH_REAL_PROGRAMS_UNLOCKED=1 the JAX MD programs (jax-md is outside the lock). Programs that
need environment variables before their libraries are imported run in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.real_programs.catalogue import (
    CONSTANT_OUTPUTS, EXPECTED_FAILURES, FIXED_LENGTH, FULL_ONLY, FULL_ONLY_REASON, SIZES_FULL_ONLY, check_program, load_all,
)

pytestmark = pytest.mark.slow
PROGRAMS = load_all(include_tfp=os.environ.get("WORKBENCH_REAL_PROGRAMS_TFP") == "1",
                    include_unlocked=os.environ.get("WORKBENCH_REAL_PROGRAMS_UNLOCKED") == "1")
FULL = os.environ.get("WORKBENCH_REAL_PROGRAMS_FULL") == "1"
REPOSITORY = Path(__file__).resolve().parents[2]


def _params():
    for name, entry in sorted(PROGRAMS.items()):
        marks = []
        if name in EXPECTED_FAILURES:
            marks.append(pytest.mark.xfail(reason=EXPECTED_FAILURES[name], strict=True))
        if name in FULL_ONLY and not FULL:
            marks.append(pytest.mark.skip(reason=FULL_ONLY_REASON))
        yield pytest.param(entry, id=name, marks=marks)


def test_expected_failures_name_real_programs():
    assert set(EXPECTED_FAILURES) <= set(PROGRAMS), sorted(set(EXPECTED_FAILURES) - set(PROGRAMS))
    assert FULL_ONLY <= set(PROGRAMS), sorted(FULL_ONLY - set(PROGRAMS))
    assert set(FIXED_LENGTH) <= set(PROGRAMS), sorted(set(FIXED_LENGTH) - set(PROGRAMS))
    assert SIZES_FULL_ONLY <= set(PROGRAMS), sorted(SIZES_FULL_ONLY - set(PROGRAMS))
    assert set(CONSTANT_OUTPUTS) <= set(PROGRAMS), sorted(set(CONSTANT_OUTPUTS) - set(PROGRAMS))


@pytest.mark.parametrize("entry", list(_params()))
def test_real_program_converts_and_matches(entry):
    if not entry.env:
        check_program(entry, other_sizes=FULL or entry.name not in SIZES_FULL_ONLY)
        return
    env = {**os.environ, **dict(entry.env), "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-m", "tests.real_programs.run_one", entry.name], cwd=REPOSITORY, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, f"{entry.name} with {dict(entry.env)} failed:\n{run.stderr[-4000:]}"
