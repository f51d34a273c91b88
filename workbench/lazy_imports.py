"""Heavy transitive imports the workbench's own work never needs, deferred until something uses them.

- onnx-ir (the graph library both directions build on) imports sympy at module level, for the
  arithmetic of symbolic dimensions (``SymbolicDim("B") * 2``) and for parsing dimension expressions.
  The workbench never does that arithmetic: it writes symbolic dims as names and computes sizes with
  ONNX ``Shape`` ops. Importing sympy was about a quarter of a fresh process's conversion (~0.9 s of ~4 s
  on an idle 2-core machine).
- onnxscript imports ONNX's reference implementation: ``onnx.reference`` for its eager evaluator (which
  a conversion never runs) and ``onnx.reference.ops``, every op's NumPy kernel (~200 modules, 0.1-0.4 s),
  in its constant folder, which calls one only for a node it folds and cannot evaluate itself.

:func:`defer_heavy_imports` installs a one-shot import hook: while one of the watched modules (onnx-ir,
onnxscript's evaluator, onnxscript's constant folder) is imported, its heavy dependencies are stand-in
modules, for the duration of that import only. The watched module keeps references to the stand-ins
(bound as attributes of their parent package too, where ``import a.b`` reads ``a.b`` later); the first
attribute read on one (``sympy.Expr``, ``onnx.reference.ops.load_op``) imports the real module the
ordinary way and answers from it. Outside those imports nothing is replaced: ``import sympy`` or
``import onnx.reference`` anywhere else is the normal import, so there is never a half-loaded or second
copy (the real import rebinds the parent package's attribute to the real module).
A stand-in nested in another (``onnx.reference.ops`` in ``onnx.reference``) is bound on the real parent
package too when that is imported later on its own, so the chain the watched module reads keeps resolving.

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

# The modules whose import is watched, and the modules that are stand-ins while each is imported.
_DEFERRED: dict[str, tuple[str, ...]] = {
    "onnx_ir": ("sympy", "onnx_ir._symbolic_shapes"),
    "onnxscript._internal.evaluator": ("onnx.reference",),
    "onnxscript.optimizer._constant_folding": ("onnx.reference", "onnx.reference.ops"),
}


class _StandIn(types.ModuleType):
    """A module object that imports the real module on the first attribute it does not have."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # the import system probing dunders: not a use of the module
            raise AttributeError(attribute)
        real = importlib.import_module(self.__name__)
        if real is self:  # read while the watched module is still being imported: none does that today
            raise ImportError(f"{self.__name__} was used while a module deferring it was being imported; "
                              "see workbench/lazy_imports.py")
        self.__dict__.update(real.__dict__)  # later reads are plain dict hits
        if not hasattr(real, attribute) and importlib.util.find_spec(f"{self.__name__}.{attribute}") is not None:
            # a submodule the code reached as an attribute (``onnx.reference.ops``) that nothing imported yet
            setattr(self, attribute, importlib.import_module(f"{self.__name__}.{attribute}"))
            return self.__dict__[attribute]
        return getattr(real, attribute)


_UNBOUND = object()  # a parent package without the attribute


class _DeferringLoader(importlib.abc.Loader):
    """Runs a watched module's own loader with the stand-ins in ``sys.modules``, and removes them afterwards."""

    def __init__(self, loader: importlib.abc.Loader, stand_ins: tuple[str, ...], finder: _DeferringFinder) -> None:
        self._loader = loader
        self._stand_ins = stand_ins
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        placed = {name: _StandIn(name) for name in self._stand_ins if name not in sys.modules}
        for name, stand_in in placed.items():
            parent_name, _, child = name.rpartition(".")
            if parent_name and parent_name != module.__name__:
                # ``import onnx.reference.ops`` finds the stand-in in sys.modules and binds only ``onnx``;
                # the module reads ``onnx.reference.ops`` later, so the parent package holds the stand-in
                # (until the real module is imported, which rebinds it)
                parent = sys.modules.get(parent_name) or importlib.import_module(parent_name)
                if isinstance(vars(parent).get(child, _UNBOUND), (_StandIn, type(_UNBOUND))):
                    setattr(parent, child, stand_in)
            sys.modules[name] = stand_in
        try:
            self._loader.exec_module(module)
        finally:
            for name in placed:
                if isinstance(sys.modules.get(name), _StandIn):
                    del sys.modules[name]
        for name, stand_in in placed.items():
            parent_name, _, child = name.rpartition(".")
            if parent_name in placed:
                # ``onnx.reference.ops`` hangs off the ``onnx.reference`` stand-in. A later real import of
                # ``onnx.reference`` alone (``from onnx.reference import ReferenceEvaluator`` anywhere)
                # replaces that stand-in and does not import ``ops``: the watched module's
                # ``onnx.reference.ops.load_op`` would raise AttributeError, which onnxscript's constant
                # folder swallows, so every later conversion would silently stop folding. The real parent
                # gets the child stand-in as soon as it is imported.
                self._finder.attach_on_import(parent_name, child, stand_in)


class _AttachingLoader(importlib.abc.Loader):
    """Runs a module's own loader, then binds stand-ins of submodules it did not import as its attributes."""

    def __init__(self, loader: importlib.abc.Loader, children: dict[str, _StandIn]) -> None:
        self._loader = loader
        self._children = children

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        for child, stand_in in self._children.items():
            if child not in vars(module):
                setattr(module, child, stand_in)


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds each watched module with the other finders once, wrapping its loader, and each parent package
    of a nested stand-in once (:meth:`attach_on_import`); leaves ``sys.meta_path`` when none is left."""

    def __init__(self) -> None:
        self.pending = {name: stand_ins for name, stand_ins in _DEFERRED.items() if name not in sys.modules}
        self.attach: dict[str, dict[str, _StandIn]] = {}

    def attach_on_import(self, parent_name: str, child: str, stand_in: _StandIn) -> None:
        """Bind ``stand_in`` as ``child`` of the real ``parent_name`` package when that is imported."""
        self.attach.setdefault(parent_name, {})[child] = stand_in
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        children = self.attach.pop(fullname, None)
        stand_ins = self.pending.pop(fullname, None)
        if children is None and stand_ins is None:
            return None
        if not self.pending and not self.attach:
            _remove_finder()
        spec = importlib.util.find_spec(fullname)  # (this finder no longer answers for it)
        if spec is None or spec.loader is None:
            return spec
        if children is not None:
            spec.loader = _AttachingLoader(spec.loader, children)
        elif not any(name in sys.modules for name in stand_ins):
            spec.loader = _DeferringLoader(spec.loader, stand_ins, self)
        return spec


def _remove_finder() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _DeferringFinder)]


def defer_heavy_imports() -> None:
    """Let onnx-ir import without sympy and onnxscript without ONNX's reference implementation; for each,
    a no-op if it is already imported.

    Called once by ``workbench/__init__.py``, so it holds for every import path through the package.
    """
    if any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        return
    finder = _DeferringFinder()
    if finder.pending:
        sys.meta_path.insert(0, finder)
