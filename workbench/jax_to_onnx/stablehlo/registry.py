"""The registry of StableHLO op converters, keyed by op name (``stablehlo.add``, ``func.call``...).

A converter is ``rule(ctx, *operands) -> Value | Sequence[Value]`` (see :class:`~.context.OpContext`),
registered with :func:`converter`, which declares what the coverage table shows: the ONNX ops it
emits (or the jaxpr handler it hands the op to), its family and the StableHLO spec section.
Optional hooks:

- ``check(op) -> reason | None``: refuse a form of the op before anything is built (a reducer body
  the converter does not recognise), so every unsupported op of a module is reported at once;
- ``fold(ctx) -> list[array | None]``: the op's result *values* when they are small integer tensors
  computable from known inputs, as NumPy object arrays of ints and JAX symbolic dimensions. This is
  how the shape arithmetic of a shape-polymorphic export (``get_dimension_size`` → ``multiply`` →
  ``concatenate`` → ``dynamic_reshape``) is followed, so dynamic dims keep their names (``B``, ``2*B``).

Custom calls are registered per target: ``stablehlo.custom_call@shape_assertion``.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

OP_MODULES: tuple[str, ...] = (
    "workbench.jax_to_onnx.stablehlo.ops.elementwise",
    "workbench.jax_to_onnx.stablehlo.ops.shape",
    "workbench.jax_to_onnx.stablehlo.ops.index",
    "workbench.jax_to_onnx.stablehlo.ops.linalg",
    "workbench.jax_to_onnx.stablehlo.ops.lapack",
    "workbench.jax_to_onnx.stablehlo.ops.reduce",
    "workbench.jax_to_onnx.stablehlo.ops.control",
)

SPEC = "https://openxla.org/stablehlo/spec#{}"


@dataclass(frozen=True)
class OpConverter:
    """A registered converter and what the coverage table says about it."""

    op: str
    rule: Callable[..., Any]
    onnx_ops: tuple[str, ...]
    via: str | None  # the jaxpr handler (primitive) the op is handed to, if any
    family: str
    doc: str
    module: str
    check: Callable[[Any], str | None] | None = None
    fold: Callable[[Any], list[Any]] | None = None
    # False when the converter reads its regions structurally instead of converting their ops
    # (a sort comparator): the ops inside are then not checked for converters of their own
    walks_regions: bool = True
    # lax primitives whose handler testcases, exported with jax.export, exercise this op (the
    # coverage explorer runs those through the StableHLO door for this op's row)
    primitives: tuple[str, ...] = ()


class OpRegistry:
    """Op name → OpConverter; duplicates are errors unless ``override=True``."""

    def __init__(self) -> None:
        self._converters: dict[str, OpConverter] = {}
        self._loaded = False
        self._lock = threading.RLock()

    def register(self, entry: OpConverter, *, override: bool = False) -> None:
        if "." not in entry.op:
            raise ValueError(f"op names carry their dialect (stablehlo.add, func.call), got {entry.op!r}")
        with self._lock:
            existing = self._converters.get(entry.op)
            if existing is not None and not override:
                raise ValueError(f"a converter for {entry.op!r} is already registered by {existing.module}; pass override=True.")
            self._converters[entry.op] = entry

    def ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for module in OP_MODULES:
                importlib.import_module(module)

    def get(self, op: str) -> OpConverter | None:
        self.ensure_loaded()
        return self._converters.get(op)

    def all(self) -> list[OpConverter]:
        self.ensure_loaded()
        return sorted(self._converters.values(), key=lambda entry: entry.op)

    def all_by_name(self) -> dict[str, OpConverter]:
        self.ensure_loaded()
        return dict(self._converters)

    def unregister(self, op: str) -> None:
        with self._lock:
            self._converters.pop(op, None)


REGISTRY = OpRegistry()


def converter(
    ops: str | Sequence[str],
    *,
    onnx_ops: Sequence[str] = (),
    via: str | None = None,
    family: str,
    spec: str | None = None,
    check: Callable[[Any], str | None] | None = None,
    fold: Callable[[Any], list[Any]] | None = None,
    walks_regions: bool = True,
    primitives: Sequence[str] = (),
    override: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``rule`` for one or more op names; ``via`` names the jaxpr handler it delegates to.

    ``primitives`` (default: ``via`` when it is one primitive name) are the lax primitives whose handler
    testcases produce this op when exported: the coverage explorer runs them for the op's row.
    """
    names = (ops,) if isinstance(ops, str) else tuple(ops)

    def decorate(rule: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            anchor = spec or name.split(".", 1)[1].split("@", 1)[0].replace("_", "-")
            REGISTRY.register(
                OpConverter(
                    op=name,
                    rule=rule,
                    onnx_ops=tuple(onnx_ops),
                    via=via,
                    family=family,
                    doc=spec if spec and spec.startswith("https://") else SPEC.format(anchor),
                    module=(rule.func if isinstance(rule, functools.partial) else rule).__module__,
                    check=check,
                    fold=fold,
                    walks_regions=walks_regions,
                    primitives=tuple(primitives) or ((via,) if via is not None and via.replace("_", "").isalnum() else ()),
                ),
                override=override,
            )
        return rule

    return decorate


def registry_key(op: Any) -> str:
    """The registry key of an MLIR op: its name, with the target for custom calls."""
    name = op.name
    if name == "stablehlo.custom_call":
        from jaxlib.mlir import ir

        return f"{name}@{ir.StringAttr(op.attributes['call_target_name']).value}"
    return name
