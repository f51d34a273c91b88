"""Sorting: sort (one or many operands, lexicographic num_keys; complex operands by (real, imag)), argsort
(sort with an iota operand), top_k.

ONNX has no Sort; ``TopK`` with ``k`` = the axis length and ``largest=0`` is an ascending sort
that the ONNX spec makes stable (equal values keep their index order), so ``is_stable`` holds
either way. Several keys sort lexicographically by stable passes from the last key to the first
(each pass gathers the key by the permutation so far); every operand is then gathered with the
final permutation (GatherElements). Descending ``jnp.sort``/``argsort`` arrive as ``rev`` or
negation around an ascending sort and lower through those primitives.

Known difference: JAX orders floats totally (-0.0 before 0.0, NaNs last); TopK treats -0.0 and
0.0 as equal and leaves NaN placement to the runtime, so inputs with NaNs may sort differently.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax
from jax.core import ShapedArray

from workbench.jax_to_onnx.builder import onnx_dtype
from workbench.jax_to_onnx.complex_numbers import is_complex, real_dtype
from workbench.jax_to_onnx.handlers.complex_ops import part
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

# Types onnxruntime's TopK takes; others are cast to an order-preserving wider type first.
_TOPK_TYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64))


def _sortable(ctx: LoweringContext, x: ir.Value, dtype: Any) -> ir.Value:
    dtype = np.dtype(dtype)
    if dtype in _TOPK_TYPES:
        return x
    if jnp.issubdtype(dtype, jnp.floating):
        return ctx.op("Cast", x, to=ir.DataType.FLOAT)  # float16/bfloat16 → float32 keeps the order
    return ctx.op("Cast", x, to=ir.DataType.INT64)  # bool and narrow ints keep their order in int64


_TIES = np.array([[3, 1, 2, 1, 3, 0], [5, 5, -1, 2, 2, 5]], np.int32)


@handler("sort", onnx_ops=("TopK", "GatherElements", "Cast"), testcases=[
    Testcase("sort_last_axis", lambda x: jnp.sort(x, axis=-1), [("B", 7)], expect_ops=("TopK",)),
    Testcase("sort_axis0_symbolic", lambda x: jnp.sort(x, axis=0), [("T", 3)]),
    Testcase("argsort_stable_ties", lambda x: jnp.argsort(x, axis=1, stable=True), [_TIES]),
    Testcase("argsort_float", lambda x: jnp.argsort(x, axis=0), [("B", 4)]),
    Testcase("sort_descending", lambda x: jnp.sort(x, axis=1, descending=True), [("B", 6)]),
    Testcase("argsort_descending", lambda x: jnp.argsort(x, axis=1, descending=True), [_TIES]),
    Testcase("sort_two_operands", lambda k, v: lax.sort((k, v), dimension=1, num_keys=1), [_TIES, (2, 6)]),
    Testcase("sort_two_keys", lambda a, b, v: lax.sort((a, b, v), dimension=1, num_keys=2), [_TIES, np.array([[1, 0, 2, 0, 0, 5], [3, 1, 0, 9, 8, 2]], np.int32), (2, 6)]),
    Testcase("sort_bool_keys", lambda k, v: lax.sort((k, v), dimension=0, num_keys=1), [np.array([True, False, True, False, False]), (5,)]),
])
def _sort(ctx: LoweringContext, *operands: ir.Value, dimension: int, is_stable: bool, num_keys: int) -> tuple[ir.Value, ...]:
    """lax.sort(operands, dimension, is_stable, num_keys) → stable TopK passes + GatherElements."""
    del is_stable  # ONNX TopK breaks ties by index: always stable
    axis = int(dimension)
    length = ctx.dim_value(ctx.avals_in[0].shape[axis])
    permutation: ir.Value | None = None
    first_key_sorted: ir.Value | None = None
    for key_index in reversed(range(num_keys)):
        key = _sortable(ctx, operands[key_index], ctx.avals_in[key_index].dtype)
        if permutation is not None:
            key = ctx.op("GatherElements", key, permutation, axis=axis)
        values, order = ctx.op("TopK", key, length, axis=axis, largest=0, sorted=1, num_outputs=2)
        permutation = order if permutation is None else ctx.op("GatherElements", permutation, order, axis=axis)
        if key_index == 0 and key is operands[0] and num_keys == 1:
            first_key_sorted = values  # the TopK values already are the sorted first operand
    assert permutation is not None
    results = []
    for index, operand in enumerate(operands):
        if index == 0 and first_key_sorted is not None:
            results.append(first_key_sorted)
        else:
            results.append(ctx.op("GatherElements", operand, permutation, axis=axis))
    return tuple(results)


def _top_k_outputs(ctx: LoweringContext, values: ir.Value, indices: ir.Value,
                   dtype: np.dtype) -> tuple[ir.Value, ir.Value]:
    """TopK's (values, int64 indices) cast back to the dtypes JAX's result has."""
    if dtype not in _TOPK_TYPES:
        values = ctx.op("Cast", values, to=onnx_dtype(dtype))
    index_dtype = np.dtype(ctx.avals_out[1].dtype)
    if index_dtype != np.dtype(np.int64):
        indices = ctx.op("Cast", indices, to=onnx_dtype(index_dtype))
    return values, indices


@handler("top_k", onnx_ops=("TopK", "Cast"), testcases=[
    Testcase("top_k_last_axis", lambda x: lax.top_k(x, 3), [("B", 8)], expect_ops=("TopK",)),
    Testcase("top_k_ties_int", lambda x: lax.top_k(x, 4), [_TIES]),
    Testcase("top_k_k1", lambda x: lax.top_k(x, 1)[1], [(3, 5)]),
    Testcase("top_k_axis0", lambda x: lax.top_k(x, 2, axis=0), [(5, "B")]),
    Testcase("top_k_float16", lambda x: lax.top_k(x.astype(jnp.float16), 2)[0], [(2, 6)], rtol=1e-3, atol=1e-3),
])
def _top_k(ctx: LoweringContext, x: ir.Value, *, k: int, axis: int = -1) -> tuple[ir.Value, ir.Value]:
    """lax.top_k(x, k, axis): the k largest along ``axis``, sorted, lower index first on ties."""
    dtype = np.dtype(ctx.avals_in[0].dtype)
    values, indices = ctx.op("TopK", _sortable(ctx, x, dtype), ctx.i64([int(k)]), axis=int(axis), largest=1, sorted=1, num_outputs=2)
    return _top_k_outputs(ctx, values, indices, dtype)


@handler("approx_top_k", onnx_ops=("TopK", "Cast"), doc="https://docs.jax.dev/en/latest/_autosummary/jax.lax.approx_max_k.html",
         testcases=[
    Testcase("approx_max_k", lambda x: lax.approx_max_k(x, 3), [("B", 10)]),
    Testcase("approx_min_k_axis0", lambda x: lax.approx_min_k(x, 2, reduction_dimension=0), [(6, "B")]),
    Testcase("approx_max_k_not_aggregated", lambda x: lax.approx_max_k(x, 2, aggregate_to_topk=False), [(3, 8)]),
])
def _approx_top_k(
    ctx: LoweringContext,
    x: ir.Value,
    *,
    k: int,
    reduction_dimension: int,
    recall_target: float,
    is_max_k: bool,
    reduction_input_size_override: int,
    aggregate_to_topk: bool,
) -> tuple[ir.Value, ir.Value]:
    """The exact top k (largest or smallest) along ``reduction_dimension``, as JAX computes on CPU.

    The approximation is a TPU speed-up; on CPU JAX returns the exact, sorted top k, and so does
    TopK (the first index on ties). Without ``aggregate_to_topk`` JAX's CPU result keeps as many
    entries as the output shape says (the whole axis, sorted), which TopK also gives.
    Params: k, reduction_dimension, is_max_k, aggregate_to_topk; recall_target and
    reduction_input_size_override only tune the TPU approximation.
    """
    del recall_target, reduction_input_size_override, aggregate_to_topk, k
    dtype = np.dtype(ctx.avals_in[0].dtype)
    axis = int(reduction_dimension) % len(ctx.avals_in[0].shape)
    kept = int(ctx.avals_out[0].shape[axis])
    values, indices = ctx.op("TopK", _sortable(ctx, x, dtype), ctx.i64([kept]), axis=axis, largest=int(is_max_k), sorted=1,
                             num_outputs=2)
    return _top_k_outputs(ctx, values, indices, dtype)


# ----------------------------------------------------------------------------- complex operands
_ROOTS_LIKE = np.array([[1 + 2j, 1 - 2j, -3 + 0j, 1 + 0j, 0.5 - 1j], [2j, -2j, 0j, 1 + 1j, 1 + 1j]], np.complex64)


@handler("sort", complex_numbers=True, onnx_ops=("TopK", "GatherElements", "Gather", "Concat"), testcases=[
    Testcase("sort_complex_lexicographic", lambda z: jnp.sort(z, axis=-1), [_ROOTS_LIKE]),
    Testcase("sort_complex_random_axis0", lambda z: jnp.sort(z, axis=0), [jax.ShapeDtypeStruct((5, "B"), np.complex64)]),
    Testcase("argsort_complex", lambda z: jnp.argsort(z, axis=-1), [_ROOTS_LIKE]),
    Testcase("sort_by_bool_key_complex_payload", lambda z: lax.sort((z == 0, z), dimension=1, num_keys=1)[1], [_ROOTS_LIKE]),
])
def _sort_complex(ctx: LoweringContext, *operands: ir.Value, dimension: int, is_stable: bool, num_keys: int) -> tuple[ir.Value, ...]:
    """sort with complex operands: JAX orders complex numbers lexicographically by (real, imag), so a
    complex key becomes two real keys (its real then its imaginary part); complex operands are
    permuted on both parts. Params: as the real sort."""
    planes: list[ir.Value] = []
    avals: list[Any] = []
    layout: list[int] = []  # how many planes each operand became
    keys = 0
    for index, (operand, aval) in enumerate(zip(operands, ctx.avals_in, strict=True)):
        if is_complex(aval.dtype):
            plane_aval = ShapedArray(tuple(aval.shape), real_dtype(aval.dtype))
            planes += [part(ctx, operand, 0), part(ctx, operand, 1)]
            avals += [plane_aval, plane_aval]
            layout.append(2)
            keys += 2 if index < num_keys else 0
        else:
            planes.append(operand)
            avals.append(aval)
            layout.append(1)
            keys += 1 if index < num_keys else 0
    sub = dataclasses.replace(ctx, avals_in=tuple(avals), avals_out=tuple(avals))
    sorted_planes = list(_sort(sub, *planes, dimension=dimension, is_stable=is_stable, num_keys=keys))
    results = []
    for count in layout:
        taken, sorted_planes = sorted_planes[:count], sorted_planes[count:]
        if count == 1:
            results.append(taken[0])
        else:
            results.append(ctx.op("Concat", *(ctx.op("Unsqueeze", p, ctx.i64([-1])) for p in taken), axis=-1))
    return tuple(results)
