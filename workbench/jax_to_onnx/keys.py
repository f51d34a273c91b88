"""Typed PRNG keys in an export: every key array is carried by its raw ``uint32`` key data.

A jaxpr value of type ``key<fry>[3]`` is, in the ONNX graph, a ``uint32[3, 2]`` tensor: the
key's data with the implementation's key shape appended (JAX's own "physical" representation,
which its XLA lowering uses too). Key constants captured by the jaxpr (an ``nnx.Rngs`` state, a
key closed over by the function) become their key data.

The random primitives (handlers/random.py) consume and produce that data. Structural primitives
that move keys around (``slice``, ``squeeze``, ``concatenate``, ``broadcast_in_dim``,
``select_n``, ``gather``...) are lowered by their usual handler on the physical arrays, with their
parameters extended to the trailing key axes by :func:`physical_equation`; control flow and
call primitives carry keys unchanged. Any other primitive applied to keys is refused with a clear
error rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import jax
import numpy as np
import onnx_ir as ir

from workbench import compat
from workbench.errors import ConversionError


def is_extended_dtype(dtype: Any) -> bool:
    """A JAX extended dtype (PRNG keys), which NumPy does not know; plain NumPy dtypes answer at once."""
    return not isinstance(dtype, np.dtype) and jax.dtypes.issubdtype(dtype, jax.dtypes.extended)


def is_key_dtype(dtype: Any) -> bool:
    return is_extended_dtype(dtype) and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def physical_aval(aval: Any) -> Any:
    """``aval`` itself, or for a key array the ShapedArray of its raw data (``uint32``, key shape appended)."""
    if is_extended_dtype(aval.dtype):
        return compat.physical_aval(aval)
    return aval


def host_array(value: Any) -> np.ndarray:
    """A constant of the jaxpr as a NumPy array; key arrays become their key data."""
    dtype = getattr(value, "dtype", None)  # jax.Array, np.ndarray, NumPy scalar or Python number
    if dtype is not None and is_key_dtype(dtype):
        return np.asarray(jax.random.key_data(value))
    return np.asarray(value)


def key_trailing_ndim(aval: Any) -> int:
    return len(physical_aval(aval).shape) - len(aval.shape)


def involves_keys(eqn: Any) -> bool:
    """Whether an equation reads or writes PRNG key arrays (asked for every equation the lowering meets)."""
    for atoms in (eqn.invars, eqn.outvars):
        for atom in atoms:
            if is_extended_dtype(atom.aval.dtype):
                return True
    return False


# primitives whose handlers understand keys themselves (random_*) or only pass them along
# (their avals reach the builder, which types them physically; nested jaxprs are lowered as usual)
KEY_NATIVE = frozenset({
    "random_seed", "random_bits", "random_split", "random_fold_in", "random_wrap", "random_unwrap",
    "random_clone", "random_gamma", "jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
    "remat2", "checkpoint", "cond", "while", "scan", "optimization_barrier", "device_put",
    "copy", "copy_p",
})

Operands = list[ir.Value]
Params = dict[str, Any]
_Rule = Callable[[Any, Operands, Params, int], tuple[Operands, Params]]


def _appended(values: Sequence[int], extra: Sequence[int]) -> tuple[int, ...]:
    return (*values, *extra)


def _rule_slice(ctx: Any, operands: Operands, params: Params, k: int) -> tuple[Operands, Params]:
    key_shape = physical_aval(ctx.avals_in[0]).shape[-k:]
    strides = params["strides"]
    return operands, dict(
        params,
        start_indices=_appended(params["start_indices"], (0,) * k),
        limit_indices=_appended(params["limit_indices"], key_shape),
        strides=None if strides is None else _appended(strides, (1,) * k),
    )


def _rule_unchanged(ctx: Any, operands: Operands, params: Params, k: int) -> tuple[Operands, Params]:
    del ctx, k
    return operands, params


def _rule_broadcast_in_dim(ctx: Any, operands: Operands, params: Params, k: int) -> tuple[Operands, Params]:
    out_rank = len(params["shape"])
    key_shape = physical_aval(ctx.avals_out[0]).shape[-k:]
    return operands, dict(
        params,
        shape=_appended(params["shape"], key_shape),
        broadcast_dimensions=_appended(params["broadcast_dimensions"], range(out_rank, out_rank + k)),
    )


def _rule_reshape(ctx: Any, operands: Operands, params: Params, k: int) -> tuple[Operands, Params]:
    if params.get("dimensions") is not None:
        raise ConversionError("reshape with a dimension permutation on PRNG key arrays is not supported")
    return operands, dict(params, new_sizes=_appended(params["new_sizes"], physical_aval(ctx.avals_out[0]).shape[-k:]))


def _rule_transpose(ctx: Any, operands: Operands, params: Params, k: int) -> tuple[Operands, Params]:
    del ctx
    permutation = tuple(params["permutation"])
    rank = len(permutation)
    return operands, dict(params, permutation=_appended(permutation, range(rank, rank + k)))


def _rule_select_n(ctx: Any, operands: Operands, params: Params, k: int) -> tuple[Operands, Params]:
    which, *cases = operands
    if ctx.avals_in[0].shape:  # a per-element predicate: give it the trailing key axes to broadcast over
        rank = len(ctx.avals_in[0].shape)
        which = ctx.op("Unsqueeze", which, ctx.i64(list(range(rank, rank + k))))
    return [which, *cases], params


def _zero_like(ctx: Any, index_aval: Any) -> ir.Value:
    return ctx.const(np.zeros((), dtype=index_aval.dtype))


def _rule_dynamic_slice(ctx: Any, operands: Operands, params: Params, k: int) -> tuple[Operands, Params]:
    zeros = [_zero_like(ctx, ctx.avals_in[1])] * k
    return [*operands, *zeros], dict(
        params, slice_sizes=_appended(params["slice_sizes"], physical_aval(ctx.avals_in[0]).shape[-k:])
    )


def _rule_dynamic_update_slice(ctx: Any, operands: Operands, params: Params, k: int) -> tuple[Operands, Params]:
    zeros = [_zero_like(ctx, ctx.avals_in[2])] * k
    return [*operands, *zeros], params


def _rule_gather(ctx: Any, operands: Operands, params: Params, k: int) -> tuple[Operands, Params]:
    numbers = params["dimension_numbers"]
    out_rank = len(ctx.avals_out[0].shape)
    return operands, dict(
        params,
        dimension_numbers=replace(numbers, offset_dims=_appended(numbers.offset_dims, range(out_rank, out_rank + k))),
        slice_sizes=_appended(params["slice_sizes"], physical_aval(ctx.avals_in[0]).shape[-k:]),
    )


STRUCTURAL_RULES: dict[str, _Rule] = {
    "slice": _rule_slice,
    "squeeze": _rule_unchanged,
    "expand_dims": _rule_unchanged,
    "concatenate": _rule_unchanged,
    "split": _rule_unchanged,
    "rev": _rule_unchanged,
    "stack": _rule_unchanged,
    "broadcast_in_dim": _rule_broadcast_in_dim,
    "reshape": _rule_reshape,
    "transpose": _rule_transpose,
    "select_n": _rule_select_n,
    "dynamic_slice": _rule_dynamic_slice,
    "dynamic_update_slice": _rule_dynamic_update_slice,
    "gather": _rule_gather,
}


def physical_equation(ctx: Any, operands: Operands, params: Params) -> tuple[Operands, Params]:
    """Operands and parameters for lowering a structural primitive on key data instead of keys."""
    name = ctx.eqn.primitive.name
    rule = STRUCTURAL_RULES.get(name)
    if rule is None:
        raise ConversionError(
            f"primitive {name!r} applied to PRNG key arrays is not supported; supported on keys: "
            f"{', '.join(sorted(STRUCTURAL_RULES))} and the random_* primitives. "
            "Apply it to jax.random.key_data(keys) instead."
        )
    key_avals = [aval for aval in (*ctx.avals_in, *ctx.avals_out) if is_key_dtype(aval.dtype)]
    return rule(ctx, list(operands), dict(params), key_trailing_ndim(key_avals[0]))
