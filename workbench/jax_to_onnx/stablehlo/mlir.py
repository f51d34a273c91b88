"""Reading a StableHLO module with the MLIR Python bindings that ship with jaxlib: context, types,
attributes, locations. Every read goes through the bindings' typed objects, never through the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import chlo, mhlo, sdy, stablehlo

from workbench.compat import register_jax_dialects
from workbench.errors import SourceLocation, StableHLOError

# MLIR element types by their printed name (the bindings' canonical spelling of builtin types).
_ELEMENT_TYPES: dict[str, np.dtype] = {
    "i1": np.dtype(bool),
    "i8": np.dtype(np.int8), "i16": np.dtype(np.int16), "i32": np.dtype(np.int32), "i64": np.dtype(np.int64),
    "ui8": np.dtype(np.uint8), "ui16": np.dtype(np.uint16), "ui32": np.dtype(np.uint32), "ui64": np.dtype(np.uint64),
    "f16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16), "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64), "complex<f32>": np.dtype(np.complex64), "complex<f64>": np.dtype(np.complex128),
    "f8E4M3FN": np.dtype(ml_dtypes.float8_e4m3fn), "f8E5M2": np.dtype(ml_dtypes.float8_e5m2),
}


def new_context() -> ir.Context:
    """An MLIR context with the dialects a jax.export module uses (func, stablehlo, chlo, sdy...)."""
    context = ir.Context()
    registry = ir.DialectRegistry()
    register_jax_dialects(registry)
    context.append_dialect_registry(registry)
    context.load_all_available_dialects()
    stablehlo.register_dialect(context)
    chlo.register_dialect(context)
    sdy.register_dialect(context)  # sharding rules JAX attaches to custom calls (#sdy.op_sharding_rule)
    mhlo.register_mhlo_dialect(context)
    return context


def parse_portable_artifact(context: ir.Context, serialized: bytes) -> ir.Module:
    try:
        return stablehlo.deserialize_portable_artifact(context, serialized)
    except Exception as error:  # the bindings raise MLIRError or ValueError with the parser's diagnostics
        raise StableHLOError(f"the StableHLO module of the Exported does not parse: {error}") from error


# ----------------------------------------------------------------------------- types
@dataclass(frozen=True)
class TensorType:
    """A ranked tensor type: element dtype and dims (None where the module says ``?``)."""

    dtype: np.dtype
    dims: tuple[int | None, ...]

    @property
    def is_static(self) -> bool:
        return all(d is not None for d in self.dims)


def tensor_type(mlir_type: Any, where: str) -> TensorType:
    try:
        ranked = mlir_type if isinstance(mlir_type, ir.RankedTensorType) else ir.RankedTensorType(mlir_type)
    except ValueError:
        raise StableHLOError(f"{where}: type {mlir_type} is not a ranked tensor (tokens and tuples are not supported).") from None
    name = str(ranked.element_type)
    dtype = _ELEMENT_TYPES.get(name)
    if dtype is None:
        raise StableHLOError(f"{where}: element type {name} has no ONNX equivalent here; known: {', '.join(_ELEMENT_TYPES)}.")
    dims = tuple(None if ranked.is_dynamic_dim(i) else int(ranked.shape[i]) for i in range(ranked.rank))
    return TensorType(dtype, dims)


# ----------------------------------------------------------------------------- attributes
def ints(attr: Any) -> list[int]:
    """A DenseI64ArrayAttr / DenseIntElementsAttr / ArrayAttr of integers as a list."""
    if isinstance(attr, ir.DenseIntElementsAttr):
        return [int(v) for v in np.array(attr).reshape(-1)]
    return [int(v) for v in attr]


def int_matrix(attr: Any) -> list[list[int]]:
    return np.array(attr).astype(np.int64).tolist()


def dense_array(attr: Any, where: str) -> np.ndarray:
    """The NumPy value of a constant's dense elements attribute.

    NumPy's buffer protocol covers bool, integer, float16/32/64 attributes (splats come back full
    size). The bindings expose no buffer for bfloat16 and float8: their splats are read through
    the splat's FloatAttr, other values from the attribute's hexadecimal form (the raw little-endian
    bytes MLIR prints for dense data), which is data, never evaluated.
    """
    elements = ir.DenseElementsAttr(attr)
    tensor = tensor_type(elements.type, where)
    shape = tuple(int(d) for d in tensor.dims)
    if tensor.dtype.kind == "c":
        raise StableHLOError(f"{where}: complex constants are not supported by the StableHLO frontend.")
    if tensor.dtype.kind in "biuf" and tensor.dtype.itemsize in (1, 2, 4, 8) and tensor.dtype.name in _BUFFER_DTYPES:
        return np.array(attr).astype(tensor.dtype, copy=False).reshape(shape)
    if elements.is_splat:
        value = ir.FloatAttr(elements.get_splat_value()).value
        return np.full(shape, value, dtype=tensor.dtype)
    printed = str(attr)
    opening = printed.find('"0x')
    closing = printed.find('"', opening + 1)
    if opening < 0 or closing < 0:
        raise StableHLOError(f"{where}: cannot read the {tensor.dtype} constant {elements.type} (no raw data form).")
    raw = bytes.fromhex(printed[opening + 3 : closing])
    count = int(np.prod(shape))
    if len(raw) != count * tensor.dtype.itemsize:
        raise StableHLOError(f"{where}: the {tensor.dtype} constant holds {len(raw)} bytes for shape {list(shape)}.")
    return np.frombuffer(raw, dtype=tensor.dtype).reshape(shape).copy()


_BUFFER_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"}
)


def comparison(op: Any) -> tuple[str, str | None]:
    """(direction, compare type) of a stablehlo.compare: ("LT", "TOTALORDER")..."""
    direction = stablehlo.ComparisonDirectionAttr(op.attributes["comparison_direction"]).value
    kind = stablehlo.ComparisonTypeAttr(op.attributes["compare_type"]).value if "compare_type" in op.attributes else None
    return direction, kind


def string_attr(op: Any, name: str) -> str:
    return ir.StringAttr(op.attributes[name]).value


def symbol_ref(attr: Any) -> str:
    return ir.FlatSymbolRefAttr(attr).value


# ----------------------------------------------------------------------------- locations
@dataclass(frozen=True)
class OpLocation:
    """Where an op came from: JAX's name stack (``jit(f)/sin``) and the user's line when recorded."""

    scope: str
    source: SourceLocation | None

    def __str__(self) -> str:
        if self.source is not None:
            return f"{self.source}" + (f" [{self.scope}]" if self.scope else "")
        return self.scope or "unknown location"


def op_location(location: Any) -> OpLocation:
    """Decode JAX's location convention: NameLoc(name stack, CallSiteLoc(NameLoc(fn, FileLineColLoc), ...))."""
    scope = ""
    source: SourceLocation | None = None
    for loc in _walk_location(location):
        if isinstance(loc, ir.NameLoc) and not scope and isinstance(loc.child_loc, (ir.CallSiteLoc, ir.FileLineColLoc, ir.NameLoc)):
            name = loc.name_str
            if not name.endswith(":"):  # "reduce:"-style names mark the primitive, not the scope
                scope = name
        if isinstance(loc, ir.NameLoc) and isinstance(loc.child_loc, ir.FileLineColLoc) and source is None:
            file_loc = loc.child_loc
            source = SourceLocation(file_loc.filename, file_loc.start_line, loc.name_str)
        elif isinstance(loc, ir.FileLineColLoc) and source is None:
            source = SourceLocation(loc.filename, loc.start_line, "")
    return OpLocation(scope, source)


def _walk_location(location: Any) -> Iterator[Any]:
    """Innermost-first: NameLoc children, then a call site's callee before its caller."""
    stack = [location]
    while stack:
        loc = stack.pop()
        yield loc
        if isinstance(loc, ir.NameLoc):
            stack.append(loc.child_loc)
        elif isinstance(loc, ir.CallSiteLoc):
            stack.append(loc.caller)
            stack.append(loc.callee)
        elif isinstance(loc, ir.FusedLoc):
            stack.extend(reversed(list(loc.locations)))


def name_of_location(location: Any) -> str | None:
    """The name of a plain NameLoc (JAX names function arguments ``x``, ``params['w']``)."""
    if isinstance(location, ir.NameLoc):
        return location.name_str
    return None
