"""Attention recognised on the jaxpr (``nnx.MultiHeadAttention``, ``jax.nn.dot_product_attention``) and
lowered in the layout :mod:`.passes.attention_layout`'s rules give it: a part of :mod:`.blocks`.

Two blocks:

- the per-head projections (query, key, value): ``x @ W[D, H, K] + b[H, K]``, the bias added after the
  head split on the jaxpr, lowered with the bias added before it (:func:`head_projection`); a bias of
  zeros (freshly initialised) gets no ``Add`` at all, as :mod:`.passes.affine` drops it from a dense layer;
- the scores path between the projections and the output projection (:func:`attention_scores`): JAX's
  attention writes it on 5-D values with a unit "query group" axis (``q: (B, T, H, 1, K)``, scores
  ``(B, H, T, 1, S)``, the mask ``where`` and the softmax on ``(1, B, H, T, S)``), which the lowering
  turns into reshapes and transposes around every op and the layout rules then move out until they
  cancel (~12 rewrites a layer). It is lowered directly as what the rules leave::

      Transpose(q) · Transpose(k) → MatMul → Mul(scale) → Where(mask, ·, fill) → Softmax
      → MatMul(·, Transpose(v)) → Transpose

  (no ``Where`` without a mask) with the mask laid out on the 4-D scores (a constant shrunk along the axes where it does not vary, as
  :class:`..passes.attention_layout.WhereAcrossUnitReshape` stores it; a mask computed at run time read as
  it is) and the fill a scalar.

Both are checked as the rules check them, on the jaxpr; what can only be checked on the ONNX values
(weights, being in the main graph, where the rules run) is checked while lowering (``Block.declines``),
and the scores block lowers only with projections made by the first block (others are left to the rules).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx_ir as ir
from jax.extend import core as jex_core

from workbench.jax_to_onnx.blocks import _FLOATS, Block, _Index, _literal, _softmax, _split
from workbench.jax_to_onnx.builder import ir_shape, is_static, typed_like
from workbench.jax_to_onnx.dims import same_shape
from workbench.jax_to_onnx.passes.attention_layout import shrink_constant
from workbench.specs import HALF_FLOATS


# --------------------------------------------------------------------------- head projections
def head_projection(index: _Index, add: Any) -> Block | None:
    """A per-head projection (``nnx.MultiHeadAttention``'s query, key, value): ``x @ W[D, H, K] + b[H, K]``.

    The jaxpr adds the bias after the head split (``add(dot_general(x, W), reshape(b))``); it is lowered
    with the bias added before the split, ``Reshape(Add(MatMul(x, W[D, H*K]), b[H*K]), (..., H, K))``: what
    :class:`..passes.attention_layout.BiasBeforeHeadSplit` makes of the split form (onnxruntime then fuses
    ``MatMul`` + ``Add``); a bias of zeros is not added. Checked as that rule checks: ``x``'s last axis
    contracted with ``W``'s first, the bias covering exactly the split axes, static split axes, one float
    dtype; the weights are checked while lowering (:func:`_projection_declines`).
    """
    for product_side, bias_side in ((add.invars[0], add.invars[1]), (add.invars[1], add.invars[0])):
        dot = index.eqn(product_side, "dot_general")
        if dot is not None:
            break
    else:
        return None
    x, weight = dot.invars
    if any(isinstance(atom, jex_core.Literal) for atom in (x, weight, bias_side)):
        return None
    (contract_x, contract_w), (batch_x, batch_w) = dot.params["dimension_numbers"]
    x_rank, w_shape = len(x.aval.shape), tuple(weight.aval.shape)
    if batch_x or batch_w or x_rank < 2 or len(w_shape) < 3:
        return None
    if tuple(contract_x) != (x_rank - 1,) or tuple(contract_w) != (0,):
        return None
    dtype = np.dtype(x.aval.dtype)
    if dtype not in _FLOATS or np.dtype(weight.aval.dtype) != dtype or np.dtype(bias_side.aval.dtype) != dtype:
        return None
    if np.dtype(dot.outvars[0].aval.dtype) != dtype or np.dtype(add.outvars[0].aval.dtype) != dtype:
        return None
    if not all(isinstance(d, (int, np.integer)) for d in (*w_shape, x.aval.shape[-1])):
        return None
    heads = [int(d) for d in w_shape[1:]]
    members = [dot, add]
    bias = bias_side
    keep = index.eqn(bias_side, "reshape")
    if keep is not None and index.only_reader(bias_side) is add and keep.params.get("dimensions") is None:
        members.append(keep)
        bias = keep.invars[0]
        if isinstance(bias, jex_core.Literal):
            return None
    bias_shape = list(bias.aval.shape)
    if len(bias_shape) > len(heads) or [1] * (len(heads) - len(bias_shape)) + bias_shape != heads:
        return None
    if not same_shape(add.outvars[0].aval.shape, dot.outvars[0].aval.shape):
        return None
    closed = index.closed(members)
    # consecutive equations: lowered in one place, fused or not, the nodes keep the order of the jaxpr's
    if closed is None or closed[-1] != index.index(add) or closed != tuple(range(closed[0], closed[-1] + 1)):
        return None
    lead = list(x.aval.shape[:-1])
    size, columns = int(x.aval.shape[-1]), int(math.prod(heads))

    def emit(builder: Any, read: Callable[[Any], ir.Value]) -> ir.Value:
        x_value, w_value, b_value = read(x), read(weight), read(bias)
        # the constants in the order the dot_general handler makes them (their pooled names follow it)
        flat_w = typed_like(builder.op("Reshape", w_value, builder.i64([size, columns])), w_value, [size, columns])
        total = typed_like(builder.op("MatMul", x_value, flat_w), x_value, [*lead, columns])
        target = builder.i64([int(d) if is_static(d) else 0 for d in lead] + heads)
        if np.any(b_value.const_value.numpy()):  # a bias of zeros adds nothing (passes/affine.py drops it too)
            flat_b = typed_like(builder.op("Reshape", b_value, builder.i64([columns])), b_value, [columns])
            total = typed_like(builder.op("Add", total, flat_b), x_value, [*lead, columns])
        result = builder.op("Reshape", total, target)
        builder.state.head_projections.add(result)
        return result

    def declines(builder: Any, read: Callable[[Any], ir.Value]) -> bool:
        return _projection_declines(builder, read(weight), read(bias))

    return Block("HeadProjection", closed, emit, x, declines, name_all=True)


def _projection_declines(builder: Any, weight: ir.Value, bias: ir.Value) -> bool:
    """Whether a head projection is lowered equation by equation after all: unless it is in the main graph
    (the layout rules rewrite only that one) and its kernel and bias are the model's weights (initializers the
    passes store reshaped in place, as after the rule)."""
    weights = builder.state.weights
    if builder.is_function or builder.parent is not None:
        return True
    return weight.name not in weights or bias.name not in weights or bias.const_value is None


# ------------------------------------------------------------------------------ scores path
# jax.nn.dot_product_attention's einsums as dot_general dimension numbers: scores ``BTHGK,BSHK->BHTGS``,
# then ``BSHK,(1)BHTS->BHK(1)T`` with the probabilities in the masked 5-D layout
_SCORES_DIMS = (((4,), (3,)), ((0, 2), (0, 2)))
_VALUES_DIMS = (((1,), (4,)), ((0, 2), (1, 2)))
# the mask ``where`` puts the scores (B, H, T, 1, S) as (1, B, H, T, S); the weighted values (B, H, K, 1, T)
# go back to (B, T, H, 1, K) through two transposes
_WHERE_PERM = (3, 0, 1, 2, 4)
_VALUES_PERMS = ((3, 0, 4, 1, 2), (1, 2, 3, 0, 4))


def attention_scores(index: _Index, dot: Any) -> Block | None:
    """JAX's attention from the query-key ``dot_general`` to the weighted values in ``(B, T, H, K)``.

    The equations: ``q5 = reshape(q, (B, T, H, 1, K))``, ``s = dot_general(q5, k) * scale``, ``where(mask,
    s, fill)`` (a nested ``_where`` that transposes ``s`` to ``(1, B, H, T, S)``), ``jax.nn.softmax`` over S
    (:func:`.blocks._softmax`), ``dot_general(v, p)`` and its transposes and reshape back to ``(B, T, H,
    K)``; the mask is ``and(all-true, mask')`` with ``mask'`` a mask of rank 4 given unit axes by
    ``broadcast_in_dim``/``transpose`` only, its axes in the scores' order. Without a mask there is no
    ``where`` and the softmax transposes the scores itself (:func:`_transposed_softmax`). Any other spelling
    is left to the equation-by-equation lowering and the rules.
    """
    if tuple(tuple(map(tuple, pair)) for pair in dot.params["dimension_numbers"]) != _SCORES_DIMS:
        return None
    q5, k = dot.invars
    if isinstance(q5, jex_core.Literal) or isinstance(k, jex_core.Literal) or len(q5.aval.shape) != 5:
        return None
    split = index.eqn(q5, "reshape")
    if split is None or split.params.get("dimensions") is not None or index.only_reader(q5) is not dot:
        return None
    q = split.invars[0]
    if isinstance(q, jex_core.Literal) or index.only_reader(q) is not split:
        return None
    batch, length, heads, group, depth = q5.aval.shape
    span = k.aval.shape[1]
    if not (same_shape([group], [1]) and same_shape(q.aval.shape, [batch, length, heads, depth])):
        return None
    if not same_shape(k.aval.shape, [batch, span, heads, depth]):
        return None
    dtype = np.dtype(q.aval.dtype)
    # the scores' type: the inputs' or, for half-precision inputs, float32 when the dot accumulates in it
    # (Flax's attention in bfloat16/float16: ``preferred_element_type=float32``, the softmax in float32,
    # the probabilities converted back before the weighted sum)
    scores_dtype = np.dtype(dot.outvars[0].aval.dtype)
    if dtype not in _FLOATS or np.dtype(k.aval.dtype) != dtype:
        return None
    if scores_dtype != dtype and not (dtype in HALF_FLOATS and scores_dtype == np.dtype(np.float32)):
        return None
    scale_eqn = index.only_reader(dot.outvars[0])
    if scale_eqn is None or scale_eqn.primitive.name != "mul":
        return None
    scale = scale_eqn.invars[1] if scale_eqn.invars[0] is dot.outvars[0] else scale_eqn.invars[0]
    if _literal(scale) is None or np.dtype(scale.aval.dtype) != scores_dtype or scale.aval.shape != ():
        return None
    scaled = scale_eqn.outvars[0]
    members = [split, dot, scale_eqn]
    where = index.only_reader(scaled)
    if where is not None:  # masked: where(mask, scores, fill), then jax.nn.softmax of it
        if not _is_where_of_scores(where, scaled):
            return None
        mask, fill = where.invars[0], where.invars[2]
        if _literal(fill) is None or np.dtype(fill.aval.dtype) != scores_dtype:
            return None
        members.append(where)
        base = _mask_base(index, mask, members)
        if base is None:
            return None
        readers = [index.eqns[i] for i in index.readers.get(where.outvars[0], [])]
        reduce_max = next((eqn for eqn in readers if eqn.primitive.name == "reduce_max"), None)
        softmax = None if reduce_max is None else _softmax(index, reduce_max)
        if softmax is None or softmax.operand is not where.outvars[0]:
            return None
        if tuple(int(a) % 5 for a in reduce_max.params["axes"]) != (4,):
            return None
        members += [index.eqns[i] for i in softmax.members]
        probabilities = index.eqns[softmax.root].outvars[0]
    else:  # unmasked: the softmax itself moves the scores to (1, B, H, T, S)
        base = fill = None
        softmax_eqns = _transposed_softmax(index, scaled)
        if softmax_eqns is None:
            return None
        members += softmax_eqns
        probabilities = softmax_eqns[-1].outvars[0]
    narrowed = None
    if scores_dtype != dtype:  # the probabilities rounded to the inputs' type
        narrowed = index.only_reader(probabilities)
        if narrowed is None or narrowed.primitive.name != "convert_element_type" or np.dtype(narrowed.outvars[0].aval.dtype) != dtype:
            return None
        members.append(narrowed)
        probabilities = narrowed.outvars[0]
    weighted = index.only_reader(probabilities)
    if weighted is None or weighted.primitive.name != "dot_general" or weighted.invars[1] is not probabilities:
        return None
    if tuple(tuple(map(tuple, pair)) for pair in weighted.params["dimension_numbers"]) != _VALUES_DIMS:
        return None
    v = weighted.invars[0]
    if isinstance(v, jex_core.Literal) or not same_shape(v.aval.shape, [batch, span, heads, depth]):
        return None
    if np.dtype(v.aval.dtype) != dtype or np.dtype(weighted.outvars[0].aval.dtype) != dtype:
        return None
    tail = [weighted]
    for perm in _VALUES_PERMS:
        step = index.only_reader(tail[-1].outvars[0])
        if step is None or step.primitive.name != "transpose" or tuple(step.params["permutation"]) != perm:
            return None
        tail.append(step)
    merge = index.only_reader(tail[-1].outvars[0])
    if merge is None or merge.primitive.name != "reshape" or merge.params.get("dimensions") is not None:
        return None
    if not same_shape(merge.outvars[0].aval.shape, [batch, length, heads, depth]):
        return None
    members += tail[1:] + [weighted, merge]
    closed = index.closed(members)
    if closed is None or closed[-1] != index.index(merge):
        return None
    # the query reshape (B, T, H, 1, K) lowered with a constant shape merges with the projection's
    # (onnxscript's Reshape∘Reshape rule) and stays in the place of the reshape: the rules' node order
    query_moves = sum(not is_static(d) for d in split.params["new_sizes"]) <= 1
    scores_dims, values_dims = [batch, heads, length, span], [batch, heads, length, depth]

    def emit(builder: Any, read: Callable[[Any], ir.Value]) -> ir.Value:
        q_value, k_value, v_value = read(q), read(k), read(v)
        producer = q_value.producer()
        if query_moves and producer is not None and producer.op_type == "Reshape" and producer in builder.nodes:
            builder.nodes.remove(producer)
            builder.nodes.append(producer)
        q_heads = typed_like(builder.op("Transpose", q_value, perm=[0, 2, 1, 3]), q_value, values_dims)
        k_heads = typed_like(builder.op("Transpose", k_value, perm=[0, 2, 3, 1]), k_value, [batch, heads, depth, span])
        if narrowed is not None:  # products of two halves are exact in float32: the dot's accumulation
            q_heads = _cast(builder, q_heads, scores_dtype, values_dims)
            k_heads = _cast(builder, k_heads, scores_dtype, [batch, heads, depth, span])
        scores = typed_like(builder.op("MatMul", q_heads, k_heads), q_heads, scores_dims)
        scaled_value = typed_like(builder.op("Mul", scores, read(scale)), q_heads, scores_dims)
        selected = scaled_value
        if base is not None:
            mask_value = read(base)
            if mask_value.const_value is not None:
                mask_value = builder.const(_scalar_if_single(shrink_constant(mask_value.const_value.numpy())))
            fill_value = builder.const(np.asarray(_literal(fill), dtype=scores_dtype).reshape(()))
            selected = typed_like(builder.op("Where", mask_value, scaled_value, fill_value), q_heads, scores_dims)
        probs = typed_like(builder.op("Softmax", selected, axis=3), q_heads, scores_dims)
        if narrowed is not None:
            probs = _cast(builder, probs, dtype, scores_dims)
        v_heads = typed_like(builder.op("Transpose", v_value, perm=[0, 2, 1, 3]), v_value, [batch, heads, span, depth])
        mixed = typed_like(builder.op("MatMul", probs, v_heads), q_value, values_dims)
        return builder.op("Transpose", mixed, perm=[0, 2, 1, 3])

    def declines(builder: Any, read: Callable[[Any], ir.Value]) -> bool:
        if builder.is_function or builder.parent is not None:
            return True  # the rules rewrite the main graph only
        made = builder.state.head_projections
        return not all(read(atom) in made for atom in (q, k, v))

    return Block("Attention", closed, emit, q, declines, name_all=True)


def _cast(builder: Any, value: ir.Value, dtype: np.dtype, dims: list[Any]) -> ir.Value:
    """``Cast(value)`` to ``dtype``, typed and shaped ``dims``."""
    element = ir.DataType.from_numpy(dtype)
    cast = builder.op("Cast", value, to=int(element))
    cast.type = ir.TensorType(element)
    cast.shape = ir_shape(dims)
    return cast


def _transposed_softmax(index: _Index, scores: Any) -> list[Any] | None:
    """The equations of JAX's softmax over S of unmasked scores ``(B, H, T, 1, S)`` written out as
    ``(1, B, H, T, S)``: ``e = exp(transpose(s) - keep(transpose(max(reduce_max(s), -inf))))``,
    ``e / keep(reduce_sum(e))`` (keep: ``broadcast_in_dim``, a ``stop_gradient`` on the maximum); the
    division last, else None."""
    readers = [index.eqns[i] for i in index.readers.get(scores, [])]
    reduce_max = next((eqn for eqn in readers if eqn.primitive.name == "reduce_max"), None)
    moved = next((eqn for eqn in readers if eqn.primitive.name == "transpose"), None)
    if len(readers) != 2 or reduce_max is None or moved is None or tuple(moved.params["permutation"]) != _WHERE_PERM:
        return None
    if tuple(int(a) % 5 for a in reduce_max.params["axes"]) != (4,):
        return None
    guard = index.only_reader(reduce_max.outvars[0])
    if guard is None or guard.primitive.name != "max" or _split(guard, -math.inf) is not reduce_max.outvars[0]:
        return None
    chain = [reduce_max, guard]
    for primitive, check in (("transpose", lambda e: tuple(e.params["permutation"]) == (3, 0, 1, 2)),
                             ("broadcast_in_dim", lambda e: tuple(e.params["broadcast_dimensions"]) == (0, 1, 2, 3))):
        step = index.only_reader(chain[-1].outvars[0])
        if step is None or step.primitive.name != primitive or not check(step):
            return None
        chain.append(step)
    shift = index.only_reader(chain[-1].outvars[0])
    if shift is not None and shift.primitive.name == "stop_gradient":
        chain.append(shift)
        shift = index.only_reader(shift.outvars[0])
    if shift is None or shift.primitive.name != "sub" or shift.invars[0] is not moved.outvars[0]:
        return None
    if shift.invars[1] is not chain[-1].outvars[0] or index.only_reader(moved.outvars[0]) is not shift:
        return None
    exp = index.only_reader(shift.outvars[0])
    if exp is None or exp.primitive.name != "exp":
        return None
    uses = [index.eqns[i] for i in index.readers.get(exp.outvars[0], [])]
    total = next((eqn for eqn in uses if eqn.primitive.name == "reduce_sum"), None)
    div = next((eqn for eqn in uses if eqn.primitive.name == "div"), None)
    if len(uses) != 2 or total is None or div is None or div.invars[0] is not exp.outvars[0]:
        return None
    if tuple(int(a) % 5 for a in total.params["axes"]) != (4,):
        return None
    keep = index.eqn(div.invars[1], "broadcast_in_dim")
    if keep is None or keep.invars[0] is not total.outvars[0] or tuple(keep.params["broadcast_dimensions"]) != (0, 1, 2, 3):
        return None
    return [*chain, moved, shift, exp, total, keep, div]


def _scalar_if_single(array: np.ndarray) -> np.ndarray:
    return array.reshape(()) if array.size == 1 else array


def _is_where_of_scores(where: Any, scores: Any) -> bool:
    """Whether ``where`` is JAX's nested ``_where(mask, scores, fill)``: ``select_n(mask, broadcast(fill),
    transpose[(3, 0, 1, 2, 4)](scores))``, the scores where the mask holds."""
    if where.primitive.name not in ("jit", "pjit") or len(where.invars) != 3 or where.invars[1] is not scores:
        return False
    closed = where.params.get("jaxpr")
    if closed is None or closed.consts or len(closed.jaxpr.outvars) != 1:
        return False
    inner = closed.jaxpr
    inner_index = _Index(inner)
    select = inner_index.eqn(inner.outvars[0], "select_n")
    if select is None or len(select.invars) != 3 or select.invars[0] is not inner.invars[0]:
        return False
    moved = inner_index.eqn(select.invars[2], "transpose")
    if moved is None or moved.invars[0] is not inner.invars[1] or tuple(moved.params["permutation"]) != _WHERE_PERM:
        return False
    atom = select.invars[1]
    while atom is not inner.invars[2]:  # the fill, broadcast
        step = inner_index.eqn(atom, "broadcast_in_dim")
        if step is None:
            return False
        atom = step.invars[0]
    return True


def _mask_base(index: _Index, mask: Any, members: list[Any]) -> Any | None:
    """The rank-4 mask in the scores' axis order (B, H, T, S) that ``mask`` (of the 5-D where) is made of:
    ``and(broadcast(True), m)`` with ``m`` the base given unit axes by ``broadcast_in_dim``/``transpose``, each
    of its non-unit axes landing one axis further (after the where's leading unit axis). Its equations join
    ``members``; None when the mask is made otherwise."""
    combined = index.eqn(mask, "and")
    if combined is None:
        return None
    for ones_side, other in ((combined.invars[0], combined.invars[1]), (combined.invars[1], combined.invars[0])):
        ones = _broadcast_true(index, ones_side)
        if ones is not None:
            break
    else:
        return None
    chain: list[Any] = []
    atom = other
    while True:
        step = index.eqn(atom, ("broadcast_in_dim", "transpose"))
        # the mask of rank 4 may be shared by the layers (then it is read elsewhere: it is the base)
        if step is None or isinstance(step.invars[0], jex_core.Literal) or index.only_reader(atom) is None:
            break
        if len(step.invars[0].aval.shape) < 4:
            break
        if step.primitive.name == "broadcast_in_dim" and not _inserts_unit_axes(step):
            break
        chain.append(step)
        atom = step.invars[0]
    base = atom
    if isinstance(base, jex_core.Literal) or len(base.aval.shape) != 4 or np.dtype(base.aval.dtype) != np.bool_:
        return None
    position = list(range(4))  # where each axis of the base is after the chain
    for step in reversed(chain):
        if step.primitive.name == "broadcast_in_dim":
            position = [int(step.params["broadcast_dimensions"][p]) for p in position]
        else:
            perm = [int(a) for a in step.params["permutation"]]
            position = [perm.index(p) for p in position]
    if any(pos != axis + 1 for axis, pos in enumerate(position) if not same_shape([base.aval.shape[axis]], [1])):
        return None
    members += [combined, *ones, *chain]
    return base


def _broadcast_true(index: _Index, atom: Any) -> list[Any] | None:
    """The ``broadcast_in_dim`` equations that make ``atom`` of the literal True (all true), else None."""
    steps = []
    while not isinstance(atom, jex_core.Literal):
        step = index.eqn(atom, "broadcast_in_dim")
        if step is None:
            return None
        steps.append(step)
        atom = step.invars[0]
    value = np.asarray(atom.val)
    return steps if steps and value.dtype == np.bool_ and bool(value.all()) else None


def _inserts_unit_axes(eqn: Any) -> bool:
    """Whether a ``broadcast_in_dim`` only inserts size-1 axes (copies nothing)."""
    kept = [int(d) for d in eqn.params["broadcast_dimensions"]]
    shape, source = eqn.outvars[0].aval.shape, eqn.invars[0].aval.shape
    return all(
        same_shape([shape[kept[i]]], [source[i]]) if i < len(kept) else False for i in range(len(source))
    ) and all(same_shape([shape[axis]], [1]) for axis in range(len(shape)) if axis not in kept)


__all__ = ["attention_scores", "head_projection"]
