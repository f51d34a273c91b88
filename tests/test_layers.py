"""The package's import graph follows the layers of docs/architecture.md and has no cycle.

Every ``import`` of every module under workbench/ (module level, inside functions, under
``TYPE_CHECKING``: all of them, parsed with ``ast``) is an arrow from one module to another. An arrow
may point into the module's own layer or a lower one, never up; the two conversion directions do
not import each other; web and jupyter do not import each other, and only cli sits above both.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workbench"

# Bottom to top; the first matching prefix decides. "workbench" alone is the public facade (__init__.py).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("workbench.errors", "workbench.version", "workbench.specs", "workbench.compat",
                "workbench.onnx_io", "workbench.files", "workbench.lazy_imports", "workbench.notebook_cells",
                "workbench.limits")),
    ("directions", ("workbench.jax_to_onnx", "workbench.onnx_to_jax")),
    ("analysis", ("workbench.analysis", "workbench.zoo")),
    ("surfaces", ("workbench.web", "workbench.jupyter")),
    ("cli", ("workbench.cli",)),
    ("facade", ("workbench",)),
]
# packages of one layer that must not import each other
INDEPENDENT = [("workbench.jax_to_onnx", "workbench.onnx_to_jax"), ("workbench.web", "workbench.jupyter")]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int:
    if module == "workbench":
        return len(LAYERS) - 1
    for index, (_, prefixes) in enumerate(LAYERS[:-1]):
        if any(_within(module, prefix) for prefix in prefixes):
            return index
    raise AssertionError(f"{module} has no layer: add it to LAYERS here and to docs/architecture.md")


def imports_of(module: str) -> dict[str, int]:
    """Workbench modules ``module`` imports (anywhere in its code) -> the line of the first import."""
    found: dict[str, int] = {}
    path = MODULES[module]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: the package uses absolute imports only"
            base = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when there is one, else a name of pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            while target and target not in MODULES:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != module:
                found.setdefault(target, node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_goes_up():
    upward = [
        f"{module}:{line} imports {target} ({LAYERS[layer_of(module)][0]} -> {LAYERS[layer_of(target)][0]})"
        for module, targets in GRAPH.items()
        for target, line in targets.items()
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_independent_packages_do_not_import_each_other():
    crossing = [
        f"{module}:{line} imports {target}"
        for module, targets in GRAPH.items()
        for target, line in targets.items()
        for a, b in INDEPENDENT
        if (_within(module, a) and _within(target, b)) or (_within(module, b) and _within(target, a))
    ]
    assert not crossing, "\n".join(crossing)


def test_no_import_cycles():
    """Tarjan's strongly connected components: a component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_see_real_imports():
    """The graph is not empty-handed: known arrows of the layout are found."""
    assert "workbench.onnx_io.describe" in GRAPH["workbench.onnx_io.load"]
    assert "workbench.jax_to_onnx.api" in GRAPH["workbench.analysis.locate"]
    assert "workbench.errors" in GRAPH["workbench.jax_to_onnx.lowering"]


def _half_float_sets(module: str) -> list[str]:
    """Module-level names ``module`` binds to a set of two dtypes, float16 and bfloat16."""
    path = MODULES[module]
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.parse(source, filename=str(path)).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        value = node.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in ("frozenset", "set") \
                and len(value.args) == 1:  # fmt: skip
            value = value.args[0]
        if not isinstance(value, (ast.Set, ast.Tuple, ast.List)) or len(value.elts) != 2:
            continue
        halves = sorted(re.findall(r"\bb?float16\b", ast.unparse(element)) for element in value.elts)
        if halves == [["bfloat16"], ["float16"]]:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"{module}.{ast.unparse(target)}" for target in targets]
    return found


def test_the_half_float_dtypes_are_defined_once_in_the_ground_layer():
    """Was: analysis/interpret._HALF_DTYPES and jax_to_onnx/blocks._HALVES, two layers' copies of one set; both
    read workbench.specs.HALF_FLOATS now (the lowest layer both may import)."""
    found = [name for module in sorted(MODULES) for name in _half_float_sets(module)]
    assert found == ["workbench.specs.HALF_FLOATS"]
