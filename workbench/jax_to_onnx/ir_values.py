"""Small queries on onnx-ir values, and new initializers, shared by the export passes and rewrite rules."""

from __future__ import annotations

import itertools

import numpy as np
import onnx_ir as ir

from workbench.jax_to_onnx.copy_threads import run_chunked

# arrays up to this many bytes are transposed by NumPy in one go (they fit the CPU's caches)
_TILED_TRANSPOSE_BYTES = 1 << 20
# edge of the blocks a larger transpose is copied in
_TRANSPOSE_BLOCK = 64


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


# ``Value.meta`` key: the array a pass made for this initializer itself (nothing else references it), so a
# later pass may overwrite it in place; see :func:`own_array` / :func:`owned_array`
_OWNED_ARRAY_KEY = "workbench.owned_array"


def own_array(value: ir.Value, array: np.ndarray) -> None:
    """Store ``array``, a new array no caller or other value references, as ``value``'s tensor, and note that
    the export owns it: :func:`owned_array` then lets a later pass change it in place instead of copying."""
    value.const_value = ir.Tensor(array, name=value.name)
    value.meta[_OWNED_ARRAY_KEY] = array


def owned_array(value: ir.Value) -> np.ndarray | None:
    """``value``'s array when :func:`own_array` stored it and it is still the value's tensor (C-ordered and
    writable), else None: the caller's weights and arrays another value may share are never returned."""
    array = value.meta.get(_OWNED_ARRAY_KEY)
    tensor = value.const_value
    if array is None or not isinstance(tensor, ir.Tensor) or tensor.raw is not array:
        return None
    return array if array.flags.c_contiguous and array.flags.writeable else None


def transposed_copy(array: np.ndarray, perm: list[int] | tuple[int, ...] | None = None) -> np.ndarray:
    """``np.transpose(array, perm)`` as a new C-ordered array, copied block by block when it is large.

    NumPy copies a transposed view element by element in the destination's order, reading the source
    with a stride of up to the whole array: a 3x3x512x512 convolution kernel laid out HWIO -> OIHW took
    ~25 ms that way (a Haiku ResNet-18's kernels a fifth of its conversion). A permutation that reverses
    three runs of axes (a kernel HWIO -> OIHW is (HW, I, O) -> (O, I, HW)) or swaps two (a matrix) is
    copied through a small padded scratch (:func:`_reversed_runs_copy`); any other large one in blocks of
    64 along every axis longer than that, which keeps both sides of each block in the cache. The chunks
    are shared out among a few threads (:mod:`.copy_threads`: NumPy copies without the GIL). The result is
    the same array. Hand-written because NumPy has no cache-blocked (or threaded) transpose.
    """
    axes = list(range(array.ndim))[::-1] if perm is None else [int(axis) for axis in perm]
    if array.nbytes <= _TILED_TRANSPOSE_BYTES or axes[-1] == array.ndim - 1:
        return np.ascontiguousarray(np.transpose(array, axes))  # small, or the inner axis stays inner
    runs = _reversed_runs(array, axes)
    if runs is not None:
        return _reversed_runs_copy(array, axes, runs)
    out = np.empty([array.shape[axis] for axis in axes], dtype=array.dtype)
    view = np.transpose(array, axes)
    starts = [range(0, size, _TRANSPOSE_BLOCK) if size > _TRANSPOSE_BLOCK else [None] for size in out.shape]
    corners = list(itertools.product(*starts))

    def copy_blocks(first: int, stop: int) -> None:
        for corner in corners[first:stop]:
            block = tuple(slice(None) if start is None else slice(start, start + _TRANSPOSE_BLOCK) for start in corner)
            out[block] = view[block]

    run_chunked(len(corners), copy_blocks, array.nbytes)
    return out


# rows of the scratch a reversed-runs copy passes each chunk through, and the longest row (bytes) it copies
_SCRATCH_ROWS = 256
_SCRATCH_ROW_BYTES = 2048
# bytes added to each scratch row: rows a power of two apart in memory share the cache's sets, so
# reading a column of unpadded rows evicts what it read a few rows before
_SCRATCH_PAD_BYTES = 64


