"""Input/output specs of an ONNX graph, example inputs, and the JSON form of tensors the page reads.

A tensor in JSON is ``{"dtype": "float32", "shape": [2, 3], "data": [...]}`` with ``data``
flattened in C order. JSON has no NaN/Infinity, so non-finite floats are written as the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (``Number(s)`` in JavaScript reads them back), and
int64/uint64 values beyond 2^53 (which a double cannot hold) as decimal strings (``BigInt(s)`` reads them).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from workbench.onnx_io.describe import ValueDescription, describe_inputs, describe_outputs

#: dtypes the page can turn into onnxruntime-web tensors (name -> numpy dtype). float16 uses ``Float16Array``
#: where the browser has it (Chromium 135+, Firefox 129+, Safari 18.2+) and its bits in a ``Uint16Array`` elsewhere.
SUPPORTED_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name)
    for name in ("float32", "float64", "float16", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                 "int64", "uint64", "bool")
}  # fmt: skip
#: The largest integer a double (a JSON number in JavaScript) holds exactly; larger 64-bit ints are strings.
MAX_EXACT_INT = 2**53 - 1
#: An expected output of more elements than this is not written into the manifest as JSON (a segmentation map of
#: 21x512x512 floats is ~100 MB of text) but as a binary file the page compares the browser's output with itself,
#: reporting the largest difference and where it is (:func:`tensor_to_file`); smaller ones travel as JSON both ways.
MAX_JSON_ELEMENTS = 1 << 20
DEFAULT_SYMBOLIC_DIM = 2
DEFAULT_INT_HIGH = 4  # exclusive upper bound for integer inputs that do not index a table


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, dtype name and shape (ints, dim names, or None if unknown)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...] | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype,
                "shape": None if self.shape is None else list(self.shape)}  # fmt: skip


def _spec(value: ValueDescription) -> TensorSpec:
    from workbench.errors import OnnxModelError

    if not value.is_tensor:
        raise OnnxModelError(f"graph value {value.name!r} is not a tensor; the web harness supports tensors only")
    dtype = value.dtype.name if value.dtype is not None else value.type_name
    if dtype not in SUPPORTED_DTYPES:
        raise OnnxModelError(
            f"graph value {value.name!r} has dtype {dtype}; the web harness supports "
            f"{', '.join(SUPPORTED_DTYPES)}"
        )
    return TensorSpec(value.name, dtype, value.shape)


def graph_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Specs of the real inputs (initializers excluded) and of the outputs."""
    return [_spec(v) for v in describe_inputs(model.graph)], [_spec(v) for v in describe_outputs(model.graph)]


def _index_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """Inputs used directly as Gather indices into an initializer -> that table's size on the axis.

    Token ids of a language model are the common case: a random id must stay below the vocab size.
    """
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        table, indices = node.input[0], node.input[1]
        if table not in shapes:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        size = shapes[table][axis]
        bounds[indices] = min(bounds.get(indices, size), size)
    return bounds


def example_inputs(
    model: onnx.ModelProto, specs: list[TensorSpec], *, seed: int = 0,
    symbolic_dim: int = DEFAULT_SYMBOLIC_DIM,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Deterministic example inputs: symbolic/unknown dims become ``symbolic_dim``.

    Floats are standard normal; integers lie in ``[0, table size)`` when the input indexes an
    initializer through Gather (token ids), otherwise in ``[0, DEFAULT_INT_HIGH)``; bools are random.
    """
    from workbench.errors import OnnxModelError

    rng = np.random.default_rng(seed)
    bounds = _index_bounds(model)
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.shape is None:
            raise OnnxModelError(
                f"input {spec.name!r} has no shape in the model; pass inputs={{...}} explicitly"
            )
        shape = tuple(d if isinstance(d, int) else symbolic_dim for d in spec.shape)
        dtype = SUPPORTED_DTYPES[spec.dtype]
        if dtype == np.bool_:
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            high = max(1, min(bounds.get(spec.name, DEFAULT_INT_HIGH), np.iinfo(dtype).max))
            arrays[spec.name] = rng.integers(0, high, size=shape).astype(dtype)
        else:
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
    return arrays


def coerce_inputs(given: Mapping[str, Any], specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Check user-given example inputs against the specs (names, dtypes, ranks, fixed dims)."""
    from workbench.errors import SpecError

    expected = {spec.name: spec for spec in specs}
    unknown = sorted(set(given) - set(expected))
    missing = sorted(set(expected) - set(given))
    if unknown or missing:
        raise SpecError(
            f"inputs do not match the model: missing {missing or 'none'}, unknown {unknown or 'none'}; "
            f"the model's inputs are {sorted(expected)}"
        )
    arrays: dict[str, np.ndarray] = {}
    for name, spec in expected.items():
        array = np.asarray(given[name])
        if array.dtype.name != spec.dtype:
            raise SpecError(f"input {name!r} has dtype {array.dtype.name}, the model wants {spec.dtype}")
        if spec.shape is not None:
            fixed_ok = len(spec.shape) == array.ndim and all(
                not isinstance(d, int) or d == n for d, n in zip(spec.shape, array.shape, strict=True)
            )
            if not fixed_ok:
                raise SpecError(f"input {name!r} has shape {array.shape}, the model wants {spec.shape}")
        arrays[name] = array
    return arrays


def _json_scalar(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def tensor_to_json(array: np.ndarray) -> dict[str, Any]:
    """The JSON form of a tensor (see the module docstring)."""
    array = np.asarray(array)
    if array.dtype.name not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype {array.dtype.name} is not supported by the web harness")
    data = array.reshape(-1).tolist()
    if np.issubdtype(array.dtype, np.floating):
        data = [_json_scalar(v) for v in data]
    elif array.dtype.itemsize == 8:  # int64/uint64: JSON readers parse numbers as doubles
        data = [v if -MAX_EXACT_INT <= v <= MAX_EXACT_INT else str(v) for v in data]
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": data}


def tensor_from_json(payload: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`tensor_to_json` (also reads the page's telemetry outputs)."""
    dtype = SUPPORTED_DTYPES[str(payload["dtype"])]
    number = float if np.issubdtype(dtype, np.floating) else int
    data = [number(v) if isinstance(v, str) else v for v in payload["data"]]
    return np.asarray(data, dtype=dtype).reshape([int(d) for d in payload["shape"]])


def tensor_to_file(array: np.ndarray, path: Path) -> dict[str, Any]:
    """Write ``array`` as its raw little-endian values in C order (what a JavaScript typed array of its dtype reads;
    bool as one byte each) to ``path``; returns the manifest entry naming the file, its dtype, shape and sha256."""
    from workbench import files

    array = np.asarray(array)
    if array.dtype.name not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype {array.dtype.name} is not supported by the web harness")
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    files.write_bytes_atomic(path, data)
    return {"dtype": array.dtype.name, "shape": list(array.shape), "file": path.name,
            "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip


def tensor_from_file(entry: Mapping[str, Any], folder: Path) -> np.ndarray:
    """Inverse of :func:`tensor_to_file`: the array the manifest ``entry`` names, read from ``folder``."""
    dtype = SUPPORTED_DTYPES[str(entry["dtype"])].newbyteorder("<")
    shape = [int(d) for d in entry["shape"]]
    return np.fromfile(folder / str(entry["file"]), dtype=dtype).reshape(shape)
