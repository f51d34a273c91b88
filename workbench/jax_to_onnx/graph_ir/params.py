"""Equation parameters as JSON-safe data, and back, by fixed tables: nothing in a document is executed.

Plain JSON carries ``null``, booleans, ints, strings and finite floats; JSON arrays are tuples
(JAX's parameters are hashable). Everything else is a one-key object whose key names its type:

==================  ===========================================================  ========================
tag                 value                                                        decodes to
==================  ===========================================================  ========================
``$float``          ``"nan"``, ``"inf"``, ``"-inf"``                             float
``$scalar``         ``{"dtype", "value"}``                                       NumPy scalar (np.int64...)
``$list``           ``[...]``                                                    list
``$dtype``          a dtype name (values.DTYPES)                                 np.dtype
``$dim``            a symbolic dimension expression (``"2*B"``)                  JAX symbolic dimension
``$enum``           ``{"type", "member"}`` of a type in ENUMS                    that enum member
``$record``         ``{"type", "fields"}`` of a type in RECORDS                  that NamedTuple
``$closed_jaxpr``   ``{"graph", "consts"}``: a nested graph and its constants   ClosedJaxpr
``$jaxpr``          a nested graph                                               Jaxpr
``$tensor``         the name of a tensor of the document                         np.ndarray
``$dropped``        the Python type name of a parameter that only matters to     :class:`DroppedParam`
                    compilation or differentiation, for the (primitive, name)
                    pairs of DROPPED (shardings, JVP/VJP rules)
==================  ===========================================================  ========================

A parameter of any other type cannot be written (the error lists every such parameter at once), and a
document naming a type outside these tables is refused when read.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np
import jax.extend.random as jax_random
from jax import lax

from workbench.compat import LinearSolveTuple, MemorySpace
from workbench.errors import GraphIRError
from workbench.jax_to_onnx.graph_ir.values import decode_scalar, dtype_from_name, dtype_name, encode_scalar

# Enumerations JAX uses as parameters, by the name written in documents.
ENUMS: dict[str, type[enum.Enum]] = {
    cls.__name__: cls
    for cls in (
        lax.GatherScatterMode,
        lax.RoundingMethod,
        lax.Precision,
        lax.FftType,
        lax.DotAlgorithmPreset,
        lax.RandomAlgorithm,
        lax.AccuracyMode,
        MemorySpace,  # empty2's memory_space
    )
}
# NamedTuples JAX uses as parameters (their fields are parameters themselves).
RECORDS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        lax.ConvDimensionNumbers,
        lax.GatherDimensionNumbers,
        lax.ScatterDimensionNumbers,
        lax.DotAlgorithm,
        LinearSolveTuple,  # custom_linear_solve's const_lengths and jaxprs
    )
}
# JAX's PRNG implementations (the ``impl`` parameter of random_seed/random_wrap), by name.
PRNG_IMPLS: dict[str, Any] = {
    impl.name: impl for impl in (jax_random.threefry_prng_impl, jax_random.rbg_prng_impl, jax_random.unsafe_rbg_prng_impl)
}
# Parameters that only matter to XLA compilation or to differentiation, never to what the ONNX graph
# computes; their values (functions, thunks, meshes, shardings) have no data form. Handlers ``del`` them.
DROPPED: dict[str, frozenset[str]] = {
    "jit": frozenset({"ctx_mesh", "in_shardings", "out_shardings", "in_layouts", "out_layouts"}),
    "custom_jvp_call": frozenset({"jvp_jaxpr_fun", "jvp_jaxpr_thunk"}),
    "custom_vjp_call": frozenset({"fwd_jaxpr_thunk", "bwd", "out_trees", "fwd", "fwd_jaxpr"}),
    "remat2": frozenset({"policy"}),
    "device_put": frozenset({"devices", "srcs", "copy_semantics"}),
    "reduce": frozenset({"computation"}),  # the Python reducer; its trace is the ``jaxpr`` parameter
}


@dataclasses.dataclass(frozen=True)
class DroppedParam:
    """Stands for a compile- or differentiation-only parameter that a Graph IR does not carry."""

    type_name: str


class ParamEncoder(Protocol):
    """What encoding a parameter needs from the document being written."""

    def closed_jaxpr(self, closed: Any) -> dict[str, Any]: ...

    def jaxpr(self, jaxpr: Any) -> dict[str, Any]: ...

    def tensor(self, array: np.ndarray) -> str: ...


class ParamDecoder(Protocol):
    """What decoding a parameter needs from the document being read."""

    def closed_jaxpr(self, item: dict[str, Any], where: str) -> Any: ...

    def jaxpr(self, item: dict[str, Any], where: str) -> Any: ...

    def tensor(self, name: str, where: str) -> np.ndarray: ...

    def dim(self, text: str, where: str) -> Any: ...


class UnencodableParam(Exception):
    """Internal: one parameter value has no data form; collected by the encoder into one GraphIRError."""


# ----------------------------------------------------------------------------- encoding
def encode_param(value: Any, encoder: ParamEncoder, *, primitive: str, name: str) -> Any:
    """``value`` of parameter ``name`` of ``primitive`` as JSON-safe data (raises UnencodableParam)."""
    if name in DROPPED.get(primitive, ()):
        return {"$dropped": type(value).__name__}
    return _encode(value, encoder)


def _encode(value: Any, encoder: ParamEncoder) -> Any:
    from jax.extend import core as jex_core

    if value is None or isinstance(value, (bool, str)):
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"$float": encode_scalar(value)}
    if isinstance(value, enum.Enum):  # before ints: some are IntEnums
        type_name = type(value).__name__
        if ENUMS.get(type_name) is not type(value):
            raise UnencodableParam(f"enum {type(value).__module__}.{type_name}")
        return {"$enum": {"type": type_name, "member": value.name}}
    if isinstance(value, np.generic):
        return {"$scalar": {"dtype": dtype_name(value.dtype), "value": encode_scalar(value)}}
    if isinstance(value, np.dtype):
        return {"$dtype": dtype_name(value)}
    if jax.export.is_symbolic_dim(value):
        return {"$dim": str(value)}
    if isinstance(value, jex_core.ClosedJaxpr):
        return {"$closed_jaxpr": encoder.closed_jaxpr(value)}
    if isinstance(value, jex_core.Jaxpr):
        return {"$jaxpr": encoder.jaxpr(value)}
    if isinstance(value, (np.ndarray, jax.Array)):
        return {"$tensor": encoder.tensor(np.asarray(value))}
    for impl_name, impl in PRNG_IMPLS.items():
        if value is impl:
            return {"$prng_impl": impl_name}
    if isinstance(value, tuple) and type(value) is not tuple:  # a NamedTuple
        type_name = type(value).__name__
        if RECORDS.get(type_name) is not type(value):
            raise UnencodableParam(f"record {type(value).__module__}.{type_name}")
        return {"$record": {"type": type_name, "fields": {k: _encode(v, encoder) for k, v in value._asdict().items()}}}
    if isinstance(value, tuple):
        return [_encode(v, encoder) for v in value]
    if isinstance(value, list):
        return {"$list": [_encode(v, encoder) for v in value]}
    raise UnencodableParam(f"{type(value).__module__}.{type(value).__name__}")


# ----------------------------------------------------------------------------- decoding
def decode_param(item: Any, decoder: ParamDecoder, *, primitive: str, name: str, where: str) -> Any:
    """The Python value of parameter ``name`` of ``primitive`` from its JSON form."""
    if isinstance(item, dict) and "$dropped" in item:
        if name not in DROPPED.get(primitive, ()):
            raise GraphIRError(
                f"{where}: parameter {name!r} of {primitive!r} is marked as dropped, but only "
                f"{sorted(DROPPED.get(primitive, ())) or 'no parameters'} of {primitive!r} may be."
            )
        return DroppedParam(str(item["$dropped"]))
    return _decode(item, decoder, where)


def _decode(item: Any, decoder: ParamDecoder, where: str) -> Any:
    if item is None or isinstance(item, (bool, int, float, str)):
        return item
    if isinstance(item, list):
        return tuple(_decode(v, decoder, f"{where}[{i}]") for i, v in enumerate(item))
    if not isinstance(item, dict) or len(item) != 1:
        raise GraphIRError(f"{where}: {item!r} is not a parameter value (a JSON scalar, array or one-key tagged object).")
    ((tag, body),) = item.items()
    decode = _DECODERS.get(tag)
    if decode is None:
        raise GraphIRError(f"{where}: unknown parameter type {tag!r}; known: {', '.join(sorted(_DECODERS))}.")
    return decode(body, decoder, f"{where}.{tag}")


def _decode_float(body: Any, decoder: ParamDecoder, where: str) -> float:
    del decoder
    if body not in ("nan", "inf", "-inf"):
        raise GraphIRError(f"{where}: expected 'nan', 'inf' or '-inf', got {body!r}.")
    return float(body)


def _decode_scalar(body: Any, decoder: ParamDecoder, where: str) -> np.generic:
    del decoder
    dtype = dtype_from_name(body["dtype"], where)
    return np.asarray(decode_scalar(body["value"], where), dtype=dtype)[()]


def _decode_list(body: Any, decoder: ParamDecoder, where: str) -> list[Any]:
    return [_decode(v, decoder, f"{where}[{i}]") for i, v in enumerate(body)]


def _decode_dtype(body: Any, decoder: ParamDecoder, where: str) -> np.dtype:
    del decoder
    return dtype_from_name(body, where)


def _decode_dim(body: Any, decoder: ParamDecoder, where: str) -> Any:
    return decoder.dim(body, where)


def _decode_enum(body: Any, decoder: ParamDecoder, where: str) -> enum.Enum:
    del decoder
    cls = ENUMS.get(body["type"])
    if cls is None:
        raise GraphIRError(f"{where}: unknown enum {body['type']!r}; known: {', '.join(sorted(ENUMS))}.")
    try:
        return cls[body["member"]]
    except KeyError:
        raise GraphIRError(
            f"{where}: {body['type']} has no member {body['member']!r}; known: {', '.join(m.name for m in cls)}."
        ) from None


def _decode_record(body: Any, decoder: ParamDecoder, where: str) -> Any:
    cls = RECORDS.get(body["type"])
    if cls is None:
        raise GraphIRError(f"{where}: unknown record {body['type']!r}; known: {', '.join(sorted(RECORDS))}.")
    fields = body["fields"]
    expected = set(cls._fields)  # type: ignore[attr-defined]  # every RECORDS entry is a NamedTuple
    if set(fields) != expected:
        raise GraphIRError(f"{where}: {body['type']} has fields {sorted(expected)}, the document gives {sorted(fields)}.")
    return cls(**{k: _decode(v, decoder, f"{where}.{k}") for k, v in fields.items()})


def _decode_prng_impl(body: Any, decoder: ParamDecoder, where: str) -> Any:
    del decoder
    impl = PRNG_IMPLS.get(body)
    if impl is None:
        raise GraphIRError(f"{where}: unknown PRNG implementation {body!r}; known: {', '.join(PRNG_IMPLS)}.")
    return impl


def _decode_closed_jaxpr(body: Any, decoder: ParamDecoder, where: str) -> Any:
    return decoder.closed_jaxpr(body, where)


def _decode_jaxpr(body: Any, decoder: ParamDecoder, where: str) -> Any:
    return decoder.jaxpr(body, where)


def _decode_tensor(body: Any, decoder: ParamDecoder, where: str) -> np.ndarray:
    return decoder.tensor(body, where)


_DECODERS: dict[str, Callable[[Any, ParamDecoder, str], Any]] = {
    "$float": _decode_float,
    "$scalar": _decode_scalar,
    "$list": _decode_list,
    "$dtype": _decode_dtype,
    "$dim": _decode_dim,
    "$enum": _decode_enum,
    "$record": _decode_record,
    "$closed_jaxpr": _decode_closed_jaxpr,
    "$jaxpr": _decode_jaxpr,
    "$tensor": _decode_tensor,
    "$prng_impl": _decode_prng_impl,
}
