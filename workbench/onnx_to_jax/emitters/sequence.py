"""Sequences and optionals: ONNX sequences are Python lists of arrays, optionals an array (or a list) or None.

A list is a JAX pytree, so ``jax.jit``, ``jax.grad`` and ``jax.vmap`` pass through generated code that
builds and reads sequences as long as positions are known while tracing: ``SequenceAt``,
``SequenceInsert``/``SequenceErase`` positions and ``SplitToSequence`` sizes are read on the host
(``ctx.host``), so with traced positions the node runs between jitted parts (segments.py).
``SequenceLength`` and ``OptionalHasElement`` are known while tracing (a list's length, whether a
value is None). ``SequenceMap`` calls its body once per element in Python (elements may differ in shape).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.helpers import _slice_axis
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@emitter("SequenceEmpty", since=11)
def sequence_empty(ctx: NodeContext) -> str:
    return "[]"


@emitter("SequenceConstruct", since=11)
def sequence_construct(ctx: NodeContext) -> str:
    return f"[{', '.join(ctx.xs())}]"


@runtime_helper
def _position(position, length, *, insert):
    """A sequence position as a Python int (negative counts from the end; ONNX checks the range)."""
    index = int(np.asarray(position).reshape(()))
    limit = length if insert else length - 1
    if not -length <= index <= limit:
        raise IndexError(f"sequence position {index} is out of range for a sequence of {length}")
    return index + length if index < 0 else index


@runtime_helper
def _sequence_at(sequence, position):
    return sequence[_position(position, len(sequence), insert=False)]


@emitter("SequenceAt", since=11)
def sequence_at(ctx: NodeContext) -> str:
    return ctx.call(_sequence_at, ctx.x(0), ctx.host(1))


@runtime_helper
def _sequence_insert(sequence, value, position):
    index = len(sequence) if position is None else _position(position, len(sequence), insert=True)
    return list(sequence[:index]) + [value] + list(sequence[index:])


@emitter("SequenceInsert", since=11)
def sequence_insert(ctx: NodeContext) -> str:
    return ctx.call(_sequence_insert, ctx.x(0), ctx.x(1), ctx.host_opt(2))


@runtime_helper
def _sequence_erase(sequence, position):
    index = len(sequence) - 1 if position is None else _position(position, len(sequence), insert=False)
    return list(sequence[:index]) + list(sequence[index + 1:])


@emitter("SequenceErase", since=11)
def sequence_erase(ctx: NodeContext) -> str:
    return ctx.call(_sequence_erase, ctx.x(0), ctx.host_opt(1))


@emitter("SequenceLength", since=11)
def sequence_length(ctx: NodeContext) -> str:
    return f"np.array(len({ctx.x(0)}), dtype=np.int64)"


@runtime_helper
def _split_to_sequence(x, split, axis, keepdims):
    """Pieces of ``x`` along ``axis``: of the given sizes, of equal size ``split`` (the last may be
    shorter), or (no ``split``) of size 1, squeezed unless ``keepdims``."""
    x = jnp.asarray(x)
    axis = axis % x.ndim
    length = x.shape[axis]
    if split is None:
        pieces = [jnp.take(x, i, axis=axis) for i in range(length)]
        return [jnp.expand_dims(p, axis) for p in pieces] if keepdims else pieces
    sizes = np.asarray(split).reshape(-1)
    if np.ndim(split) == 0:
        chunk = int(sizes[0])
        sizes = [chunk] * (length // chunk) + ([length % chunk] if length % chunk else [])
    offsets = np.cumsum([0] + [int(s) for s in sizes])
    return [_slice_axis(x, int(offsets[i]), int(offsets[i + 1]), axis) for i in range(len(sizes))]


@emitter("SplitToSequence", since=11)
def split_to_sequence(ctx: NodeContext) -> str:
    return ctx.call(_split_to_sequence, ctx.x(0), ctx.host_opt(1), ctx.lit(ctx.attr("axis", 0)),
                    ctx.lit(bool(ctx.attr("keepdims", 1))))


@runtime_helper
def _concat_from_sequence(sequence, axis, new_axis):
    if new_axis:
        return jnp.stack(list(sequence), axis=axis)
    return jnp.concatenate(list(sequence), axis=axis)


@emitter("ConcatFromSequence", since=11)
def concat_from_sequence(ctx: NodeContext) -> str:
    return ctx.call(_concat_from_sequence, ctx.x(0), ctx.lit(ctx.attr("axis")),
                    ctx.lit(bool(ctx.attr("new_axis", 0))))


@runtime_helper
def _sequence_map(body, inputs, is_sequence, n_out):
    """Call ``body`` on the i-th element of every sequence input (tensor inputs are passed whole);
    output k is the sequence of every call's k-th result."""
    lengths = {len(v) for v, seq in zip(inputs, is_sequence) if seq}
    if len(lengths) != 1:
        raise ValueError(f"SequenceMap's sequence inputs differ in length: {sorted(lengths)}")
    outputs = [[] for _ in range(n_out)]
    for i in range(lengths.pop()):
        results = body(*[v[i] if seq else v for v, seq in zip(inputs, is_sequence)])
        for k in range(n_out):
            outputs[k].append(results[k])
    return tuple(outputs)


@emitter("SequenceMap", since=17)
def sequence_map(ctx: NodeContext):
    body = ctx.subgraph("body")
    is_sequence = []
    for i in range(ctx.n_in):
        kind = ctx.kind(i)
        if kind is None:
            raise ctx.unsupported(f"the type of input {i} is unknown (sequence or tensor); run shape inference")
        is_sequence.append(kind == "sequence")
    inputs = f"({', '.join(ctx.x(i) for i in range(ctx.n_in))},)"
    call = ctx.call(_sequence_map, body, inputs, ctx.lit(tuple(is_sequence)), ctx.lit(ctx.n_out))
    return call if ctx.n_out > 1 else [f"{call}[0]"]


@emitter("Optional", since=15)
def optional(ctx: NodeContext) -> str:
    return ctx.x(0) if ctx.has(0) else "None"


@emitter("OptionalHasElement", since=(15, 18))
def optional_has_element(ctx: NodeContext) -> str:
    if not ctx.has(0):
        return "np.array(False)"
    return f"np.array({ctx.x(0)} is not None)"


@runtime_helper
def _optional_get_element(value):
    if value is None:
        raise ValueError("OptionalGetElement on an empty optional")
    return value


@emitter("OptionalGetElement", since=(15, 18))
def optional_get_element(ctx: NodeContext) -> str:
    if ctx.kind(0) in ("tensor", "sequence"):  # opset 18 accepts a plain tensor or sequence: identity
        return ctx.x(0)
    return ctx.call(_optional_get_element, ctx.x(0))
