"""ONNX -> JAX, first half: read, validate and order an untrusted ONNX model.

See :func:`workbench.importer.reader.load_model`.
"""

from workbench.importer.reader import LoadedModel, load_model

__all__ = ["LoadedModel", "load_model"]
