"""LAPACK custom calls of a CPU export: the kernels jax.export records for lax.linalg on CPU.

They are not StableHLO ops but calls with a fixed ABI (``jaxlib/cpu/lapack_kernels``): operands,
results and an ``mhlo.backend_config`` of one-character options (``uplo = 76`` is ``'L'``). Each is
given exactly the LAPACK semantics, through the jaxpr handler of the lax primitive JAX lowers to it:

- ``?potrf`` (Cholesky): the factor in the requested triangle, the other triangle left as the input
  (LAPACK does not touch it; JAX masks it away), ``info`` 0, or 1 where the matrix is not positive
  definite (the handler's all-NaN factor; JAX then replaces the result by NaN, as it does for LAPACK's);
- ``?trsm`` (triangular solve): side, uplo, transposition and unit diagonal map to lax.triangular_solve;
- ``?getrf`` (LU with partial pivoting): LAPACK's 1-based pivots (lax's are 0-based), ``info`` 0
  (JAX only rejects negative infos, which flag bad arguments).
With a symbolic batch, JAX adds the batch sizes as trailing operands; they are in the avals already.
Other LAPACK kernels (geqrf, orgqr, gesdd, syevd, gehrd, sytrd, gtsv) are reported as unsupported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from jaxlib.mlir import ir as mlir_ir

from workbench.errors import ConversionError
from workbench.jax_to_onnx.stablehlo.context import OpContext, shaped
from workbench.jax_to_onnx.stablehlo.registry import converter

_SPEC = "https://github.com/jax-ml/jax/blob/main/jaxlib/cpu/lapack_kernels.h"


def _options(ctx: OpContext) -> dict[str, str]:
    """The backend_config's one-character options: {"uplo": "L", ...}."""
    if not ctx.has_attr("mhlo.backend_config"):
        return {}
    config = mlir_ir.DictAttr(ctx.attr("mhlo.backend_config"))
    return {named.name: chr(int(mlir_ir.IntegerAttr(named.attr).value)) for named in config}


def _option(ctx: OpContext, name: str, allowed: str) -> str:
    value = _options(ctx).get(name)
    if value is None or value not in allowed:
        raise ConversionError(f"{ctx.where}: LAPACK option {name}={value!r}, expected one of {list(allowed)}")
    return value


def _transpose_last(ctx: OpContext, x: ir.Value, aval: Any) -> tuple[ir.Value, Any]:
    rank = len(aval.shape)
    perm = [*range(rank - 2), rank - 1, rank - 2]
    return ctx.op_("Transpose", x, perm=perm), shaped([aval.shape[p] for p in perm], aval.dtype)


def _triangle_mask(ctx: OpContext, n: int, lower: bool) -> ir.Value:
    rows = np.arange(n)[:, None]
    cols = np.arange(n)[None, :]
    return ctx.const(rows >= cols if lower else rows <= cols)


# ----------------------------------------------------------------------------- potrf
def _potrf(ctx: OpContext, a: ir.Value, *dims: ir.Value) -> list[ir.Value]:
    del dims  # a symbolic batch's sizes, also in the operand's aval
    aval = ctx.avals_in[0]
    lower = _option(ctx, "uplo", "LU") == "L"
    n = aval.shape[-1]
    if not isinstance(n, (int, np.integer)):
        raise ConversionError(f"{ctx.where}: a Cholesky factorization of symbolic size {n}")
    source, source_aval = (a, aval) if lower else _transpose_last(ctx, a, aval)  # the handler reads the lower triangle
    (factor,) = ctx.lower("cholesky", [source], avals_in=[source_aval], avals_out=[source_aval])
    if not lower:
        factor, _ = _transpose_last(ctx, factor, source_aval)
    result = ctx.op_("Where", _triangle_mask(ctx, int(n), lower), factor, a)
    failed = ctx.op_("Greater", ctx.op_("ReduceMax", ctx.op_("Cast", ctx.op_("IsNaN", factor), to=ir.DataType.INT32),
                                        ctx.i64([-2, -1]), keepdims=0), ctx.const(np.int32(0)))
    info = ctx.op_("Cast", failed, to=ir.DataType.INT32)
    info_type = ctx.result_types[1]
    ctx.set_avals_out([aval, shaped(aval.shape[:-2], info_type.dtype)])
    return [result, info]


# ----------------------------------------------------------------------------- trsm
def _trsm(ctx: OpContext, a: ir.Value, b: ir.Value, *dims: ir.Value) -> ir.Value:
    del dims
    options = {name: _option(ctx, name, allowed) for name, allowed in
               (("side", "LR"), ("uplo", "LU"), ("trans_x", "NTC"), ("diag", "NU"))}
    (x,) = ctx.delegate(
        "triangular_solve", [a, b], avals_in=ctx.avals_in[:2], avals_out=[ctx.avals_in[1]],
        left_side=options["side"] == "L", lower=options["uplo"] == "L", transpose_a=options["trans_x"] != "N",
        conjugate_a=options["trans_x"] == "C", unit_diagonal=options["diag"] == "U",
    )
    return x


# ----------------------------------------------------------------------------- getrf
def _getrf(ctx: OpContext, a: ir.Value, *dims: ir.Value) -> list[ir.Value]:
    del dims
    aval = ctx.avals_in[0]
    lu_type, pivot_type, info_type = ctx.result_types
    batch = aval.shape[:-2]
    k = min(aval.shape[-2:])
    pivots_aval = shaped((*batch, k), np.int32)
    permutation_aval = shaped((*batch, aval.shape[-2]), np.int32)
    lu, pivots, _ = ctx.lower("lu", [a], avals_in=[aval], avals_out=[aval, pivots_aval, permutation_aval])
    one_based = ctx.op_("Add", pivots, ctx.const(np.int32(1)))
    if pivot_type.dtype != np.dtype(np.int32):
        one_based = ctx.op_("Cast", one_based, to=ir.DataType.from_numpy(pivot_type.dtype))
    info = ctx.op_("Expand", ctx.const(np.zeros((), info_type.dtype)), ctx.shape_value(batch))
    ctx.set_avals_out([aval, shaped((*batch, k), pivot_type.dtype), shaped(batch, info_type.dtype)])
    return [lu, one_based, info]


for _kind in ("s", "d"):
    converter(f"stablehlo.custom_call@lapack_{_kind}potrf_ffi", via="cholesky", onnx_ops=("Where", "IsNaN"),
              family="linalg", spec=_SPEC, primitives=("cholesky",))(_potrf)
    converter(f"stablehlo.custom_call@lapack_{_kind}trsm_ffi", via="triangular_solve", family="linalg", spec=_SPEC,
              primitives=("triangular_solve",))(_trsm)
    converter(f"stablehlo.custom_call@lapack_{_kind}getrf_ffi", via="lu", onnx_ops=("Add",), family="linalg", spec=_SPEC,
              primitives=("lu",))(_getrf)

