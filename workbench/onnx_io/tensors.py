"""Decoding a tensor of a model into a NumPy array: the one place that does it, and never from a file.

``numpy_helper.to_array`` reads an external tensor's bytes from the *current directory*
when it is handed one whose data was not loaded; :func:`tensor_array` refuses such a tensor
instead (external data is read by :func:`workbench.onnx_io.load.resolve_external_data`, relative to
the model's folder, and nowhere else). Undecodable tensors (an unknown element type, a payload that
does not fit the shape) become an :class:`~workbench.errors.OnnxModelError` naming the tensor.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.errors import OnnxModelError, UnsupportedOnnxOpError
from workbench.onnx_io.describe import DEFAULT_DOMAINS
from workbench.onnx_io.load import external_location


def tensor_array(tensor: onnx.TensorProto, label: str) -> np.ndarray:
    """The values of ``tensor`` (of the model ``label``) as an array; no file is ever opened."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raise OnnxModelError(
            f"{label}: tensor {tensor.name!r} keeps its data in the external file "
            f"{external_location(tensor)!r}, which was not loaded; load the model from its path "
            "(or pass base_dir=<the folder of its data files>)."
        )
    if tensor.data_type == onnx.TensorProto.STRING:
        raise UnsupportedOnnxOpError(f"{label}: string tensor {tensor.name!r} is not supported")
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError) as error:
        raise OnnxModelError(f"{label}: cannot decode tensor {tensor.name!r}: {error}") from error


def constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The tensors ``graph`` holds as constants, by value name: its initializers and the ``value`` of its
    Constant nodes (undecoded: :func:`tensor_array` decodes the ones a caller needs)."""
    tensors = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
            for attribute in node.attribute:
                if attribute.name == "value":
                    tensors[node.output[0]] = attribute.t
    return tensors


__all__ = ["constant_tensors", "tensor_array"]
