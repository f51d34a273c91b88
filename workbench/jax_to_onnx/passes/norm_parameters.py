"""The scale and bias inputs of LayerNormalization/RMSNormalization: shape checks and layout.

The ops want one number per normalized element (shape ``dims`` of the normalized trailing axes);
JAX code often keeps them with leading 1s (Linen's ``(1, D)``). Shared by the norm rules of
:mod:`.fusions` and :mod:`.norms`.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from workbench.jax_to_onnx.ir_values import constant_array

_NORMALIZATIONS = frozenset({"LayerNormalization", "RMSNormalization"})


def fits_normalized_shape(value: ir.Value | None, dims: list[int]) -> bool:
    """Whether ``value`` holds one float32 per normalized element: shape ``dims``, maybe with leading 1s."""
    if value is None or value.shape is None or value.dtype != ir.DataType.FLOAT:
        return False
    shape = list(value.shape)
    extra = len(shape) - len(dims)
    return extra >= 0 and all(d == 1 for d in shape[:extra]) and shape[extra:] == dims


def as_parameter(op, value: ir.Value, dims: list[int]) -> ir.Value:  # noqa: ANN001 - onnxscript builder
    """``value`` (checked by :func:`fits_normalized_shape`) in the shape ``dims`` the ops require.

    A Reshape of an initializer is folded into it afterwards (:func:`store_parameters_in_place`).
    """
    if list(value.shape) == dims:
        return value
    # (ir.Tensor of an array, as everywhere in the passes: ir.tensor's runtime Protocol checks cost ~0.1 ms a call)
    shape = op.initializer(ir.Tensor(np.array(dims, np.int64)), name=f"{value.name}/normalized_shape")
    reshaped = op.Reshape(value, shape)
    reshaped.shape, reshaped.dtype = ir.Shape(dims), value.dtype  # read by the rules that follow
    return reshaped


def unit_scale(op, dims: list[int], like: ir.Value) -> ir.Value:  # noqa: ANN001 - onnxscript builder
    """An initializer of ones: the scale of a norm written without one (the ops require a scale input)."""
    return op.initializer(ir.Tensor(np.ones(dims, np.float32)), name=f"{like.name}/unit_scale")


def store_parameters_in_place(graph: ir.Graph, weights: frozenset[str]) -> int:
    """``Norm(x, Reshape(C, dims))`` with C an initializer → ``Norm(x, C')``, C' holding C in shape ``dims``.

    A model weight read only there is stored so under its own name (so weights stay named after their
    module path); another constant (a closed-over scale, or one read elsewhere too) gets a reshaped copy
    (a scale, some kB). Returns how many were stored so.
    """
    count = 0
    for node in list(graph):
        if node.op_type not in _NORMALIZATIONS or node.domain != "":
            continue
        for value in node.inputs[1:]:
            reshape = None if value is None else value.producer()
            if reshape is None or reshape.op_type != "Reshape" or reshape.domain != "" or value.is_graph_output():
                continue
            constant, dims = reshape.inputs[0], constant_array(reshape.inputs[1])
            if constant is None or constant.const_value is None or not constant.is_initializer() or dims is None:
                continue
            if constant.is_graph_input() or constant.is_graph_output():
                continue
            array = np.ascontiguousarray(constant.const_value.numpy().reshape([int(d) for d in dims]))
            if len(constant.uses()) == 1:
                constant.const_value = ir.Tensor(array, name=constant.name)
                constant.shape = ir.Shape(array.shape)
                stored = constant
            elif constant.name not in weights:
                stored = ir.Value(name=_free_name(graph, f"{constant.name}/normalized"), shape=ir.Shape(array.shape),
                                  type=ir.TensorType(constant.dtype), const_value=ir.Tensor(array))
                graph.register_initializer(stored)
            else:
                continue
            value.replace_all_uses_with(stored)
            graph.remove(reshape, safe=True)
            count += 1
    return count


def _free_name(graph: ir.Graph, base: str) -> str:
    name, suffix = base, 1
    while name in graph.initializers:
        name, suffix = f"{base}_{suffix}", suffix + 1
    return name
