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

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from workbench.errors import OnnxModelError
from workbench.onnx_io.load import PROTO_LABEL
from workbench.onnx_io.weights import weights_set_aside

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
# onnxruntime names a node as `In Node, ("name", Op, ...)` (load) or `Name:'name'` (run)
_NODE_IN_MESSAGE = re.compile(r"""[Nn]ode,? \(?"?(?P<listed>[^\s()",']+)|Name:'(?P<named>[^']+)'""")


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

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """The outputs (all, or those named) for ``feeds``; a failure names the model, the node and the inputs."""
        try:
            return self.inner.run(None if output_names is None else list(output_names), dict(feeds))
        except Exception as error:  # onnxruntime raises its own pybind exception types
            shapes = {name: f"{np.asarray(array).dtype}{list(np.shape(array))}" for name, array in feeds.items()}
            raise OnnxModelError(
                f"onnxruntime failed to run model {self.label}{_node_hint(error)} on inputs {shapes}: {error}"
            ) from error


# protobuf's limit on one serialized message
_PROTOBUF_LIMIT = 2**31 - 1


def open_session(
    model: onnx.ModelProto | ir.Model | str | os.PathLike[str],
    *,
    label: str | None = None,
    optimize: bool = True,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    options: Any = None,
) -> Session:
    """An onnxruntime session on ``model``: a ModelProto, an onnx-ir model (its large weights read in
    place, see the module docstring), or a path (onnxruntime then reads the file and its external
    data itself).

    ``optimize`` picks ORT_ENABLE_ALL or ORT_DISABLE_ALL graph optimisations and warnings are not
    logged, unless ``options`` (an ``onnxruntime.SessionOptions``) is given: it is then used as it
    is. ``providers`` is passed through. ``label`` names the model in errors (default: the path,
    or ``<ModelProto>``).
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
        what, weights = _without_large_weights(model, options, ort)
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
        raise OnnxModelError(f"onnxruntime could not load model {label}{_node_hint(error)}: {error}") from error


def _without_large_weights(model: ir.Model, options: Any, ort: Any) -> tuple[bytes, tuple[Any, ...]]:
    """The serialized model without its large weights, those weights added to ``options`` as in-memory
    tensors (onnxruntime reads the arrays themselves on the CPU), and what must outlive the session."""
    with weights_set_aside(model) as aside:
        serialized = ir.serde.serialize_model(model).SerializeToString()
    arrays = [np.ascontiguousarray(tensor.numpy()) for _, tensor in aside]
    values = [ort.OrtValue.ortvalue_from_numpy(array) for array in arrays]
    if values:
        options.add_external_initializers([value.name for value, _ in aside], values)
    return serialized, (*arrays, *values)


def _node_hint(error: Exception) -> str:
    match = _NODE_IN_MESSAGE.search(str(error))
    if match is None:
        return ""
    return f" (failing node {(match.group('listed') or match.group('named'))!r})"


__all__ = ["DEFAULT_PROVIDERS", "Session", "open_session"]
