"""Small queries on onnx-ir values, and new initializers, shared by the export passes and rewrite rules."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The array of an initializer or Constant output, or None when the value is computed at run time."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def register_unique(graph: ir.Graph, value: ir.Value) -> ir.Value:
    """Register ``value`` as an initializer of ``graph``, renamed ``<name>_1``, ``<name>_2``... when another
    value has its name (passes name new constants after the value they rewrite, e.g. ``conv_3/scale``, and a
    second rewrite of the same value makes the same name). Registering the same value again does nothing."""
    existing = graph.initializers.get(value.name)
    if existing is value:
        return value
    if existing is not None:
        base, suffix = value.name, 1
        while f"{base}_{suffix}" in graph.initializers:
            suffix += 1
        value.name = f"{base}_{suffix}"
    graph.register_initializer(value)
    return value


def new_initializer(graph: ir.Graph, array: np.ndarray, name: str) -> ir.Value:
    """A new initializer of ``graph`` holding a C-ordered copy of ``array``, named ``name`` (made unique)."""
    data = np.array(array, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    value = ir.Value(name=name, type=ir.TensorType(ir.DataType.from_numpy(data.dtype)), shape=ir.Shape(data.shape),
                     const_value=ir.Tensor(data, name=name))
    return register_unique(graph, value)
