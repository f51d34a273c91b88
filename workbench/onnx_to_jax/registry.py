"""The emitter registry: one entry per (domain, op_type, since-version).

A family module in ``workbench/onnx_to_jax/emitters/`` registers its emitters with

    @emitter("Relu", since=6)
    def relu(ctx: NodeContext) -> str:
        return f"jax.nn.relu({ctx.x(0)})"

``since`` is an explicit integer checked against ``onnx.defs`` at
registration: the op must exist and have a schema introduced at exactly that
version, so a misspelled op or a wrong version fails at import time. When
generating, the emitter with the highest ``since`` not above the model's
opset is used. Duplicate registrations raise unless ``override=True``.

Runtime helpers (``@runtime_helper``, see :mod:`workbench.onnx_to_jax.helpers`) are registered by the
same family modules; ``runtime_helper`` is re-exported here so a family imports one module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

import onnx.defs

from workbench.errors import UnsupportedOnnxOpError
from workbench.onnx_to_jax.helpers import registered_helpers, runtime_helper  # families register helpers through here (__all__)
# operator sets and ops onnxruntime defines (onnx.defs does not): registrations checked by tests/onnx_to_jax/test_domains.py
from workbench.onnx_io.runtime_ops import RUNTIME_DOMAINS, RUNTIME_ONNX_OPS

if TYPE_CHECKING:
    from workbench.onnx_to_jax.context import NodeContext

EmitResult = Union[str, list[str], tuple[str, ...]]
EmitFn = Callable[["NodeContext"], EmitResult]

# the family modules, imported on first use (self-contained: each only needs this registry)
FAMILY_MODULES: tuple[str, ...] = (
    "workbench.onnx_to_jax.emitters.elementwise",
    "workbench.onnx_to_jax.emitters.reduce",
    "workbench.onnx_to_jax.emitters.shape",
    "workbench.onnx_to_jax.emitters.index",
    "workbench.onnx_to_jax.emitters.nn",
    "workbench.onnx_to_jax.emitters.conv",
    "workbench.onnx_to_jax.emitters.pooling",
    "workbench.onnx_to_jax.emitters.norm",
    "workbench.onnx_to_jax.emitters.control",
    "workbench.onnx_to_jax.emitters.misc",
    "workbench.onnx_to_jax.emitters.attention",
    "workbench.onnx_to_jax.emitters.flex_attention",
    "workbench.onnx_to_jax.emitters.loss",
    "workbench.onnx_to_jax.emitters.quant",
    "workbench.onnx_to_jax.emitters.resize",
    "workbench.onnx_to_jax.emitters.recurrent",
    "workbench.onnx_to_jax.emitters.spectral",
    "workbench.onnx_to_jax.emitters.sampling",
    "workbench.onnx_to_jax.emitters.detection",
    "workbench.onnx_to_jax.emitters.sequence",
    "workbench.onnx_to_jax.emitters.training",
    "workbench.onnx_to_jax.emitters.ml",
    "workbench.onnx_to_jax.emitters.microsoft",
    "workbench.onnx_to_jax.emitters.gqa",
    "workbench.onnx_to_jax.emitters.qoperator",
    "workbench.onnx_to_jax.emitters.strings",
)


@dataclass(frozen=True)
class EmitterSpec:
    domain: str
    op_type: str
    since: int
    fn: EmitFn
    # the output's shape depends on the input values (NonZero, NonMaxSuppression...): the node cannot
    # run under jax.jit and the generator runs it between jitted parts of the model (segments.py)
    value_shaped: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.domain, self.op_type)


_EMITTERS: dict[tuple[str, str], dict[int, EmitterSpec]] = {}
_loaded = False


def _check_schema(domain: str, op_type: str, since: int) -> None:
    if domain in RUNTIME_DOMAINS or (domain == "" and (op_type, since) in RUNTIME_ONNX_OPS):
        return
    if not onnx.defs.has(op_type, domain):
        raise ValueError(f"cannot register an emitter for unknown ONNX op {domain!r}::{op_type!r}")
    try:
        schema = onnx.defs.get_schema(op_type, since, domain)
    except onnx.defs.SchemaError as e:  # pragma: no cover - has() above succeeded
        raise ValueError(f"no schema for {op_type!r} at opset {since}") from e
    if schema.since_version != since:
        versions = sorted(
            {s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.name == op_type and s.domain == domain}
        )
        raise ValueError(
            f"{op_type!r} has no version introduced at opset {since}; its versions are {versions}"
        )


def emitter(
    op_type: str, *, since: int | tuple[int, ...], domain: str = "", override: bool = False,
    value_shaped: bool = False,
):
    """Register the decorated function as the emitter of ``op_type`` from opset ``since``.

    ``since`` may be a tuple to register one function for several schema versions
    whose differences it handles itself (it can read ``ctx.opset``). ``value_shaped`` declares that
    the output's shape depends on the input values (the node cannot be traced by ``jax.jit``).
    """
    versions = (since,) if isinstance(since, int) else tuple(since)

    def register(fn: EmitFn) -> EmitFn:
        for version in versions:
            if not isinstance(version, int) or isinstance(version, bool):
                raise TypeError(f"since must be an int, got {version!r}")
            _check_schema(domain, op_type, version)
            table = _EMITTERS.setdefault((domain, op_type), {})
            if version in table and not override:
                raise ValueError(
                    f"duplicate emitter for {domain!r}::{op_type!r} since {version} "
                    f"({table[version].fn.__module__}.{table[version].fn.__qualname__}); pass override=True"
                )
            table[version] = EmitterSpec(domain, op_type, version, fn, value_shaped)
        return fn

    return register


def load_families() -> None:
    global _loaded
    if _loaded:
        return
    for module in FAMILY_MODULES:
        importlib.import_module(module)
    _loaded = True


def helper_names() -> frozenset[str]:
    """The names of every runtime helper (those of all families: they are loaded first)."""
    load_families()
    return frozenset(registered_helpers())


def resolve(domain: str, op_type: str, opset: int) -> EmitterSpec:
    """The emitter for ``op_type`` at ``opset``; raises with what exists otherwise."""
    load_families()
    table = _EMITTERS.get((domain, op_type))
    if not table:
        raise UnsupportedOnnxOpError(
            f"No emitter for {domain or 'ai.onnx'!r}::{op_type!r}; it is not supported yet."
        )
    candidates = [v for v in table if v <= opset]
    if not candidates:
        raise UnsupportedOnnxOpError(
            f"No emitter for {domain or 'ai.onnx'!r}::{op_type!r} at opset {opset}; "
            f"emitters exist from opsets {sorted(table)}."
        )
    return table[max(candidates)]


def registered() -> dict[tuple[str, str], list[int]]:
    """Every registered (domain, op_type) with its since-versions (for docs and coverage)."""
    load_families()
    return {key: sorted(table) for key, table in sorted(_EMITTERS.items())}


__all__ = ["EmitFn", "EmitResult", "EmitterSpec", "FAMILY_MODULES", "emitter", "helper_names", "load_families", "registered",
           "resolve", "runtime_helper"]
