"""Equinox's internal primitives, lowered like what they wrap.

Equinox (and diffrax, optimistix, lineax on top of it) defines a few primitives that exist only to
steer JAX's transformations: ``unvmap_any/all/max`` (a reduction that ignores vmap), ``nonbatchable``,
``nontraceable`` and ``nondifferentiable_backward`` (identities that refuse a transformation), ``select_if_vmap`` and
``maybe_set`` (the buffer writes of its bounded/checkpointed ``while_loop``), ``vprim`` (any of
those under ``vmap``) and lineax's ``linear_solve`` (``lx.linear_solve``, which optimistix's Newton-type
root finders and diffrax's implicit solvers call; its rules are only for vmap, JVP and transpose, and its
implementation is the solver's ``compute``). Each carries a plain-JAX implementation, which is what XLA compiles: it is
traced on the equation's operands and parameters and lowered in place, so the ONNX graph computes
exactly what equinox's own implementation does.

These primitives are registered by name; equinox need not be imported for the registry to load.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import onnx_ir as ir

from workbench.jax_to_onnx.keys import physical_aval
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

_DOC = "https://docs.kidger.site/equinox/api/debug/"


def _lower_python_impl(ctx: LoweringContext, *operands: ir.Value, **params: Any) -> Any:
    """Trace the primitive's own Python implementation on the operands' shapes and lower it inline."""
    primitive = ctx.eqn.primitive
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (physical_aval(v) for v in ctx.avals_in)]
    closed = jax.make_jaxpr(lambda *args: primitive.impl(*args, **params))(*specs)
    outputs = ctx.lower_inline(closed, operands)
    if primitive.multiple_results:
        return tuple(outputs)
    return outputs[0]


def _eqx() -> Any:
    import equinox as eqx  # a dependency of the workbench; imported when the testcases run

    return eqx


def _unvmap(kind: str) -> Any:
    def fn(x: jax.Array) -> jax.Array:
        reduce = {"any": _eqx().internal.unvmap_any, "all": _eqx().internal.unvmap_all,
                  "max": _eqx().internal.unvmap_max}[kind]
        return reduce(x > 0) if kind != "max" else reduce(jnp.round(x * 10).astype(jnp.int32))

    return fn


def _buffered_loop(x: jax.Array) -> jax.Array:
    """equinox's checkpointed while_loop writing into a buffer: maybe_set and select_if_vmap."""
    eqx = _eqx()
    x = jnp.asarray(x)

    def body(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        step, buffer = carry
        return step + 1, buffer.at[step].set(jnp.sin(x[step]) * step)

    init = (jnp.asarray(0), jnp.zeros_like(x))
    return eqx.internal.while_loop(lambda c: c[0] < x.shape[0], body, init, max_steps=x.shape[0],
                                   kind="checkpointed", buffers=lambda c: c[1])[1]


def _lineax_solve(solver_name: str) -> Any:
    """``lx.linear_solve`` of a well-conditioned matrix operator (the identity's multiple added) with ``solver``."""

    def fn(a: jax.Array, b: jax.Array) -> jax.Array:
        import lineax as lx

        matrix = a @ a.T + 4 * jnp.eye(a.shape[0], dtype=a.dtype)  # symmetric positive definite
        tags = lx.positive_semidefinite_tag if solver_name == "Cholesky" else ()
        solver = {"LU": lx.LU(), "Cholesky": lx.Cholesky(), "QR": lx.QR()}[solver_name]
        # throw=False: no runtime check of the result (a pure_callback; EQX_ON_ERROR=nan is the other way)
        return lx.linear_solve(lx.MatrixLinearOperator(matrix, tags), b, solver=solver, throw=False).value

    return fn


_NAMES_AND_CASES: dict[str, list[Testcase]] = {
    "unvmap_any": [Testcase("eqx_unvmap_any", _unvmap("any"), [("B", 3)])],
    "unvmap_all": [Testcase("eqx_unvmap_all", _unvmap("all"), [("B", 3)])],
    "unvmap_max": [Testcase("eqx_unvmap_max", _unvmap("max"), [("B", 3)])],
    "nonbatchable": [Testcase("eqx_nonbatchable", lambda x: _eqx().internal.nonbatchable(x) * 2, [("B", 3)])],
    "nontraceable": [Testcase("eqx_nontraceable", lambda x: _eqx().internal.nontraceable(x) * 2, [("B", 3)])],
    "maybe_set": [Testcase("eqx_while_loop_buffer", _buffered_loop, [(5,)])],
    "select_if_vmap": [Testcase("eqx_while_loop_buffer_select", _buffered_loop, [(4,)])],
    "vprim": [Testcase("eqx_while_loop_buffer_vmap", jax.vmap(_buffered_loop), [(2, 4)])],
    "linear_solve": [
        Testcase("lineax_linear_solve_lu", _lineax_solve("LU"), [(4, 4), (4,)], rtol=1e-4, atol=1e-5),
        Testcase("lineax_linear_solve_cholesky", _lineax_solve("Cholesky"), [(5, 5), (5,)], rtol=1e-4, atol=1e-5),
        Testcase("lineax_linear_solve_qr", _lineax_solve("QR"), [(3, 3), (3,)], rtol=1e-4, atol=1e-5),
    ],
    "nondifferentiable_backward": [Testcase(
        "eqx_nondifferentiable_backward", lambda x: _eqx().internal.nondifferentiable_backward(x) + 1, [("B", 3)])],
}

for _name, _cases in _NAMES_AND_CASES.items():
    handler(_name, onnx_ops=(), area="equinox", doc=_DOC, testcases=_cases)(_lower_python_impl)
