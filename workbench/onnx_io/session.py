"""Running a model in onnxruntime: one helper that opens a session and runs it with clear errors.

A model held in memory as an onnx-ir model (a conversion's result, whatever its size) is handed to
onnxruntime as the model without its large weights plus those weights as in-memory initializers
(``SessionOptions.add_external_initializers``), which read the arrays where they are: no copy, no
temporary file, and no 2 GB protobuf limit. A ModelProto too large to serialize takes the same way.

onnxruntime is imported when a session is first opened, never at ``import workbench``. Its
own exceptions (pybind types with long C++ messages) become
:class:`~workbench.errors.OnnxModelError` naming the model and, when onnxruntime names it in
its message, the failing node.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from workbench.errors import OnnxModelError
from workbench.onnx_io.cpu_kernels import MissingKernel, missing_kernel_in, refused_type_in, signature
from workbench.onnx_io.inferred_types import infer_missing_types
from workbench.onnx_io.load import PROTO_LABEL
from workbench.onnx_io.weights import weights_set_aside

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
# onnxruntime names a node as `In Node, ("name", Op, ...)` or `node with name 'name'` (load), `Name:'name'` (run)
_NODE_IN_MESSAGE = re.compile(
    r"""In Node, \("(?P<listed>[^"]+)"|node with name '(?P<with>[^']+)'|Name:'(?P<named>[^']+)'"""
)
# what a user does about a node onnxruntime's CPU provider has no kernel for
WIDEN_ADVICE = (
    "convert with runtime=\"onnxruntime-cpu\" (wb.convert / wb.to_onnx) or pass the model through "
    "wb.for_onnxruntime_cpu(model): nodes without a CPU kernel then compute in float32 (int32 for int16) "
    "between Casts, the rest as exported"
)


@dataclass(frozen=True)
class Session:
    """An onnxruntime ``InferenceSession`` and the label its errors name the model by."""

    inner: Any  # onnxruntime.InferenceSession
    label: str
    # the arrays behind in-memory initializers: onnxruntime reads them for as long as the session lives
    weights: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def input_names(self) -> list[str]:
        return [value.name for value in self.inner.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [value.name for value in self.inner.get_outputs()]

    @functools.cached_property
    def _bfloat16_io(self) -> bool:
        """Whether an input or output is bfloat16, which onnxruntime's NumPy interface does not take or give."""
        return any(v.type == _BFLOAT16 for v in (*self.inner.get_inputs(), *self.inner.get_outputs()))

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """The outputs (all, or those named) for ``feeds``; a failure names the model, the node and the inputs."""
        names = self.output_names if output_names is None else list(output_names)
        try:
            if not self._bfloat16_io:
                return self.inner.run(names, dict(feeds))
            values = {name: _ort_value(np.asarray(array)) for name, array in feeds.items()}
            return [_from_ort_value(value) for value in self.inner.run_with_ort_values(names, values)]
        except Exception as error:  # onnxruntime raises its own pybind exception types
            shapes = {name: f"{np.asarray(array).dtype}{list(np.shape(array))}" for name, array in feeds.items()}
            advice = f" Its CPU kernel refuses that type: {WIDEN_ADVICE}." if refused_type_in(str(error)) else ""
            raise OnnxModelError(
                f"onnxruntime failed to run model {self.label}{_node_hint(error)} on inputs {shapes}: {error}{advice}"
            ) from error


_BFLOAT16 = "tensor(bfloat16)"


def _ort_value(array: np.ndarray) -> Any:
    """An OrtValue of ``array``: a bfloat16 array (ml_dtypes) is handed over as its 16-bit patterns."""
    import onnxruntime as ort

    if array.dtype == ml_dtypes.bfloat16:
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
            np.ascontiguousarray(array).view(np.uint16), onnx_element_type=onnx.TensorProto.BFLOAT16
        )
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))


def _from_ort_value(value: Any) -> np.ndarray:
    """A NumPy copy of an output OrtValue; bfloat16 (no NumPy type in onnxruntime) read from its CPU buffer."""
    if value.data_type() != _BFLOAT16:
        return value.numpy()
    shape = tuple(value.shape())
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:
        return np.zeros(shape, ml_dtypes.bfloat16)
    buffer = (ctypes.c_uint16 * count).from_address(value.data_ptr())
    return np.ctypeslib.as_array(buffer).copy().view(ml_dtypes.bfloat16).reshape(shape)


# protobuf's limit on one serialized message
_PROTOBUF_LIMIT = 2**31 - 1