def _reversed_runs(array: np.ndarray, axes: list[int]) -> tuple[int, int, int] | None:
    """``(A, I, O)`` when ``array`` is C-ordered and ``axes`` reverses the order of three runs of its axes
    (or swaps two: ``I`` is 1), each run kept in order: the copy is then ``(A, I, O) -> (O, I, A)``."""
    if not array.flags.c_contiguous:
        return None
    runs: list[list[int]] = []
    for axis in axes:
        if runs and axis == runs[-1][-1] + 1:
            runs[-1].append(axis)
        else:
            runs.append([axis])
    if len(runs) not in (2, 3) or [run[0] for run in runs] != sorted((run[0] for run in runs), reverse=True):
        return None
    sizes = [int(np.prod([array.shape[axis] for axis in run])) for run in runs]
    return (sizes[-1], sizes[1], sizes[0]) if len(runs) == 3 else (sizes[1], 1, sizes[0])


def _reversed_runs_copy(array: np.ndarray, axes: list[int], runs: tuple[int, int, int]) -> np.ndarray:
    """:func:`transposed_copy` of a permutation ``(A, I, O) -> (O, I, A)`` (see :func:`_reversed_runs`).

    Each chunk (2 KB of O's columns, rows of (I, A) that fill :data:`_SCRATCH_ROWS`) is first copied
    into a scratch laid out (I, A, O) with padded rows, reading and writing runs along O; then into the
    output, whose rows (along A) are written in runs while the scratch's columns are read, in the cache
    and without the set conflicts of unpadded power-of-two rows. The blocked copy's inner loops were as
    short as a kernel's W (3 elements, each read a row of the source apart); these two are 0.6x its CPU
    time on a Haiku ResNet-18's kernels (docs/performance.md, "Kernel copies through a scratch").
    """
    size_a, size_i, size_o = runs
    source = array.reshape(size_a, size_i, size_o)
    out = np.empty([array.shape[axis] for axis in axes], dtype=array.dtype)
    target = out.reshape(size_o, size_i, size_a)
    columns = max(1, min(size_o, _SCRATCH_ROW_BYTES // array.itemsize))
    rows_a = min(size_a, _SCRATCH_ROWS)
    rows_i = max(1, min(size_i, _SCRATCH_ROWS // rows_a))
    corners = list(itertools.product(range(0, size_o, columns), range(0, size_i, rows_i), range(0, size_a, rows_a)))
    pad = max(1, _SCRATCH_PAD_BYTES // array.itemsize)

    def copy_chunks(first: int, stop: int) -> None:
        scratch = np.empty((rows_i, rows_a, columns + pad), dtype=array.dtype)
        for o, i, a in corners[first:stop]:
            rows = source[a:a + rows_a, i:i + rows_i, o:o + columns]
            chunk = scratch[:rows.shape[1], :rows.shape[0], :rows.shape[2]]
            chunk[...] = rows.transpose(1, 0, 2)
            target[o:o + columns, i:i + rows_i, a:a + rows_a] = chunk.transpose(2, 0, 1)

    run_chunked(len(corners), copy_chunks, array.nbytes)
    return out


# ops that only broadcast or re-shape their first input (a broadcast zero stays zero)
_BROADCASTS = frozenset({"Expand", "Reshape", "Unsqueeze", "Identity"})


def is_broadcast_zero(value: ir.Value | None) -> bool:
    """Whether ``value`` is a constant of zeros, possibly through a few broadcasting or reshaping ops."""
    for _ in range(len(_BROADCASTS) + 1):
        producer = None if value is None else value.producer()
        if producer is None or producer.op_type not in _BROADCASTS or producer.domain != "":
            break
        value = producer.inputs[0]
    array = constant_array(value)
    return array is not None and array.size > 0 and not np.any(array != 0)


def is_uniform_condition(value: ir.Value | None) -> bool:
    """Whether ``value`` is a constant condition that is all true or all false (a Where that selects one branch)."""
    array = constant_array(value)
    return array is not None and array.size > 0 and bool(array.all() or not array.any())
