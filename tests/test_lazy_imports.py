"""A conversion does not import sympy (onnx-ir's dependency), and sympy still works when something uses it.

Run in fresh interpreters: what a process has imported is the thing under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_conversion_does_not_import_sympy_and_sympy_loads_on_first_use():
    out = _run(
        "import sys\n"
        "import workbench as wb\n"
        "from workbench.zoo import nnx_mlp\n"
        "model = wb.to_onnx(nnx_mlp().fn, [('B', 30)])\n"
        "print('converted', len(model.graph.node) > 0, 'sympy' in sys.modules)\n"
        "import onnx_ir as ir\n"
        "print('dim', ir.SymbolicDim('B') * 2, ir.SymbolicDim('2*B + 1').evaluate({'B': 3}))\n"
        "import sympy, sympy.core\n"
        "x = sympy.Symbol('x')\n"
        "print('sympy', sympy.expand((x + 1) ** 2), type(sympy).__name__)\n"
    )
    lines = out.splitlines()
    assert lines[0] == "converted True False"
    assert lines[1] == "dim 2*B 7"
    assert lines[2] == "sympy x**2 + 2*x + 1 module"


def test_sympy_imported_first_is_left_alone():
    out = _run(
        "import sympy\n"
        "import workbench as wb\n"
        "import onnx_ir as ir\n"
        "import sys\n"
        "print(sys.modules['sympy'] is sympy, isinstance(ir.SymbolicDim('N') + 1, ir.SymbolicDim))\n"
    )
    assert out.split() == ["True", "True"]
