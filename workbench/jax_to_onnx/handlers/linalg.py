"""dot_general → MatMul / Gemm / Einsum, whichever says what the contraction is."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.jax_to_onnx.builder import is_static, tensor_type, typed_like
from workbench.jax_to_onnx.dims import as_dim, reshape_target
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler


def _einsum_equation(lhs_rank: int, rhs_rank: int, dimension_numbers: Any) -> str:
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    letters = iter(string.ascii_lowercase)
    lhs = [""] * lhs_rank
    rhs = [""] * rhs_rank
    for l_axis, r_axis in zip(lhs_batch, rhs_batch, strict=True):
        lhs[l_axis] = rhs[r_axis] = next(letters)
    for l_axis, r_axis in zip(lhs_contract, rhs_contract, strict=True):
        lhs[l_axis] = rhs[r_axis] = next(letters)
    for axes in (lhs, rhs):
        for i, letter in enumerate(axes):
            if not letter:
                axes[i] = next(letters)
    out = [lhs[a] for a in lhs_batch]
    out += [lhs[i] for i in range(lhs_rank) if i not in lhs_batch and i not in lhs_contract]
    out += [rhs[i] for i in range(rhs_rank) if i not in rhs_batch and i not in rhs_contract]
    return f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"


def _is_matmul_form(lhs_rank: int, rhs_rank: int, dimension_numbers: Any) -> bool:
    """x[..., k] @ w[k, n] (rhs 2-D, no batch), or batched matmul with leading batch axes in order."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    if tuple(lhs_contract) != (lhs_rank - 1,):
        return False
    if not lhs_batch and not rhs_batch:
        return rhs_rank == 2 and tuple(rhs_contract) == (0,)
    n_batch = len(lhs_batch)
    return (
        tuple(lhs_batch) == tuple(range(n_batch))
        and tuple(rhs_batch) == tuple(range(n_batch))
        and lhs_rank == n_batch + 2
        and rhs_rank == n_batch + 2
        and tuple(rhs_contract) == (n_batch,)
    )


def _f64(*shape: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, np.float64)


def _is_8bit_integer_product(lhs_dtype: Any, rhs_dtype: Any, out_dtype: np.dtype) -> bool:
    """8-bit integer operands and an int32 result, as onnxruntime's MatMulInteger computes them exactly: int8 or
    uint8 times int8 or uint8, but uint8 times int8. Measured (onnxruntime 1.31, x86-64 CPU, random full-range
    operands, K = 32 to 1000): uint8 x int8 is wrong on every draw (its u8s8 kernel saturates pair sums in 16
    bits); the other three pairings are exact. That pairing keeps the cast to int32 and MatMul."""
    lhs, rhs = np.dtype(lhs_dtype), np.dtype(rhs_dtype)
    eight_bit = (np.dtype(np.int8), np.dtype(np.uint8))
    saturating = lhs == np.dtype(np.uint8) and rhs == np.dtype(np.int8)
    return lhs in eight_bit and rhs in eight_bit and not saturating and out_dtype == np.dtype(np.int32)


