"""dot_general → MatMul / Gemm / Einsum, whichever says what the contraction is."""

from __future__ import annotations

import string
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.export.lowering import LoweringContext
from workbench.export.registry import Testcase, handler


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


@handler("dot_general", onnx_ops=("MatMul", "Einsum"), testcases=[
    Testcase("matmul_2d", lambda x, w: x @ w, [("B", 8), (8, 5)], rtol=1e-4, atol=1e-5),
    Testcase("matmul_3d_weight", lambda x, w: x @ w, [("B", "T", 8), (8, 5)], rtol=1e-4, atol=1e-5),
    Testcase("batched_matmul", lambda x, y: jnp.einsum("bij,bjk->bik", x, y), [(2, 3, 4), (2, 4, 5)], rtol=1e-4, atol=1e-5),
    Testcase("einsum_heads", lambda q, k: jnp.einsum("bthd,bshd->bhts", q, k), [(2, 5, 3, 4), (2, 6, 3, 4)], rtol=1e-4, atol=1e-5),
    Testcase("dot_transposed_rhs", lambda x, w: lax.dot_general(x, w, (((1,), (1,)), ((), ()))), [(3, 8), (5, 8)], rtol=1e-4, atol=1e-5),
    # float64 kept end to end (enable_double_precision), at a tolerance float32 cannot meet
    Testcase("matmul_3d_f64", lambda x, w: x @ w, [_f64("B", "T", 8), _f64(8, 5)], rtol=1e-12, atol=1e-12, x64=True),
    Testcase("einsum_heads_f64", lambda q, k: jnp.einsum("bthd,bshd->bhts", q, k), [_f64(2, 5, 3, 4), _f64(2, 6, 3, 4)],
             rtol=1e-12, atol=1e-12, x64=True),
    Testcase("dot_int", lambda x, y: x @ y, [np.arange(6, dtype=np.int32).reshape(2, 3), np.arange(12, dtype=np.int32).reshape(3, 4)]),
])
def _dot_general(
    ctx: LoweringContext,
    lhs: ir.Value,
    rhs: ir.Value,
    *,
    dimension_numbers: Any,
    precision: Any,
    preferred_element_type: Any,
    **params: Any,
) -> ir.Value:
    """MatMul when the contraction is a (batched) matrix product, Einsum otherwise.

    Params: dimension_numbers, precision (XLA-only), preferred_element_type (cast after).
    """
    del precision, params  # out_sharding
    lhs_aval, rhs_aval = ctx.avals_in
    lhs_rank, rhs_rank = len(lhs_aval.shape), len(rhs_aval.shape)
    if _is_matmul_form(lhs_rank, rhs_rank, dimension_numbers):
        result = ctx.op("MatMul", lhs, rhs)
    else:
        result = ctx.op("Einsum", lhs, rhs, equation=_einsum_equation(lhs_rank, rhs_rank, dimension_numbers))
    out_dtype = ctx.aval_out.dtype
    if preferred_element_type is not None and np.dtype(out_dtype) != np.dtype(lhs_aval.dtype):
        from workbench.export.builder import onnx_dtype

        result = ctx.op("Cast", result, to=onnx_dtype(out_dtype))
    return result
