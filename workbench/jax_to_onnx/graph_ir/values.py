"""Numbers, dtypes and tensors of the Graph IR as JSON-safe data, both ways.

- dtypes are names from one fixed table (``float32``, ``bfloat16``, ``complex64``, ``float8_e4m3fn``...);
  a name outside it is refused, nothing is looked up dynamically;
- scalars: JSON numbers, except the ones JSON cannot hold: ``"nan"``, ``"inf"``, ``"-inf"`` for
  non-finite floats and ``[re, im]`` pairs for complex numbers (each part encoded the same way);
- tensors: ``{"dtype", "shape", "data"}`` where ``data`` is ``{"values": [...]}`` (flat, row-major;
  small tensors, readable in a diff), ``{"base64": "..."}`` (the raw little-endian bytes) or
  ``{"external": {"file", "key"}}`` (a tensor of a ``.safetensors`` file beside the JSON, see storage.py).

Floats go through Python's shortest round-trip ``repr`` (what ``json`` writes), so every finite value
of float16/bfloat16/float32/float64 comes back bit for bit.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Sequence
from typing import Any

import ml_dtypes
import numpy as np

from workbench.errors import GraphIRError

# The dtypes a Graph IR may name. ml_dtypes' extension types are not known to np.dtype by name.
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name)
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    )
}
DTYPES.update(
    {
        np.dtype(dtype).name: np.dtype(dtype)
        for dtype in (
            ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2,
            ml_dtypes.float8_e5m2fnuz, ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.float4_e2m1fn,
        )
    }
)
_NAMES: dict[np.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}
# ml_dtypes' floats: each value is a float64 exactly, so small tensors of them (a bfloat16 model's literals, which
# the schema reads as numbers only) are written as readable numbers like NumPy's own floats
_FLOATS_AS_NUMBERS = frozenset(
    np.dtype(dtype) for dtype in (
        ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2,
        ml_dtypes.float8_e5m2fnuz, ml_dtypes.float4_e2m1fn,
    )
)  # fmt: skip
# JAX's typed PRNG keys by implementation; a key tensor is stored as its key data (uint32, key shape
# appended: what the ONNX graph carries), its variables keep the key dtype.
KEY_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")

# Tensors up to this many elements are written as readable values, larger ones as base64 bytes.
READABLE_ELEMENTS = 16


@functools.cache
def key_dtypes() -> dict[str, Any]:
    """``key<fry>`` → JAX's key dtype of that implementation (from the public ``jax.random.key``)."""
    import jax

    dtypes = [jax.eval_shape(functools.partial(jax.random.key, 0, impl=impl)).dtype for impl in KEY_IMPLS]
    return {str(dtype): dtype for dtype in dtypes}


def dtype_name(dtype: Any) -> str:
    """The IR name of a NumPy/JAX dtype (PRNG key dtypes included); refuses what the IR cannot carry."""
    if not isinstance(dtype, np.dtype) and str(dtype) in key_dtypes():
        return str(dtype)
    try:
        np_dtype = np.dtype(dtype)
    except TypeError as error:
        raise GraphIRError(f"dtype {dtype} cannot be written to a Graph IR (only array dtypes can).") from error
    name = _NAMES.get(np_dtype)
    if name is None:
        raise GraphIRError(f"dtype {np_dtype} cannot be written to a Graph IR; known: {', '.join(DTYPES)}.")
    return name


def dtype_from_name(name: str, where: str) -> Any:
    found = DTYPES.get(name) or key_dtypes().get(name)
    if found is None:
        raise GraphIRError(f"{where}: unknown dtype {name!r}; known: {', '.join([*DTYPES, *key_dtypes()])}.")
    return found


# ----------------------------------------------------------------------------- scalars
def encode_scalar(value: Any) -> Any:
    """One element as JSON: int, bool, finite float, 'nan'/'inf'/'-inf', or [re, im] for complex."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (complex, np.complexfloating)):
        return [encode_scalar(float(value.real)), encode_scalar(float(value.imag))]
    number = float(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return number


def decode_scalar(item: Any, where: str) -> Any:
    if isinstance(item, (bool, int, float)):
        return item
    if item in ("nan", "inf", "-inf"):
        return float(item)
    if isinstance(item, list) and len(item) == 2:
        return complex(decode_scalar(item[0], where), decode_scalar(item[1], where))
    raise GraphIRError(f"{where}: {item!r} is not a number ('nan', 'inf', '-inf' and [re, im] pairs included).")


# ----------------------------------------------------------------------------- tensors
def encode_array(array: np.ndarray, *, readable: bool | None = None) -> dict[str, Any]:
    """A tensor as ``{"dtype", "shape", "data"}``; small ones readable, large ones as base64 bytes."""
    array = np.asarray(array)
    if readable is None:
        readable = array.size <= READABLE_ELEMENTS
    header: dict[str, Any] = {"dtype": dtype_name(array.dtype), "shape": [int(d) for d in array.shape]}
    if readable and (array.dtype.kind in "biufc" or array.dtype in _FLOATS_AS_NUMBERS):
        header["data"] = {"values": [encode_scalar(v) for v in array.reshape(-1).tolist()]}
    else:
        header["data"] = {"base64": base64.b64encode(_little_endian(array).tobytes()).decode("ascii")}
    return header


def decode_array(entry: dict[str, Any], where: str, *, external: Any = None) -> np.ndarray:
    """The NumPy array of an encoded tensor; ``external(file, key, dtype, shape)`` reads side files."""
    dtype = dtype_from_name(entry["dtype"], where)
    shape = tuple(int(d) for d in entry["shape"])
    data = entry["data"]
    count = math.prod(shape)
    if "values" in data:
        values = [decode_scalar(v, where) for v in data["values"]]
        if len(values) != count:
            raise GraphIRError(f"{where}: {len(values)} values for shape {list(shape)} ({count} elements).")
        return np.asarray(values, dtype=dtype).reshape(shape)
    if "base64" in data:
        try:
            raw = base64.b64decode(data["base64"], validate=True)
        except ValueError as error:
            raise GraphIRError(f"{where}: the base64 data does not decode: {error}") from error
        return bytes_to_array(raw, dtype, shape, where)
    if external is None:
        raise GraphIRError(
            f"{where}: the tensor is stored in {data['external']['file']!r} beside the JSON; load the IR "
            "with wb.load_graph_ir(path) (or pass the file path) so its weights can be read."
        )
    return external(data["external"]["file"], data["external"]["key"], dtype, shape)


def bytes_to_array(raw: bytes, dtype: np.dtype, shape: Sequence[int], where: str) -> np.ndarray:
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise GraphIRError(f"{where}: {len(raw)} bytes for a {dtype} tensor of shape {list(shape)} ({expected} expected).")
    return np.frombuffer(raw, dtype=_stored(dtype)).astype(dtype, copy=True).reshape(tuple(shape))


def _stored(dtype: np.dtype) -> np.dtype:
    """The byte order bytes are stored in: little-endian for NumPy's numbers (ml_dtypes' are native)."""
    return dtype.newbyteorder("<") if dtype.kind in "iufc" and dtype.itemsize > 1 else dtype


def _little_endian(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=_stored(array.dtype))