def _dense_general_split(lhs_shape: Any, rhs_shape: Any, dimension_numbers: Any) -> tuple[int, int] | None:
    """(contracted size K, number of rhs output axes) when the contraction is a dense layer with a
    multi-axis kernel (flax ``DenseGeneral``/attention projections): the trailing lhs axes against
    the leading rhs axes in order, no batch axes, static kernel; None otherwise."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    n = len(lhs_contract)
    if lhs_batch or rhs_batch or n == 0:
        return None
    if tuple(lhs_contract) != tuple(range(len(lhs_shape) - n, len(lhs_shape))) or tuple(rhs_contract) != tuple(range(n)):
        return None
    if not all(is_static(d) for d in rhs_shape) or len(rhs_shape) == n:
        return None
    return int(np.prod([int(d) for d in rhs_shape[:n]])), len(rhs_shape) - n


# a constant weight for the testcases of ``W @ x`` under vmap (written as Equinox's Linear does)
_LEFT_WEIGHT = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
_LEFT_WEIGHT_U8 = np.random.default_rng(1).integers(0, 256, (5, 8)).astype(np.uint8)  # a uint8 layer weight


def _moves_data(shape: Any, order: list[int]) -> bool:
    """Whether transposing to ``order`` moves data: not when only axes of static size 1 change place
    (a symbolic dim is never taken for 1)."""
    if order == sorted(order):
        return False
    kept = [axis for axis in order if not (is_static(shape[axis]) and int(shape[axis]) == 1)]
    return kept != sorted(kept)


def _flat_dim(shape: Any, axes: list[int]) -> Any:
    """The size of ``axes`` flattened into one: an int, or the one symbolic dim among static 1s."""
    if all(is_static(shape[a]) for a in axes):
        return int(np.prod([int(shape[a]) for a in axes]))
    (dim,) = [shape[a] for a in axes if not (is_static(shape[a]) and int(shape[a]) == 1)]
    return dim


def _reshaped(ctx: LoweringContext, x: ir.Value, source: Sequence[Any], target: Sequence[Any]) -> ir.Value:
    """``Reshape(x)`` from dims ``source`` to ``target``: a constant shape (0 and -1 standing for symbolic
    dims) where one says it, else the shape read at run time."""
    constant = reshape_target([as_dim(d) for d in source], [as_dim(d) for d in target])
    return ctx.op("Reshape", x, ctx.i64(constant) if constant is not None else ctx.shape_value(list(target)))


def _arrange(ctx: LoweringContext, x: ir.Value, shape: Any, order: list[int], n_batch: int, flat: list[int] | None) -> ir.Value:
    """``x`` with its axes in ``order`` (a Reshape when no data moves), then shaped ``[*batch, *flat]``."""
    moves = _moves_data(shape, order)
    source = x
    if moves:
        x = typed_like(ctx.op("Transpose", x, perm=order), source, [shape[a] for a in order])
    if flat is None and (moves or order == sorted(order)):
        return x
    rest = flat if flat is not None else [shape[a] for a in order[n_batch:]]
    batch_dims = [shape[a] for a in order[:n_batch]]
    # from the transposed layout when data moved (the batch axes then lead), else from x's own
    reshaped = _reshaped(ctx, x, [shape[a] for a in order] if moves else list(shape), batch_dims + rest)
    return typed_like(reshaped, source, batch_dims + rest)


@dataclass(frozen=True)
class _Operand:
    """One side of a contraction: its value, static-or-symbolic shape and its batch / free / contracted axes."""

    value: ir.Value
    shape: Any
    batch: list[int]
    free: list[int]
    contract: list[int]

    @classmethod
    def of(cls, value: ir.Value, shape: Any, batch: Sequence[int], contract: Sequence[int]) -> _Operand:
        """The operand with its free axes: those neither batched nor contracted, in order."""
        free = [a for a in range(len(shape)) if a not in batch and a not in contract]
        return cls(value, shape, list(batch), free, list(contract))

    @property
    def as_left(self) -> list[int]:  # [batch, free, contract]
        return [*self.batch, *self.free, *self.contract]

    @property
    def as_right(self) -> list[int]:  # [batch, contract, free]
        return [*self.batch, *self.contract, *self.free]


def _matmul(ctx: LoweringContext, op: str, a: ir.Value, b: ir.Value, like: ir.Value, dims: Sequence[Any]) -> ir.Value:
    """``op`` (MatMul, or MatMulInteger for 8-bit operands) of ``a`` and ``b``, typed as ``like`` with ``dims``;
    MatMulInteger's result is int32 whatever its operands' type."""
    result = typed_like(ctx.op(op, a, b), like, dims)
    if op == "MatMulInteger":
        result.type = tensor_type(np.dtype(np.int32))
    return result


def _product(ctx: LoweringContext, left: _Operand, right: _Operand, n_batch: int, op: str = "MatMul") -> ir.Value:
    """``left @ right`` as one ``op`` (MatMul or MatMulInteger), shaped ``[*batch, *left free axes, *right free
    axes]``."""
    simple_left = len(left.free) == 1 and len(left.contract) == 1
    simple_right = len(right.free) == 1 and len(right.contract) == 1
    rows, columns = _flat_dim(left.shape, left.free), _flat_dim(right.shape, right.free)
    depth = _flat_dim(left.shape, left.contract)
    first = _arrange(ctx, left.value, left.shape, left.as_left, n_batch, None if simple_left else [rows, depth])
    second = _arrange(ctx, right.value, right.shape, right.as_right, n_batch,
                      None if simple_right else [depth, columns])
    batch = [left.shape[a] for a in left.batch]
    result = _matmul(ctx, op, first, second, left.value, [*batch, rows, columns])
    if len(left.free) != 1 or len(right.free) != 1:
        out = [left.shape[a] for a in left.free] + [right.shape[a] for a in right.free]
        result = typed_like(_reshaped(ctx, result, [*batch, rows, columns], batch + out), result, batch + out)
    return result


def _batched_matmul(ctx: LoweringContext, lhs: ir.Value, rhs: ir.Value, dimension_numbers: Any, op: str = "MatMul") -> ir.Value | None:
    """Any contraction as Transpose → Reshape → MatMul → Reshape: ``[batch, free, contract]`` against
    ``[batch, contract, free]``, or with the operands swapped (then the result is transposed) when that
    moves fewer elements, e.g. attention's ``probs @ values``, or ``W @ x`` per example under ``vmap``
    (an Equinox ``Linear``), which becomes ``x @ W^T`` with ``W^T`` stored by the export passes.

    A free axis may be symbolic (the batch of a ``vmap``, a sequence) when the operand's other free axes
    are static 1s (flax's query-groups axis), so nothing of another size is flattened into it; the
    reshapes then say the symbolic dims with ONNX's 0 and -1. None when a contracted axis or a free
    axis beside others is symbolic (their products would need runtime shape arithmetic; Einsum says it
    more simply then)."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    lhs_shape, rhs_shape = ctx.avals_in[0].shape, ctx.avals_in[1].shape
    left = _Operand.of(lhs, lhs_shape, lhs_batch, lhs_contract)
    right = _Operand.of(rhs, rhs_shape, rhs_batch, rhs_contract)
    for operand in (left, right):  # axes flattened into one: all static, or one symbolic among static 1s
        for axes in (operand.free, operand.contract):
            data_axes = [a for a in axes if not (is_static(operand.shape[a]) and int(operand.shape[a]) == 1)]
            if len(data_axes) > 1 and not all(is_static(operand.shape[a]) for a in data_axes):
                return None

    n_batch = len(lhs_batch)
    free_l, free_r, depth = _nominal(left, left.free), _nominal(right, right.free), _nominal(left, left.contract)

    def moved(operand: _Operand, order: list[int], elements: int) -> int:
        if operand.value.const_value is not None:
            return 0  # a weight: stored in the order its MatMul reads (passes/folding.py)
        return elements if _moves_data(operand.shape, order) else 0

    straight = moved(left, left.as_left, free_l * depth) + moved(right, right.as_right, free_r * depth)
    swapped = (
        moved(right, right.as_left, free_r * depth)
        + moved(left, left.as_right, free_l * depth)
        + (free_l * free_r if left.free and right.free else 0)
    )
    # ``W @ x`` with the activations' contracted axis last (a per-example layer under ``vmap``): one
    # Transpose either way, of ``x`` or of the result; the result's is the one the caller's own
    # Transpose back to batch-first cancels, and the weight is then stored as ``W^T`` (a Gemm).
    weight_first = left.value.const_value is not None and right.value.const_value is None
    if swapped < straight or (weight_first and moved(right, right.as_right, 1) and not moved(right, right.as_left, 1)):
        result = _product(ctx, right, left, n_batch, op)
        n_r = len(right.free)
        perm = [*range(n_batch), *range(n_batch + n_r, n_batch + n_r + len(left.free)), *range(n_batch, n_batch + n_r)]
        return ctx.op("Transpose", result, perm=perm)
    return _product(ctx, left, right, n_batch, op)


# the size a symbolic free axis is assumed to have when weighing which operand to transpose
_NOMINAL_SYMBOLIC_SIZE = 64


def _nominal(operand: _Operand, axes: list[int]) -> int:
    """The number of elements along ``axes``, a symbolic axis counted as :data:`_NOMINAL_SYMBOLIC_SIZE`."""
    return int(np.prod([int(operand.shape[a]) if is_static(operand.shape[a]) else _NOMINAL_SYMBOLIC_SIZE for a in axes]))


def _weight_on_the_left(ctx: LoweringContext, lhs: ir.Value, rhs: ir.Value, dimension_numbers: Any, op: str = "MatMul") -> ir.Value | None:
    """``W @ x`` vmapped over tokens (how Equinox and per-example code write a dense layer): a constant
    matrix contracted with the last axis of ``x``, giving ``[W's free axis, *x's free axes]``.

    Lowered as the dense layer it is, ``MatMul(x, Wᵀ)`` (the weight's Transpose is folded at export),
    then one Transpose to JAX's axis order; the ``transpose`` that vmap puts after it cancels that one.
    Transposing ``x`` instead (the general path) leaves two Transposes of activations per layer, and
    a symbolic batch would send it to Einsum. None when the contraction is not of this form.
    """
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    lhs_shape, rhs_shape = ctx.avals_in[0].shape, ctx.avals_in[1].shape
    if (lhs.const_value is None or rhs.const_value is not None or lhs_batch or rhs_batch or len(lhs_shape) != 2
            or len(rhs_shape) < 2 or tuple(rhs_contract) != (len(rhs_shape) - 1,) or len(lhs_contract) != 1):
        return None
    (contracted,) = lhs_contract
    free = 1 - contracted
    weight = lhs if contracted == 0 else typed_like(ctx.op("Transpose", lhs, perm=[1, 0]), lhs, [lhs_shape[1], lhs_shape[0]])
    product = _matmul(ctx, op, rhs, weight, rhs, [*rhs_shape[:-1], lhs_shape[free]])
    rank = len(rhs_shape)
    return ctx.op("Transpose", product, perm=[rank - 1, *range(rank - 1)])


def _scaled_along_batch(ctx: LoweringContext, lhs: ir.Value, rhs: ir.Value, dimension_numbers: Any) -> ir.Value | None:
    """A contraction over no axis where one operand has no free axis but static 1s: a product along the
    batch axes, ``einsum("h,bhqk->hbqk", head_mask, probs)`` (transformers' head mask), lowered as a
    ``Mul`` in the other operand's layout and one Transpose to JAX's axis order (which the caller's
    Transpose back cancels). A MatMul of depth 1 would cost a reshape of the large operand each way,
    an Einsum more; a ``Mul`` by ones is then dropped by the export passes. None otherwise."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    if lhs_contract or rhs_contract:
        return None
    shapes = ctx.avals_in[0].shape, ctx.avals_in[1].shape
    for small, large in ((0, 1), (1, 0)):
        batch = (lhs_batch, rhs_batch)
        free = [a for a in range(len(shapes[small])) if a not in batch[small]]
        if not all(is_static(shapes[small][a]) and int(shapes[small][a]) == 1 for a in free):
            continue
        # the small operand's batch axes, in the order they have in the large one, then its unit axes
        pairs = sorted(zip(batch[large], batch[small], strict=True))
        order = [axis for _, axis in pairs] + free
        value = (lhs, rhs)[small]
        if order != sorted(order):
            value = typed_like(ctx.op("Transpose", value, perm=order), value, [shapes[small][a] for a in order])
        frame = [1] * len(shapes[large])
        for large_axis, small_axis in pairs:
            frame[large_axis] = shapes[small][small_axis]
        value = typed_like(_reshaped(ctx, value, [shapes[small][a] for a in order], frame), value, frame)
        operands = (value, (lhs, rhs)[large]) if small == 0 else ((lhs, rhs)[large], value)
        product = typed_like(ctx.op("Mul", *operands), (lhs, rhs)[large], list(shapes[large]))
        large_free = [a for a in range(len(shapes[large])) if a not in batch[large]]
        perm = [*batch[large], *large_free]  # JAX's order: batch, lhs free, rhs free
        if perm != sorted(perm):
            product = typed_like(ctx.op("Transpose", product, perm=perm), product, [shapes[large][a] for a in perm])
        if free:  # the small operand's unit free axes, before the large one's free axes or after them
            first = len(pairs) + (0 if small == 0 else len(large_free))
            product = ctx.op("Unsqueeze", product, ctx.i64(list(range(first, first + len(free)))))
        return product
    return None


@handler("dot_general", onnx_ops=("MatMul", "Einsum", "Mul"), testcases=[
    Testcase("matmul_2d", lambda x, w: x @ w, [("B", 8), (8, 5)], rtol=1e-4, atol=1e-5),
    Testcase("matmul_3d_weight", lambda x, w: x @ w, [("B", "T", 8), (8, 5)], rtol=1e-4, atol=1e-5),
    Testcase("batched_matmul", lambda x, y: jnp.einsum("bij,bjk->bik", x, y), [(2, 3, 4), (2, 4, 5)], rtol=1e-4, atol=1e-5),
    Testcase("einsum_heads", lambda q, k: jnp.einsum("bthd,bshd->bhts", q, k), [(2, 5, 3, 4), (2, 6, 3, 4)], rtol=1e-4, atol=1e-5),
    Testcase("dot_transposed_rhs", lambda x, w: lax.dot_general(x, w, (((1,), (1,)), ((), ()))), [(3, 8), (5, 8)], rtol=1e-4, atol=1e-5),
    # float64 kept end to end (enable_double_precision), at a tolerance float32 cannot meet
    Testcase("matmul_3d_f64", lambda x, w: x @ w, [_f64("B", "T", 8), _f64(8, 5)], rtol=1e-12, atol=1e-12, x64=True),
    Testcase("einsum_heads_f64", lambda q, k: jnp.einsum("bthd,bshd->bhts", q, k), [_f64(2, 5, 3, 4), _f64(2, 6, 3, 4)],
             rtol=1e-12, atol=1e-12, x64=True),
    Testcase("dense_general_heads", lambda x, w: jnp.einsum("btd,dhk->bthk", x, w), [("B", "T", 8), (8, 2, 3)],
             rtol=1e-4, atol=1e-5, expect_ops=("MatMul",)),
    Testcase("dense_general_merge_heads", lambda x, w: jnp.einsum("bthk,hkd->btd", x, w), [("B", "T", 2, 3), (2, 3, 8)],
             rtol=1e-4, atol=1e-5, expect_ops=("MatMul",)),
    Testcase("attention_grouped_heads", lambda q, k: lax.dot_general(q, k, (((4,), (3,)), ((0, 2), (0, 2)))),
             [("B", 5, 3, 1, 4), ("B", 6, 3, 4)], rtol=1e-4, atol=1e-5, expect_ops=("MatMul",)),
    Testcase("attention_values", lambda v, p: lax.dot_general(v, p, (((1,), (4,)), ((0, 2), (1, 2)))),
             [("B", 6, 3, 4), (1, "B", 3, 5, 6)], rtol=1e-4, atol=1e-5, expect_ops=("MatMul",)),
    Testcase("matmul_symbolic_contraction", lambda x, y: jnp.einsum("bki,bkj->bij", x, y), [(2, "K", 3), (2, "K", 4)],
             rtol=1e-4, atol=1e-5, expect_ops=("MatMul",)),
    # two symbolic free axes flattened into one would need their product at run time: Einsum
    Testcase("einsum_symbolic_free_axes", lambda x, y: jnp.einsum("bsti,bi->bst", x, y), [(2, "S", "T", 3), (2, 3)],
             rtol=1e-4, atol=1e-5, expect_ops=("Einsum",)),
    # flax's grouped-query attention: a size-1 axis beside the symbolic sequence, and a symbolic contraction
    Testcase("head_mask_symbolic", lambda m, p: jnp.einsum("h,bhqk->bhqk", m, p), [(3,), ("B", 3, "T", "T")],
             rtol=1e-5, atol=1e-6, expect_ops=("Mul",)),
    Testcase("scaled_along_batch_right", lambda p, m: lax.dot_general(p, m, (((), ()), ((1, 0), (0, 1)))),
             [(2, 3, 4, 5), (3, 2, 1)], rtol=1e-5, atol=1e-6, expect_ops=("Mul",)),
    Testcase("attention_grouped_heads_symbolic", lambda q, k: lax.dot_general(q, k, (((4,), (3,)), ((0, 2), (0, 2)))),
             [("B", "T", 3, 1, 4), ("B", "T", 3, 4)], rtol=1e-4, atol=1e-5, expect_ops=("MatMul",)),
    Testcase("attention_values_symbolic", lambda v, p: lax.dot_general(v, p, (((1,), (4,)), ((0, 2), (1, 2)))),
             [("B", "T", 3, 4), (1, "B", 3, "T", "T")], rtol=1e-4, atol=1e-5, expect_ops=("MatMul",)),
    Testcase("weight_on_the_left_vmapped", lambda x: jax.vmap(lambda t: _LEFT_WEIGHT @ t)(x), [("B", 8)],
             rtol=1e-4, atol=1e-5, expect_ops=("MatMul",)),
    Testcase("weight_on_the_left_tokens", lambda x: lax.dot_general(_LEFT_WEIGHT.T, x, (((0,), (2,)), ((), ()))),
             [("B", 3, 8)], rtol=1e-4, atol=1e-5, expect_ops=("MatMul", "Transpose")),
    Testcase("dot_int", lambda x, y: x @ y, [np.arange(6, dtype=np.int32).reshape(2, 3), np.arange(12, dtype=np.int32).reshape(3, 4)]),
    Testcase("outer_product_vectors", jnp.outer, [(3,), (4,)]),
    Testcase("per_example_grad_symbolic_batch", jax.vmap(jax.grad(lambda w, x: jnp.dot(x, w) ** 2), in_axes=(None, 0)),
             [(4,), ("B", 4)], rtol=1e-5, atol=1e-5),
    Testcase("einsum_int_mask_times_float", lambda m, x: jnp.einsum("bh,bhqk->bhqk", m, x, preferred_element_type=jnp.float32),
             [np.array([[1, 0, 1], [0, 1, 1]], np.int32), (2, 3, 4, 4)]),
    Testcase("dot_mixed_int_float", lambda m, w: lax.dot_general(m, w, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32),
             [np.array([[1, 2, 3], [4, 5, 6]], np.int32), (3, 5)]),
    Testcase("dot_int8_accumulates_in_int32", lambda x, y: lax.dot(x, y, preferred_element_type=jnp.int32),
             [np.full((2, 64), 100, np.int8), np.full((64, 3), 100, np.int8)], expect_ops=("MatMulInteger",)),
    # AQT's quantized layers: int8 activations (full range, -128 included) times int8 weights, int32 sums,
    # a batch of tokens and a multi-axis (DenseGeneral-like) kernel; uint8 activations against int8 weights
    Testcase("dot_int8_full_range_tokens", lambda x, w: lax.dot_general(x, w, (((2,), (0,)), ((), ())),
                                                                        preferred_element_type=jnp.int32),
             [np.random.default_rng(8).integers(-128, 128, (2, 5, 96)).astype(np.int8),
              np.random.default_rng(9).integers(-128, 128, (96, 4)).astype(np.int8)], expect_ops=("MatMulInteger",)),
    Testcase("dot_int8_dense_general_kernel", lambda x, w: lax.dot_general(x, w, (((1, 2), (0, 1)), ((), ())),
                                                                           preferred_element_type=jnp.int32),
             [np.random.default_rng(10).integers(-128, 128, (3, 4, 8)).astype(np.int8),
              np.random.default_rng(11).integers(-128, 128, (4, 8, 2, 3)).astype(np.int8)], expect_ops=("MatMulInteger",)),
    Testcase("dot_int8_times_uint8", lambda x, w: lax.dot(x, w, preferred_element_type=jnp.int32),
             [np.random.default_rng(12).integers(-128, 128, (4, 32)).astype(np.int8),
              np.random.default_rng(13).integers(0, 256, (32, 6)).astype(np.uint8)], expect_ops=("MatMulInteger",)),
    # onnxruntime's uint8 x int8 MatMulInteger saturates: that pairing stays a cast and an int32 MatMul
    Testcase("einsum_int8_against_transposed_table", lambda x, t: jnp.einsum("bd,cd->bc", x, t,
                                                                            preferred_element_type=jnp.int32),
             [np.random.default_rng(14).integers(-128, 128, (3, 40)).astype(np.int8),
              np.random.default_rng(15).integers(-128, 128, (10, 40)).astype(np.int8)], expect_ops=("MatMulInteger",)),
    Testcase("einsum_int8_attention_scores", lambda q, k: jnp.einsum("bqhd,bkhd->bhqk", q, k,
                                                                     preferred_element_type=jnp.int32),
             [np.random.default_rng(16).integers(-128, 128, (2, 5, 3, 16)).astype(np.int8),
              np.random.default_rng(17).integers(-128, 128, (2, 6, 3, 16)).astype(np.int8)], expect_ops=("MatMulInteger",)),
    Testcase("weight_on_the_left_uint8", lambda x: jax.vmap(lambda t: lax.dot(_LEFT_WEIGHT_U8, t,
                                                                             preferred_element_type=jnp.int32))(x),
             [np.random.default_rng(18).integers(0, 256, (4, 8)).astype(np.uint8)], expect_ops=("MatMulInteger",)),
    Testcase("dot_uint8_times_int8_casts", lambda x, w: lax.dot(x, w, preferred_element_type=jnp.int32),
             [np.random.default_rng(12).integers(0, 256, (4, 32)).astype(np.uint8),
              np.random.default_rng(13).integers(-128, 128, (32, 6)).astype(np.int8)], expect_ops=("MatMul",)),
])
def _dot_general(
    ctx: LoweringContext,
    lhs: ir.Value,
    rhs: ir.Value,
    *,
    dimension_numbers: Any,
    precision: Any,
    preferred_element_type: Any,
    out_sharding: Any,
) -> ir.Value:
    """MatMul when the contraction is a (batched) matrix product, Einsum otherwise.

    Params: dimension_numbers, precision (XLA-only), preferred_element_type (cast after).
    """
    del precision, out_sharding  # XLA-only
    lhs_aval, rhs_aval = ctx.avals_in
    out_dtype = np.dtype(ctx.aval_out.dtype)
    lhs_rank, rhs_rank = len(lhs_aval.shape), len(rhs_aval.shape)
    matmul_form = _is_matmul_form(lhs_rank, rhs_rank, dimension_numbers)
    dense = None if matmul_form else _dense_general_split(lhs_aval.shape, rhs_aval.shape, dimension_numbers)
    # int8/uint8 operands accumulated in int32 (AQT's and other quantized dot_generals): MatMulInteger keeps the
    # 8-bit operands (and 8-bit weights in the file) where casting both to int32 would store weights 4x larger
    # and run onnxruntime's plain int32 MatMul
    integer = _is_8bit_integer_product(lhs_aval.dtype, rhs_aval.dtype, out_dtype) and (matmul_form or dense is not None)
    matmul = "MatMulInteger" if integer else "MatMul"
    if not integer and np.dtype(lhs_aval.dtype) == np.dtype(rhs_aval.dtype) and _is_8bit_integer_product(
            lhs_aval.dtype, rhs_aval.dtype, out_dtype):
        # other contractions of two int8 (or two uint8) operands, AQT's einsums (``x @ classes.T``, attention's
        # q.k): the general paths may swap the operands, which the pairing of equal types allows
        lowered = _weight_on_the_left(ctx, lhs, rhs, dimension_numbers, "MatMulInteger")
        if lowered is None:
            lowered = _batched_matmul(ctx, lhs, rhs, dimension_numbers, "MatMulInteger")
        if lowered is not None:
            return lowered
    if not integer and (np.dtype(lhs_aval.dtype) != np.dtype(rhs_aval.dtype) or (
        preferred_element_type is not None and np.dtype(lhs_aval.dtype) != out_dtype
    )):
        # mixed operand dtypes (an int32 mask in a float einsum), or a wider result type (int8 @ int8 ->
        # int32): both operands are converted to the result type first, as XLA's CPU lowering does
        lhs, rhs = ctx.cast(lhs, lhs_aval, out_dtype), ctx.cast(rhs, rhs_aval, out_dtype)
        lhs_aval = jax.core.ShapedArray(lhs_aval.shape, out_dtype)
        rhs_aval = jax.core.ShapedArray(rhs_aval.shape, out_dtype)
    if matmul_form:
        result = ctx.op(matmul, lhs, rhs)
    elif dense is not None:
        # MatMul on flattened axes (onnxruntime runs MatMul about twice as fast as the same Einsum);
        # Reshape's 0 keeps the leading symbolic lhs axes as they are, and the kernel's Reshape is folded
        # into the weight by the export passes
        size, n_out = dense
        n_free = lhs_rank - len(dimension_numbers[0][0])
        free = [int(d) if is_static(d) else 0 for d in lhs_aval.shape[:n_free]]
        free_dims = list(lhs_aval.shape[:n_free])
        rhs_out = [int(d) for d in rhs_aval.shape[rhs_rank - n_out :]]
        n_columns = int(np.prod(rhs_out))
        if lhs_rank - n_free > 1:
            lhs = typed_like(ctx.op("Reshape", lhs, ctx.i64(free + [size])), lhs, [*free_dims, size])
        if rhs_rank != 2:
            rhs = typed_like(ctx.op("Reshape", rhs, ctx.i64([size, n_columns])), rhs, [size, n_columns])
        result = ctx.op(matmul, lhs, rhs)
        if n_out != 1:
            typed_like(result, lhs, [*free_dims, n_columns])
            result.type = tensor_type(out_dtype)  # MatMulInteger's int32, not the int8 operands' type
            result = ctx.op("Reshape", result, ctx.i64(free + rhs_out))
    elif (flipped := _weight_on_the_left(ctx, lhs, rhs, dimension_numbers)) is not None:
        result = flipped
    elif (scaled := _scaled_along_batch(ctx, lhs, rhs, dimension_numbers)) is not None:
        result = scaled
    else:
        # onnxruntime runs MatMul (with the transposes) several times faster than Einsum on these
        result = _batched_matmul(ctx, lhs, rhs, dimension_numbers)
        if result is None:
            result = ctx.op("Einsum", lhs, rhs, equation=_einsum_equation(lhs_rank, rhs_rank, dimension_numbers))
    return result
