"""Private APIs of other libraries are used in workbench/compat.py only.

Every module of the package and of the tests is parsed (``ast``) and each import checked: a module
path or an imported name with a part that starts with ``_`` (``jax._src``,
``onnxscript.rewriter._basics``) outside the workbench itself is a private import. The private
attributes compat wraps (an onnxscript rule's compiled pattern, JAX's key implementation and dimension
evaluator) are looked for too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT / "workbench" / "compat.py"
# private attributes of JAX / onnxscript objects that only compat.py may read
WRAPPED_ATTRIBUTES = frozenset({"_target_pattern", "_impl", "_evaluate", "_get_vars"})


def _private_part(dotted: str) -> bool:
    return any(part.startswith("_") and part != "__future__" for part in dotted.split("."))


def private_uses(path: Path) -> list[str]:
    """``line: what`` for every private import of another library and every wrapped private attribute."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if _private_part(a.name) and not a.name.startswith("workbench")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and not node.module.startswith(("workbench", "tests")):
            names = [a.name for a in node.names]
            if _private_part(node.module) or any(_private_part(name) for name in names):
                found.append(f"{node.lineno}: from {node.module} import {', '.join(names)}")
        elif isinstance(node, ast.Attribute) and node.attr in WRAPPED_ATTRIBUTES:
            found.append(f"{node.lineno}: .{node.attr}")
    return found


def test_only_compat_uses_private_apis():
    files = sorted({*ROOT.joinpath("workbench").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py")} - {COMPAT})
    offenders = {str(path.relative_to(ROOT)): uses for path in files if (uses := private_uses(path))}
    assert not offenders, f"private APIs used outside workbench/compat.py (add a wrapper there): {offenders}"


def test_the_check_sees_what_compat_does():
    """compat.py itself has each kind of use the check looks for, so the check is not vacuous."""
    uses = "\n".join(private_uses(COMPAT))
    assert "from jax._src import core" in uses and "from onnxscript.rewriter._pattern_ir import" in uses
    assert "._target_pattern" in uses and "._evaluate" in uses
