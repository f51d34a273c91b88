"""Loading the model under test and running it in onnxruntime, with errors that name what failed.

Shared by parity and the divergence locator: a model given as a path or a ModelProto, checked
against the function's inputs (count, dtype, rank), run on the CPU provider with graph
optimisations on or off. onnxruntime's own errors are wrapped with the model's path and, when
onnxruntime names it, the failing node.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from workbench.errors import OnnxModelError, SpecError, WorkbenchError
from workbench.jax_to_onnx.complex_numbers import COMPLEX_DOC, real_dtype, storage_shape, to_pairs


@dataclass(frozen=True)
class LoadedModel:
    """A ModelProto and where it came from (for messages)."""

    proto: onnx.ModelProto
    source: str  # the file path, or "<ModelProto>"


def load_model(model: onnx.ModelProto | str | os.PathLike[str]) -> LoadedModel:
    """Accept a ModelProto or a path to an .onnx file (external data beside it is loaded too)."""
    if isinstance(model, onnx.ModelProto):
        return LoadedModel(model, "<ModelProto>")
    if not isinstance(model, (str, os.PathLike)):
        raise SpecError(f"model: expected an onnx.ModelProto or a path to an .onnx file, got {type(model).__name__}.")
    path = Path(model)
    if not path.is_file():
        raise OnnxModelError(f"model: {path} does not exist or is not a file.")
    try:
        proto = onnx.load_model(str(path))
    except Exception as error:  # protobuf DecodeError and friends: the bytes are not an ONNX model
        raise OnnxModelError(f"model: {path} is not an ONNX file ({type(error).__name__}: {error}).") from error
    if not proto.graph.node and not proto.graph.output:
        raise OnnxModelError(f"model: {path} is not an ONNX file (it parses to an empty model with no graph).")
    return LoadedModel(proto, str(path))


def onnx_input_dtype(value_info: onnx.ValueInfoProto) -> np.dtype:
    elem_type = value_info.type.tensor_type.elem_type
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def input_dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    """A graph input's dims: ints, symbolic names (dim_param), or ``"?"`` when unnamed."""
    dims: list[int | str] = []
    for dim in value_info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or "?")
    return dims


def check_inputs_match(loaded: LoadedModel, flat_specs: Sequence[Any], fn_name: str) -> None:
    """Count, dtype and rank of the model's inputs against the function's flat inputs."""
    graph_inputs = real_inputs(loaded.proto)
    if len(graph_inputs) != len(flat_specs):
        raise WorkbenchError(
            f"model {loaded.source} has {len(graph_inputs)} input(s) {[i.name for i in graph_inputs]} but "
            f"{fn_name} takes {len(flat_specs)} flat input(s); is this the model exported from this function?"
        )
    for position, (value_info, spec) in enumerate(zip(graph_inputs, flat_specs, strict=True)):
        model_dtype = onnx_input_dtype(value_info)
        if model_dtype != real_dtype(spec.dtype):  # complex inputs are real (real, imag) pairs in the model
            raise WorkbenchError(
                f"model {loaded.source} input {position} {value_info.name!r} is {model_dtype} but "
                f"{fn_name} gets {np.dtype(spec.dtype)} there; pass inputs of the model's dtype "
                "(64-bit model inputs need enable_double_precision)."
            )
        rank = len(value_info.type.tensor_type.shape.dim)
        if rank != len(storage_shape(tuple(spec.shape), spec.dtype)):
            raise WorkbenchError(
                f"model {loaded.source} input {position} {value_info.name!r} has rank {rank} "
                f"({input_dims(value_info)}) but {fn_name} gets rank {len(spec.shape)} ({list(spec.shape)})."
            )


def real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (old exporters list weights as inputs too)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def model_specs(loaded: LoadedModel) -> list[Any]:
    """Input specs (ShapeDtypeStruct with symbolic names) read from the model's graph inputs."""
    import jax

    specs = []
    for value_info in real_inputs(loaded.proto):
        dims = input_dims(value_info)
        if "?" in dims:
            raise WorkbenchError(
                f"model {loaded.source} input {value_info.name!r} has an unnamed dynamic dimension {dims}; "
                "pass inputs= with concrete arrays."
            )
        dtype = onnx_input_dtype(value_info)
        if value_info.doc_string.startswith(COMPLEX_DOC.split("{")[0]) and dims[-1:] == [2]:  # complex_numbers.py
            dims, dtype = dims[:-1], np.result_type(dtype, np.complex64)
        specs.append(jax.ShapeDtypeStruct(tuple(dims), dtype))
    return specs


def model_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise OnnxModelError("the model imports no version of the default ONNX domain")


_NODE_IN_MESSAGE = re.compile(r"[Nn]ode \(?([^\s()]+)\)?")


def make_session(proto: onnx.ModelProto, source: str, *, optimize: bool = True) -> Any:
    """An onnxruntime CPU session; load errors name the model and the failing node."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    try:
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own pybind exception types
        raise OnnxModelError(f"onnxruntime could not load model {source}{_node_hint(error)}: {error}") from error


def run_session(session: Any, source: str, feeds: dict[str, np.ndarray], output_names: Sequence[str] | None = None) -> list[np.ndarray]:
    feeds = {name: to_pairs(array) for name, array in feeds.items()}  # complex inputs as (real, imag) pairs
    try:
        return session.run(list(output_names) if output_names is not None else None, feeds)
    except Exception as error:  # onnxruntime raises its own pybind exception types
        shapes = {name: f"{array.dtype}{list(array.shape)}" for name, array in feeds.items()}
        raise OnnxModelError(
            f"onnxruntime failed to run model {source}{_node_hint(error)} on inputs {shapes}: {error}"
        ) from error


def _node_hint(error: Exception) -> str:
    match = _NODE_IN_MESSAGE.search(str(error))
    return f" (failing node {match.group(1)!r})" if match else ""


__all__ = [
    "LoadedModel",
    "check_inputs_match",
    "load_model",
    "make_session",
    "model_opset",
    "model_specs",
    "real_inputs",
    "run_session",
]
