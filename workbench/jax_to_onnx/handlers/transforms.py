"""Primitives that JAX's transformations and sharding insert, lowered for a single-device graph.

- ``add_any``: the sum of two cotangents, in every ``jax.grad``/``jax.vjp`` program: ``Add``.
- ``optimization_barrier`` and ``device_put``: scheduling and placement hints for XLA; their
  outputs are their inputs.
- ``name`` (``jax.ad_checkpoint.checkpoint_name``): a label that rematerialization policies
  (``jax.checkpoint(policy=save_only_these_names(...))``) read; the value passes through. Levanter's
  haliax names every scanned layer's carry with it.
- ``empty2``: the placeholder scalar JAX's partial evaluation of ``cond``/``switch`` puts in a
  branch for a residual only another branch computes (every ``jax.grad`` through a branch whose
  branches save different residuals); XLA lowers it as zero, and so does the export.
- ``shard_map`` over a mesh of one device: every shard is the whole array, so the body is the
  computation and is inlined. On a larger mesh the body's collectives would need several devices:
  reported with that reason.
- ``unstack``: the slices along an axis, as ``Split`` + ``Squeeze``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

F = ("B", 4)


def _loss(w: jax.Array, x: jax.Array) -> jax.Array:
    """``w`` is used twice, so its gradient sums two cotangents with add_any."""
    return jnp.sum(jnp.tanh(x @ w) * (x @ w))


@handler("add_any", onnx_ops=("Add",), area="jax", doc="https://docs.jax.dev/en/latest/_autosummary/jax.grad.html",
         testcases=[
    Testcase("add_any_grad", jax.grad(_loss), [(4, 3), ("B", 4)], rtol=1e-4, atol=1e-5),
    Testcase("add_any_vjp", lambda x: jax.vjp(lambda v: jnp.sin(v) * v, x)[1](jnp.ones_like(x))[0], [F]),
])
def _add_any(ctx: LoweringContext, x: ir.Value, y: ir.Value) -> ir.Value:
    return ctx.op("Add", x, y)


def _passthrough(
    ctx: LoweringContext, *operands: ir.Value, devices: Any = None, srcs: Any = None, copy_semantics: Any = None
) -> Any:
    """The outputs are the inputs (device_put's parameters only matter to XLA's placement)."""
    del ctx, devices, srcs, copy_semantics
    return operands[0] if len(operands) == 1 else tuple(operands)


handler("optimization_barrier", onnx_ops=(), area="jax",
        doc="https://docs.jax.dev/en/latest/_autosummary/jax.lax.optimization_barrier.html", testcases=[
    Testcase("optimization_barrier", lambda x, y: sum(lax.optimization_barrier((x * 2, y + 1))), [F, F]),
])(_passthrough)

handler("device_put", onnx_ops=(), area="jax", doc="https://docs.jax.dev/en/latest/_autosummary/jax.device_put.html",
        testcases=[
    Testcase("device_put", lambda x: jax.device_put(x * 2, jax.devices()[0]) + 1, [F]),
    Testcase("device_put_pytree", lambda x, y: sum(jax.device_put((x, y))), [F, F]),
])(_passthrough)



def _remat_scanned_layers(x: jax.Array, w: jax.Array) -> jax.Array:
    """Layers scanned under jax.checkpoint, saving only the named hidden states (the scan-over-layers pattern)."""
    policy = jax.checkpoint_policies.save_only_these_names("hidden")

    @functools.partial(jax.checkpoint, policy=policy)
    def layer(h: jax.Array, layer_w: jax.Array) -> tuple[jax.Array, None]:
        return checkpoint_name(jnp.tanh(h @ layer_w), "hidden"), None

    return lax.scan(layer, x, w)[0]


@handler("name", onnx_ops=(), area="jax",
         doc="https://docs.jax.dev/en/latest/gradient-checkpointing.html", testcases=[
    Testcase("checkpoint_name", lambda x: checkpoint_name(x * 2, "activation") + 1, [F]),
    Testcase("checkpoint_name_remat_scan", _remat_scanned_layers, [F, (3, 4, 4)], rtol=1e-4, atol=1e-5),
    Testcase("checkpoint_name_grad", jax.grad(lambda w, x: jnp.sum(checkpoint_name(jnp.sin(x @ w), "h") ** 2)),
             [(4, 3), F], rtol=1e-4, atol=1e-5),
])
def _name(ctx: LoweringContext, x: ir.Value, *, name: str) -> ir.Value:
    """The value itself: ``name`` only labels it for rematerialization policies."""
    del ctx, name
    return x



def _switch_loss(x: jax.Array, index: jax.Array) -> jax.Array:
    """Three branches saving different residuals (tanh's output, the transpose, none)."""
    return lax.switch(index, [lambda v: jnp.sum(jnp.tanh(v)), lambda v: jnp.sum(v @ v.T),
                              lambda v: 2.0 * jnp.sum(v)], x)


def _cond_loss(x: jax.Array) -> jax.Array:
    return jnp.sum(lax.cond(x[0, 0] > 0, lambda v: jnp.sin(v) * v, lambda v: jnp.sum(jnp.exp(v[:, :2])) * v, x))


@handler("empty2", onnx_ops=(), area="jax", doc="https://docs.jax.dev/en/latest/_autosummary/jax.lax.cond.html",
         testcases=[
    Testcase("empty2_grad_switch", jax.grad(_switch_loss), [(3, 2), jax.ShapeDtypeStruct((), jnp.int32)],
             int_high=3, rtol=1e-4, atol=1e-5),
    Testcase("empty2_grad_cond", jax.grad(_cond_loss), [("B", 4)], rtol=1e-4, atol=1e-5),
])
def _empty2(ctx: LoweringContext, *, dtype: Any, memory_space: Any) -> ir.Value:
    """A zero of ``dtype`` (the value is never read: the branch that fills the residual is not taken)."""
    del memory_space  # a placement hint for XLA
    return ctx.scalar(0, np.dtype(dtype))


# ----------------------------------------------------------------------------- shard_map on one device
def _mesh_size_reason(eqn: Any, opset: int | None) -> str:
    del opset  # the same at every opset the handler supports
    size = int(np.prod(list(eqn.params["mesh"].shape.values()), dtype=np.int64))
    if size == 1:
        return ""
    return (
        f"shard_map over a mesh of {size} devices: each device computes on its own shard and the body may "
        "exchange data between devices (collectives), which one ONNX graph cannot express; export the "
        "function on a mesh of one device, or the per-device body"
    )


def _one_device_shard_map(x: jax.Array, w: jax.Array) -> jax.Array:
    mesh = jax.make_mesh((1,), ("data",))
    replicated = jax.sharding.PartitionSpec()
    body = jax.shard_map(lambda a, b: jnp.tanh(a @ b) + 1.0, mesh=mesh, in_specs=(replicated, replicated),
                         out_specs=replicated)
    return body(x, w)


@handler("shard_map", onnx_ops=(), area="jax", doc="https://docs.jax.dev/en/latest/_autosummary/jax.shard_map.html",
         unsupported_reason=_mesh_size_reason, testcases=[
    Testcase("shard_map_one_device", _one_device_shard_map, [(6, 4), (4, 3)]),
])
def _shard_map(
    ctx: LoweringContext, *operands: ir.Value, jaxpr: Any, mesh: Any, in_specs: Any, out_specs: Any,
    check_vma: bool, newly_manual_axes: Any,
) -> Any:
    """On one device each shard is the whole array: the body is inlined."""
    del mesh, in_specs, out_specs, check_vma, newly_manual_axes  # mesh checked before (one device)
    outputs = ctx.lower_inline(jaxpr, operands)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


# ----------------------------------------------------------------------------- unstack
@handler("unstack", onnx_ops=("Split", "Squeeze"), testcases=[
    Testcase("unstack_axis0", lambda x: [v * (i + 1) for i, v in enumerate(jnp.unstack(x, axis=0))], [(3, "B")]),
    Testcase("unstack_axis1", lambda x: jnp.unstack(x, axis=1), [("B", 2, 3)]),
])
def _unstack(ctx: LoweringContext, x: ir.Value, *, axis: int) -> tuple[ir.Value, ...]:
    count = int(ctx.avals_in[0].shape[axis])
    pieces = ctx.op("Split", x, ctx.i64([1] * count), axis=axis, num_outputs=count)
    pieces = pieces if isinstance(pieces, tuple) else (pieces,)
    return tuple(ctx.op("Squeeze", piece, ctx.i64([axis])) for piece in pieces)
