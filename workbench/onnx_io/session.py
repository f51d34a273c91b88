"""Running a model in onnxruntime: one helper that opens a session and runs it with clear errors.

onnxruntime is imported when a session is first opened, never at ``import workbench``. Its
own exceptions (pybind types with long C++ messages) become
:class:`~workbench.errors.OnnxModelError` naming the model and, when onnxruntime names it in
its message, the failing node.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from workbench.errors import OnnxModelError
from workbench.onnx_io.load import PROTO_LABEL

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
# onnxruntime names a node as `In Node, ("name", Op, ...)` (load) or `Name:'name'` (run)
_NODE_IN_MESSAGE = re.compile(r"""[Nn]ode,? \(?"?(?P<listed>[^\s()",']+)|Name:'(?P<named>[^']+)'""")


@dataclass(frozen=True)
class Session:
    """An onnxruntime ``InferenceSession`` and the label its errors name the model by."""

    inner: Any  # onnxruntime.InferenceSession
    label: str

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


def open_session(
    model: onnx.ModelProto | str | os.PathLike[str],
    *,
    label: str | None = None,
    optimize: bool = True,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    options: Any = None,
) -> Session:
    """An onnxruntime session on ``model`` (a ModelProto, or a path: onnxruntime then reads the file
    and its external data itself).

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
    if isinstance(model, onnx.ModelProto):
        what: str | bytes = model.SerializeToString()
        label = PROTO_LABEL if label is None else label
    else:
        what = os.fspath(model)
        label = what if label is None else label
    try:
        return Session(ort.InferenceSession(what, options, providers=list(providers)), label)
    except Exception as error:  # onnxruntime raises its own pybind exception types
        raise OnnxModelError(f"onnxruntime could not load model {label}{_node_hint(error)}: {error}") from error


def _node_hint(error: Exception) -> str:
    match = _NODE_IN_MESSAGE.search(str(error))
    if match is None:
        return ""
    return f" (failing node {(match.group('listed') or match.group('named'))!r})"


__all__ = ["DEFAULT_PROVIDERS", "Session", "open_session"]
