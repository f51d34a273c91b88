"""``wb.for_onnxruntime_cpu``: a copy of a model that onnxruntime's CPU provider loads.

The widening itself is :func:`workbench.jax_to_onnx.cpu_widening.widen_for_cpu`; this module only
takes the model in each form the public API accepts one (a Conversion, a ModelProto, a path, its
bytes). It sits apart from :mod:`.cpu_widening` because a Conversion's module imports the precision
pass, which imports the widening: taking a Conversion there would close a circle.
"""

from __future__ import annotations

import os

import onnx
import onnx_ir as ir

from workbench.errors import ModelSourceError
from workbench.jax_to_onnx.conversion import Conversion
from workbench.jax_to_onnx.cpu_widening import widen_for_cpu
from workbench.onnx_io import ModelSource, load_model


def for_onnxruntime_cpu(model: Conversion | ModelSource) -> onnx.ModelProto:
    """A copy of ``model`` that onnxruntime's CPU provider loads: each node it has no kernel for
    computes in float32 (int16: int32) between Casts, rounded back to its own type (:func:`widen_for_cpu`).

    ``model``: a :class:`~workbench.Conversion` (its model as converted), an ``onnx.ModelProto``, a
    path to an .onnx file (its external data read from the file's folder) or its serialized bytes.
    ``model`` itself is not changed. For a model converted here, ``wb.convert(..., runtime="onnxruntime-cpu")``
    does the same without a copy.

    Raises:
        ModelSourceError: ``model`` is none of those (a :class:`~workbench.SpecError`).
        OnnxModelError: the file or bytes are not an ONNX model, or a node has no kernel even widened.
    """
    if isinstance(model, Conversion):
        proto = model.model
    elif isinstance(model, (onnx.ModelProto, str, os.PathLike, bytes, bytearray)):
        proto = load_model(model).proto
    else:
        raise ModelSourceError(
            "model: expected a wb.Conversion, an onnx.ModelProto, a path to an .onnx file or its serialized "
            f"bytes, got {type(model).__name__}."
        )
    copy = ir.serde.deserialize_model(proto)
    widen_for_cpu(copy)
    return ir.serde.serialize_model(copy)


__all__ = ["for_onnxruntime_cpu"]
