"""Call-like primitives whose body is a nested jaxpr: inlined, or kept as an ONNX local function.

``jit`` (pjit), ``custom_jvp_call``, ``custom_vjp_call``, ``remat``/``checkpoint`` and
``closed_call`` only matter to differentiation or compilation; for inference the body is
what computes, so it is lowered in place. (``closed_call`` is the forward recomputation the
gradient of a ``jax.checkpoint`` puts in the backward pass when the checkpointed function holds a
loop: Jaxley's nested checkpointed time loop, recursive-checkpoint scans.) A ``jit`` whose name carries the
:func:`workbench.onnx_function` marker becomes a call of an ONNX local function instead.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import onnx_ir as ir
from jax import lax

from workbench.jax_to_onnx.functions import (
    function_name_from_marker,
    lower_onnx_function,
)
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

F = ("B", 4)


@jax.jit
def _jitted(x: jax.Array) -> jax.Array:
    return jnp.sin(x) * 2


@jax.custom_jvp
def _custom_jvp_fn(x: jax.Array) -> jax.Array:
    return jnp.tanh(x) + 1


_custom_jvp_fn.defjvp(lambda primals, tangents: (_custom_jvp_fn(primals[0]), tangents[0]))


@jax.custom_vjp
def _custom_vjp_fn(x: jax.Array) -> jax.Array:
    return jnp.cos(x) * x


_custom_vjp_fn.defvjp(lambda x: (_custom_vjp_fn(x), x), lambda residual, g: (g,))


@handler("jit", onnx_ops=(), doc="https://docs.jax.dev/en/latest/_autosummary/jax.jit.html", area="jax", testcases=[
    Testcase("jit_nested", lambda x: _jitted(x) + 1, [F]),
])
def _jit(
    ctx: LoweringContext, *operands: ir.Value, jaxpr: Any, name: str, donated_invars: Any, inline: bool,
    keep_unused: bool, in_shardings: Any, out_shardings: Any, in_layouts: Any, out_layouts: Any,
    ctx_mesh: Any, compiler_options_kvs: Any,
) -> Any:
    """Inline the jitted body, or emit a call of an ONNX local function for @wb.onnx_function."""
    # how XLA compiles and places the call: nothing of it changes what the graph computes
    del donated_invars, inline, keep_unused, in_shardings, out_shardings, in_layouts, out_layouts
    del ctx_mesh, compiler_options_kvs
    if function_name_from_marker(name) is not None:
        return lower_onnx_function(ctx, name, jaxpr, list(operands))
    return ctx.lower_inline(jaxpr, operands)


@handler("custom_jvp_call", onnx_ops=(), area="jax", doc="https://docs.jax.dev/en/latest/_autosummary/jax.custom_jvp.html", testcases=[
    Testcase("custom_jvp_call", _custom_jvp_fn, [F]),
    Testcase("custom_jvp_relu", jax.nn.relu, [F]),
])
def _custom_jvp_call(
    ctx: LoweringContext, *operands: ir.Value, call_jaxpr: Any, jvp_jaxpr_fun: Any, num_consts: int,
    symbolic_zeros: bool,
) -> Any:
    """Only the primal computation matters for inference: the JVP rule is dropped."""
    del jvp_jaxpr_fun, num_consts, symbolic_zeros  # the JVP rule; the consts are leading operands of call_jaxpr
    return ctx.lower_inline(call_jaxpr, operands)


@handler("custom_vjp_call", onnx_ops=(), area="jax", doc="https://docs.jax.dev/en/latest/_autosummary/jax.custom_vjp.html", testcases=[
    Testcase("custom_vjp_call", _custom_vjp_fn, [F]),
])
def _custom_vjp_call(
    ctx: LoweringContext, *operands: ir.Value, call_jaxpr: Any, fwd_jaxpr_thunk: Any, bwd: Any, out_trees: Any,
    num_consts: int, symbolic_zeros: bool,
) -> Any:
    """Only the primal computation matters for inference: the forward/backward rules are dropped."""
    del fwd_jaxpr_thunk, bwd, out_trees, num_consts, symbolic_zeros
    return ctx.lower_inline(call_jaxpr, operands)


@handler("remat2", onnx_ops=(), area="jax", doc="https://docs.jax.dev/en/latest/_autosummary/jax.checkpoint.html", testcases=[
    Testcase("checkpoint", jax.checkpoint(lambda x: jnp.sin(x) * x), [F]),
])
def _remat(ctx: LoweringContext, *operands: ir.Value, jaxpr: Any, prevent_cse: bool, differentiated: bool, policy: Any) -> Any:
    del prevent_cse, differentiated, policy  # rematerialization is a training concern
    return ctx.lower_inline(jaxpr, operands)



def _nested_checkpoint_scan_loss(x: jax.Array, w: jax.Array) -> jax.Array:
    """Scan of a checkpointed inner scan (the recursive-checkpointing time loop): its gradient recomputes the inner
    loop in a closed_call."""

    @jax.checkpoint
    def chunk(carry: jax.Array, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return lax.scan(lambda c, x_t: (jnp.sin(c * w) + x_t, c * 2), carry, xs)

    xs = jnp.linspace(0.0, 1.0, 36).reshape(4, 3, 3)
    carry, ys = lax.scan(chunk, x, xs)
    return jnp.sum(carry) + jnp.sum(ys ** 2)


@handler("closed_call", onnx_ops=(), area="jax", doc="https://docs.jax.dev/en/latest/_autosummary/jax.checkpoint.html",
         testcases=[
    Testcase("closed_call_checkpointed_scan_grad", jax.grad(_nested_checkpoint_scan_loss, argnums=(0, 1)),
             [(3,), ()], rtol=1e-4, atol=1e-5),
])
def _closed_call(ctx: LoweringContext, *operands: ir.Value, call_jaxpr: Any) -> Any:
    """The called jaxpr, lowered in place."""
    return ctx.lower_inline(call_jaxpr, operands)
