"""Heavy transitive imports the workbench's own work never needs, deferred until something uses them.

onnx-ir (the graph library both directions build on) imports sympy at module level, for the arithmetic
of symbolic dimensions (``SymbolicDim("B") * 2``) and for parsing dimension expressions. The
workbench never does that arithmetic: it writes symbolic dims as names and computes sizes with ONNX
``Shape`` ops. Yet importing sympy is about a quarter of a fresh process's conversion (~0.9 s of ~4 s
on an idle 2-core machine).

:func:`defer_sympy` installs a one-shot import hook: when onnx-ir is imported, ``sympy`` and onnx-ir's
``_symbolic_shapes`` (which reads sympy's attributes while it is imported) are stand-in modules for
the duration of that import only. onnx-ir keeps references to the stand-ins; the first attribute read
on one (``sympy.Expr`` in a dim's arithmetic) imports the real module the ordinary way and answers
from it. Outside onnx-ir's import nothing is replaced: ``import sympy`` anywhere else (a user's own,
``sympy.core`` submodules) is the normal import, so there is never a half-loaded or second copy.

Written by hand because no maintained library defers a *third party's* import of another package
(``lazy_loader`` and PEP 690/810 defer a package's own imports; ``importlib.util.LazyLoader`` loads
on the import system's own ``__spec__`` lookup at the next ``import sympy`` statement in Python 3.11).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence
from typing import Any

# The module whose import is watched, and the modules that are stand-ins while it is imported.
_WATCHED = "onnx_ir"
_STAND_INS = ("sympy", "onnx_ir._symbolic_shapes")


class _StandIn(types.ModuleType):
    """A module object that imports the real module on the first attribute it does not have."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # the import system probing dunders: not a use of the module
            raise AttributeError(attribute)
        real = importlib.import_module(self.__name__)
        if real is self:  # read while onnx-ir is still being imported: onnx-ir does not do that today
            raise ImportError(f"{self.__name__} was used while onnx_ir was being imported; see workbench/lazy_imports.py")
        self.__dict__.update(real.__dict__)  # later reads are plain dict hits
        return getattr(real, attribute)


class _DeferringLoader(importlib.abc.Loader):
    """Runs onnx-ir's own loader with the stand-ins in ``sys.modules``, and removes them afterwards."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        placed = [name for name in _STAND_INS if name not in sys.modules]
        for name in placed:
            sys.modules[name] = _StandIn(name)
        try:
            self._loader.exec_module(module)
        finally:
            for name in placed:
                if isinstance(sys.modules.get(name), _StandIn):
                    del sys.modules[name]


class _OnnxIrFinder(importlib.abc.MetaPathFinder):
    """Finds onnx-ir with the other finders once, wrapping its loader; then leaves ``sys.meta_path``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _WATCHED:
            return None
        _remove_finder()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or any(name in sys.modules for name in _STAND_INS):
            return spec
        spec.loader = _DeferringLoader(spec.loader)
        return spec


def _remove_finder() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _OnnxIrFinder)]


def defer_sympy() -> None:
    """Let onnx-ir import without sympy; a no-op if onnx-ir or sympy is already imported.

    Called once by ``workbench/__init__.py``, so it holds for every import path through the package.
    """
    if _WATCHED in sys.modules or "sympy" in sys.modules:
        return
    if not any(isinstance(finder, _OnnxIrFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OnnxIrFinder())
