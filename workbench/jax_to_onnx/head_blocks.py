"""A classifier head's two blocks, recognised on the jaxpr and lowered as the op the rules make of them: a part
of :mod:`.blocks`.

- ``jnp.mean`` reaches the jaxpr as ``reduce_sum`` then ``div`` by the number of reduced elements, which the
  lowering makes ``ReduceSum`` and ``Div`` and the rule ``ReduceMeanFusion`` (:mod:`.passes.fusions`) makes one
  ``ReduceMean`` again (:func:`mean`);
- a dense layer on a matrix, ``x @ W + b`` (``nnx.Linear``, ``linen.Dense``, ``hk.Linear`` on a batch of
  vectors), reaches it as ``dot_general``, the bias's ``reshape`` to ``(1, N)`` and ``add``: lowered as
  ``MatMul``, ``Reshape`` and ``Add``, which ``AddReshapedBias`` and onnxscript's ``MatMulAddToGemm`` make one
  ``Gemm(x, W, b)`` (:func:`dense`).

Each is checked as its rules check it; a spelling they do not cover is lowered equation by equation as before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx_ir as ir
from jax.extend import core as jex_core

from workbench.jax_to_onnx.blocks import _FLOATS, Block, _Index, _literal
from workbench.jax_to_onnx.dims import same_shape
from workbench.jax_to_onnx.relaid import Reader, Relaid, is_identity, reduced_perm

# ReduceMean takes its axes as an input from opset 18 (the rule's opset)
MEAN_MIN_OPSET = 18


def mean(index: _Index, total: Any) -> Block | None:
    """``div(reduce_sum[axes](x), n)`` with ``n`` the number of reduced elements (static) → ``ReduceMean(x, axes)``."""
    x = total.invars[0]
    axes = tuple(int(a) for a in total.params["axes"])
    if isinstance(x, jex_core.Literal) or not axes or np.dtype(x.aval.dtype) not in _FLOATS:
        return None
    dims = [x.aval.shape[axis] for axis in axes]
    if not all(type(d) is int for d in dims):
        return None
    div = index.only_reader(total.outvars[0])
    if div is None or div.primitive.name != "div" or div.invars[0] is not total.outvars[0]:
        return None
    if _literal(div.invars[1]) != float(math.prod(dims)) or np.dtype(div.outvars[0].aval.dtype) != np.dtype(x.aval.dtype):
        return None
    closed = index.closed([total, div])
    if closed is None or closed[-1] != index.index(div):
        return None
    return Block("ReduceMean", closed, lambda builder, read: _reduce_mean(builder, read, x, axes), x)


def _reduce_mean(builder: Any, read: Reader, x: Any, axes: tuple[int, ...]) -> ir.Value | Relaid:
    """``ReduceMean(x, axes)``; on ``x`` as held when it is held in another layout (a CNN's global pool on the
    channels-first feature map: the result then needs no Transpose when the kept axes keep their order)."""
    value, perm = read.held(x)
    if is_identity(perm):
        return builder.op("ReduceMean", value, builder.i64(list(axes)), keepdims=0)
    held_axes, result_perm = reduced_perm(perm, axes)
    result = builder.op("ReduceMean", value, builder.i64(list(held_axes)), keepdims=0)
    return result if is_identity(result_perm) else Relaid(result, result_perm)


def dense(index: _Index, add: Any) -> Block | None:
    """``add(dot_general(x, W), reshape(b))`` (either order) with ``x`` and ``W`` matrices contracted as ``x @ W``
    and ``b`` a vector of ``W``'s columns reshaped to ``(1, N)`` (or added as it is) → ``Gemm(x, W, b)``."""
    for product, other in ((add.invars[0], add.invars[1]), (add.invars[1], add.invars[0])):
        dot = index.eqn(product, "dot_general")
        if dot is not None:
            break
    else:
        return None
    x, weight = dot.invars
    if any(isinstance(atom, jex_core.Literal) for atom in (x, weight, other)):
        return None
    if len(x.aval.shape) != 2 or len(weight.aval.shape) != 2:
        return None
    (contract_x, contract_w), (batch_x, batch_w) = dot.params["dimension_numbers"]
    if batch_x or batch_w or tuple(contract_x) != (1,) or tuple(contract_w) != (0,):
        return None
    dtype = np.dtype(x.aval.dtype)
    if dtype not in _FLOATS or any(np.dtype(atom.aval.dtype) != dtype
                                   for atom in (weight, other, dot.outvars[0], add.outvars[0])):
        return None
    if not same_shape(add.outvars[0].aval.shape, dot.outvars[0].aval.shape):
        return None  # the bias would broadcast the product to another shape
    columns = weight.aval.shape[1]
    members = [dot, add]
    bias = other
    reshape = index.eqn(other, "reshape")
    if reshape is not None and reshape.params.get("dimensions") is None and index.only_reader(other) is add:
        members.append(reshape)
        bias = reshape.invars[0]
        if isinstance(bias, jex_core.Literal):
            return None
    if not same_shape(bias.aval.shape, (columns,)):
        return None
    closed = index.closed(members)
    if closed is None or closed[-1] != index.index(add):
        return None
    return Block("Gemm", closed, lambda builder, read: builder.op("Gemm", read(x), read(weight), read(bias)), x)


__all__ = ["MEAN_MIN_OPSET", "dense", "mean"]
