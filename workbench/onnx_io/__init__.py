"""ONNX in and out: the one place that loads, describes, summarizes, writes and runs an ONNX model.

- :mod:`~workbench.onnx_io.load`: a path, bytes or ModelProto -> :class:`LoadedModel`; external
  data resolved relative to the model's folder in one place.
- :mod:`~workbench.onnx_io.describe`: one decoder of value types (:class:`ValueDescription`).
- :mod:`~workbench.onnx_io.shapes`: one way to run ONNX shape inference (big float weights set aside).
- :mod:`~workbench.onnx_io.summary`: one :class:`ModelSummary` (viewer, ``%%to_onnx``, ``workbench inspect``).
- :mod:`~workbench.onnx_io.write`: one atomic writer with one external-data policy (:class:`ExternalData`).
- :mod:`~workbench.onnx_io.session`: one onnxruntime session helper (onnxruntime imported on first use).
- :mod:`~workbench.onnx_io.cpu_kernels`: which nodes onnxruntime's CPU provider has a kernel for (probed).
- :mod:`~workbench.onnx_io.inferred_types`: types for the values of a model that states none (shape inference).
- :mod:`~workbench.onnx_io.weights`: models whose weights stay where they are (onnx-ir models, memory-mapped
  side files): the graph without its weights' bytes, weights set aside for a session.
- :mod:`~workbench.onnx_io.evaluate`: one constant evaluator of ONNX nodes (onnx's reference operators),
  used by both conversion directions to fold small constant computations.

Every layer above (both conversion directions, analysis, web, Jupyter, CLI) goes through here;
this package imports nothing of the workbench but :mod:`workbench.errors`.
"""

from __future__ import annotations

from workbench.onnx_io.describe import (
    ValueDescription,
    default_opset,
    describe_inputs,
    describe_outputs,
    describe_tensor,
    describe_value,
    opset_imports,
    real_inputs,
)
from workbench.onnx_io.evaluate import evaluate_node
from workbench.onnx_io.load import LoadedModel, ModelSource, check_model, load_model
from workbench.onnx_io.session import Session, open_session
from workbench.onnx_io.shapes import infer_shapes, with_shapes
from workbench.onnx_io.summary import ModelSummary, summarize
from workbench.onnx_io.weights import load_memory_mapped, skeleton, weights_set_aside, without_weight_bytes
from workbench.onnx_io.write import ExternalData, WrittenModel, write_model

__all__ = [
    "ExternalData",
    "LoadedModel",
    "ModelSource",
    "ModelSummary",
    "Session",
    "ValueDescription",
    "WrittenModel",
    "check_model",
    "default_opset",
    "describe_inputs",
    "describe_outputs",
    "describe_tensor",
    "describe_value",
    "evaluate_node",
    "infer_shapes",
    "load_memory_mapped",
    "load_model",
    "open_session",
    "opset_imports",
    "real_inputs",
    "skeleton",
    "summarize",
    "weights_set_aside",
    "with_shapes",
    "without_weight_bytes",
    "write_model",
]
