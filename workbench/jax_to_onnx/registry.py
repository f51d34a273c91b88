"""The one registry of primitive handlers (JAX → ONNX), keyed by primitive name.

A handler is a small function ``rule(ctx, *operands, **eqn.params) -> Value | tuple[Value, ...]``
registered with :func:`handler`, which also declares its metadata: the ONNX ops it emits,
a documentation link, and its testcases. The test suite (``tests/jax_to_onnx/test_handlers.py``) and the
coverage explorer are generated from this metadata, so a handler without a testcase fails a test.

Third parties add handlers either at run time with the same decorator, or through the
``workbench.handlers`` entry-point group (each entry point names a module that registers
handlers when imported). A plugin that fails to import raises :class:`PluginLoadError`
naming it, never a warning that is easy to miss.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from workbench.errors import PluginLoadError

ENTRY_POINT_GROUP = "workbench.handlers"

# Built-in handler modules, one per primitive family; imported on first use of the registry.
BUILTIN_HANDLER_MODULES: tuple[str, ...] = (
    "workbench.jax_to_onnx.handlers.elementwise",
    "workbench.jax_to_onnx.handlers.structural",
    "workbench.jax_to_onnx.handlers.linalg",
    "workbench.jax_to_onnx.handlers.shape",
    "workbench.jax_to_onnx.handlers.reduce",
    "workbench.jax_to_onnx.handlers.index",
    "workbench.jax_to_onnx.handlers.conv",
    "workbench.jax_to_onnx.handlers.control",
    "workbench.jax_to_onnx.handlers.sort",
    "workbench.jax_to_onnx.handlers.cumulative",
    "workbench.jax_to_onnx.handlers.special",
    "workbench.jax_to_onnx.handlers.solve",
    "workbench.jax_to_onnx.handlers.factorizations",
    "workbench.jax_to_onnx.handlers.eigen",
    "workbench.jax_to_onnx.handlers.nonsymmetric",
    "workbench.jax_to_onnx.handlers.real_schur",
    "workbench.jax_to_onnx.handlers.eig",
    "workbench.jax_to_onnx.handlers.random",
    "workbench.jax_to_onnx.handlers.bitcast",
    "workbench.jax_to_onnx.handlers.total_order",
    "workbench.jax_to_onnx.handlers.transforms",
    "workbench.jax_to_onnx.handlers.equinox",
    "workbench.jax_to_onnx.handlers.complex_ops",
    "workbench.jax_to_onnx.handlers.fft",
    "workbench.jax_to_onnx.handlers.special_functions",
    "workbench.jax_to_onnx.handlers.custom_reduce",
)


@dataclass(frozen=True)
class Testcase:
    """One numeric test of a handler: ``fn`` converted with ``inputs`` and compared with JAX.

    ``inputs`` are input specs as for ``wb.to_onnx`` (shape tuples, ShapeDtypeStructs) or
    concrete arrays; specs are filled with random data of their dtype (ints in ``[0, int_high)``).
    """

    __test__ = False  # not a pytest test class despite the name

    name: str
    fn: Callable[..., Any]
    inputs: Sequence[Any]
    rtol: float = 1e-5
    atol: float = 1e-5
    int_high: int = 5
    x64: bool = False
    expect_ops: tuple[str, ...] = ()
    symbolic_sizes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HandlerInfo:
    """A registered handler and its metadata."""

    primitive: str
    rule: Callable[..., Any]
    onnx_ops: tuple[str, ...]
    doc: str
    testcases: tuple[Testcase, ...]
    area: str
    module: str
    # the lowest ONNX opset whose operators the handler can emit (it picks its form per opset above it)
    min_opset: int = 13
    # (equation, target opset or None) → why this particular use cannot be exported ("" when it can);
    # checked before lowering, so every refusal is reported at once with the unsupported primitives
    unsupported_reason: Callable[[Any, int | None], str] | None = None
    # True for the handler of equations that read or write complex values, which the exported graph
    # carries as real (real, imag) pairs (jax_to_onnx/complex_numbers.py); such an equation is only
    # ever lowered by its primitive's complex handler
    complex_numbers: bool = False

    @property
    def subject(self) -> str:
        """The primitive, marked when this is its complex-number handler."""
        return f"{self.primitive} (complex)" if self.complex_numbers else self.primitive


class HandlerRegistry:
    """Primitive name → HandlerInfo. Duplicate registration is an error unless ``override=True``."""

    def __init__(self) -> None:
        self._handlers: dict[str, HandlerInfo] = {}
        self._complex_handlers: dict[str, HandlerInfo] = {}
        self._loaded = False  # loading has started (set first: a handler module may ask the registry while it loads)
        self._ready = False  # every handler module and plugin is loaded: read without the lock
        self._lock = threading.RLock()

    def register(self, info: HandlerInfo, *, override: bool = False) -> None:
        if not info.primitive or not isinstance(info.primitive, str):
            raise ValueError(f"handler primitive name must be a non-empty string, got {info.primitive!r}")
        table = self._complex_handlers if info.complex_numbers else self._handlers
        with self._lock:
            existing = table.get(info.primitive)
            if existing is not None and not override:
                raise ValueError(
                    f"a handler for {info.subject!r} is already registered by {existing.module}; "
                    "pass override=True to replace it."
                )
            table[info.primitive] = info

    def unregister(self, primitive: str, *, complex_numbers: bool = False) -> None:
        with self._lock:
            (self._complex_handlers if complex_numbers else self._handlers).pop(primitive, None)

    def ensure_loaded(self) -> None:
        """Import the built-in handler modules and the entry-point plugins, once."""
        if self._ready:  # asked twice per equation of every conversion: no lock once everything is loaded
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for module_name in BUILTIN_HANDLER_MODULES:
                importlib.import_module(module_name)
            for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    entry_point.load()
                except Exception as error:
                    raise PluginLoadError(
                        f"handler plugin {entry_point.name!r} ({entry_point.value}) from the "
                        f"{ENTRY_POINT_GROUP!r} entry-point group failed to import: {type(error).__name__}: {error}. "
                        "Fix or uninstall the plugin."
                    ) from error
            self._ready = True

    def get(self, primitive: str, *, complex_numbers: bool = False) -> HandlerInfo | None:
        """The handler of ``primitive``; with ``complex_numbers``, the one for equations on complex values."""
        self.ensure_loaded()
        return (self._complex_handlers if complex_numbers else self._handlers).get(primitive)

    def all(self) -> list[HandlerInfo]:
        """Every handler, complex-number ones included (each primitive's real one first)."""
        self.ensure_loaded()
        every = [*self._handlers.values(), *self._complex_handlers.values()]
        return sorted(every, key=lambda info: (info.primitive, info.complex_numbers))


REGISTRY = HandlerRegistry()


@functools.lru_cache(maxsize=None)
def keyword_parameters(rule: Callable[..., Any]) -> frozenset[str] | None:
    """The parameter names ``rule`` takes by keyword, or ``None`` when it takes ``**params`` (a rule
    that forwards them to another rule or to JAX, which checks them)."""
    names = set()
    for parameter in inspect.signature(rule).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.add(parameter.name)
    return frozenset(names)


def unknown_parameters(rule: Callable[..., Any], params: Mapping[str, Any]) -> list[str]:
    """The equation parameters ``rule`` does not name (a JAX release added them), sorted."""
    known = keyword_parameters(rule)
    if known is None or known.issuperset(params):  # the common case, answered without building a set
        return []
    return sorted(set(params) - known)


def handler(
    primitives: str | Sequence[str],
    *,
    onnx_ops: Sequence[str],
    testcases: Sequence[Testcase] = (),
    doc: str | None = None,
    area: str = "lax",
    override: bool = False,
    min_opset: int = 13,
    unsupported_reason: Callable[[Any, int | None], str] | None = None,
    complex_numbers: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``rule`` for one or more JAX primitive names.

    ``doc`` defaults to the jax.lax documentation of the primitive. ``min_opset`` is the lowest
    target opset the handler supports; ``unsupported_reason(eqn, opset)`` returns why a particular
    equation cannot be exported at that opset (``None``: any) or ``""``, so it is reported with the
    unsupported primitives. With ``complex_numbers`` the rule lowers the primitive's equations that
    touch complex values (carried as real pairs, see complex_numbers.py).
    """
    names = (primitives,) if isinstance(primitives, str) else tuple(primitives)

    def decorate(rule: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            REGISTRY.register(
                HandlerInfo(
                    primitive=name,
                    rule=rule,
                    onnx_ops=tuple(onnx_ops),
                    doc=doc or f"https://docs.jax.dev/en/latest/_autosummary/jax.lax.{name}.html",
                    testcases=tuple(testcases),
                    area=area,
                    module=(rule.func if isinstance(rule, functools.partial) else rule).__module__,
                    min_opset=min_opset,
                    unsupported_reason=unsupported_reason,
                    complex_numbers=complex_numbers,
                ),
                override=override,
            )
        return rule

    return decorate
