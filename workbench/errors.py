"""The error hierarchy of the workbench.

Every error a user can cause derives from :class:`WorkbenchError` (or is a
``ValueError`` for plain argument mistakes, see :class:`SpecError`), names the
thing at fault and says what to do. Internal failures of JAX, protobuf or
onnxruntime are chained with ``raise ... from`` so nothing is lost, but the
message the user reads is ours.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field


class WorkbenchError(Exception):
    """Base class of every error raised by the workbench for a user-facing problem."""


class SpecError(WorkbenchError, ValueError):
    """An argument (input spec, callable, option) is malformed or inconsistent."""


def check_flag(name: str, value: object, accepted: tuple[type, ...] = (bool,)) -> None:
    """A True/False option, or a SpecError naming it: a string such as 'no' would otherwise read as True."""
    if not isinstance(value, accepted):
        raise SpecError(f"{name}: expected True or False, got {value!r}.")


class ModelSourceError(SpecError, TypeError):
    """The model argument is neither a ModelProto, a path nor bytes (a ``TypeError`` too, as Python's own)."""


class WorkbenchWarning(UserWarning):
    """Something in the user's input the workbench worked around instead of refusing (the message says what,
    and what was done instead); emitted with :func:`warnings.warn`."""


def warn(message: str) -> None:
    """``warnings.warn(message, WorkbenchWarning)`` attributed to the first caller outside the workbench package,
    so the warning names the user's line (and Python's once-per-location filter counts the user's call sites)."""
    level = 1
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "workbench":
        frame = frame.f_back
        level += 1
    warnings.warn(message, WorkbenchWarning, stacklevel=level)


class TraceError(WorkbenchError):
    """The callable could not be traced to a jaxpr with the given input specs."""


@dataclass(frozen=True)
class SourceLocation:
    """Where in the user's code an equation came from.

    ``cell`` is the notebook's name for the code (``cell [5]``) when it was a notebook cell
    (see :mod:`workbench.notebook_cells`); ``file`` stays the compiled file name, which
    ``linecache`` reads the source lines from.
    """

    file: str
    line: int
    function: str
    cell: str | None = None

    def __str__(self) -> str:
        where = f"{self.cell}, line {self.line}" if self.cell is not None else f"{self.file}:{self.line}"
        return f"{where} ({self.function})"

    def short(self) -> str:
        """``cell [5], line 3`` for notebook code, ``model.py:3`` (the file's name only) otherwise."""
        if self.cell is not None:
            return f"{self.cell}, line {self.line}"
        return f"{self.file.rsplit('/', 1)[-1]}:{self.line}"


@dataclass
class UnsupportedPrimitive:
    """One primitive without a handler, with every place it was used."""

    name: str
    count: int
    locations: list[SourceLocation] = field(default_factory=list)
    # why it cannot be exported when a handler exists but refuses this use (a PRNG implementation
    # other than threefry, a host callback...), with what to do instead
    reason: str = ""

    def describe(self) -> str:
        where = ", ".join(str(loc) for loc in self.locations[:5])
        more = f" and {len(self.locations) - 5} more" if len(self.locations) > 5 else ""
        because = f": {self.reason}" if self.reason else ""
        return f"  {self.name} ×{self.count}" + (f" at {where}{more}" if where else "") + because


def describe_each(items: list[UnsupportedPrimitive]) -> str:
    """One line per unsupported primitive or op, for the listing errors below."""
    return "\n".join(item.describe() for item in items)


class UnsupportedPrimitiveError(WorkbenchError):
    """The jaxpr holds primitives that cannot be exported: no registered handler, or a stated reason (all are listed)."""

    def __init__(self, primitives: list[UnsupportedPrimitive]):
        self.primitives = primitives
        super().__init__(
            f"{len(primitives)} primitive(s) cannot be exported (no ONNX handler, or for the reason given):\n"
            f"{describe_each(primitives)}\n"
            "Run wb.check(fn, inputs) for the full report and a handler stub, "
            "or register a handler with @workbench.jax_to_onnx.registry.handler(...)."
        )


class ConversionError(WorkbenchError):
    """A handler failed to lower an equation; the message names the primitive and the source line."""


class PluginLoadError(WorkbenchError):
    """A handler plugin registered through the ``workbench.handlers`` entry point failed to import."""


class OnnxModelError(WorkbenchError):
    """An ONNX file or ModelProto is unreadable, invalid or uses something we cannot handle."""


class ModelRunError(OnnxModelError):
    """Generated code failed on the inputs it was given; the message names the ONNX node whose statement failed."""


class UnsupportedOnnxOpError(OnnxModelError):
    """The ONNX model uses an operator (or type) that has no JAX emitter."""


class GraphIRError(WorkbenchError):
    """A Graph IR document is malformed, fails its schema, or holds something the IR cannot carry."""


class StableHLOError(WorkbenchError):
    """A serialized jax.export artefact cannot be read, or its StableHLO module cannot be converted."""


class UnsupportedStableHLOOpError(StableHLOError):
    """The StableHLO module holds ops without an ONNX converter (all are listed, with their locations)."""

    def __init__(self, ops: list[UnsupportedPrimitive]):
        self.ops = ops
        super().__init__(
            f"{len(ops)} StableHLO op(s) have no ONNX converter:\n{describe_each(ops)}\n"
            "Convert the function itself with wb.to_onnx(fn, inputs) when you have its Python source, "
            "or register a converter with @workbench.jax_to_onnx.stablehlo.registry.converter(...)."
        )
