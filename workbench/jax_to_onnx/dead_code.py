"""Dead-code elimination on the traced jaxpr, before anything looks at its primitives.

Real programs compute values they never return: PRNG keys split for a Dropout that is off,
``nnx.Rngs`` counters, RNN cells that receive a key and ignore it, auxiliary outputs of a library
call. Without this pass every primitive of that dead code would have to be supported (and its
constants materialised) for the program to convert. JAX's own DCE (``dce_jaxpr_consts``, through :mod:`workbench.compat`) is used: it
knows the primitives' rules (nested jit/cond/scan/custom_jvp bodies are pruned too) and keeps any
equation with effects. The jaxpr's inputs (weights and user inputs) are always kept, so the
inputs of the ONNX graph do not depend on what the function happens to read; unused constants go.

Most traced models have no dead code (a CNN, a ViT, Keras's models), and JAX's pass then rebuilds the jaxpr
for nothing (~0.5 ms of a ResNet's ~35 ms conversion). :func:`_nothing_dead` first walks the jaxpr backwards
as that pass does and says whether it would keep every equation and constant as they are; only then is the
pass skipped.
"""

from __future__ import annotations

from typing import Any

from jax.extend import core as jex_core

from workbench.compat import dce_jaxpr_consts, has_dce_rule

# primitives whose DCE rule _nothing_dead mirrors: a call (jit) and jax.custom_jvp's, which prune their body
# and drop the outputs nothing reads (jit also its inputs that its body does not read)
_CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "custom_jvp_call": "call_jaxpr"}


def prune_dead_code(closed_jaxpr: Any) -> Any:
    """``closed_jaxpr`` without the equations and constants its outputs do not depend on."""
    jaxpr = closed_jaxpr.jaxpr
    if not jaxpr.eqns or _nothing_dead(jaxpr, top_level=True):
        return closed_jaxpr
    pruned, used_consts, _ = dce_jaxpr_consts(
        jaxpr,
        used_outputs=[True] * len(jaxpr.outvars),
        instantiate=[False] * len(jaxpr.constvars) + [True] * len(jaxpr.invars),
    )
    consts = [const for const, used in zip(closed_jaxpr.consts, used_consts, strict=True) if used]
    return jex_core.ClosedJaxpr(pruned, consts)


def _nothing_dead(jaxpr: Any, *, top_level: bool) -> bool:
    """Whether JAX's DCE, every output of ``jaxpr`` used, would keep it as it is (at the top level: every constant
    read too). False whenever the pass could change something; True means it would not."""
    live = _live(jaxpr)
    return live is not None and (not top_level or all(var in live for var in jaxpr.constvars))


def _live(jaxpr: Any) -> set[Any] | None:
    """The variables ``jaxpr`` reads when every equation has an output that is read (an equation nothing reads is
    dropped, or kept for its effects: either way left to the pass), every jit and custom_jvp equation has all its
    outputs read and nothing dead in its body (a jit's body also reads all its inputs), and no other primitive has
    a DCE rule of its own; else None."""
    live = {atom for atom in jaxpr.outvars if not isinstance(atom, jex_core.Literal)}
    for eqn in reversed(jaxpr.eqns):
        if has_dce_rule(eqn.primitive):
            body = _CALLS.get(eqn.primitive.name)
            if body is None or not all(var in live for var in eqn.outvars):
                return None
            inner = eqn.params[body]
            inner = inner.jaxpr if isinstance(inner, jex_core.ClosedJaxpr) else inner
            inner_live = _live(inner)
            if inner_live is None or (body == "jaxpr" and not all(var in inner_live for var in inner.invars)):
                return None
        elif not any(var in live for var in eqn.outvars):
            return None
        live.update(atom for atom in eqn.invars if not isinstance(atom, jex_core.Literal))
    return live