def open_session(
    model: onnx.ModelProto | ir.Model | str | os.PathLike[str],
    *,
    label: str | None = None,
    optimize: bool = True,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    options: Any = None,
    graph: onnx.ModelProto | None = None,
) -> Session:
    """An onnxruntime session on ``model``: a ModelProto, an onnx-ir model (its large weights read in
    place, see the module docstring), or a path (onnxruntime then reads the file and its external
    data itself).

    ``optimize`` picks ORT_ENABLE_ALL or ORT_DISABLE_ALL graph optimisations and warnings are not
    logged, unless ``options`` (an ``onnxruntime.SessionOptions``) is given: it is then used as it
    is. ``providers`` is passed through. ``label`` names the model in errors (default: the path,
    or ``<ModelProto>``). ``graph``: a path's model as the caller already read it (its external
    weights not needed): a load error's message reads the failing node's types from it instead of
    reading the file again.
    """
    import onnxruntime as ort

    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
    weights: tuple[Any, ...] = ()
    if isinstance(model, onnx.ModelProto) and model.ByteSize() > _PROTOBUF_LIMIT:
        model = ir.serde.deserialize_model(model)  # too large to serialize: its weights go in memory
    if isinstance(model, ir.Model):
        what: str | bytes
        what, weights = _without_large_weights(model, options)
        label = PROTO_LABEL if label is None else label
    elif isinstance(model, onnx.ModelProto):
        what = model.SerializeToString()
        label = PROTO_LABEL if label is None else label
    else:
        what = os.fspath(model)
        label = what if label is None else label
    try:
        return Session(ort.InferenceSession(what, options, providers=list(providers)), label, weights)
    except Exception as error:  # onnxruntime raises its own pybind exception types
        hint = _load_hint(error, model if graph is None or isinstance(model, ir.Model) else graph)
        raise OnnxModelError(f"onnxruntime could not load model {label}{hint}: {error}") from error


def _without_large_weights(model: ir.Model, options: Any) -> tuple[bytes, tuple[Any, ...]]:
    """The serialized model without its large weights, those weights added to ``options`` as in-memory
    tensors (onnxruntime reads the arrays themselves on the CPU), and what must outlive the session."""
    with weights_set_aside(model) as aside:
        serialized = ir.serde.serialize_model(model).SerializeToString()
    arrays = [np.ascontiguousarray(tensor.numpy()) for _, tensor in aside]
    values = [_ort_value(array) for array in arrays]  # bfloat16 (ml_dtypes) handed over as its bit patterns
    if values:
        options.add_external_initializers([value.name for value, _ in aside], values)
    return serialized, (*arrays, *values)


def _node_hint(error: Exception) -> str:
    match = _NODE_IN_MESSAGE.search(str(error))
    if match is None:
        return ""
    return f" (failing node {(match.group('listed') or match.group('with') or match.group('named'))!r})"


def _load_hint(error: Exception, model: onnx.ModelProto | ir.Model | str | os.PathLike[str]) -> str:
    """The failing node; for a node without a CPU kernel also its op and types, and what to do."""
    missing = missing_kernel_in(str(error))
    if missing is None:
        return _node_hint(error)
    return (f": onnxruntime's CPU provider has no kernel for node {missing.node!r}, {_described(missing, model)}; "
            f"{WIDEN_ADVICE}.\nonnxruntime said")


# what reading the model's graph for a load error's message can raise: a file gone or changed since onnxruntime
# read it (OSError, DecodeError), a model onnx-ir does not read as onnxruntime does (its deserializer's errors)
_UNREADABLE = (OSError, DecodeError, ir.serde.SerdeError, ValueError, TypeError, NotImplementedError)


def _described(missing: MissingKernel, model: onnx.ModelProto | ir.Model | str | os.PathLike[str]) -> str:
    """The op, opset and element types of the node onnxruntime has no kernel for, read from the model; its op and
    since-version as onnxruntime names them when the model does not tell: its graph unreadable, no one node of
    that name and op (onnxruntime names a node it made, or an unnamed node ''), or an element type that not even
    ONNX shape inference finds (a model written with onnx.helper states few types)."""
    named = f"{missing.op_type}({missing.version})"
    try:
        found = _graph_of(model)
    except _UNREADABLE:
        return named
    nodes = [n for n in found.graph.all_nodes() if n.name == missing.node and n.op_type == missing.op_type]
    if len(nodes) != 1:
        return named
    key = signature(nodes[0], dict(found.opset_imports))
    if key is None and found is not model:  # a graph read here, not the caller's: typed by inference if it states few
        infer_missing_types(found)
        key = signature(nodes[0], dict(found.opset_imports))
    return named if key is None else key.describe()


def _graph_of(model: onnx.ModelProto | ir.Model | str | os.PathLike[str]) -> ir.Model:
    """The model's graph: read from the file only when the caller gave no graph (its external weights are not read)."""
    if isinstance(model, ir.Model):
        return model
    if isinstance(model, onnx.ModelProto):
        return ir.serde.deserialize_model(model)
    return ir.serde.deserialize_model(onnx.load(os.fspath(model), load_external_data=False))


__all__ = ["DEFAULT_PROVIDERS", "WIDEN_ADVICE", "Session", "open_session"]
